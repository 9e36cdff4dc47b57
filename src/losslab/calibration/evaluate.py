"""Calibration before and after temperature scaling, in the form the benchmark records
per cell: fit on the (noisy) validation split, evaluate on the test split."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from losslab.calibration.scaling import TemperatureScaling
from losslab.metrics import ReliabilityBins, nll, reliability, smooth_ece

__all__ = ["TemperatureScalingResult", "evaluate_temperature_scaling"]


@dataclass(frozen=True)
class TemperatureScalingResult:
    """Metrics of one (validation, test) pair before and after temperature scaling.

    `val_nll_after <= val_nll_before` always holds (the fit never makes the validation
    NLL worse); the test values show whether that carries over.
    """

    temperature: float
    val_nll_before: float
    val_nll_after: float
    test_nll_before: float
    test_nll_after: float
    test_ece_before: float
    test_ece_after: float
    test_smooth_ece_before: float
    test_smooth_ece_after: float
    test_reliability_before: ReliabilityBins
    test_reliability_after: ReliabilityBins

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: floats, and the reliability bins as `ReliabilityBins.to_dict()`."""
        out = asdict(self)
        out["test_reliability_before"] = self.test_reliability_before.to_dict()
        out["test_reliability_after"] = self.test_reliability_after.to_dict()
        return out


def evaluate_temperature_scaling(
    val_logits: Any,
    val_target: Any,
    test_logits: Any,
    test_target: Any,
    *,
    n_bins: int = 15,
) -> TemperatureScalingResult:
    """Fit `TemperatureScaling` on the validation logits and report NLL, ECE (`n_bins`
    equal-width bins), smooth ECE and the reliability bins of the test logits before and
    after it.

    Raises the calibrator's errors (too few validation samples, a single class).

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> def split(n):
        ...     y = torch.randint(3, (n,), generator=g)
        ...     return 4 * (torch.nn.functional.one_hot(y, 3) + torch.randn(n, 3, generator=g)), y
        >>> r = evaluate_temperature_scaling(*split(500), *split(2000))
        >>> r.val_nll_after <= r.val_nll_before, r.test_ece_after < r.test_ece_before
        (True, True)
    """
    ts = TemperatureScaling().fit(val_logits, val_target)
    val_after = ts.transform(val_logits)
    test_after = ts.transform(test_logits)
    before = reliability(test_logits, test_target, n_bins=n_bins)
    after = reliability(test_after, test_target, n_bins=n_bins)
    return TemperatureScalingResult(
        temperature=ts.temperature,
        val_nll_before=nll(val_logits, val_target),
        val_nll_after=nll(val_after, val_target),
        test_nll_before=nll(test_logits, test_target),
        test_nll_after=nll(test_after, test_target),
        test_ece_before=before.ece,
        test_ece_after=after.ece,
        test_smooth_ece_before=smooth_ece(test_logits, test_target),
        test_smooth_ece_after=smooth_ece(test_after, test_target),
        test_reliability_before=before,
        test_reliability_after=after,
    )
