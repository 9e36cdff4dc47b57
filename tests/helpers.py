"""Seeded inputs shared by the loss tests."""

from __future__ import annotations

import torch

F64 = torch.float64


def seeded_logits(
    seed: int,
    n: int = 8,
    c: int = 5,
    scale: float = 2.0,
    *,
    dtype: torch.dtype = F64,
    extra: tuple[int, ...] = (),
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits (n, c, *extra), int64 targets (n, *extra))`` drawn from one seeded generator.

    Logits are drawn in float64 and then cast, so every dtype sees the same values.
    """
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(n, c, *extra, generator=g, dtype=F64) * scale).to(dtype)
    return z, torch.randint(c, (n, *extra), generator=g)


def p_target(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Softmax probability of the target class."""
    return torch.softmax(z, dim=1).gather(1, y[:, None]).squeeze(1)
