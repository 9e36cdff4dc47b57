"""The report's statistics against their oracles: Demšar's table of the Nemenyi q_alpha,
scipy's Friedman and Wilcoxon tests, and hand-worked examples for ranks, Holm, the
bootstrap, the cliques of the critical-difference diagram and the verdict rule."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from losslab.bench import stats
from losslab.bench.stats import (
    bench_stats,
    bootstrap_mean_rank,
    cd_cliques,
    critical_difference,
    friedman,
    holm,
    nemenyi_q,
    paired_test,
    rank_matrix,
    signed_rank_p,
    verdict,
)

# Demšar (2006), Table 5(a): q_0.05 of the Nemenyi test for k = 2..10 classifiers, printed
# with 3 decimals (2.3437 appears as 2.343: within 1e-3, not always rounded)
DEMSAR_Q05 = [1.960, 2.343, 2.569, 2.728, 2.850, 2.949, 3.031, 3.102, 3.164]
# Table 5(a), q_0.10
DEMSAR_Q10 = [1.645, 2.052, 2.291, 2.459, 2.589, 2.693, 2.780, 2.855, 2.920]


@pytest.mark.parametrize(("k", "q"), list(zip(range(2, 11), DEMSAR_Q05, strict=True)))
def test_nemenyi_q_matches_demsar_table_at_005(k, q):
    assert nemenyi_q(k, 0.05) == pytest.approx(q, abs=1e-3)


@pytest.mark.parametrize(("k", "q"), list(zip(range(2, 11), DEMSAR_Q10, strict=True)))
def test_nemenyi_q_matches_demsar_table_at_010(k, q):
    assert nemenyi_q(k, 0.10) == pytest.approx(q, abs=1e-3)


def test_critical_difference_of_demsars_worked_example():
    # §3.2.2: four algorithms on 14 data sets, CD = 2.569 * sqrt(4 * 5 / (6 * 14)) = 1.25
    assert critical_difference(4, 14) == pytest.approx(1.2535, abs=5e-4)
    assert round(critical_difference(4, 14), 2) == 1.25
    # the formula, at 23 losses over 14 groups
    q = nemenyi_q(23)
    assert critical_difference(23, 14) == pytest.approx(q * math.sqrt(23 * 24 / (6 * 14)))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((1, 5), "critical_difference: k expected an int >= 2 (treatments compared), got 1 (int)"),
        ((3, 0), "critical_difference: n_groups expected a positive int, got 0 (int)"),
        ((3, 5, 1.5), "critical_difference: alpha expected a level in (0, 1), got 1.5 (float)"),
    ],
)
def test_critical_difference_rejects_bad_input_in_one_line(args, message):
    with pytest.raises(ValueError) as err:
        critical_difference(*args)
    assert str(err.value) == message


def test_friedman_equals_scipy_with_ties():
    # 6 blocks x 4 treatments, ties inside blocks (accuracies are ratios of counts)
    scores = np.array(
        [
            [0.80, 0.82, 0.80, 0.75],
            [0.70, 0.74, 0.71, 0.70],
            [0.90, 0.90, 0.91, 0.88],
            [0.60, 0.66, 0.61, 0.55],
            [0.85, 0.86, 0.86, 0.86],
            [0.50, 0.58, 0.52, 0.49],
        ]
    )
    ours = friedman(rank_matrix(pd.DataFrame(scores)))
    ref = sps.friedmanchisquare(*scores.T)
    assert ours.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert ours.pvalue == pytest.approx(ref.pvalue, rel=1e-12)
    assert (ours.k, ours.n_groups) == (4, 6)


def test_friedman_by_hand_and_degenerate_cases():
    # perfect agreement of 3 blocks on 3 treatments: 12/(3*3*4) * (9+36+81) - 3*3*4 = 6
    r = friedman(np.array([[1, 2, 3]] * 3))
    assert r.statistic == pytest.approx(6.0)
    assert r.pvalue == pytest.approx(math.exp(-3.0))  # chi-square, 2 df: sf(x) = exp(-x/2)
    # every block one tie: nothing to test
    assert friedman(np.full((4, 3), 2.0)).pvalue == 1.0
    # k = 2 (scipy refuses): 4 blocks all favour the first, chi2 = n = 4
    assert friedman(np.array([[1.0, 2.0]] * 4)).statistic == pytest.approx(4.0)
    with pytest.raises(ValueError, match="friedman: ranks expected a matrix of >= 2 blocks"):
        friedman(np.array([[1.0, 2.0]]))


def test_rank_matrix_averages_ties_and_puts_nan_last():
    s = pd.DataFrame({"a": [0.9, np.nan, 0.5], "b": [0.9, np.nan, 0.7], "c": [0.8, 0.6, np.nan]})
    assert rank_matrix(s).to_numpy().tolist() == [[1.5, 1.5, 3.0], [2.5, 2.5, 1.0], [2, 1, 3]]


def test_holm_step_down():
    # sorted 0.01, 0.02, 0.04, 0.30 -> 4*0.01, 3*0.02, max(0.06, 2*0.04), max(0.08, 0.30)
    got = holm([0.04, 0.01, 0.30, np.nan, 0.02])
    assert got[[1, 4, 0, 2]] == pytest.approx([0.04, 0.06, 0.08, 0.30])
    assert np.isnan(got[3])
    assert holm([0.9, 0.8, 0.3]) == pytest.approx([1.0, 1.0, 0.9])  # capped at 1, monotone
    assert holm([]).tolist() == []


def test_signed_rank_p_equals_scipy_wilcoxon():
    rng = np.random.default_rng(3)
    # no ties, no zeros: scipy's exact distribution
    d = rng.normal(0.01, 0.02, 10)
    exact = sps.wilcoxon(d, zero_method="zsplit", method="exact").pvalue
    assert signed_rank_p(d) == pytest.approx(exact, rel=1e-12)
    # tied magnitudes and zeros (accuracies are ratios of counts): scipy's permutation test
    # over every sign assignment (its default below 14 pairs)
    d = np.array([0.02, -0.01, 0.0, 0.02, 0.03, 0.01, 0.0, 0.02, -0.02])
    ref = sps.wilcoxon(d, zero_method="zsplit").pvalue
    assert signed_rank_p(d) == pytest.approx(ref, rel=1e-9)
    # above EXACT_MAX nonzero differences: the normal approximation
    d = np.round(rng.normal(0.005, 0.02, 30), 3)
    approx = sps.wilcoxon(d, zero_method="zsplit", method="approx").pvalue
    assert signed_rank_p(d) == pytest.approx(approx, rel=1e-12)


def test_paired_test_counts():
    rng = np.random.default_rng(3)
    ref = rng.uniform(0.6, 0.9, 14)
    diff = np.round(rng.normal(0.01, 0.02, 14), 3)
    diff[[2, 7]] = 0.0
    got = paired_test(ref + diff, ref)
    d = np.where(np.abs(diff) <= 1e-12, 0.0, (ref + diff) - ref)
    assert got.pvalue == pytest.approx(signed_rank_p(d), rel=1e-12)
    assert (got.pairs, got.wins, got.ties, got.losses) == (
        14,
        int((diff > 0).sum()),
        int((diff == 0).sum()),
        int((diff < 0).sum()),
    )
    assert got.median_diff == pytest.approx(np.median(d))


def test_paired_test_edge_cases():
    # 6 wins out of 6: the exact two-sided p is 2 / 2**6
    six = paired_test(np.full(6, 0.9) + np.arange(6) * 0.01, np.full(6, 0.8))
    assert six.pvalue == pytest.approx(2 / 64)
    # differences that are zero up to float noise are ties, and all ties give p = 1
    a = np.array([0.1 + 0.2, 0.3, 0.7])
    tie = paired_test(a, np.array([0.3, 0.1 + 0.2, 0.7]))
    assert (tie.ties, tie.pvalue) == (3, 1.0)
    # NaN on either side: no pair
    none = paired_test(np.array([np.nan]), np.array([0.5]))
    assert none.pairs == 0 and np.isnan(none.pvalue)
    with pytest.raises(ValueError, match="paired_test: values expected a 1-D array"):
        paired_test(np.zeros(3), np.zeros(4))


@pytest.mark.parametrize(
    ("pairs", "p", "median", "answer"),
    [
        (12, 0.01, 0.02, "yes"),
        (12, 0.01, -0.02, "worse"),
        (12, 0.01, 0.0, "no"),
        (12, 0.05, 0.02, "no"),  # the rule is p < alpha, strictly
        (5, 0.0001, 0.02, "n/a"),
        (12, float("nan"), 0.02, "n/a"),
    ],
)
def test_verdict_rule(pairs, p, median, answer):
    assert verdict(pairs, p, median) == answer


def test_bootstrap_interval_is_deterministic_and_brackets_the_mean():
    rng = np.random.default_rng(0)
    ranks = rank_matrix(pd.DataFrame(rng.uniform(size=(10, 4)), columns=list("abcd")))
    a = bootstrap_mean_rank(ranks, n_boot=500, seed=1)
    b = bootstrap_mean_rank(ranks, n_boot=500, seed=1)
    pd.testing.assert_frame_equal(a, b)
    mean = ranks.mean()
    assert (a["lo"] <= mean).all() and (mean <= a["hi"]).all()
    # identical groups: every resample has the same mean rank
    same = pd.DataFrame([[1.0, 2.0, 3.0]] * 5, columns=list("xyz"))
    c = bootstrap_mean_rank(same, n_boot=50)
    assert c["lo"].tolist() == c["hi"].tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="n_boot expected a positive int, got 0"):
        bootstrap_mean_rank(same, n_boot=0)


def test_cd_cliques_are_maximal_runs():
    r = pd.Series({"a": 1.0, "b": 1.4, "c": 2.2, "d": 2.5, "e": 4.0})
    # from a: b is 0.4 away, c 1.2; from b: c 0.8, d 1.1; from c: d 0.3, e 1.8
    assert cd_cliques(r, 1.0) == [["a", "b"], ["b", "c"], ["c", "d"]]
    assert cd_cliques(r, 10.0) == [["a", "b", "c", "d", "e"]]
    assert cd_cliques(r, 0.1) == []


def _rows(effects: dict[str, float], groups: int = 3, seeds: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    out = []
    for g in range(groups):
        for s in range(seeds):
            base = 0.7 + 0.05 * g + rng.normal(0, 0.01)
            for loss, e in effects.items():
                out.append(("d", f"c{g}", loss, s, base + e + 0.001 * s))
    return pd.DataFrame(out, columns=["dataset", "corruption", "loss", "seed", "test_acc"])


def test_bench_stats_verdicts_against_ce():
    rows = _rows({"ce": 0.0, "good": 0.03, "bad": -0.04, "same": 0.0}, groups=4, seeds=2)
    st = bench_stats(rows)
    assert st.mean_rank.index[0] == "good" and st.mean_rank.index[-1] == "bad"
    vs = st.versus
    assert vs.loc["good", ["pairs", "wins", "ties", "losses"]].tolist() == [8, 8, 0, 0]
    assert vs.loc["good", "better"] == "yes" and vs.loc["bad", "better"] == "worse"
    assert vs.loc["same", "better"] == "no" and vs.loc["same", "ties"] == 8
    # Holm over the three compared losses
    assert vs["p_holm"].astype(float).to_numpy() == pytest.approx(holm(vs["p"].astype(float)))
    assert st.friedman is not None and st.friedman.n_groups == 4
    assert st.cd == pytest.approx(critical_difference(4, 4))


def test_bench_stats_too_few_pairs_and_no_reference():
    st = bench_stats(_rows({"ce": 0.0, "good": 0.03}, groups=2, seeds=2))
    assert st.versus.loc["good", "pairs"] == 4 and st.versus.loc["good", "better"] == "n/a"
    st = bench_stats(_rows({"gce": 0.0, "good": 0.03}))
    assert st.versus.empty and st.reference == "ce"


def test_missing_group_is_dropped_and_named():
    rows = _rows({"ce": 0.0, "gce": 0.01, "mae": -0.2}, groups=4)
    rows = rows[~((rows["loss"] == "gce") & (rows["corruption"] == "c2"))]
    st = bench_stats(rows)
    assert st.dropped == {("d", "c2"): ["gce"]}
    assert st.n_groups == 3 and ("d", "c2") not in set(st.ranks.index)
    # pairs still come from every group both losses have
    assert st.versus.loc["gce", "pairs"] == 6 and st.versus.loc["mae", "pairs"] == 8


def test_diverged_loss_ranks_last_and_counts_as_zero_in_pairs():
    rows = _rows({"ce": 0.0, "gce": 0.01, "fragile": 0.05}, groups=3)
    bad = (rows["loss"] == "fragile") & (rows["corruption"] == "c1")
    rows.loc[bad, "test_acc"] = np.nan  # both seeds: no finite epoch
    st = bench_stats(rows)
    assert st.no_finite == [(("d", "c1"), "fragile")]
    assert st.ranks.loc[("d", "c1"), "fragile"] == 3.0
    assert st.ranks.loc[("d", "c0"), "fragile"] == 1.0
    assert st.versus.loc["fragile", ["wins", "losses"]].tolist() == [4, 2]
    assert st.versus.loc["fragile", "median_diff"] > 0


def test_bench_stats_rejects_rows_without_the_needed_columns():
    with pytest.raises(ValueError) as err:
        bench_stats(pd.DataFrame({"loss": ["ce"]}))
    assert str(err.value).startswith(
        "bench_stats: rows expected columns dataset, corruption, loss, seed, test_acc, got"
    )
    with pytest.raises(ValueError, match="bench_stats: alpha expected a level in"):
        bench_stats(_rows({"ce": 0.0}), alpha=0)


def test_docstring_examples_run():
    tests = doctest.DocTestFinder(exclude_empty=True).find(stats, stats.__name__)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    examples = [t for t in tests if t.examples]
    assert len(examples) >= 8
    for t in examples:
        runner.run(t)
    assert runner.failures == 0
