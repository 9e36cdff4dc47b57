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

from losslab.bench import figures
from losslab.bench.grid import GridError, GridSpec, corruption_rate
from losslab.bench.plan import Plan
from losslab.bench.protocol import get_protocol, problem
from losslab.bench.stats import EXACT_MAX, MIN_PAIRS, REFERENCE, BenchStats, bench_stats
from losslab.bench.store import ResultStore

__all__ = [
    "CLASSIFICATION",
    "RETRIEVAL",
    "ReportFiles",
    "TaskView",
    "board_display",
    "diverged_frame",
    "final_frame",
    "grid_plan",
    "grid_stats",
    "grid_task",
    "leaderboard",
    "markdown_to_html",
    "progress",
    "resolve_grid",
    "run_record",
    "stats_line",
    "stats_text",
    "trained_losses",
    "write_report",
    "write_results_page",
]


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
    """One row per finished final cell of the grid (JSON columns parsed). Retrieval rows
    stored before the store had their flat metric columns get them from ``metrics``."""
    keys = [m["key"] for m in store.members(grid_id, "final")]
    return pd.DataFrame([_flat_retrieval(r) for r in store.rows(keys)])


def _flat_retrieval(row: dict[str, Any]) -> dict[str, Any]:
    metrics = row.get("metrics")
    if not isinstance(metrics, dict) or "recall_at_1" not in (metrics.get("test") or {}):
        return row
    from losslab.bench.embedding import METRIC_COLUMNS

    for col, (split, name) in METRIC_COLUMNS.items():
        if row.get(col) is None:
            row[col] = (metrics.get(split) or {}).get(name)
    return row


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


@dataclass(frozen=True)
class TaskView:
    """What a report ranks and shows for the grids of one task (a protocol's ``task``).

    ``metric``: the column ranked (higher is better); ``means``: the per-loss means of the
    leaderboard, with their headings; ``tables``: the per-dataset mean ± std tables
    (column, heading); ``train``: the clean-label training score (the under-fitting
    check); ``calibration``: whether the rows carry class probabilities (ECE, reliability);
    ``board``: the columns of the terminal leaderboard with their short headings, and
    ``board_caption`` what the ranking and those headings mean.
    """

    task: str
    metric: str
    means: tuple[tuple[str, str], ...]
    tables: tuple[tuple[str, str], ...]
    train: str
    calibration: bool
    board: tuple[tuple[str, str], ...]
    board_caption: str


CLASSIFICATION = TaskView(
    task="classification",
    metric="test_acc",
    means=(
        ("test_acc", "test acc"),
        ("test_ece", "ECE"),
        ("test_nll", "NLL"),
        ("train_clean_acc", "clean-train acc"),
    ),
    tables=(("test_acc", "test accuracy"),),
    train="train_clean_acc",
    calibration=True,
    board=(("test_acc", "acc"), ("test_ece", "ECE"), ("train_clean_acc", "train")),
    board_caption="test accuracy over groups (1 = best), 95% CI: bootstrap over groups; acc, "
    "ECE: test; train: clean-label training accuracy",
)
RETRIEVAL = TaskView(
    task="retrieval",
    metric="test_recall_at_1",
    means=(
        ("test_recall_at_1", "Recall@1"),
        ("test_recall_at_4", "Recall@4"),
        ("test_map_at_r", "MAP@R"),
        ("train_clean_recall_at_1", "clean-train Recall@1"),
    ),
    tables=(
        ("test_recall_at_1", "Recall@1"),
        ("test_recall_at_4", "Recall@4"),
        ("test_map_at_r", "MAP@R"),
    ),
    train="train_clean_recall_at_1",
    calibration=False,
    board=(
        ("test_recall_at_1", "R@1"),
        ("test_map_at_r", "MAP@R"),
        ("train_clean_recall_at_1", "train"),
    ),
    board_caption="test Recall@1 over groups (1 = best), 95% CI: bootstrap over groups; "
    "R@1, MAP@R: test (unseen classes); train: clean-label training Recall@1",
)


