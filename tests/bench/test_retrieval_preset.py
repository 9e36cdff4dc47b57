"""The ``retrieval`` protocol and preset: seen/unseen split, class-balanced batches,
episodes, heads, deterministic cells, rows and the store."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from losslab.bench.backends import InProcessBackend
from losslab.bench.cell import CellError, run_cell
from losslab.bench.embedding import (
    EMBEDDING_DIM,
    ClassBalancedSampler,
    EmbeddingObjective,
    build_retrieval_split,
    episode_support,
    retrieval_cell,
    train_embedding,
)
from losslab.bench.grid import GridError, GridSpec, make_grid, preset, validate_grid
from losslab.bench.models import build_model
from losslab.bench.plan import Plan
from losslab.bench.runner import run_grid
from losslab.bench.store import ResultStore
from losslab.data import load_dataset
from losslab.data.split import class_split
from losslab.heads import EquiangularHead, MarginHead

RETRIEVAL_COLUMNS = (
    "test_recall_at_1",
    "test_recall_at_4",
    "test_map_at_r",
    "val_recall_at_1",
    "val_recall_at_4",
    "val_map_at_r",
    "train_clean_recall_at_1",
)


def tiny(**overrides):
    """Two losses on digits (5 seen / 5 unseen classes), 2 epochs."""
    spec = dict(
        name="tiny-retrieval",
        datasets=["digits"],
        corruptions=["clean"],
        losses=["multi_similarity", "ebv"],
        seeds=[0],
        protocol="retrieval",
        train={"epochs": 2, "batch_size": 40, "patience": None},
    )
    return GridSpec(**{**spec, **overrides})


def cell_of(loss="multi_similarity", seed=0, corruption="clean", **train):
    g = tiny(losses=[loss], seeds=[seed], corruptions=[corruption])
    if train:
        g = tiny(
            losses=[loss],
            seeds=[seed],
            corruptions=[corruption],
            train={"epochs": 2, "batch_size": 40, "patience": None, **train},
        )
    return Plan.of(g).fixed[0]


# ------------------------------------------------------------------------ class split


def test_class_split_is_a_seeded_partition():
    seen, unseen = class_split(10, seed=0)
    assert sorted([*seen, *unseen]) == list(range(10)) and len(unseen) == 5
    s2, u2 = class_split(10, seed=0)
    assert np.array_equal(s2, seen) and np.array_equal(u2, unseen)
    assert list(unseen) != [5, 6, 7, 8, 9]  # a permutation, not the class order
    # at least one unseen and two seen classes
    assert [len(x) for x in class_split(3, unseen_fraction=0.9)] == [2, 1]
    assert [len(x) for x in class_split(500, unseen_fraction=0.5)] == [250, 250]


@pytest.mark.parametrize(
    ("args", "exc", "text"),
    [
        ((2,), ValueError, "class_split: num_classes expected an int >= 3, got 2"),
        ((10.0,), TypeError, "class_split: num_classes expected an int >= 3, got 10.0"),
        ((10, 1.0, 0), ValueError, "unseen_fraction expected a float in (0, 1), got 1.0"),
        ((10, 0.5, "s"), TypeError, "class_split: seed expected an int, got 's'"),
    ],
)
def test_class_split_bad_input(args, exc, text):
    n, *rest = args
    kw = dict(zip(("unseen_fraction", "seed"), rest, strict=False))
    with pytest.raises(exc) as info:
        class_split(n, **kw)
    assert text in str(info.value) and str(info.value).startswith("class_split: ")


def test_split_keeps_unseen_classes_out_of_training():
    data, info = build_retrieval_split(cell_of())
    seen, unseen = class_split(10, seed=0)
    assert info["unseen_classes"] == unseen.tolist() and info["num_seen"] == 5
    assert set(data.y_train.tolist()) == set(range(5)) == set(data.y_val.tolist())
    assert set(data.y_test.tolist()) == set(unseen.tolist())
    ds = load_dataset("digits")
    assert info["n_test"] == int(np.isin(ds.y_test, unseen).sum()) == len(data.X_test)
    assert info["n_train"] + info["n_val"] == int(np.isin(ds.y_train, seen).sum())
    # the training rows carry the corruption, the test rows never do
    noisy, _ = build_retrieval_split(cell_of(corruption="uniform:0.4"))
    flipped = (noisy.y_train != noisy.y_train_clean).float().mean()
    assert 0.25 < float(flipped) < 0.55
    assert torch.equal(noisy.y_test, data.y_test)


# --------------------------------------------------------------------------- batches


def test_sampler_batches_are_class_balanced_and_seeded():
    y = np.repeat(np.arange(10), 7)
    s = ClassBalancedSampler(y, 16, samples_per_class=4, seed=3)
    assert (s.classes_per_batch, s.per_class, len(s)) == (4, 4, 70 // 16)
    batches = [b for _ in range(5) for b in s.epoch()]
    for b in batches:
        counts = np.bincount(y[b.numpy()], minlength=10)
        assert sorted(counts[counts > 0]) == [4, 4, 4, 4]
        assert len(set(b.tolist())) == 16  # 7 rows per class: no repeat within a batch
    again = ClassBalancedSampler(y, 16, samples_per_class=4, seed=3)
    replay = [b for _ in range(5) for b in again.epoch()]
    assert all(torch.equal(a, b) for a, b in zip(batches, replay, strict=True))
    other = ClassBalancedSampler(y, 16, samples_per_class=4, seed=4)
    assert not torch.equal(next(other.epoch()), batches[0])
    # the rows of a class come round in cycles, so they are used about equally often
    used = np.concatenate([b.numpy() for b in batches])
    per_row = np.bincount(used, minlength=70).reshape(10, 7)
    assert (per_row.max(axis=1) - per_row.min(axis=1)).max() <= 2


def test_sampler_few_classes_fill_the_batch_and_small_classes_repeat():
    y = np.array([0] * 50 + [1] * 50 + [2] * 2)
    s = ClassBalancedSampler(y, 30, samples_per_class=4, seed=0)
    assert (s.classes_per_batch, s.per_class) == (3, 10)
    b = next(s.epoch()).numpy()
    assert sorted(np.bincount(y[b])) == [10, 10, 10]
    assert sorted(set(b[y[b] == 2])) == [100, 101]  # both rows of class 2, repeated
    with pytest.raises(ValueError, match="labels expected at least 2 classes"):
        ClassBalancedSampler([1, 1, 1], 8)


def test_episode_support_first_half_of_each_class():
    y = torch.tensor([3, 3, 3, 3, 5, 5, 5, 7, 5])
    assert episode_support(y).tolist() == [
        True, True, False, False, True, True, False, False, False
    ]  # fmt: skip


# ---------------------------------------------------------------------------- heads


def test_objective_heads_by_method():
    kw = dict(dim=8, num_classes=3, num_samples=6)
    assert isinstance(EmbeddingObjective("arcface", {}, **kw).head, MarginHead)
    assert isinstance(EmbeddingObjective("unpg", {}, **kw).head, MarginHead)
    assert isinstance(EmbeddingObjective("ebv", {}, **kw).head, EquiangularHead)
    assert isinstance(EmbeddingObjective("ce", {}, **kw).head, torch.nn.Linear)
    assert EmbeddingObjective("supcon", {}, **kw).head is None
    obj = EmbeddingObjective("proto_triplet", {}, **kw)
    assert obj.episodes and obj.head is None


def test_proto_triplet_trains_on_episodes():
    # support rows (the first two of each class) sit at the class centres; queries are
    # swapped, so each query is nearer the other prototype: loss = d+ - d- + margin
    obj = EmbeddingObjective("proto_triplet", {"margin": 0.5}, dim=2, num_classes=2)
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    emb = torch.tensor(
        [[0.0, 0.0], [0.0, 0.0], [3.0, 0.0], [3.0, 0.0],
         [3.0, 0.0], [3.0, 0.0], [0.0, 0.0], [0.0, 0.0]]
    )  # fmt: skip
    # every query: d+ = sqrt(9 + 1e-6), d- = sqrt(0 + 1e-6) (the loss's distance)
    expected = math.sqrt(9 + 1e-6) - math.sqrt(1e-6) + 0.5
    assert float(obj(emb, y)) == pytest.approx(expected, abs=1e-5)
    # without episodes every row is support and query: both prototypes are (1.5, 0),
    # d+ = d-, and every row's loss is the margin
    plain = EmbeddingObjective("proto_triplet", {"margin": 0.5}, dim=2, num_classes=2)
    plain.episodes = False
    assert float(plain(emb, y)) == pytest.approx(0.5, abs=1e-6)


@pytest.mark.parametrize(
    ("losses", "grids", "text"),
    [
        (["barlow_twins"], {}, "losses.barlow_twins[0] expected a valid barlow_twins config"),
        (["bce"], {}, "an embedding or multiclass loss, or one of ['ebv']"),
        (["ebv"], {"ebv": [{"temperature": -1.0}]}, "losses.ebv[0] expected a valid ebv config"),
        (["ebvv"], {}, "expected registered loss names, got 'ebvv' (did you mean 'ebv'?)"),
    ],
)
def test_retrieval_grid_checks_methods_before_training(losses, grids, text):
    spec = dict(tiny().to_dict(), losses=losses, loss_grids=grids)
    with pytest.raises(GridError) as info:
        make_grid(spec, where="g", check_names=True)
    assert any(text in p for p in info.value.problems), info.value.problems


def test_ebv_is_a_retrieval_method_only():
    validate_grid(tiny(), check_data=False)
    with pytest.raises(GridError, match="registered loss names, got 'ebv'"):
        validate_grid(tiny(protocol="tuned", model="mlp"), check_data=False)


# ---------------------------------------------------------------------------- preset


def test_preset_and_budget_counts():
    g = preset("retrieval")
    assert g.protocol == "retrieval" and g.model == "mlp"
    assert g.datasets == ["glyphs", "fashion_mnist"] and g.seeds == [0, 1, 2]
    assert set(g.losses) == {
        "multi_similarity", "supcon", "arcface", "unpg", "proto_triplet", "ebv", "ce"
    }  # fmt: skip
    validate_grid(g, check_data=False)
    # 3 learning rates tuned on seed 0 per (dataset, loss), then 2 more seeds
    assert Plan.of(g).counts == {
        "groups": 14, "tuned_groups": 14, "tuning": 42, "fixed": 0, "selected": 28, "total": 70
    }  # fmt: skip
    assert g.train["epochs"] == 40 and g.train["patience"] == 8


# ----------------------------------------------------------------------------- cells


def test_cells_are_deterministic_bit_for_bit():
    cells = [c for c in Plan.of(tiny()).fixed]
    assert [c.loss for c in cells] == ["multi_similarity", "ebv"]
    for c in cells:
        a, b = run_cell(c), run_cell(c)
        assert a["metrics"] == b["metrics"] and a["curves"] == b["curves"]
        assert a["test_map_at_r"] == b["test_map_at_r"]
    other = run_cell(cell_of(seed=1))
    assert other["curves"]["train_loss"] != run_cell(cells[0])["curves"]["train_loss"]


def test_row_has_the_retrieval_columns():
    r = run_cell(cell_of("arcface"))
    for c in RETRIEVAL_COLUMNS:
        assert 0.0 <= r[c] <= 1.0, c
    assert r["val_acc"] == r["val_recall_at_1"]  # the selection score
    assert r.get("test_acc") is None and r["test_top5"] is None
    assert r["metrics"]["test"]["map_at_r"] == r["test_map_at_r"]
    assert len(r["curves"]["val_recall_at_1"]) == len(r["curves"]["test_recall_at_4"]) == 2
    assert r["config"]["data"]["embedding_dim"] == EMBEDDING_DIM
    assert r["config"]["data"]["batch_layout"] == {"classes": 5, "samples_per_class": 8}
    # unseen digits are retrieved far above chance (a fifth), and the loss falls
    assert r["test_recall_at_1"] > 0.6
    assert r["curves"]["train_loss"][1] < r["curves"]["train_loss"][0]


def test_heads_train_with_the_model():
    c = cell_of("arcface")
    data, info = build_retrieval_split(c)
    torch.manual_seed(0)
    model = build_model("mlp", info["input_shape"], EMBEDDING_DIM)
    obj = EmbeddingObjective("arcface", {}, dim=EMBEDDING_DIM, num_classes=data.num_seen)
    assert obj.head is not None
    centres = obj.head.weight.detach().clone()
    result = train_embedding(model, obj, data, c.train_config())
    assert result.final is not None and result.epochs_run == 2
    assert not torch.equal(obj.head.weight, centres)
    # retrieval_cell builds the same cell from the seed alone
    again, _, kind = retrieval_cell(c)
    assert kind == "mlp" and again.curves == result.curves


def test_divergence_reports_the_best_finite_epoch(monkeypatch):
    calls = {"n": 0}
    forward = EmbeddingObjective.forward

    def nan_after_one_epoch(self, emb, y, idx=None):
        calls["n"] += 1
        loss = forward(self, emb, y, idx)
        return loss * math.nan if calls["n"] > batches else loss

    c = cell_of(epochs=3)
    data, _ = build_retrieval_split(c)
    batches = len(ClassBalancedSampler(data.y_train.numpy(), 40))
    monkeypatch.setattr(EmbeddingObjective, "forward", nan_after_one_epoch)
    r = run_cell(c)
    assert r["diverged"] and r["diverged_epoch"] == 1 and r["best_epoch"] == 0
    assert 0 < r["test_recall_at_1"] <= 1 and len(r["curves"]["train_loss"]) == 2
    calls["n"] = 0
    batches = 0  # NaN from the first batch: no finite epoch, NULL metrics
    r = run_cell(c)
    assert r["diverged"] and r["diverged_epoch"] == 0 and r["best_epoch"] is None
    assert all(r[col] is None for col in RETRIEVAL_COLUMNS)


def test_shuffle_off_is_one_clear_line():
    with pytest.raises(CellError) as info:
        run_cell(cell_of(shuffle=False))
    text = str(info.value)
    assert "retrieval: shuffle expected true" in text and "\n" not in text


def test_store_and_resume(tmp_path):
    db = tmp_path / "r.duckdb"
    first = run_grid(tiny(), db, InProcessBackend())
    assert first.ran == 2
    again = run_grid(tiny(), db, InProcessBackend())
    assert again.ran == 0 and again.skipped == 2
    rows = ResultStore(db).rows()
    assert sorted(r["loss"] for r in rows) == ["ebv", "multi_similarity"]
    for r in rows:
        assert r["protocol"] == "retrieval" and r["test_acc"] is None
        assert 0 < r["val_acc"] <= 1 and math.isfinite(r["metrics"]["test"]["map_at_r"])


def test_learning_rate_selected_by_validation_recall_at_1(tmp_path):
    g = tiny(losses=["supcon"], seeds=[0, 1], lrs=[1e-4, 1e-2])
    run = run_grid(g, tmp_path / "s.duckdb", InProcessBackend())
    assert run.ran == 3  # 2 candidates on seed 0, the winner on seed 1
    rows = {r["lr"]: r for r in ResultStore(tmp_path / "s.duckdb").rows() if r["seed"] == 0}
    best = max(rows, key=lambda lr: rows[lr]["metrics"]["val"]["recall_at_1"])
    assert rows[1e-4]["val_acc"] != rows[1e-2]["val_acc"]
    assert run.selection[("digits", "clean", "supcon")] == ({}, best)


def test_docstring_examples_run():
    import doctest

    from losslab.bench import embedding

    tests = doctest.DocTestFinder(exclude_empty=True).find(embedding, embedding.__name__)
    runner = doctest.DocTestRunner()
    ran = 0
    for t in tests:
        runner.run(t)
        ran += len(t.examples)
    assert ran >= 6 and runner.failures == 0


def test_fingerprint_covers_the_retrieval_code():
    from losslab.bench.fingerprint import code_parts

    retrieval = code_parts("ce", "digits", "retrieval")
    classification = code_parts("ce", "digits", "tuned")
    # the embedding trainer and the retrieval metrics decide a retrieval cell's result
    assert retrieval["trainer"] != classification["trainer"]
    assert {k: v for k, v in retrieval.items() if k != "trainer"} == {
        k: v for k, v in classification.items() if k != "trainer"
    }
    # a head method has a fingerprint (its head's code) and so a key
    assert code_parts("ebv", "digits", "retrieval")["loss"] != retrieval["loss"]
    assert len(cell_of("ebv").key) == 24
