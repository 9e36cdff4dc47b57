"""Seeded sample inputs of every input kind, for the generic tests over all losses."""

from __future__ import annotations

import torch

from losslab.registry import LossSpec
from tests.helpers import seeded_logits

F64 = torch.float64
IGNORE = -100


def sample(
    spec: LossSpec,
    seed: int,
    n: int = 6,
    c: int = 5,
    *,
    dtype: torch.dtype = F64,
    scale: float = 2.0,
    extra: tuple[int, ...] = (),
) -> tuple[torch.Tensor, ...]:
    """Positional inputs of ``spec``'s kind: logits/scores first, then targets."""
    kind = spec.kind.name
    if kind == "multiclass":
        return seeded_logits(seed, n, c, scale, dtype=dtype, extra=extra)
    g = torch.Generator().manual_seed(seed)
    if kind == "binary":
        x = torch.randn(n, c, *extra, generator=g, dtype=F64) * scale
        return x.to(dtype), torch.randint(2, (n, c, *extra), generator=g)
    if kind == "distillation":
        s = torch.randn(n, c, *extra, generator=g, dtype=F64) * scale
        t = torch.randn(n, c, *extra, generator=g, dtype=F64) * scale
        return s.to(dtype), t.to(dtype), torch.randint(c, (n, *extra), generator=g)
    raise AssertionError(f"no sample inputs for the kind {kind!r}")


def target_of(spec: LossSpec, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The tensor whose entries ``ignore_index`` refers to."""
    return inputs[-1]


def with_ignored(
    spec: LossSpec, inputs: tuple[torch.Tensor, ...], ignored: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """``inputs`` with the targets at ``ignored`` (a bool mask) set to ``IGNORE``."""
    target = target_of(spec, inputs)
    return (*inputs[:-1], torch.where(ignored, IGNORE, target))


def element_shape(spec: LossSpec, inputs: tuple[torch.Tensor, ...]) -> torch.Size:
    return target_of(spec, inputs).shape


def module_kwargs(spec: LossSpec) -> dict:
    """Constructor-only arguments (``num_samples`` for stateful losses)."""
    return {"num_samples": 64} if spec.stateful else {}


def forward_kwargs(spec: LossSpec, inputs: tuple[torch.Tensor, ...]) -> dict:
    """Per-call arguments of the module (``index=`` for stateful losses)."""
    if not spec.stateful:
        return {}
    shape = element_shape(spec, inputs)
    return {"index": torch.arange(shape.numel()).reshape(shape)}
