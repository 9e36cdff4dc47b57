"""``losslab report``: markdown + a self-contained HTML page (figures inlined as PNG)
from the final cells of one grid in the result store."""

from __future__ import annotations

import base64
import html
import json
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from losslab.bench.grid import GridError, GridSpec, corruption_rate
from losslab.bench.plan import Plan
from losslab.bench.protocol import problem
from losslab.bench.store import ResultStore
from losslab.metrics import ReliabilityBins

__all__ = [
    "ReportFiles",
    "diverged_frame",
    "final_frame",
    "grid_plan",
    "leaderboard",
    "progress",
    "resolve_grid",
    "run_record",
    "write_report",
    "write_results_page",
]

KIND_STYLE = {"uniform": "-", "class_dependent": "--"}


@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    html: Path
    figures: list[Path]


def resolve_grid(store: ResultStore, grid: str | None = None) -> dict[str, Any]:
    """The grid called ``grid`` (an id, or a name: its newest run), else the newest."""
    grids = store.grids()
    if not grids:
        raise ValueError(
            problem(
                "store",
                repr(str(store.path)),
                "a grid that has been run",
                "none (run `losslab bench run` first)",
            )
        )
    if grid is None:
        return grids[0]
    for g in grids:
        if grid in (g["grid"], g["name"]):
            return g
    known = sorted({g["grid"] for g in grids} | {g["name"] for g in grids})
    raise ValueError(problem("store", "--grid", f"one of {known}", repr(grid)))


def grid_plan(info: Mapping[str, Any]) -> Plan | None:
    """The plan of a stored grid (``None`` if its stored spec no longer builds)."""
    try:
        return Plan.of(GridSpec(**info["spec"]))
    except (GridError, TypeError, KeyError):
        return None


def progress(info: Mapping[str, Any]) -> tuple[int, int]:
    """(cells done, cells the grid trains in all): the total comes from the plan, so it
    counts final cells that selection has not named yet."""
    plan = grid_plan(info)
    return int(info["done"]), plan.total if plan is not None else int(info["cells"])


def final_frame(store: ResultStore, grid_id: str) -> pd.DataFrame:
    """One row per finished final cell of the grid (JSON columns parsed)."""
    keys = [m["key"] for m in store.members(grid_id, "final")]
    return pd.DataFrame(store.rows(keys))


def diverged_frame(store: ResultStore, grid_id: str) -> pd.DataFrame:
    """The grid's diverged cells: where, when, and which epoch is reported (if any)."""
    roles = {m["key"]: m["role"] for m in store.members(grid_id)}
    rows = [r for r in store.rows(roles) if r.get("diverged")]
    cols = [
        "dataset",
        "corruption",
        "loss",
        "loss_config",
        "lr",
        "seed",
        "role",
        "diverged_epoch",
        "reported_epoch",
    ]
    out = [
        {
            **{k: r[k] for k in cols[:6]},
            "role": roles[r["key"]],
            "diverged_epoch": r.get("diverged_epoch"),
            "reported_epoch": "none" if r.get("best_epoch") is None else r["best_epoch"],
            "loss_config": json.dumps(r["loss_config"], sort_keys=True),
        }
        for r in rows
    ]
    return pd.DataFrame(out, columns=cols).sort_values(cols[:6]).reset_index(drop=True)


def _corruption_order(values: Iterable[str]) -> list[str]:
    """clean first, then each kind by increasing rate (uniform before class-dependent)."""
    kinds = {"clean": 0, "uniform": 1, "class_dependent": 2}

    def key(c: str) -> tuple[int, str, float]:
        kind, rate = corruption_rate(c)
        return kinds.get(kind, 3), kind, rate

    return sorted(set(values), key=key)


_MEAN_COLS = ["test_acc", "test_ece", "test_nll", "test_macro_f1", "train_clean_acc"]


def _group_means(df: pd.DataFrame) -> pd.DataFrame:
    return df.groupby(["dataset", "corruption", "loss"], as_index=False)[_MEAN_COLS].mean()


