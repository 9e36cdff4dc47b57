"""The figures of ``losslab report``, drawn on :class:`matplotlib.figure.Figure` objects
(no pyplot state) and saved as PNG.

Readable at 23 losses: accuracy curves come as small multiples, one panel per loss family
(from the registry) and dataset, with cross-entropy drawn in black in every panel, a
distinct marker per loss and the legends outside the axes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from losslab.bench.stats import METRIC_NAMES, REFERENCE, BenchStats
from losslab.data.corrupt import IMBALANCE_KINDS
from losslab.metrics import ReliabilityBins

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "accuracy_by_family",
    "cd_diagram",
    "ece_figure",
    "loss_family",
    "mean_rank_figure",
    "pooled_bins",
    "reliability_figure",
]

KIND_STYLE = {"uniform": "-", "class_dependent": "--"}
MARKERS = "osD^v<>pP*Xhd"
#: the reference loss in every figure
REF_COLOR = "black"


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _save(fig: Figure, path: Path) -> None:
    fig.savefig(path, dpi=110)


def loss_family(name: str) -> str:
    """The registry family of a loss; ``other`` for a name the registry does not know
    (a loss registered only by the program that ran the grid)."""
    from losslab.registry import loss_info

    try:
        return str(loss_info(name).family)
    except ValueError:
        return "other"


def _families(losses: Sequence[str], reference: str) -> dict[str, list[str]]:
    fams: dict[str, list[str]] = {}
    for loss in sorted(losses):
        if loss != reference:
            fams.setdefault(loss_family(loss), []).append(loss)
    if not fams and reference in losses:
        fams[loss_family(reference)] = []
    return dict(sorted(fams.items()))


def _curve(ax: Axes, part: pd.DataFrame, loss: str, **style: Any) -> None:
    lp = part[part["loss"] == loss]
    clean = lp[lp["noise_kind"] == "clean"]
    kinds = [k for k in dict.fromkeys(lp["noise_kind"]) if k != "clean"] or ["clean"]
    for i, kind in enumerate(kinds):
        seg = pd.concat([clean, lp[lp["noise_kind"] == kind]]).drop_duplicates()
        seg = seg.sort_values("noise_rate")
        ax.errorbar(
            seg["noise_rate"],
            seg["mean"],
            yerr=seg["std"].fillna(0),
            linestyle=KIND_STYLE.get(kind, ":"),
            markersize=4,
            capsize=2,
            linewidth=1.2,
            label=loss if i == 0 else None,
            **style,
        )


def accuracy_by_family(
    df: pd.DataFrame, path: Path, reference: str = REFERENCE, metric: str = "test_acc"
) -> None:
    """Test accuracy (or another ``metric`` column, e.g. ``test_recall_at_1``) vs noise
    rate (mean ± std over seeds): one row per loss family, one column per dataset, the
    family's legend to the right
    of its row; the reference loss in black in every panel; solid lines for uniform noise,
    dashed for class-dependent noise, each starting from the clean point. Settings that
    only impose an imbalance (``long_tail``, ``step``) are left out when others remain."""
    from matplotlib import colormaps
    from matplotlib.lines import Line2D

    # an imbalance alone (long_tail:50) has its ratio, not a noise rate, in noise_rate: it
    # has no place on this axis (its numbers are in the tables), unless nothing else is left
    noisy = df[~df["noise_kind"].isin(IMBALANCE_KINDS)]
    df = noisy if len(noisy) else df
    datasets = list(dict.fromkeys(df["dataset"]))
    fams = _families(df["loss"].unique().tolist(), reference)
    stats = df.groupby(["dataset", "loss", "noise_kind", "noise_rate"], as_index=False)
    g = stats[metric].agg(["mean", "std"])
    name = METRIC_NAMES.get(metric, metric)
    fig = _figure(3.4 * len(datasets) + 1.6, 2.3 * len(fams) + 0.7)
    axes = fig.subplots(len(fams), len(datasets), sharex=True, squeeze=False)
    cmap = colormaps["tab10"]
    for row, (fam, members) in enumerate(fams.items()):
        styles: dict[str, dict[str, Any]] = {reference: {"color": REF_COLOR, "marker": "o"}}
        for i, loss in enumerate(members):
            styles[loss] = {"color": cmap(i % 10), "marker": MARKERS[(i + 1) % len(MARKERS)]}
        for col, ds in enumerate(datasets):
            ax = axes[row][col]
            part = g[g["dataset"] == ds]
            for loss, style in styles.items():
                if loss in set(part["loss"]):
                    _curve(ax, part, loss, **style)
            ax.set_title(f"{fam} — {ds}", fontsize=9)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7)
            if row == len(fams) - 1:
                ax.set_xlabel("noise rate", fontsize=8)
            if col == 0:
                ax.set_ylabel(name, fontsize=8)
        handles = [Line2D([], [], markersize=5, label=n, **st) for n, st in styles.items()]
        axes[row][-1].legend(
            handles=handles, loc="upper left", bbox_to_anchor=(1.03, 1.0), fontsize=8,
            frameon=False, title=fam, title_fontsize=8,
        )  # fmt: skip
    fig.suptitle(
        f"{name[0].upper()}{name[1:]} vs training-label noise (mean ± std over seeds)\n"
        f"{reference} in black "
        "in every panel\nsolid: uniform noise, dashed: class-dependent noise",
        fontsize=10,
    )
    _save(fig, path)


def mean_rank_figure(st: BenchStats, path: Path) -> None:
    """Mean rank per loss with its bootstrap interval (groups resampled)."""
    r = st.mean_rank.dropna().sort_values(ascending=False)
    fig = _figure(6.5, 0.28 * max(len(r), 1) + 1.3)
    ax = fig.add_subplot()
    if len(r):
        ci = st.rank_ci.reindex(r.index)
        y = np.arange(len(r))
        colors = [REF_COLOR if n == st.reference else "tab:blue" for n in r.index]
        ax.errorbar(
            r.to_numpy(),
            y,
            xerr=[r.to_numpy() - ci["lo"].to_numpy(), ci["hi"].to_numpy() - r.to_numpy()],
            fmt="none",
            ecolor="grey",
            capsize=2,
        )
        ax.scatter(r.to_numpy(), y, c=colors, zorder=3, s=18)
        ax.set_yticks(y, [str(n) for n in r.index], fontsize=8)
        ax.set_xlim(0.5, len(st.mean_rank) + 0.5)
    ax.set_xlabel(
        f"mean rank of {st.metric_name} over {st.n_groups} (dataset, corruption) groups\n"
        "(1 = best; bars: 95% bootstrap interval)",
        fontsize=8,
    )
    ax.grid(axis="x", alpha=0.3)
    _save(fig, path)


def cd_diagram(st: BenchStats, path: Path) -> None:
    """Critical-difference diagram (Demšar 2006, figure 1): the losses on an axis of mean
    rank, best to the left; a thick bar joins losses whose mean ranks differ by less than
    the Nemenyi critical difference, drawn as a segment above the axis."""
    r = st.mean_rank.dropna().sort_values()
    k = len(st.mean_rank)
    names = [str(n) for n in r.index]
    half = (len(names) + 1) // 2
    rows = max(half, len(names) - half)
    fig = _figure(8.0, 1.7 + 0.26 * rows + 0.12 * len(st.cliques))
    ax = fig.add_subplot()
    ax.set_axis_off()
    lo, hi = 1.0, float(max(k, 2))
    ax.set_xlim(lo - 0.35 * (hi - lo) - 0.2, hi + 0.35 * (hi - lo) + 0.2)
    top = 0.0
    ax.plot([lo, hi], [top, top], color="black", linewidth=1)
    for t in range(1, int(hi) + 1):
        ax.plot([t, t], [top, top + 0.12], color="black", linewidth=0.8)
        ax.text(t, top + 0.22, str(t), ha="center", va="bottom", fontsize=7)
    if st.cd is not None:
        ax.plot([lo, lo + st.cd], [top + 0.75, top + 0.75], color="black", linewidth=1.5)
        for x in (lo, lo + st.cd):
            ax.plot([x, x], [top + 0.68, top + 0.82], color="black", linewidth=1)
        ax.text(lo + st.cd / 2, top + 0.88, f"CD = {st.cd:.2f}", ha="center", fontsize=8)
    y_cliques = [-(0.25 + 0.14 * i) for i in range(len(st.cliques))]
    for yb, clique in zip(y_cliques, st.cliques, strict=True):
        xs = r[clique].to_numpy()
        ax.plot([xs.min() - 0.05, xs.max() + 0.05], [yb, yb], color="black", linewidth=3)
    base = (y_cliques[-1] if y_cliques else -0.1) - 0.3
    for i, name in enumerate(names):
        left = i < half
        j = i if left else len(names) - 1 - i
        y = base - 0.3 * j
        x_end = ax.get_xlim()[0] + 0.1 if left else ax.get_xlim()[1] - 0.1
        color = REF_COLOR if name == st.reference else "tab:blue"
        ax.plot([r.iloc[i], r.iloc[i], x_end], [top, y, y], color=color, linewidth=0.8)
        ax.text(
            x_end,
            y + 0.04,
            f"{name} ({r.iloc[i]:.2f})",
            ha="left" if left else "right",
            va="bottom",
            fontsize=7,
            color=color,
        )
    ax.set_ylim(base - 0.3 * rows, top + 1.1)
    n_text = f"{st.n_groups} groups, alpha = {st.alpha:g}"
    if st.friedman is not None:
        n_text += f"; Friedman p = {st.friedman.pvalue:.3g}"
    ax.set_title(f"Critical-difference diagram (Nemenyi, {n_text})", fontsize=9)
    _save(fig, path)


def ece_figure(df: pd.DataFrame, path: Path, reference: str = REFERENCE) -> None:
    """Test ECE per loss (mean over groups and seeds, with its range over groups), and
    after temperature scaling where the rows carry ``test_ece_ts``."""
    cols = ["test_ece"] + (["test_ece_ts"] if "test_ece_ts" in df else [])
    per_group = df.astype({c: float for c in cols}).groupby(["dataset", "corruption", "loss"])
    g = per_group[cols].mean().groupby("loss")
    mean, lo, hi = g.mean(), g.min(), g.max()
    order = mean["test_ece"].sort_values(ascending=False).index
    fig = _figure(6.5, 0.28 * max(len(order), 1) + 1.3)
    ax = fig.add_subplot()
    y = np.arange(len(order))
    styles = {"test_ece": ("o", "tab:red", "before"), "test_ece_ts": ("s", "tab:green", "after")}
    for i, c in enumerate(cols):
        marker, color, label = styles[c]
        m = mean.loc[order, c].to_numpy()
        off = (i - (len(cols) - 1) / 2) * 0.25
        ax.errorbar(
            m,
            y + off,
            xerr=[m - lo.loc[order, c].to_numpy(), hi.loc[order, c].to_numpy() - m],
            fmt=marker,
            color=color,
            ecolor="lightgrey",
            markersize=4,
            capsize=2,
            label=f"{label} temperature scaling" if len(cols) > 1 else "test ECE",
        )
    ax.set_yticks(y, [str(n) for n in order], fontsize=8)
    for tick in ax.get_yticklabels():
        if tick.get_text() == reference:
            tick.set_fontweight("bold")
    ax.set_xlabel("test ECE, mean over groups and seeds (bars: min-max over groups)", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    _save(fig, path)


def pooled_bins(df: pd.DataFrame, loss: str, column: str = "reliability") -> ReliabilityBins | None:
    """The reliability bins of one loss, summed over its rows (``None`` without any)."""
    total: ReliabilityBins | None = None
    for rel in df.loc[df["loss"] == loss, column] if column in df else []:
        if rel:
            b = ReliabilityBins.from_dict(rel)
            total = b if total is None else total + b
    return total


def reliability_figure(
    df: pd.DataFrame, panels: Sequence[tuple[str, str, str]], path: Path
) -> None:
    """Reliability diagrams of pooled test sets, one per ``(title, loss, column)``."""
    from losslab.plot import reliability_diagram

    fig = _figure(4.2 * max(len(panels), 1), 4.4)
    for i, (title, loss, column) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        bins = pooled_bins(df, loss, column)
        if bins is None:
            ax.set_axis_off()
            ax.set_title(f"{title}: no reliability bins stored", fontsize=9)
            continue
        reliability_diagram(bins, ax=ax, title=f"{title} (pooled test sets)")
    _save(fig, path)
