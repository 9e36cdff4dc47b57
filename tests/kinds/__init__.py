"""Seeded sample inputs of every input kind, for the generic tests over all losses.

Each ``tests/kinds/<kind>.py`` registers a sampler with :func:`sampler`; importing the
package loads them all. A new kind adds one file here (see docs/design.md, "Adding a
kind").
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable

import torch

from losslab.registry import LossSpec

F64 = torch.float64
IGNORE = -100

#: ``sampler(seed, n, c, dtype, scale, extra) -> positional inputs``; the last input is
#: the target that ``ignore_index`` refers to.
Sampler = Callable[..., tuple[torch.Tensor, ...]]
SAMPLERS: dict[str, Sampler] = {}


def sampler(kind: str) -> Callable[[Sampler], Sampler]:
    def deco(fn: Sampler) -> Sampler:
        SAMPLERS[kind] = fn
        return fn

    return deco


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
    """Positional inputs of ``spec``'s kind: logits/scores first, the target last."""
    return SAMPLERS[spec.kind.name](seed, n, c, dtype=dtype, scale=scale, extra=extra)


def with_ignored(
    spec: LossSpec, inputs: tuple[torch.Tensor, ...], ignored: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """``inputs`` with the targets at ``ignored`` (a bool mask) set to ``IGNORE``."""
    return (*inputs[:-1], torch.where(ignored, IGNORE, inputs[-1]))


def element_shape(spec: LossSpec, inputs: tuple[torch.Tensor, ...]) -> torch.Size:
    return inputs[-1].shape


def module_kwargs(spec: LossSpec) -> dict:
    """Constructor-only arguments (``num_samples`` for stateful losses)."""
    return {"num_samples": 64} if spec.stateful else {}


def forward_kwargs(spec: LossSpec, inputs: tuple[torch.Tensor, ...]) -> dict:
    """Per-call arguments of the module (``index=`` for stateful losses)."""
    if not spec.stateful:
        return {}
    shape = element_shape(spec, inputs)
    return {"index": torch.arange(shape.numel()).reshape(shape)}


for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")