def leaderboard(rows: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Per loss: mean rank of its seed-averaged test accuracy within each
    (dataset, corruption) group (1 = best, ties averaged; only groups where every loss
    has a result; a loss whose every seed diverged without a finite epoch ranks last),
    and mean test accuracy/ECE/NLL/clean-train accuracy over groups."""
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if df.empty:
        return pd.DataFrame(
            columns=[
                "loss",
                "mean_rank",
                "test_acc",
                "test_ece",
                "test_nll",
                "train_clean_acc",
                "groups",
                "cells",
            ]
        )
    df = df.astype({c: float for c in _MEAN_COLS if c in df})
    g = _group_means(df)
    n_losses = g["loss"].nunique()
    complete = g.groupby(["dataset", "corruption"])["loss"].transform("nunique") == n_losses
    ranked = g[complete].copy()
    ranked["rank"] = ranked.groupby(["dataset", "corruption"])["test_acc"].rank(
        ascending=False, method="average", na_option="bottom"
    )
    out = g.groupby("loss").agg(
        test_acc=("test_acc", "mean"),
        test_ece=("test_ece", "mean"),
        test_nll=("test_nll", "mean"),
        train_clean_acc=("train_clean_acc", "mean"),
        groups=("test_acc", "size"),
    )
    out["mean_rank"] = ranked.groupby("loss")["rank"].mean()
    out["cells"] = df.groupby("loss").size()
    out = out.reset_index().sort_values(["mean_rank", "test_acc"], ascending=[True, False])
    cols = [
        "loss",
        "mean_rank",
        "test_acc",
        "test_ece",
        "test_nll",
        "train_clean_acc",
        "groups",
        "cells",
    ]
    return out[cols].reset_index(drop=True)


# ------------------------------------------------------------------------------ tables


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if np.isnan(v) else f"{v:.3f}"
    return str(v)


def _md_table(df: pd.DataFrame) -> str:
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])


def _html_table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
        for row in df.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _accuracy_tables(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per dataset: loss x corruption, 'mean ± std' of test accuracy over seeds
    (``*``: one seed; ``†``: some seed diverged; ``diverged``: no seed has a finite epoch)."""
    out = {}
    order = _corruption_order(df["corruption"])
    df = df.assign(diverged=df["diverged"].fillna(False).astype(bool))
    for ds, part in df.groupby("dataset", sort=False):
        stats = part.groupby(["loss", "corruption"]).agg(
            mean=("test_acc", "mean"),
            std=("test_acc", "std"),
            size=("test_acc", "size"),
            div=("diverged", "any"),
        )
        table = pd.DataFrame(index=sorted(part["loss"].unique()))
        for c in [c for c in order if c in set(part["corruption"])]:
            col = []
            for loss in table.index:
                if (loss, c) in stats.index:
                    m, s, n, div = stats.loc[(loss, c)]
                    mark = ("" if n > 1 else "*") + ("†" if div else "")
                    col.append(
                        "diverged"
                        if np.isnan(m)
                        else f"{m:.3f} ± {0 if np.isnan(s) else s:.3f}{mark}"
                    )
                else:
                    col.append("")
            table[c] = col
        out[str(ds)] = table.reset_index(names="loss")
    return out


def _clean_train_table(df: pd.DataFrame) -> pd.DataFrame:
    t = df.astype({"train_clean_acc": float}).pivot_table(
        index="loss", columns="corruption", values="train_clean_acc", aggfunc="mean", dropna=False
    )
    order = [c for c in _corruption_order(df["corruption"]) if c in t.columns]
    return t[order].reset_index()


def _selection_table(df: pd.DataFrame) -> pd.DataFrame:
    sel = df.drop_duplicates(["dataset", "corruption", "loss"])[
        ["dataset", "corruption", "loss", "loss_config", "lr"]
    ].copy()
    sel["loss_config"] = sel["loss_config"].map(lambda c: json.dumps(c, sort_keys=True))
    return sel.sort_values(["dataset", "corruption", "loss"]).reset_index(drop=True)


# ----------------------------------------------------------------------------- figures


def _png(fig: Any, path: Path) -> None:
    fig.savefig(path, dpi=110, bbox_inches="tight")


def _fig_accuracy_vs_noise(df: pd.DataFrame, path: Path) -> None:
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(df["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4.2), squeeze=False)
    g = df.groupby(["dataset", "loss", "noise_kind", "noise_rate"], as_index=False)["test_acc"]
    g = g.agg(["mean", "std"])
    losses = sorted(df["loss"].unique())
    colors = {loss: plt.cm.tab20(i % 20) for i, loss in enumerate(losses)}
    for ax, ds in zip(axes[0], datasets, strict=True):
        part = g[g["dataset"] == ds]
        for loss in losses:
            lp = part[part["loss"] == loss]
            clean = lp[lp["noise_kind"] == "clean"]
            kinds = [k for k in lp["noise_kind"].unique() if k != "clean"] or ["clean"]
            for kind in kinds:
                seg = pd.concat([clean, lp[lp["noise_kind"] == kind]]).drop_duplicates()
                seg = seg.sort_values("noise_rate")
                ax.errorbar(
                    seg["noise_rate"],
                    seg["mean"],
                    yerr=seg["std"].fillna(0),
                    color=colors[loss],
                    linestyle=KIND_STYLE.get(kind, ":"),
                    marker="o",
                    markersize=3,
                    capsize=2,
                    linewidth=1.3,
                    label=loss if kind == kinds[0] else None,
                )
        ax.set_title(f"{ds}  (solid: uniform, dashed: class-dependent)", fontsize=9)
        ax.set_xlabel("noise rate")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="best", ncol=2)
    fig.suptitle("Test accuracy vs training-label noise (mean ± std over seeds)")
    _png(fig, path)
    plt.close(fig)


def _fig_mean_rank(board: pd.DataFrame, path: Path) -> None:
    import matplotlib.pyplot as plt

    b = board.dropna(subset=["mean_rank"]).sort_values("mean_rank", ascending=False)
    fig, ax = plt.subplots(figsize=(6.5, 0.32 * len(b) + 1.2))
    ax.barh(b["loss"], b["mean_rank"], color="tab:blue")
    ax.set_xlabel("mean rank of test accuracy across (dataset, corruption) cells (1 = best)")
    ax.grid(axis="x", alpha=0.3)
    _png(fig, path)
    plt.close(fig)


def _fig_reliability(df: pd.DataFrame, losses: list[str], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(losses), figsize=(4.4 * len(losses), 4.2), squeeze=False)
    for ax, (tag, loss) in zip(axes[0], zip(["best", "worst"], losses, strict=False), strict=False):
        total: ReliabilityBins | None = None
        for rel in df.loc[df["loss"] == loss, "reliability"]:
            if rel:
                b = ReliabilityBins.from_dict(rel)
                total = b if total is None else total + b
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
        if total is not None:
            centers = (total.edges[:-1] + total.edges[1:]) / 2
            width = total.edges[1] - total.edges[0]
            ax.bar(
                centers,
                np.nan_to_num(total.accuracy),
                width=width * 0.95,
                edgecolor="black",
                color="tab:blue",
                alpha=0.75,
                label="accuracy",
            )
            ax.plot(
                centers,
                total.mean_confidence,
                "o",
                color="tab:red",
                markersize=3,
                label="mean confidence",
            )
            ax.set_title(f"{tag}: {loss}  (ECE {total.ece:.3f}, pooled test sets)", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (15 equal-width bins)")
        ax.set_ylabel("accuracy")
        ax.legend(fontsize=7, loc="upper left")
    _png(fig, path)
    plt.close(fig)


# ------------------------------------------------------------------------------ report


DIVERGED_NOTE = (
    "A cell diverges when its logits, loss or evaluation become non-finite; it is a "
    "finished cell that reports its best finite epoch (none: no metrics, ranked last). "
    "Selection prefers candidates that trained to the end. In the accuracy tables † "
    "marks a result with a diverged seed."
)


def write_report(
    store: ResultStore | str | Path, out_dir: str | Path, grid: str | None = None
) -> ReportFiles:
    """Write ``report.md``, ``report.html`` and the figures for one grid into ``out_dir``
    (the store is only read)."""
    out = Path(out_dir)
    try:
        return _write_report(store, out, grid)
    except OSError as exc:
        where = Path(exc.filename) if exc.filename else out
        raise ValueError(
            problem(
                "report", repr(str(where)), "a writable output location", exc.strerror or str(exc)
            )
        ) from None


def _write_report(store: ResultStore | str | Path, out: Path, grid: str | None) -> ReportFiles:
    import matplotlib

    matplotlib.use("Agg")
    store = store if isinstance(store, ResultStore) else ResultStore(store)
    info = resolve_grid(store, grid)
    df = final_frame(store, info["grid"])
    if df.empty:
        raise ValueError(
            problem("report", f"grid {info['grid']!r}", "a finished final cell", "none yet")
        )
    diverged = diverged_frame(store, info["grid"])
    done, total = progress(info)
    out.mkdir(parents=True, exist_ok=True)
    board = leaderboard(df)
    figs = [out / "accuracy_vs_noise.png", out / "mean_rank.png", out / "reliability.png"]
    _fig_accuracy_vs_noise(df, figs[0])
    _fig_mean_rank(board, figs[1])
    ranked = board.dropna(subset=["mean_rank"])["loss"].tolist() or board["loss"].tolist()
    extremes = [ranked[0], ranked[-1]] if len(ranked) > 1 else ranked[:1]
    _fig_reliability(df, extremes, figs[2])

    acc_tables = _accuracy_tables(df)
    clean_table = _clean_train_table(df)
    sel = _selection_table(df)
    versions = df["versions"].iloc[0] if "versions" in df else {}
    protocol = df["protocol"].iloc[0]
    n_final_div = int((diverged["role"] == "final").sum())
    summary = (
        f"grid `{info['grid']}` ({done}/{total} cells done), protocol "
        f"`{protocol}`, {len(df)} final cells over {df['dataset'].nunique()} datasets x "
        f"{df['corruption'].nunique()} corruptions x {df['loss'].nunique()} losses x "
        f"{df['seed'].nunique()} seeds; summed cell time {df['wall_time_s'].sum():.0f} s; "
        f"{len(diverged)} diverged cells ({n_final_div} of them final)"
    )
    notes = (
        "Hyperparameters (learning rate and the loss's own) were selected per (dataset, "
        "corruption, loss) on the noisy validation split with one seed; the tables report "
        "the clean test split for the selected configuration over all seeds. "
        "`train_clean_acc` is the accuracy on the training inputs against their *clean* "
        "labels: a low value under clean labels means the model under-fits, and the "
        "table then measures optimisation speed rather than robustness."
    )
    md = [
        f"# losslab benchmark report: {info['name']}",
        "",
        summary,
        "",
        notes,
        "",
        "## Leaderboard",
        "",
        _md_table(board),
        "",
    ]
    md += ["![accuracy vs noise](accuracy_vs_noise.png)", "", "![mean rank](mean_rank.png)", ""]
    for ds, t in acc_tables.items():
        md += [f"## {ds}: test accuracy (mean ± std over seeds)", "", _md_table(t), ""]
    md += ["## Clean-label training accuracy (under-fitting check)", "", _md_table(clean_table), ""]
    md += [
        f"## Reliability: best ({extremes[0]}) and worst ({extremes[-1]}) loss",
        "",
        "![reliability](reliability.png)",
        "",
    ]
    md += ["## Selected configurations", "", _md_table(sel), ""]
    md += ["## Diverged cells", "", DIVERGED_NOTE, ""]
    md += [_md_table(diverged) if len(diverged) else "None.", ""]
    md += ["## Versions", "", "`" + json.dumps(versions, sort_keys=True) + "`", ""]
    md_path = out / "report.md"
    md_path.write_text("\n".join(md))

    def img(p: Path, alt: str) -> str:
        data = base64.b64encode(p.read_bytes()).decode()
        return f'<img alt="{alt}" src="data:image/png;base64,{data}">'

    parts = [
        f"<h1>losslab benchmark report: {html.escape(info['name'])}</h1>",
        f"<p>{html.escape(summary)}</p><p class=note>{html.escape(notes)}</p>",
        "<h2>Leaderboard</h2>",
        _html_table(board),
        img(figs[0], "accuracy vs noise"),
        img(figs[1], "mean rank"),
    ]
    for ds, t in acc_tables.items():
        parts += [
            f"<h2>{html.escape(ds)}: test accuracy (mean ± std over seeds)</h2>",
            _html_table(t),
        ]
    parts += [
        "<h2>Clean-label training accuracy (under-fitting check)</h2>",
        _html_table(clean_table),
    ]
    parts += [
        f"<h2>Reliability: best ({html.escape(extremes[0])}) and worst "
        f"({html.escape(extremes[-1])}) loss</h2>",
        img(figs[2], "reliability"),
    ]
    parts += ["<h2>Selected configurations</h2>", _html_table(sel)]
    parts += [
        "<h2>Diverged cells</h2>",
        f"<p class=note>{html.escape(DIVERGED_NOTE)}</p>",
        _html_table(diverged) if len(diverged) else "<p>None.</p>",
    ]
    parts += ["<h2>Versions</h2>", f"<pre>{html.escape(json.dumps(versions, indent=1))}</pre>"]
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "th{background:#f3f3f3}td:first-child{text-align:left}"
        "img{max-width:100%;display:block;margin:1em 0}.note{color:#555;font-size:13px}"
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>losslab report</title>"
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>"
    )
    html_path = out / "report.html"
    html_path.write_text(page)
    return ReportFiles(md_path, html_path, figs)


def run_record(store: ResultStore, grid_id: str) -> dict[str, Any]:
    """Cells stored, first and last finish time, and summed cell time over the whole grid."""
    first, last, total, n = store.run_record([m["key"] for m in store.members(grid_id)])
    return {"cells": n, "first": first, "last": last, "cell_seconds": total}


def write_results_page(
    store: ResultStore | str | Path,
    page: str | Path,
    grid: str | None = None,
    note: str = "",
) -> Path:
    """Publish a finished grid as a docs page: ``page`` (markdown) and its figures next to it.

    The page is the run record read from the store (cells, first and last finish time, summed
    cell time), ``note`` (how the run was made), then the body of :func:`write_report`. The
    figures go to a folder named after the page (``docs/results-ldr.md`` ->
    ``docs/results-ldr/``). A grid with unfinished cells raises ``ValueError``: only finished
    tables are published.
    """
    store = store if isinstance(store, ResultStore) else ResultStore(store)
    info = resolve_grid(store, grid)
    done, total = progress(info)
    if done < total:
        raise ValueError(
            problem(
                "results page",
                f"grid {info['grid']!r}",
                "every cell finished",
                f"{done}/{total} cells done (re-run the grid's command, it resumes, then publish)",
            )
        )
    rec = run_record(store, info["grid"])
    page = Path(page)
    fig_dir = page.with_suffix("")
    with tempfile.TemporaryDirectory() as tmp:
        files = write_report(store, tmp, info["grid"])
        body = files.markdown.read_text()
        fig_dir.mkdir(parents=True, exist_ok=True)
        for fig in files.figures:
            (fig_dir / fig.name).write_bytes(fig.read_bytes())
            body = body.replace(f"]({fig.name})", f"]({fig_dir.name}/{fig.name})")
    title, _, rest = body.partition("\n")
    record = (
        f"Run record (from the store): {rec['cells']} cells, tuning included; first cell "
        f"finished {str(rec['first'])[:19]} UTC, last {str(rec['last'])[:19]} UTC; summed "
        f"per-cell time {rec['cell_seconds']:.0f} s ({rec['cell_seconds'] / 3600:.2f} h)."
    )
    extra = f"\n\n{note.strip()}" if note.strip() else ""
    page.write_text(f"{title}\n\n{record}{extra}\n{rest}")
    return page
