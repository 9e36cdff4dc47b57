"""Figures for calibration and neural collapse, as matplotlib figures.

Every function draws into `ax` when given (and returns its figure) or into a new
`matplotlib.figure.Figure` (no pyplot state, so it is safe in worker processes); save
with `fig.savefig(path)`. Reliability figures take `ReliabilityBins`, so the benchmark
report can pool the bins it stored for several runs (`bins_a + bins_b`) before drawing.
matplotlib comes with the `bench` extra.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from losslab._validate import describe, fail
from losslab.metrics import ReliabilityBins
from losslab.metrics._inputs import as_tensor

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["collapse_figure", "confidence_histogram", "reliability_diagram", "reliability_figure"]


def _figure(figsize: tuple[float, float]) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("losslab.plot needs matplotlib: pip install 'losslab[bench]'") from None
    return Figure(figsize=figsize, layout="constrained")


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    return ax if ax is not None else _figure(figsize).add_subplot()


def _check_bins(where: str, bins: object) -> ReliabilityBins:
    if not isinstance(bins, ReliabilityBins):
        fail(
            where,
            "bins",
            "ReliabilityBins (losslab.metrics.reliability)",
            describe(bins),
            TypeError,
        )
    return bins


def reliability_diagram(
    bins: ReliabilityBins,
    *,
    ax: Axes | None = None,
    title: str | None = None,
    color: str = "tab:blue",
) -> Figure:
    """Reliability diagram: accuracy per equal-width confidence bin (bars), the gap to the
    bin's mean confidence (red), the diagonal of perfect calibration; ECE and MCE in the
    title. Empty bins are left blank.

    Reference: Guo, Pleiss, Sun, Weinberger, ICML 2017, arXiv:1706.04599 (figure 1).

    Example:
        >>> import torch
        >>> from losslab.metrics import reliability
        >>> g = torch.Generator().manual_seed(0)
        >>> z, y = torch.randn(200, 3, generator=g), torch.randint(3, (200,), generator=g)
        >>> bins = reliability(z, y)
        >>> fig = reliability_diagram(bins, title="test split")
        >>> fig.axes[0].get_xlabel()
        'confidence'
    """
    b = _check_bins("reliability_diagram", bins)
    ax = _axes(ax, (4.2, 4.2))
    centers = (b.edges[:-1] + b.edges[1:]) / 2
    width = float(b.edges[1] - b.edges[0])
    full = b.count > 0
    acc, conf = b.accuracy[full], b.mean_confidence[full]
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    ax.bar(centers[full], acc, width=width, color=color, edgecolor="black", linewidth=0.5,
           alpha=0.85, label="accuracy")  # fmt: skip
    ax.bar(centers[full], conf - acc, bottom=acc, width=width, color="tab:red", alpha=0.3,
           edgecolor="tab:red", hatch="//", linewidth=0.5, label="gap to confidence")  # fmt: skip
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize=7)
    stats = f"ECE {b.ece:.3f}, MCE {b.mce:.3f}, n = {b.total:.0f}" if b.total else "no samples"
    ax.set_title(f"{title}\n{stats}" if title else stats, fontsize=9)
    return ax.figure  # type: ignore[return-value]


def confidence_histogram(
    bins: ReliabilityBins,
    *,
    ax: Axes | None = None,
    title: str | None = None,
    color: str = "tab:blue",
) -> Figure:
    """Fraction of samples per equal-width confidence bin, with the overall accuracy and
    mean confidence as vertical lines (their distance is the over-confidence).

    Example:
        >>> import torch
        >>> from losslab.metrics import reliability
        >>> bins = reliability(torch.tensor([[2.0, 0.0], [0.0, 3.0]]), torch.tensor([0, 0]))
        >>> fig = confidence_histogram(bins)
        >>> fig.axes[0].get_ylabel()
        'fraction of samples'
    """
    b = _check_bins("confidence_histogram", bins)
    ax = _axes(ax, (4.2, 2.6))
    centers = (b.edges[:-1] + b.edges[1:]) / 2
    width = float(b.edges[1] - b.edges[0])
    n = max(b.total, 1.0)
    ax.bar(centers, b.count / n, width=width, color=color, edgecolor="black", linewidth=0.5)
    if b.total:
        acc = float(b.sum_correct.sum() / b.total)
        conf = float(b.sum_confidence.sum() / b.total)
        ax.axvline(acc, color="black", linestyle="--", label=f"accuracy {acc:.3f}")
        ax.axvline(conf, color="tab:red", linestyle="-", label=f"mean confidence {conf:.3f}")
        ax.legend(loc="upper left", fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("fraction of samples")
    if title:
        ax.set_title(title, fontsize=9)
    return ax.figure  # type: ignore[return-value]


def reliability_figure(
    bins: ReliabilityBins | Mapping[str, ReliabilityBins], *, title: str | None = None
) -> Figure:
    """One column per set of bins (e.g. `{"before": ..., "after temperature scaling":
    ...}`): the confidence histogram above its reliability diagram.

    Example:
        >>> import torch
        >>> from losslab.metrics import reliability
        >>> z, y = torch.tensor([[2.0, 0.0], [0.0, 3.0]]), torch.tensor([0, 0])
        >>> fig = reliability_figure({"before": reliability(z, y), "after": reliability(z / 2, y)})
        >>> len(fig.axes)
        4
    """
    panels = {"": bins} if isinstance(bins, ReliabilityBins) else dict(bins)
    if not panels:
        fail("reliability_figure", "bins", "at least one set of bins", "none")
    fig = _figure((4.2 * len(panels), 6.4))
    grid = fig.add_gridspec(2, len(panels), height_ratios=(1, 2.2))
    for col, (name, b) in enumerate(panels.items()):
        confidence_histogram(b, ax=fig.add_subplot(grid[0, col]), title=name or None)
        reliability_diagram(b, ax=fig.add_subplot(grid[1, col]))
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def collapse_figure(features: Any, labels: Any, weight: Any = None) -> Figure:
    """Cosines between the centred class means (and between the classifier's rows, when
    `weight` is given) next to those of a simplex ETF: 1 on the diagonal, -1/(K-1) off
    it. Inputs as `losslab.diagnostics.neural_collapse`.

    Example:
        >>> import torch
        >>> from losslab.diagnostics import simplex_etf
        >>> means = simplex_etf(4).T
        >>> fig = collapse_figure(means.repeat(3, 1), torch.arange(4).repeat(3), weight=means)
        >>> [ax.get_title() for ax in fig.axes[:3]]
        ['class means', 'classifier rows', 'simplex ETF']
    """
    from losslab.diagnostics import neural_collapse

    where = "collapse_figure"
    nc = neural_collapse(features, labels, weight)  # validates the inputs
    h = as_tensor(where, "features", features).to(torch.float64).cpu()
    y = as_tensor(where, "labels", labels).long().cpu()
    k = nc.num_classes
    means = torch.zeros(k, h.shape[1], dtype=torch.float64).index_add_(0, y, h)
    means = means / torch.bincount(y, minlength=k).unsqueeze(1)
    mats = {"class means": means - h.mean(0)}
    if weight is not None:
        mats["classifier rows"] = as_tensor(where, "weight", weight).to(torch.float64).cpu()
    etf = torch.full((k, k), -1.0 / (k - 1), dtype=torch.float64).fill_diagonal_(1.0)
    fig = _figure((3.4 * (len(mats) + 1) + 0.6, 3.4))
    axes = fig.subplots(1, len(mats) + 1)
    image = None
    for ax, (name, m) in zip(axes, [*mats.items(), ("simplex ETF", None)], strict=True):
        if m is None:
            cos = etf
        else:
            unit = m / m.norm(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
            cos = unit @ unit.T
        image = ax.imshow(cos.numpy(), vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("class")
        ax.set_ylabel("class")
    if image is None:  # pragma: no cover - there is always the ETF panel
        fail(where, "features", "classes", "none")
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="cosine")
    fig.suptitle(
        f"NC1 {nc.nc1:.3g}, ETF distance of the means {nc.etf_distance_means:.3f}", fontsize=9
    )
    return fig
