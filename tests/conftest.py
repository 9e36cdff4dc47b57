"""Shared fixtures: the registry as test parameters."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

import losslab

settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
torch.set_num_threads(1)

ALL_LOSSES = losslab.list_losses()


def loss_configs() -> list[tuple[str, dict]]:
    """(name, hyperparameter overrides) for the defaults and each declared test config."""
    out = []
    for name in ALL_LOSSES:
        spec = losslab.loss_info(name)
        out.append((name, {}))
        out.extend((name, dict(c)) for c in spec.test_configs)
    return out


def config_id(param: tuple[str, dict]) -> str:
    name, cfg = param
    return name + ("[" + ",".join(f"{k}={v}" for k, v in cfg.items()) + "]" if cfg else "")


@pytest.fixture(params=ALL_LOSSES)
def loss_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(params=loss_configs(), ids=config_id)
def loss_config(request: pytest.FixtureRequest) -> tuple[str, dict]:
    return request.param
