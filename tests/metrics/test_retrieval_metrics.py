"""Recall@k and MAP@R: hand-computed cases, a plain-Python oracle (ties included), and
pytorch-metric-learning's AccuracyCalculator on random embeddings."""

from __future__ import annotations

import doctest
import math

import pytest
import torch

from losslab.metrics import map_at_r, recall_at_k, retrieval_metrics
from losslab.metrics import retrieval as retrieval_module


def oracle(e: torch.Tensor, y: torch.Tensor, ks=(1, 4)) -> dict[str, float]:
    """Each row against the others, ranked by (-cosine, row index), in plain Python."""
    rows = [[float(v) for v in r] for r in e.double()]
    unit = [[v / math.sqrt(sum(w * w for w in r)) for v in r] for r in rows]
    labels = [int(v) for v in y]
    hits = {k: 0 for k in ks}
    ap_sum, counted = 0.0, 0
    for i, (ui, yi) in enumerate(zip(unit, labels, strict=True)):
        r = labels.count(yi) - 1
        if r == 0:
            continue
        counted += 1
        others = [j for j in range(len(unit)) if j != i]
        sims = {j: sum(a * b for a, b in zip(ui, unit[j], strict=True)) for j in others}
        order = sorted(others, key=lambda j: (-sims[j], j))
        rel = [labels[j] == yi for j in order]
        for k in ks:
            hits[k] += any(rel[:k])
        found, ap = 0, 0.0
        for pos, is_rel in enumerate(rel[:r], start=1):
            if is_rel:
                found += 1
                ap += found / pos
        ap_sum += ap / r
    out = {f"recall_at_{k}": hits[k] / counted for k in ks}
    out["map_at_r"] = ap_sum / counted
    return out


def test_hand_case_four_points():
    # a=(1,0), b=(.8,.6) of class 0; c=(0,1), d=(.6,.8) of class 1. Nearest neighbours:
    # a->b (hit), b->d (miss, then a), c->d (hit), d->b (miss, then c); R = 1 for all.
    e = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    y = torch.tensor([0, 0, 1, 1])
    assert retrieval_metrics(e, y, ks=(1, 2)) == {
        "recall_at_1": 0.5,
        "recall_at_2": 1.0,
        "map_at_r": 0.5,
    }


def test_map_at_r_rewards_order_within_the_first_r():
    # unit vectors at 0, 10, 25 and 45 degrees; classes 0, 0, 1, 0 (R = 2 for class 0)
    deg = torch.tensor([0.0, 10.0, 25.0, 45.0], dtype=torch.float64) * math.pi / 180
    e = torch.stack([deg.cos(), deg.sin()], dim=1)
    y = torch.tensor([0, 0, 1, 0])
    # q0: [10 r, 25 x, 45 r] -> AP = (1/1) / 2; q1: [0 r, 25 x, 45 r] -> 1/2;
    # q3: [25 x, 10 r, 0 r] -> (1/2) / 2; q2 is alone in its class and not counted
    got = retrieval_metrics(e, y, ks=(1, 2))
    assert got["map_at_r"] == pytest.approx((0.5 + 0.5 + 0.25) / 3, abs=1e-12)
    assert got["recall_at_1"] == pytest.approx(2 / 3, abs=1e-12)
    assert got["recall_at_2"] == 1.0
    assert got == pytest.approx(oracle(e, y, ks=(1, 2)), abs=1e-12)


def test_ties_rank_by_row_order():
    # identical embeddings: every query ranks the other rows in row order
    e = torch.ones(4, 3)
    y = torch.tensor([0, 1, 0, 1])
    # q0: [1, 2, 3] -> R@1 0, R@2 1, AP 0; q1: [0, 2, 3] -> 0, 0, 0;
    # q2: [0, 1, 3] -> 1, 1, 1; q3: [0, 1, 2] -> 0, 1, 0
    got = retrieval_metrics(e, y, ks=(1, 2))
    assert got == {"recall_at_1": 0.25, "recall_at_2": 0.75, "map_at_r": 0.25}
    assert got == oracle(e, y, ks=(1, 2))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_oracle_on_random_and_tied_embeddings(seed):
    g = torch.Generator().manual_seed(seed)
    n = 40
    # few distinct rows: many exact ties, also across the top-k window's edge
    base = torch.randn(6, 3, generator=g, dtype=torch.float64)
    e = base[torch.randint(0, 6, (n,), generator=g)]
    y = torch.randint(0, 5, (n,), generator=g)
    for emb in (e, torch.randn(n, 5, generator=g, dtype=torch.float64)):
        ref = oracle(emb, y, ks=(1, 2, 4, 8))
        for chunk in (1, 7, 1024):
            got = retrieval_metrics(emb, y, ks=(1, 2, 4, 8), chunk_size=chunk)
            assert got == pytest.approx(ref, abs=1e-12)


