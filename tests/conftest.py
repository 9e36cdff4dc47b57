"""Shared fixtures: the registry as test parameters, per input kind."""

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
MULTICLASS = losslab.list_losses(kind="multiclass")


def loss_configs(names: list[str]) -> list[tuple[str, dict]]:
    """(name, hyperparameter overrides) for the defaults and each declared test config."""
    out = []
    for name in names:
        spec = losslab.loss_info(name)
        out.append((name, {}))
        out.extend((name, dict(c)) for c in spec.test_configs)
    return out


def config_id(param: tuple[str, dict]) -> str:
    name, cfg = param
    return name + ("[" + ",".join(f"{k}={v}" for k, v in cfg.items()) + "]" if cfg else "")


@pytest.fixture(params=MULTICLASS)
def loss_name(request: pytest.FixtureRequest) -> str:
    """A multi-class loss."""
    return request.param


@pytest.fixture(params=loss_configs(MULTICLASS), ids=config_id)
def loss_config(request: pytest.FixtureRequest) -> tuple[str, dict]:
    """A multi-class loss with one of its test configurations."""
    return request.param


@pytest.fixture(params=ALL_LOSSES)
def any_loss(request: pytest.FixtureRequest) -> str:
    """Any registered loss, of any kind."""
    return request.param


@pytest.fixture(params=loss_configs(ALL_LOSSES), ids=config_id)
def any_config(request: pytest.FixtureRequest) -> tuple[str, dict]:
    """Any registered loss with one of its test configurations."""
    return request.param
