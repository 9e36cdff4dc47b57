"""Statistics of a benchmark grid: which differences between losses its results support.

Losses are compared as treatments over blocks, following Demšar (2006, JMLR 7:1-30):

* a **block** (group) is one (dataset, corruption) pair; a loss's value in it is the mean
  over seeds of its selected configuration's primary metric (``metric``: test accuracy,
  or test Recall@1 for a retrieval grid; higher is better);
* the **Friedman test** asks whether the mean ranks of the losses differ at all;
* the **Nemenyi critical difference** ``CD = q_alpha * sqrt(k (k + 1) / (6 N))`` (``q_alpha``:
  the studentized range quantile for ``k`` means and infinite degrees of freedom, divided
  by ``sqrt(2)``) says how far apart two mean ranks must be to be told apart;
* a **percentile bootstrap** over groups gives a confidence interval of each mean rank;
* each loss is compared with a **reference** (cross-entropy) over the (group, seed) pairs
  both have: win/tie/loss counts, the median difference and the two-sided Wilcoxon
  signed-rank p-value (``zero_method="zsplit"``: zero differences split between the
  signed rank sums, as Demšar §3.1.3 recommends), Holm-corrected over the compared losses.

A loss without a result in some group (not run, or not finished) cannot be ranked there:
the group is left out of the Friedman test, the ranks and the bootstrap, and
:attr:`BenchStats.dropped` names it. A loss whose every seed in a group diverged before a
finite epoch (NaN accuracy) ranks last in that group; in paired comparisons such a seed
counts as accuracy 0, a loss of the largest size. :attr:`BenchStats.no_finite` names them.

Example:
    >>> import pandas as pd
    >>> rows = pd.DataFrame(
    ...     [(d, "clean", loss, s, acc + 0.01 * s)
    ...      for d in ("a", "b", "c") for s in (0, 1)
    ...      for loss, acc in (("ce", 0.80), ("gce", 0.82), ("mae", 0.50))],
    ...     columns=["dataset", "corruption", "loss", "seed", "test_acc"])
    >>> st = bench_stats(rows)
    >>> st.mean_rank.to_dict()
    {'gce': 1.0, 'ce': 2.0, 'mae': 3.0}
    >>> round(st.friedman.statistic, 3), st.friedman.n_groups
    (6.0, 3)
    >>> st.versus.loc["gce", ["pairs", "wins", "ties", "losses"]].tolist()
    [6, 6, 0, 0]
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as sps

from losslab._validate import describe, fail

__all__ = [
    "ALPHA",
    "EXACT_MAX",
    "METRIC_NAMES",
    "MIN_PAIRS",
    "REFERENCE",
    "BenchStats",
    "FriedmanResult",
    "PairedResult",
    "bench_stats",
    "bootstrap_mean_rank",
    "cd_cliques",
    "critical_difference",
    "friedman",
    "holm",
    "nemenyi_q",
    "paired_test",
    "rank_matrix",
    "signed_rank_p",
    "verdict",
]

ALPHA = 0.05
#: Fewest (group, seed) pairs for a verdict against the reference: with 5 pairs the
#: smallest two-sided exact Wilcoxon p-value is 2 / 2**5 = 0.0625 > 0.05, with 6 it is 0.031.
MIN_PAIRS = 6
REFERENCE = "ce"
#: how the texts and figures name a ranked metric column
METRIC_NAMES = {"test_acc": "test accuracy", "test_recall_at_1": "test Recall@1"}
GROUP = ["dataset", "corruption"]
#: Up to this many nonzero differences the signed-rank p-value is exact (every sign
#: assignment enumerated); above, scipy's normal approximation.
EXACT_MAX = 16


# ---------------------------------------------------------------------------- primitives


@functools.lru_cache(maxsize=256)
def nemenyi_q(k: int, alpha: float = ALPHA) -> float:
    """Nemenyi's ``q_alpha`` for ``k`` treatments: the studentized range quantile with
    infinite degrees of freedom divided by ``sqrt(2)`` (Demšar 2006, Table 5a).

    >>> round(nemenyi_q(3), 3)
    2.344
    """
    _check_k_alpha("nemenyi_q", k, alpha)
    return float(sps.studentized_range.ppf(1.0 - alpha, k, np.inf) / math.sqrt(2.0))


def critical_difference(k: int, n_groups: int, alpha: float = ALPHA) -> float:
    """Nemenyi's critical difference of mean ranks for ``k`` treatments over ``n_groups``
    blocks: two mean ranks closer than this are not distinguishable at level ``alpha``.

    >>> round(critical_difference(4, 14), 3)
    1.254
    """
    _check_k_alpha("critical_difference", k, alpha)
    if isinstance(n_groups, bool) or not isinstance(n_groups, (int, np.integer)) or n_groups < 1:
        fail("critical_difference", "n_groups", "a positive int", describe(n_groups))
    return nemenyi_q(int(k), float(alpha)) * math.sqrt(k * (k + 1) / (6.0 * n_groups))


def _check_k_alpha(where: str, k: object, alpha: object) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        fail(where, "k", "an int >= 2 (treatments compared)", describe(k))
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        fail(where, "alpha", "a level in (0, 1)", describe(alpha))


def rank_matrix(scores: pd.DataFrame) -> pd.DataFrame:
    """Ranks of the columns within each row (1 = highest score, ties share the average
    rank); NaN scores rank below every number and tie among themselves.

    >>> rank_matrix(pd.DataFrame({"a": [0.9, 0.5], "b": [0.7, float("nan")],
    ...                           "c": [0.9, 0.6]})).to_numpy().tolist()
    [[1.5, 3.0, 1.5], [2.0, 3.0, 1.0]]
    """
    values = np.where(np.isnan(scores.to_numpy(dtype=float)), -np.inf, scores.to_numpy(float))
    ranks = sps.rankdata(-values, axis=1, method="average") if values.size else values
    return pd.DataFrame(ranks, index=scores.index, columns=scores.columns)


@dataclass(frozen=True)
class FriedmanResult:
    """Friedman's chi-square (corrected for ties) over ``n_groups`` blocks and ``k``
    treatments, and its p-value from the chi-square distribution with ``k - 1`` degrees of
    freedom."""

    statistic: float
    pvalue: float
    k: int
    n_groups: int


def friedman(ranks: pd.DataFrame | np.ndarray) -> FriedmanResult:
    """The Friedman test from a rank matrix (rows = blocks, columns = treatments, ranks
    within each row as :func:`rank_matrix` gives them); the same statistic and p-value as
    ``scipy.stats.friedmanchisquare`` on the scores, for any ``k >= 2``.

    >>> r = friedman(np.array([[1, 2, 3], [1, 3, 2], [1, 2, 3]]))
    >>> round(r.statistic, 3), round(r.pvalue, 4)
    (4.667, 0.097)
    """
    R = np.asarray(ranks, dtype=float)
    if R.ndim != 2 or R.shape[0] < 2 or R.shape[1] < 2:
        fail("friedman", "ranks", "a matrix of >= 2 blocks x >= 2 treatments", R.shape)
    n, k = R.shape
    ties = 0.0
    for row in R:
        _, t = np.unique(row, return_counts=True)
        ties += float((t**3 - t).sum())
    c = 1.0 - ties / (n * k * (k * k - 1))
    if c <= 0.0:  # every block is one tie: no evidence of any difference
        return FriedmanResult(0.0, 1.0, k, n)
    sum_sq = float((R.sum(axis=0) ** 2).sum())
    chi2 = (12.0 / (n * k * (k + 1)) * sum_sq - 3.0 * n * (k + 1)) / c
    return FriedmanResult(float(chi2), float(sps.chi2.sf(chi2, k - 1)), k, n)


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error), NaN entries left out.

    >>> holm([0.01, 0.04, 0.03]).tolist()
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[j]))
        out[j] = running
    return out


def bootstrap_mean_rank(
    ranks: pd.DataFrame, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> pd.DataFrame:
    """Percentile bootstrap interval of each column's mean rank, resampling the rows
    (groups) with replacement: columns ``lo`` and ``hi``, one row per treatment.
    Deterministic for a given ``seed``."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        fail("bootstrap_mean_rank", "n_boot", "a positive int", describe(n_boot))
    if not 0 < level < 1:
        fail("bootstrap_mean_rank", "level", "a level in (0, 1)", describe(level))
    R = ranks.to_numpy(dtype=float)
    if R.shape[0] == 0:
        nan = np.full(R.shape[1], np.nan)
        return pd.DataFrame({"lo": nan, "hi": nan}, index=ranks.columns)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, R.shape[0], size=(n_boot, R.shape[0]))
    means = R[idx].mean(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(means, [tail, 100.0 - tail], axis=0)
    return pd.DataFrame({"lo": lo, "hi": hi}, index=ranks.columns)


def cd_cliques(mean_rank: pd.Series, cd: float) -> list[list[str]]:
    """Maximal runs of treatments (sorted by mean rank) whose mean ranks span less than
    ``cd``: the bars of a critical-difference diagram. Runs of one are left out.

    >>> cd_cliques(pd.Series({"a": 1.0, "b": 1.5, "c": 2.9, "d": 3.2}), 1.0)
    [['a', 'b'], ['c', 'd']]
    """
    s = mean_rank.dropna().sort_values()
    names, r = list(s.index), s.to_numpy()
    out: list[list[str]] = []
    last_end = -1
    for i in range(len(r)):
        j = i
        while j + 1 < len(r) and r[j + 1] - r[i] < cd:
            j += 1
        if j > i and j > last_end:
            out.append([str(n) for n in names[i : j + 1]])
            last_end = j
    return out


@dataclass(frozen=True)
class PairedResult:
    """One loss against the reference over the pairs both have. ``wins``: the loss is
    higher; ``median_diff``: median of (loss - reference); ``pvalue``: two-sided Wilcoxon
    signed-rank (``zero_method="zsplit"``, :func:`signed_rank_p`), NaN without pairs."""

    pairs: int
    wins: int
    ties: int
    losses: int
    median_diff: float
    pvalue: float


def paired_test(values: np.ndarray, reference: np.ndarray) -> PairedResult:
    """Win/tie/loss counts, median difference and Wilcoxon p-value of paired values
    (higher is better). Pairs with a NaN on either side are dropped.

    >>> paired_test(np.array([0.9, 0.8, 0.7]), np.array([0.8, 0.8, 0.6])).wins
    2
    """
    a, b = np.asarray(values, dtype=float), np.asarray(reference, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        fail("paired_test", "values", f"a 1-D array shaped like reference {b.shape}", a.shape)
    keep = ~(np.isnan(a) | np.isnan(b))
    d = a[keep] - b[keep]
    n = len(d)
    if n == 0:
        return PairedResult(0, 0, 0, 0, float("nan"), float("nan"))
    # accuracies are ratios of counts: differences that are zero in exact arithmetic
    # come out as float noise, and must count as ties
    d = np.where(np.abs(d) <= 1e-12, 0.0, d)
    wins, losses = int((d > 0).sum()), int((d < 0).sum())
    p = 1.0 if wins + losses == 0 else signed_rank_p(d)
    return PairedResult(n, wins, n - wins - losses, losses, float(np.median(d)), p)


def signed_rank_p(d: np.ndarray) -> float:
    """Two-sided p-value of the Wilcoxon signed-rank test with ``zero_method="zsplit"``:
    ranks of ``|d|`` with ties averaged and zeros included, half of each zero's rank added
    to the positive sum. The null distribution is exact, with the ties and zeros of the
    data, up to :data:`EXACT_MAX` nonzero differences (``scipy.stats.wilcoxon`` computes
    the same by a slower permutation test), and scipy's normal approximation (tie
    corrected) above.

    >>> round(signed_rank_p(np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])), 5)
    0.03125
    """
    d = np.asarray(d, dtype=float)
    nonzero = d != 0
    m = int(nonzero.sum())
    if m == 0:
        return 1.0
    if m > EXACT_MAX:
        return float(sps.wilcoxon(d, zero_method="zsplit", method="approx").pvalue)
    r = sps.rankdata(np.abs(d))
    fixed = 0.5 * float(r[~nonzero].sum())
    observed = float(r[d > 0].sum()) + fixed
    signs = (np.arange(2**m)[:, None] >> np.arange(m)) & 1
    null = signs @ r[nonzero] + fixed
    tol = 1e-9 * max(1.0, observed)
    p = 2.0 * min(float((null <= observed + tol).mean()), float((null >= observed - tol).mean()))
    return min(1.0, p)


def verdict(pairs: int, p_holm: float, median_diff: float, alpha: float = ALPHA) -> str:
    """The "better than the reference?" answer: ``yes`` when the Holm-corrected p-value is
    below ``alpha`` and the median difference is positive, ``worse`` when it is below
    ``alpha`` and the median difference negative, ``n/a`` with fewer than :data:`MIN_PAIRS`
    pairs, ``no`` otherwise.

    >>> verdict(14, 0.01, 0.02), verdict(14, 0.2, 0.02), verdict(5, 0.01, 0.02)
    ('yes', 'no', 'n/a')
    """
    if pairs < MIN_PAIRS or np.isnan(p_holm):
        return "n/a"
    if p_holm < alpha and median_diff > 0:
        return "yes"
    if p_holm < alpha and median_diff < 0:
        return "worse"
    return "no"


# ------------------------------------------------------------------------------ a grid


@dataclass(frozen=True)
class BenchStats:
    """Everything :func:`bench_stats` derives from a grid's final rows.

    ``scores``: groups x losses, mean ``metric`` over seeds (``-inf``: no seed reached a
    finite epoch; NaN: no result). ``ranks``: ranks over the complete groups. ``dropped``:
    left-out group -> the losses it lacks. ``no_finite``: (group, loss) ranked last because
    every seed diverged without a finite epoch. ``friedman`` and ``cd`` are ``None`` below
    2 losses or 2 complete groups. ``versus``: per loss, the paired comparison with the
    reference (``pairs``, ``wins``, ``ties``, ``losses``, ``median_diff``, ``p``, ``p_holm``,
    ``better``), empty when the reference is absent. ``metric``: the column ranked.
    """

    scores: pd.DataFrame
    ranks: pd.DataFrame
    mean_rank: pd.Series
    rank_ci: pd.DataFrame
    dropped: dict[tuple[str, str], list[str]]
    no_finite: list[tuple[tuple[str, str], str]]
    friedman: FriedmanResult | None
    cd: float | None
    versus: pd.DataFrame
    reference: str
    alpha: float
    cliques: list[list[str]] = field(default_factory=list)
    metric: str = "test_acc"

    @property
    def metric_name(self) -> str:
        """The ranked metric as the texts name it (``test accuracy``, ``test Recall@1``)."""
        return METRIC_NAMES.get(self.metric, self.metric)

    @property
    def n_groups(self) -> int:
        return len(self.ranks)

    @property
    def rejects(self) -> bool:
        """Whether the Friedman test rejects equal mean ranks at ``alpha``."""
        return self.friedman is not None and self.friedman.pvalue < self.alpha


VERSUS_COLUMNS = ["pairs", "wins", "ties", "losses", "median_diff", "p", "p_holm", "better"]


def bench_stats(
    rows: pd.DataFrame,
    reference: str = REFERENCE,
    alpha: float = ALPHA,
    n_boot: int = 2000,
    seed: int = 0,
    metric: str = "test_acc",
) -> BenchStats:
    """Friedman test, Nemenyi critical difference, bootstrap intervals of mean rank and
    paired comparisons with ``reference`` for the final rows of a grid (columns
    ``dataset``, ``corruption``, ``loss``, ``seed`` and ``metric``, higher is better:
    ``test_acc``, or ``test_recall_at_1`` for a retrieval grid; one row per
    (group, loss, seed), as selection leaves them)."""
    if not isinstance(metric, str):
        fail("bench_stats", "metric", "a column name", describe(metric))
    missing = [c for c in [*GROUP, "loss", "seed", metric] if c not in rows]
    if missing:
        fail("bench_stats", "rows", f"columns dataset, corruption, loss, seed, {metric}", missing)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        fail("bench_stats", "alpha", "a level in (0, 1)", describe(alpha))
    df = rows[[*GROUP, "loss", "seed", metric]].astype({metric: float})
    df = df.rename(columns={metric: "value"})
    g = df.groupby([*GROUP, "loss"])["value"].mean().fillna(-np.inf)
    scores = g.unstack("loss") if len(g) else pd.DataFrame()
    losses = sorted(scores.columns) if len(scores) else []
    scores = scores.reindex(columns=losses)
    values = scores.to_numpy(dtype=float)
    absent = np.isnan(values)
    complete = ~absent.any(axis=1)
    groups = [(str(i[0]), str(i[1])) for i in scores.index]
    dropped = {
        groups[r]: [losses[j] for j in np.flatnonzero(absent[r])] for r in np.flatnonzero(~complete)
    }
    no_finite = [
        (groups[r], str(losses[j])) for r, j in zip(*np.nonzero(np.isneginf(values)), strict=True)
    ]
    ranks = rank_matrix(scores[complete].replace(-np.inf, np.nan))
    mean_rank = ranks.mean(axis=0) if len(ranks) else pd.Series(np.nan, index=losses)
    mean_rank = mean_rank.sort_values(kind="stable")
    rank_ci = bootstrap_mean_rank(ranks, n_boot=n_boot, seed=seed).reindex(mean_rank.index)
    k, n = len(losses), len(ranks)
    fr = friedman(ranks) if k >= 2 and n >= 2 else None
    cd = critical_difference(k, n, alpha) if fr is not None else None
    cliques = cd_cliques(mean_rank, cd) if cd is not None else []
    return BenchStats(
        scores=scores,
        ranks=ranks,
        mean_rank=mean_rank,
        rank_ci=rank_ci,
        dropped=dropped,
        no_finite=no_finite,
        friedman=fr,
        cd=cd,
        versus=_versus(df, losses, reference, alpha),
        reference=reference,
        alpha=float(alpha),
        cliques=cliques,
        metric=metric,
    )


def _versus(df: pd.DataFrame, losses: list[str], reference: str, alpha: float) -> pd.DataFrame:
    if reference not in losses:
        return pd.DataFrame(columns=VERSUS_COLUMNS, index=pd.Index([], name="loss"))
    # a seed with no finite epoch counts as a score of 0; an absent seed is no pair
    acc = df.assign(value=df["value"].fillna(0.0))
    seeds = acc.groupby([*GROUP, "seed", "loss"])["value"].mean().unstack("loss")
    ref = seeds[reference].to_numpy()
    names = [loss for loss in losses if loss != reference]
    if not names:
        return pd.DataFrame(columns=VERSUS_COLUMNS, index=pd.Index([], name="loss"))
    res = [paired_test(seeds[loss].to_numpy(), ref) for loss in names]
    pairs = np.array([r.pairs for r in res])
    p = np.array([r.pvalue for r in res])
    # only comparisons that can reach a verdict enter the family Holm corrects
    usable = pairs >= MIN_PAIRS
    p_holm = np.full(len(res), np.nan)
    p_holm[usable] = holm(p[usable])
    table = pd.DataFrame(
        {
            "pairs": pairs,
            "wins": [r.wins for r in res],
            "ties": [r.ties for r in res],
            "losses": [r.losses for r in res],
            "median_diff": [r.median_diff for r in res],
            "p": p,
            "p_holm": p_holm,
            "better": [
                verdict(r.pairs, ph, r.median_diff, alpha)
                for r, ph in zip(res, p_holm, strict=True)
            ],
        },
        index=pd.Index(names, name="loss"),
    )
    return table[VERSUS_COLUMNS]