#: a classification grid that selects by validation balanced accuracy (``select_metric:
#: balanced_acc``, the ``imbalance`` preset) ranks test balanced accuracy and shows the
#: class-balanced metrics
BALANCED = TaskView(
    task="classification",
    metric="test_balanced_acc",
    means=(
        ("test_balanced_acc", "balanced acc"),
        ("test_macro_f1", "macro-F1"),
        ("test_worst_recall", "worst-class recall"),
        ("test_ece", "ECE"),
        ("train_clean_acc", "clean-train acc"),
    ),
    tables=(
        ("test_balanced_acc", "balanced accuracy"),
        ("test_macro_f1", "macro-F1"),
        ("test_worst_recall", "worst-class recall"),
    ),
    train="train_clean_acc",
    calibration=True,
    board=(
        ("test_balanced_acc", "bal"),
        ("test_worst_recall", "worst"),
        ("train_clean_acc", "train"),
    ),
    board_caption="test balanced accuracy over groups (1 = best), 95% CI: bootstrap over "
    "groups; bal, worst: test balanced accuracy and worst-class recall; train: clean-label "
    "training accuracy",
)


def _select_metric(rows: pd.DataFrame) -> str:
    """The grid's ``select_metric`` as its rows' stored training configuration records it."""
    if "config" not in rows:
        return "acc"
    for cfg in rows["config"].dropna():
        cfg = json.loads(cfg) if isinstance(cfg, str) else cfg
        if isinstance(cfg, Mapping):
            return str(cfg.get("train", {}).get("select_metric", "acc"))
    return "acc"


def _protocol_task(name: Any) -> str | None:
    try:
        return get_protocol(str(name)).task
    except ValueError:
        return None


def grid_task(rows: pd.DataFrame) -> TaskView:
    """The view of a grid's rows: :data:`RETRIEVAL` when their protocol's task is
    retrieval (or, for a protocol this library does not know, when they carry test
    Recall@1 and no test accuracy), else :data:`CLASSIFICATION`."""
    classification = BALANCED if _select_metric(rows) == "balanced_acc" else CLASSIFICATION
    if "protocol" in rows:
        tasks = {_protocol_task(p) for p in rows["protocol"].dropna().unique()}
        if "retrieval" in tasks:
            return RETRIEVAL
        if tasks - {None}:
            return classification
    recall = "test_recall_at_1" in rows and bool(rows["test_recall_at_1"].notna().any())
    acc = "test_acc" in rows and bool(rows["test_acc"].notna().any())
    return RETRIEVAL if recall and not acc else classification


def grid_stats(rows: pd.DataFrame) -> BenchStats:
    """:func:`losslab.bench.stats.bench_stats` of a grid's final rows, ranking its task's
    primary metric (test accuracy, or test Recall@1 for retrieval)."""
    return bench_stats(rows, metric=grid_task(rows).metric)


_MEAN_COLS = ["test_acc", "test_ece", "test_nll", "test_macro_f1", "train_clean_acc"]
_FLOAT_COLS = [
    *_MEAN_COLS,
    *(c for c, _ in RETRIEVAL.means),
    "test_balanced_acc",
    "test_worst_recall",
]

_BOARD_HEAD = ["loss", "mean_rank", "rank_lo", "rank_hi"]
_BOARD_TAIL = ["groups", "cells", "wins", "ties", "defeats", "p_holm", "better_than_ce"]
BOARD_COLUMNS = [*_BOARD_HEAD, *(c for c, _ in CLASSIFICATION.means), *_BOARD_TAIL]
#: the leaderboard of a retrieval grid: Recall@1/4, MAP@R and clean-train Recall@1
RETRIEVAL_BOARD_COLUMNS = [*_BOARD_HEAD, *(c for c, _ in RETRIEVAL.means), *_BOARD_TAIL]

