"""Test helpers: ``TINY``, a grid of 8 two-epoch cells on digits, and ``install``, a
tiny stand-in for the loss registry (``build_loss``/``list_losses``/``loss_info``) that
is installed only while the real one is missing from the checkout (the bench engine was
developed in parallel with it). ``install`` is idempotent and module-level, so pool and
Ray workers can run it (``worker_init``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


def _install_losses() -> None:
    import losslab

    if hasattr(losslab, "build_loss"):
        return

    class CE(torch.nn.Module):
        def forward(self, logits, target, sample_weight=None, **extra):
            return torch.nn.functional.cross_entropy(logits, target)

    class GCE(torch.nn.Module):
        def __init__(self, q: float = 0.7):
            super().__init__()
            self.q = q

        def forward(self, logits, target, sample_weight=None, **extra):
            p = logits.softmax(1).gather(1, target[:, None]).squeeze(1).clamp_min(1e-7)
            return ((1 - p**self.q) / self.q).mean()

    class ALDR(torch.nn.Module):
        def __init__(self, num_samples: int, temperature0: float = 10.0, alpha: float = 2.0,
                     margin: float = 0.1):  # fmt: skip
            super().__init__()
            self.register_buffer("lam", torch.full((num_samples,), temperature0))
            self.t0, self.alpha, self.margin = temperature0, alpha, margin

        def forward(self, logits, target, sample_weight=None, index=None):
            if index is None:
                raise ValueError("aldr_kl: index= is required")
            lam = self.lam[index][:, None]
            a = logits - logits.gather(1, target[:, None]) + self.margin
            a = a.scatter(1, target[:, None], 0.0)
            self.lam[index] = self.lam[index] * 0.99 + 0.01 * self.t0
            return (lam * (torch.logsumexp(a / lam, 1, keepdim=True))).mean()

    registry: dict[str, tuple[type, dict[str, Any], bool]] = {
        "ce": (CE, {}, False),
        "gce": (GCE, {"q": 0.7}, False),
        "aldr_kl": (ALDR, {"temperature0": 10.0, "alpha": 2.0, "margin": 0.1}, True),
    }

    @dataclass
    class LossSpec:
        name: str
        defaults: dict[str, Any]
        stateful: bool
        family: str = "standin"
        properties: frozenset = field(default_factory=frozenset)

    def build_loss(name: str, **cfg: Any) -> torch.nn.Module:
        if name not in registry:
            raise ValueError(f"unknown loss {name!r}; known: {sorted(registry)}")
        cls, defaults, _ = registry[name]
        unknown = set(cfg) - set(defaults) - {"num_samples"}
        if unknown:
            raise ValueError(f"{name}: unknown hyperparameters {sorted(unknown)}")
        return cls(**cfg)

    losslab.build_loss = build_loss
    losslab.list_losses = lambda family=None, property=None: sorted(registry)
    losslab.loss_info = lambda name: LossSpec(name, registry[name][1], registry[name][2])


def install() -> None:
    _install_losses()


TINY = dict(
    name="tiny",
    datasets=["digits"],
    corruptions=["clean", "uniform:0.3"],
    losses=["ce", "gce"],
    loss_grids={"gce": [{"q": 0.7}]},
    seeds=[0, 1],
    lrs=[1e-2],
    model="mlp",
    train={"epochs": 2, "batch_size": 256, "patience": None},
)
