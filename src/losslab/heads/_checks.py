"""Input checks shared by the output heads (shapes, dtypes, target range).

Shape and dtype checks are free and always run. The target-range check needs a host
sync, so it runs only when ``validate=True`` and never while ``torch.compile`` traces.
"""

from __future__ import annotations

import torch

from losslab._validate import REDUCTIONS as _REDUCTIONS
from losslab._validate import value_checks_enabled

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def is_compiling() -> bool:
    """True while torch.compile / dynamo traces (value checks would force a graph break)."""
    return not value_checks_enabled(True)


def check_float(fn: str, name: str, t: torch.Tensor) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{fn}: {name} must be a floating tensor (float16/bfloat16/float32/float64), "
            f"got dtype {t.dtype}"
        )


def check_target(fn: str, target: torch.Tensor) -> None:
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"{fn}: target must be a torch.Tensor, got {type(target).__name__}")
    if target.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise TypeError(f"{fn}: target must hold integer class indices, got dtype {target.dtype}")


def check_reduction(fn: str, reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{fn}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def check_target_range(
    fn: str, target: torch.Tensor, num_classes: int, ignore_index: int, rows: str = "rows"
) -> None:
    """Raise if a non-ignored target is outside [0, num_classes). Needs a host sync."""
    if target.numel() == 0 or is_compiling():
        return
    bad = ((target < 0) | (target >= num_classes)) & (target != ignore_index)
    if bool(bad.any()):
        value = int(target[bad][0])
        raise ValueError(
            f"{fn}: target contains class {value} but weight has {num_classes} {rows} "
            f"(expected 0 <= target < {num_classes} or target == ignore_index={ignore_index})"
        )