#: a loss "trained" when its clean-label training accuracy exceeds chance (1/K) by this
#: much on average over its cells; only such losses are compared in the reliability panel
TRAINED_MARGIN = 0.05


def leaderboard(
    rows: pd.DataFrame | Iterable[Mapping[str, Any]], st: BenchStats | None = None
) -> pd.DataFrame:
    """Per loss: mean rank of its seed-averaged test accuracy within each (dataset,
    corruption) group (1 = best, ties averaged; only groups where every loss has a result;
    a loss whose every seed diverged without a finite epoch ranks last) with its 95%
    bootstrap interval (``rank_lo``, ``rank_hi``), mean test accuracy/ECE/NLL/clean-train
    accuracy over groups, and the paired comparison with cross-entropy over (group, seed)
    pairs: ``wins``/``ties``/``defeats``, Holm-corrected Wilcoxon ``p_holm`` and
    ``better_than_ce`` (rule: :func:`losslab.bench.stats.verdict`; ``ref`` for CE itself).
    A retrieval grid (:func:`grid_task`) ranks test Recall@1 instead and shows mean
    Recall@1, Recall@4, MAP@R and clean-train Recall@1 (:data:`RETRIEVAL_BOARD_COLUMNS`).
    ``st``: the statistics of the same rows, when already computed."""
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if df.empty:
        return pd.DataFrame(columns=BOARD_COLUMNS)
    view = grid_task(df)
    df = df.astype({c: float for c in _FLOAT_COLS if c in df})
    st = st if st is not None else bench_stats(df, metric=view.metric)
    means = [c for c, _ in view.means]
    df = df.assign(**{c: np.nan for c in means if c not in df})
    g = df.groupby(["dataset", "corruption", "loss"], as_index=False)[means].mean()
    out = g.groupby("loss").agg(**{c: (c, "mean") for c in means}, groups=(view.metric, "size"))
    out["mean_rank"] = st.mean_rank
    out["rank_lo"] = st.rank_ci["lo"]
    out["rank_hi"] = st.rank_ci["hi"]
    out["cells"] = df.groupby("loss").size()
    vs = st.versus
    out["wins"] = vs["wins"]
    out["ties"] = vs["ties"]
    out["defeats"] = vs["losses"]
    out["p_holm"] = vs["p_holm"].astype(float)
    out["better_than_ce"] = vs["better"]
    out["better_than_ce"] = out["better_than_ce"].fillna("n/a")
    if st.reference in out.index:
        out.loc[st.reference, "better_than_ce"] = "ref"
    out = out.reset_index().sort_values(["mean_rank", view.metric], ascending=[True, False])
    columns = [*_BOARD_HEAD, *means, *_BOARD_TAIL]
    return out[columns].reset_index(drop=True)


# ------------------------------------------------------------------------------ tables


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if np.isnan(v) else f"{v:.3f}"
    return str(v)


def _md_cell(v: Any) -> str:
    """A table cell's text with the characters Markdown would read as syntax escaped."""
    text = _fmt(v)
    for ch in ("\\", "|", "*", "`"):
        text = text.replace(ch, "\\" + ch)
    return text