def test_lone_queries_are_left_out_but_stay_references():
    e = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.95, 0.05]])
    y = torch.tensor([0, 0, 7])  # class 7 has a single row
    # q0 -> row 2 (x) first, then row 1; q1 -> row 2 first too: both miss at 1
    assert retrieval_metrics(e, y, ks=(1, 2)) == {
        "recall_at_1": 0.0,
        "recall_at_2": 1.0,
        "map_at_r": 0.0,
    }


def test_k_beyond_the_reference_set_ranks_every_other_row():
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.1, 1.0]])
    y = torch.tensor([0, 0, 1])
    assert recall_at_k(e, y, k=10) == 1.0


def test_row_permutation_invariance_without_ties():
    g = torch.Generator().manual_seed(3)
    e = torch.randn(50, 8, generator=g)
    y = torch.randint(0, 6, (50,), generator=g)
    p = torch.randperm(50, generator=g)
    assert retrieval_metrics(e[p], y[p]) == pytest.approx(retrieval_metrics(e, y), abs=1e-12)


def test_separated_clusters_score_one():
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(4) * 10
    y = torch.arange(4).repeat_interleave(5)
    e = centres[y] + 0.01 * torch.randn(20, 4, generator=g)
    assert retrieval_metrics(e, y) == {"recall_at_1": 1.0, "recall_at_4": 1.0, "map_at_r": 1.0}
    assert map_at_r(e, y) == 1.0


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_pytorch_metric_learning(seed):
    pml = pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning.distances import CosineSimilarity
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    assert pml.__version__
    g = torch.Generator().manual_seed(seed)
    n, d, c = 300, 16, 12
    y = torch.randint(0, c, (n,), generator=g)
    # class structure plus noise, so the metrics are far from 0 and from 1
    e = torch.randn(c, d, generator=g)[y] + 1.5 * torch.randn(n, d, generator=g)
    calc = AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r"),
        k="max_bin_count",
        knn_func=CustomKNN(CosineSimilarity()),
    )
    ref = calc.get_accuracy(e, y)
    got = retrieval_metrics(e, y)
    assert 0.1 < got["map_at_r"] < 0.9
    assert got["recall_at_1"] == pytest.approx(ref["precision_at_1"], abs=1e-9)
    assert got["map_at_r"] == pytest.approx(ref["mean_average_precision_at_r"], abs=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        ({"embeddings": [[1.0, 0.0]]}, TypeError, "embeddings expected a torch.Tensor"),
        ({"embeddings": torch.ones(4)}, ValueError, "embeddings expected shape (N, D)"),
        (
            {"embeddings": torch.tensor([[1.0, float("nan")]] * 4)},
            ValueError,
            "embeddings expected finite values, got NaN values",
        ),
        ({"labels": torch.zeros(4)}, TypeError, "labels expected an integer tensor"),
        ({"labels": torch.zeros(3, dtype=torch.long)}, ValueError, "of shape (4,)"),
        ({"labels": torch.arange(4)}, ValueError, "at least two rows of some class"),
        ({"ks": (0,)}, ValueError, "ks expected positive ints, got 0 (int)"),
        ({"ks": 1}, TypeError, "ks expected a non-empty sequence"),
        ({"chunk_size": 0}, ValueError, "chunk_size expected a positive int"),
    ],
)
def test_bad_input_one_clear_line(kwargs, exc, message):
    args = {"embeddings": torch.randn(4, 2), "labels": torch.tensor([0, 0, 1, 1]), **kwargs}
    with pytest.raises(exc) as info:
        retrieval_metrics(**args)
    text = str(info.value)
    assert text.startswith("retrieval_metrics: ") and message in text and "\n" not in text


def test_docstring_examples_run():
    name = retrieval_module.__name__
    tests = doctest.DocTestFinder(exclude_empty=True).find(retrieval_module, name)
    runner = doctest.DocTestRunner()
    ran = 0
    for t in tests:
        runner.run(t)
        ran += len(t.examples)
    assert ran >= 3 and runner.failures == 0
