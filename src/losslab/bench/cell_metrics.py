"""What a cell measures once, on its reported weights, beyond the per-epoch metrics:
calibration after temperature scaling and (on request) neural collapse.

Both run after training and draw no random numbers, so they never change the trained
model or any other metric of the cell.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from losslab.calibration import TemperatureScaling
from losslab.diagnostics import neural_collapse
from losslab.metrics import nll, reliability_bins, top_label_confidence

__all__ = [
    "NC_COLUMNS",
    "nc_columns",
    "neural_collapse_metrics",
    "penultimate",
    "temperature_scaling_metrics",
]

#: the scalar of each neural-collapse measure that a row column shows
NC_COLUMNS = {
    "nc1": "nc1",
    # distance of the centred class means' Gram matrix to the simplex ETF's: 0 exactly
    # when the means have equal norms and equal pairwise angles (both halves of NC2)
    "nc2": "etf_distance_means",
    "nc3": "nc3",
    "nc4": "nc4",
}


def _ece(z: torch.Tensor, y: torch.Tensor) -> float:
    # the binning of the per-epoch ECE (15 equal-width bins), so before/after compare
    conf, correct = top_label_confidence(z.numpy(), y.numpy())
    return reliability_bins(conf, correct, 15).ece


def temperature_scaling_metrics(
    val_logits: torch.Tensor,
    y_val: torch.Tensor,
    test_logits: torch.Tensor,
    y_test: torch.Tensor,
) -> dict[str, Any]:
    """Fit :class:`~losslab.calibration.TemperatureScaling` on the (noisy) validation
    logits and evaluate the test logits divided by the fitted temperature.

    Returns ``temperature``, ``val_nll`` and ``test_nll`` and ``test_ece`` after scaling
    (NaN, with the reason in ``skipped``, when the validation split cannot be fitted,
    e.g. a single class). Accuracy is unchanged by construction (same argmax).

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> y = torch.randint(3, (300,), generator=g)
        >>> z = 5 * (torch.nn.functional.one_hot(y, 3) + torch.randn(300, 3, generator=g))
        >>> ts = temperature_scaling_metrics(z[:100], y[:100], z[100:], y[100:])
        >>> ts["temperature"] > 1, ts["test_ece"] < _ece(z[100:].double(), y[100:])
        (True, True)
    """
    z_val, z_test = val_logits.double(), test_logits.double()
    try:
        ts = TemperatureScaling().fit(z_val, y_val)
    except ValueError as exc:
        nan = math.nan
        return {
            "temperature": nan,
            "val_nll": nan,
            "test_nll": nan,
            "test_ece": nan,
            "skipped": str(exc).splitlines()[0],
        }
    with torch.no_grad():
        val_after, test_after = ts.transform(z_val), ts.transform(z_test)
    return {
        "temperature": ts.temperature,
        "val_nll": nll(val_after, y_val),
        "test_nll": nll(test_after, y_test),
        "test_ece": _ece(test_after, y_test),
    }


def _classifier(model: nn.Module, num_classes: int) -> nn.Linear:
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not last or last[-1].out_features != num_classes:
        raise ValueError(
            f"diagnostics: model expected a final nn.Linear with {num_classes} outputs, "
            f"got {type(model).__name__}"
        )
    return last[-1]


@torch.no_grad()
def penultimate(
    model: nn.Module, X: torch.Tensor, num_classes: int, chunk: int = 4096
) -> tuple[torch.Tensor, nn.Linear]:
    """The inputs of the model's classifier (its last ``nn.Linear``, which must have
    ``num_classes`` outputs) for every row of ``X``, in eval mode, and that layer."""
    head = _classifier(model, num_classes)
    seen: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
    try:
        model.eval()
        for i in range(0, len(X), chunk):
            model(X[i : i + chunk])
    finally:
        hook.remove()
    return torch.cat(seen), head


def neural_collapse_metrics(
    model: nn.Module, X: torch.Tensor, labels: dict[str, torch.Tensor], num_classes: int
) -> dict[str, Any]:
    """NC1-NC4 (:func:`losslab.diagnostics.neural_collapse`) of the penultimate features
    of ``X`` and the classifier, per label set (e.g. the noisy and the clean training
    labels). A label set the measures are undefined for (a class without a sample,
    identical class means) gets ``{"skipped": reason}``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> X, y = torch.randn(60, 4), torch.arange(3).repeat(20)
        >>> out = neural_collapse_metrics(model, X, {"train": y}, 3)
        >>> out["train"]["num_samples"], out["train"]["dim"], 0 <= out["train"]["nc4"] <= 1
        (60, 8, True)
    """
    h, head = penultimate(model, X, num_classes)
    bias = None if head.bias is None else head.bias.detach()
    out: dict[str, Any] = {}
    for name, y in labels.items():
        try:
            nc = neural_collapse(h, y, head.weight.detach(), bias, num_classes=num_classes)
        except ValueError as exc:
            out[name] = {"skipped": str(exc).splitlines()[0]}
        else:
            out[name] = nc.to_dict()
    return out


def nc_columns(final: dict[str, Any] | None) -> dict[str, float | None]:
    """The row columns ``nc1``..``nc4`` of a cell's final metrics: the measures on the
    noisy training labels (the labels the model was fitted to), ``None`` where they were
    not asked for or are undefined."""
    nc = ((final or {}).get("diagnostics") or {}).get("train_noisy") or {}
    return {col: nc.get(field) for col, field in NC_COLUMNS.items()}