def _md_table(df: pd.DataFrame) -> str:
    head = "| " + " | ".join(_md_cell(c) for c in df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = [
        "| " + " | ".join(_md_cell(v) for v in row) + " |" for row in df.itertuples(index=False)
    ]
    return "\n".join([head, sep, *body])


def _p(v: Any) -> str:
    return "" if v is None or pd.isna(v) else f"{float(v):.3g}"


def _count(v: Any) -> str:
    return "" if v is None or pd.isna(v) else str(int(v))


def board_view(board: pd.DataFrame) -> TaskView:
    """The view a :func:`leaderboard` was built with, read off its columns (the board
    carries its view's means and no other task's)."""
    for view in (RETRIEVAL, BALANCED):
        if view.metric in board and "test_acc" not in board:
            return view
    return CLASSIFICATION


def board_display(board: pd.DataFrame, reference: str = REFERENCE) -> pd.DataFrame:
    """The leaderboard as the report prints it (numbers formatted, one column per idea;
    the means of the board's task: accuracy, ECE, NLL, or Recall@1/4 and MAP@R)."""
    wtl = [
        "" if pd.isna(r.wins) else f"{_count(r.wins)}/{_count(r.ties)}/{_count(r.defeats)}"
        for r in board.itertuples()
    ]
    ci = [
        "" if pd.isna(r.rank_lo) else f"{r.rank_lo:.2f}-{r.rank_hi:.2f}" for r in board.itertuples()
    ]
    view = board_view(board)
    return pd.DataFrame(
        {
            "loss": board["loss"],
            "mean rank": [_fmt(float(v)) for v in board["mean_rank"]],
            "95% CI": ci,
            **{head: board[c].astype(float) for c, head in view.means},
            "groups": board["groups"],
            "cells": board["cells"],
            f"w/t/l vs {reference}": wtl,
            "p (Holm)": [_p(v) for v in board["p_holm"]],
            f"better than {reference}?": board["better_than_ce"],
        }
    )


def _accuracy_tables(df: pd.DataFrame, column: str = "test_acc") -> dict[str, pd.DataFrame]:
    """Per dataset: loss x corruption, 'mean ± std' of ``column`` over seeds
    (``*``: one seed; ``†``: some seed diverged; ``diverged``: no seed has a finite epoch)."""
    out = {}
    order = _corruption_order(df["corruption"])
    df = df.assign(diverged=df["diverged"].fillna(False).astype(bool))
    for ds, part in df.groupby("dataset", sort=False):
        stats = part.groupby(["loss", "corruption"]).agg(
            mean=(column, "mean"),
            std=(column, "std"),
            size=(column, "size"),
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


def _metric_tables(df: pd.DataFrame, view: TaskView) -> dict[str, pd.DataFrame]:
    """Per dataset: one row per loss, one column per (corruption, metric of the view's
    tables), as :func:`_accuracy_tables` writes them; the heading is the metric's alone
    when the grid has one corruption."""
    per = [(head, _accuracy_tables(df, col)) for col, head in view.tables]
    single = df["corruption"].nunique() == 1
    out = {}
    for ds, first in per[0][1].items():
        table = first[["loss"]].copy()
        for c in first.columns[1:]:
            for head, tables in per:
                table[head if single else f"{c}: {head}"] = tables[ds][c].to_numpy()
        out[ds] = table
    return out


def _clean_train_table(df: pd.DataFrame, column: str = "train_clean_acc") -> pd.DataFrame:
    t = df.astype({column: float}).pivot_table(
        index="loss", columns="corruption", values=column, aggfunc="mean", dropna=False
    )
    order = [c for c in _corruption_order(df["corruption"]) if c in t.columns]
    return t[order].reset_index()


def _selection_table(df: pd.DataFrame) -> pd.DataFrame:
    sel = df.drop_duplicates(["dataset", "corruption", "loss"])[
        ["dataset", "corruption", "loss", "loss_config", "lr"]
    ].copy()
    sel["loss_config"] = sel["loss_config"].map(lambda c: json.dumps(c, sort_keys=True))
    return sel.sort_values(["dataset", "corruption", "loss"]).reset_index(drop=True)


def _versus_table(st: BenchStats) -> pd.DataFrame:
    vs = st.versus
    return pd.DataFrame(
        {
            "loss": vs.index,
            "pairs": vs["pairs"].to_numpy(),
            "wins": vs["wins"].to_numpy(),
            "ties": vs["ties"].to_numpy(),
            "losses": vs["losses"].to_numpy(),
            "median difference": [f"{float(v):+.4f}" for v in vs["median_diff"]],
            "Wilcoxon p": [_p(v) for v in vs["p"]],
            "Holm p": [_p(v) for v in vs["p_holm"]],
            f"better than {st.reference}?": vs["better"].to_numpy(),
        }
    )


def _calibration_table(df: pd.DataFrame) -> pd.DataFrame | None:
    """ECE before and after temperature scaling per loss (mean over groups and seeds), or
    ``None`` when the rows carry no temperature-scaled ECE."""
    if "test_ece_ts" not in df or df["test_ece_ts"].isna().all():
        return None
    cols = ["test_ece", "test_ece_ts"] + (["ts_temperature"] if "ts_temperature" in df else [])
    g = df.astype({c: float for c in cols}).groupby(["dataset", "corruption", "loss"])[cols]
    t = g.mean().groupby("loss").mean().sort_values("test_ece_ts")
    names = {"test_ece": "ECE before", "test_ece_ts": "ECE after", "ts_temperature": "temperature"}
    return t.rename(columns=names).reset_index()


def _chance(df: pd.DataFrame) -> pd.Series:
    """1/K per row (K from the cell's recorded data, NaN if absent)."""

    def k(config: Any) -> float:
        try:
            return float(config["data"]["num_classes"])
        except (KeyError, TypeError):
            return float("nan")

    col = df["config"] if "config" in df else pd.Series([None] * len(df), index=df.index)
    return 1.0 / col.map(k)


def trained_losses(df: pd.DataFrame, margin: float = TRAINED_MARGIN) -> list[str]:
    """Losses whose clean-label training accuracy exceeds chance (1/K) by more than
    ``margin`` on average over their cells (a cell with no finite epoch counts as 0)."""
    excess = df["train_clean_acc"].astype(float).fillna(0.0) - _chance(df)
    mean = excess.groupby(df["loss"]).mean()
    return sorted(str(n) for n in mean[mean > margin].index)


# ----------------------------------------------------------------------------- statistics


def _names(items: Iterable[str]) -> str:
    return ", ".join(items)


def stats_text(st: BenchStats) -> list[str]:
    """The paragraphs that state what the tests support, and nothing more."""
    k, n, a, ref = len(st.mean_rank), st.n_groups, st.alpha, st.reference
    out = []
    if st.friedman is None:
        out.append(
            f"A Friedman test needs at least 2 losses and 2 groups where every loss has a "
            f"result; this grid has {k} losses and {n} such groups, so no test is made and "
            "no loss is distinguished from another by rank."
        )
    else:
        f = st.friedman
        text = (
            f"Friedman test over {n} (dataset, corruption) groups and {k} losses (value: "
            f"mean {st.metric_name} over seeds of the selected configuration; ties share "
            f"their average rank, the statistic is corrected for ties): chi-square = "
            f"{f.statistic:.2f}, df = {k - 1}, p = {f.pvalue:.3g}. "
        )
        if st.rejects:
            text += f"The mean ranks are not all equal (p < {a:g})."
        else:
            text += (
                f"At alpha = {a:g} it does not reject equal mean ranks: these results do "
                "not tell the losses apart by rank."
            )
        out.append(text)
        cd = float(st.cd or 0.0)
        text = (
            f"Nemenyi post-hoc test (alpha = {a:g}): over {n} groups the critical difference "
            f"is {cd:.2f} ranks; pairs of losses whose mean ranks are closer than {cd:.2f} are "
            "not distinguishable. In the diagram a bar joins losses that are not."
        )
        if st.rejects and ref in st.mean_rank:
            r0 = st.mean_rank[ref]
            ahead = [str(x) for x, r in st.mean_rank.items() if r0 - r >= cd]
            behind = [str(x) for x, r in st.mean_rank.items() if r - r0 >= cd]
            text += (
                f" Ranked ahead of {ref} by at least the critical difference: "
                f"{_names(ahead) or 'none'}; behind it: {_names(behind) or 'none'}."
            )
        elif not st.rejects:
            text += " As the Friedman test does not reject, no pair is declared different."
        out.append(text)
    if st.dropped:
        what = "; ".join(
            f"{d}/{c} (no result for {_names(m)})" for (d, c), m in sorted(st.dropped.items())
        )
        out.append(f"Left out of the rank statistics, as a loss has no result there: {what}.")
    if st.no_finite:
        what = "; ".join(f"{loss} in {d}/{c}" for (d, c), loss in st.no_finite)
        out.append(
            "Ranked last in its group because every seed diverged before a finite epoch "
            f"(counted as {st.metric_name.removeprefix('test ')} 0 in the paired "
            f"comparisons): {what}."
        )
    if n:
        out.append(
            "The intervals of mean rank are 95% percentile bootstrap intervals over groups "
            "(2000 resamples of the groups with replacement, seed 0)."
        )
    if st.versus.empty:
        why = f"{ref} is not in this grid" if ref not in st.scores.columns else "no other loss"
        out.append(f"Paired comparison with {ref}: none ({why}); 'better than {ref}?' is n/a.")
        return out
    out.append(
        f"Paired comparison with {ref} over the (dataset, corruption, seed) pairs both "
        f"losses have: wins, ties and losses of {st.metric_name}, the median difference (loss "
        f"minus {ref}) and the two-sided Wilcoxon signed-rank p-value "
        "(zero_method='zsplit': zero differences split between the signed rank sums; exact "
        f"up to {EXACT_MAX} nonzero differences, normal approximation above), "
        f"Holm-corrected over the losses compared. Rule for 'better than {ref}?': yes when "
        f"the Holm p < {a:g} and the median difference > 0; worse when the Holm p < {a:g} "
        f"and the median difference < 0; no otherwise; n/a with fewer than {MIN_PAIRS} "
        "pairs (the smallest two-sided p of 5 pairs is 0.0625)."
    )
    yes = [str(x) for x, v in st.versus["better"].items() if v == "yes"]
    worse = [str(x) for x, v in st.versus["better"].items() if v == "worse"]
    out.append(
        (f"Better than {ref} by this rule: {_names(yes)}." if yes else
         f"No loss is better than {ref} by this rule.")
        + (f" Worse than {ref} by this rule: {_names(worse)}." if worse else "")
    )  # fmt: skip
    return out


def stats_line(st: BenchStats) -> str:
    """One line for ``bench status``: Friedman p, the critical difference, the verdicts."""
    if st.friedman is None:
        return f"statistics: too few complete groups ({st.n_groups}) for a Friedman test"
    yes = [str(x) for x, v in st.versus["better"].items() if v == "yes"]
    return (
        f"Friedman over {st.n_groups} groups: p = {st.friedman.pvalue:.3g}; Nemenyi "
        f"critical difference {st.cd:.2f} ranks (alpha {st.alpha:g}); better than "
        f"{st.reference} (Holm-corrected Wilcoxon): {_names(yes) or 'none'}"
    )


# ------------------------------------------------------------------------------ report


RETRIEVAL_NOTES = (
    "Each cell learns an embedding on the seen classes of its dataset and is scored by "
    "retrieval among the unseen classes of the test split (cosine similarity; Recall@k: "
    "a row of the query's class among its k nearest; MAP@R as in Musgrave et al. 2020). "
    "The learning rate was selected per (dataset, corruption, loss) by Recall@1 on the "
    "noisy validation split of the seen classes with one seed; the tables report the "
    "unseen test classes for the selected configuration over all seeds. The clean-train "
    "Recall@1 is the Recall@1 of the training rows against their *clean* labels: a low "
    "value means the model under-fits."
)

DIVERGED_NOTE = (
    "A cell diverges when its logits, loss or evaluation become non-finite; it is a "
    "finished cell that reports its best finite epoch (none: no metrics, ranked last). "
    "Selection prefers candidates that trained to the end. In the accuracy tables † "
    "marks a result with a diverged seed."
)

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;color:#222;"
    "line-height:1.45}table{border-collapse:collapse;margin:1em 0;font-size:13px}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
    "img{max-width:100%;display:block;margin:1em 0}"
    "code{background:#f3f3f3;padding:0 3px;border-radius:3px;font-size:90%}"
    "p code{word-break:break-all}"
)


def markdown_to_html(md: str, title: str, figures: Iterable[Path] = ()) -> str:
    """A self-contained HTML page from the report's Markdown (markdown-it-py, tables on,
    raw HTML off): each figure linked by its file name is inlined as a PNG data URI."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(md)
    for p in figures:
        data = base64.b64encode(p.read_bytes()).decode()
        body = body.replace(f'src="{p.name}"', f'src="data:image/png;base64,{data}"')
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body>{body}</body></html>"
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
    view = grid_task(df)
    df = df.astype({c: float for c in _FLOAT_COLS if c in df})
    st = bench_stats(df, metric=view.metric)
    board = leaderboard(df, st)
    ref = st.reference
    retrieval = view is RETRIEVAL
    # a noise curve needs more than the clean point; classification reports always draw it
    noise_curve = not retrieval or df["corruption"].nunique() > 1

    names = ["cd_diagram", "mean_rank"]
    names += ["accuracy_vs_noise"] if noise_curve else []
    names += ["ece", "reliability"] if view.calibration else []
    figs = {name: out / f"{name}.png" for name in names}
    figures.cd_diagram(st, figs["cd_diagram"])
    figures.mean_rank_figure(st, figs["mean_rank"])
    if noise_curve:
        figures.accuracy_by_family(df, figs["accuracy_vs_noise"], ref, view.metric)
    calib = None
    extremes: list[str] = []
    trained: list[str] = []
    if view.calibration:
        figures.ece_figure(df, figs["ece"], ref)
        trained = trained_losses(df)
        order = [str(x) for x in board["loss"] if str(x) in trained]
        extremes = [order[0], order[-1]] if len(order) > 1 else order
        tags = ["best", "worst"] if len(extremes) > 1 else ["only"]
        figures.reliability_figure(
            df,
            [(f"{t}: {loss}", loss, "reliability") for t, loss in zip(tags, extremes, strict=True)],
            figs["reliability"],
        )
        calib = _calibration_table(df)
        if calib is not None and "reliability_ts" in df and extremes:
            figs["reliability_ts"] = out / "reliability_ts.png"
            panels = [
                (f"{t}: {loss}, {when}", loss, col)
                for t, loss in zip(tags, extremes, strict=True)
                for when, col in (("before", "reliability"), ("after TS", "reliability_ts"))
            ]
            figures.reliability_figure(df, panels, figs["reliability_ts"])

    n_final_div = int((diverged["role"] == "final").sum())
    versions = df["versions"].iloc[0] if "versions" in df else {}
    summary = (
        f"Grid `{info['grid']}` ({done}/{total} cells done), protocol "
        f"`{df['protocol'].iloc[0]}`: {len(df)} final cells over {df['dataset'].nunique()} "
        f"datasets x {df['corruption'].nunique()} corruptions x {df['loss'].nunique()} "
        f"losses x {df['seed'].nunique()} seeds; summed cell time "
        f"{df['wall_time_s'].sum():.0f} s; {len(diverged)} diverged cells ({n_final_div} of "
        "them final)."
    )
    notes = RETRIEVAL_NOTES if retrieval else (
        "Hyperparameters (learning rate and the loss's own) were selected per (dataset, "
        "corruption, loss) on the noisy validation split with one seed; the tables report "
        "the clean test split for the selected configuration over all seeds. "
        "The clean-train accuracy is the accuracy on the training inputs against their "
        "*clean* labels: a low value under clean labels means the model under-fits, and "
        "the table then measures optimisation speed rather than robustness."
    )  # fmt: skip
    title = f"# losslab benchmark report: {_md_cell(info['name'])}"
    md = [title, "", summary, "", notes, ""]
    md += ["## Leaderboard", "", _md_table(board_display(board, ref)), ""]
    md += [
        f"Mean rank: lower is better; 95% CI: bootstrap interval over groups; w/t/l: wins, "
        f"ties and losses against {ref} over (group, seed) pairs; the last column follows "
        "the rule stated under Statistics.",
        "",
    ]
    md += ["## Statistics", ""]
    for para in stats_text(st):
        md += [para, ""]
    md += ["![critical-difference diagram](cd_diagram.png)", ""]
    md += ["![mean rank with bootstrap interval](mean_rank.png)", ""]
    if not st.versus.empty:
        md += [f"### Each loss against {ref}", "", _md_table(_versus_table(st)), ""]
    if retrieval:
        if noise_curve:
            md += ["## Recall@1 vs noise, by loss family", ""]
            md += ["![Recall@1 vs noise](accuracy_vs_noise.png)", ""]
        heads = ", ".join(h for _, h in view.tables[:-1]) + f" and {view.tables[-1][1]}"
        for ds, t in _metric_tables(df, view).items():
            md += [
                f"## {ds}: test {heads} on unseen classes (mean ± std over seeds)",
                "",
                _md_table(t),
                "",
            ]
    elif view is BALANCED:
        md += ["## Balanced accuracy vs noise, by loss family", ""]
        md += ["![balanced accuracy vs noise](accuracy_vs_noise.png)", ""]
        for col, head in view.tables:
            for ds, t in _accuracy_tables(df, col).items():
                md += [f"## {ds}: test {head} (mean ± std over seeds)", "", _md_table(t), ""]
    else:
        md += ["## Accuracy vs noise, by loss family", ""]
        md += ["![accuracy vs noise](accuracy_vs_noise.png)", ""]
        for ds, t in _accuracy_tables(df).items():
            md += [f"## {ds}: test accuracy (mean ± std over seeds)", "", _md_table(t), ""]
    md += [
        "In these tables \\* marks a result of one seed, † a result with a diverged seed.",
        "",
    ]
    what = "Recall@1" if retrieval else "accuracy"
    md += [f"## Clean-label training {what} (under-fitting check)", ""]
    md += [_md_table(_clean_train_table(df, view.train)), ""]
    if not view.calibration:
        md += [
            "Calibration (ECE, reliability, temperature scaling) is not reported: retrieval "
            "cells score embeddings by similarity and have no class probabilities.",
            "",
        ]
    else:
        md += ["## Calibration", "", "![test ECE per loss](ece.png)", ""]
        if extremes:
            md += [
                f"Reliability of the best ({extremes[0]}) and the worst ({extremes[-1]}) by "
                f"mean rank among the losses that trained (clean-train accuracy above chance, "
                f"1/K, by more than {TRAINED_MARGIN:g} on average over their cells): "
                f"{_names(trained)}.",
                "",
                "![reliability](reliability.png)",
                "",
            ]
        else:
            md += [
                f"No loss trained (clean-train accuracy above chance, 1/K, by more than "
                f"{TRAINED_MARGIN:g} on average), so no reliability diagram is compared.",
                "",
            ]
        if calib is not None:
            md += [
                "### Temperature scaling",
                "",
                "Test ECE before and after temperature scaling fitted on the noisy validation "
                "split (mean over groups and seeds).",
                "",
                _md_table(calib),
                "",
            ]
            if "reliability_ts" in figs:
                md += ["![reliability after temperature scaling](reliability_ts.png)", ""]
    md += ["## Selected configurations", "", _md_table(_selection_table(df)), ""]
    note = DIVERGED_NOTE.replace("accuracy tables", "metric tables") if retrieval else DIVERGED_NOTE
    md += ["## Diverged cells", "", note, ""]
    md += [_md_table(diverged) if len(diverged) else "None.", ""]
    md += ["## Versions", "", "`" + json.dumps(versions, sort_keys=True) + "`", ""]
    md_path = out / "report.md"
    text = "\n".join(md)
    md_path.write_text(text)
    html_path = out / "report.html"
    html_path.write_text(markdown_to_html(text, "losslab report", figs.values()))
    return ReportFiles(md_path, html_path, list(figs.values()))


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
