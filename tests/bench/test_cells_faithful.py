"""The ldr-faithful protocol trains like the LDR code: noise on the whole training file,
KFold(n_splits=5) without shuffling, the 4 training folds in file order, the held-out
fold (noisy) for validation; a seed is a repetition (noise seed, fold). And the presets
that use it or were sized for it (ldr-faithful, fashion)."""

from __future__ import annotations

import numpy as np
import pytest

import losslab
from losslab.bench.cell import build_split
from losslab.bench.grid import GridSpec, preset, validate_grid
from losslab.bench.plan import Plan
from losslab.bench.protocol import get_protocol
from losslab.data import load_dataset

FAITHFUL = get_protocol("ldr-faithful")


@pytest.mark.parametrize("n", [528, 1347, 11])
def test_folds_are_contiguous_blocks_in_file_order(n):
    y = np.arange(n) % 3
    vals = []
    for seed in range(10):
        tr, va = FAITHFUL.split(y, 0.2, seed)
        fold = seed % 5
        # sklearn's KFold without shuffling: the first n % 5 folds are one row longer
        size = n // 5 + (fold < n % 5)
        start = fold * (n // 5) + min(fold, n % 5)
        assert va.tolist() == list(range(start, start + size))
        assert tr.tolist() == [i for i in range(n) if not start <= i < start + size]
        vals.append(va)
    # the 5 folds of a noise seed cover every row once
    assert sorted(np.concatenate(vals[:5]).tolist()) == list(range(n))
    assert [FAITHFUL.noise_seed(s) for s in range(10)] == [0] * 5 + [1] * 5


def test_tuned_protocol_keeps_its_stratified_random_split():
    tuned = get_protocol("tuned")
    assert tuned.folds is None and tuned.noise_seed(7) == 7
    tr, va = tuned.split(np.arange(100) % 4, 0.2, 0)
    assert len(va) == 20 and sorted([*tr, *va]) == list(range(100))
    assert va.tolist() != list(range(20))  # drawn, not the first block


def test_cell_split_noises_the_file_then_holds_out_a_fold():
    ds = load_dataset("digits")
    grid = GridSpec(["digits"], ["uniform:0.4"], ["ce"], list(range(10)), protocol="ldr-faithful")
    y_file = np.asarray(ds.y_train)
    n = len(y_file)
    noisy_by_noise_seed = {}
    for seed in (0, 3, 5):
        cell = grid.cell("digits", "uniform:0.4", "ce", {}, 0.01, seed)
        data, info = build_split(cell)
        tr, va = FAITHFUL.split(y_file, cell.val_fraction, seed)
        assert info["n_train"] == len(tr) and info["n_val"] == len(va) == n // 5 + (
            seed % 5 < n % 5
        )
        # training rows in file order, with their clean labels
        assert data.y_train_clean.tolist() == y_file[tr].tolist()
        noisy = np.full(n, -1)
        noisy[tr], noisy[va] = data.y_train.numpy(), data.y_val.numpy()
        noisy_by_noise_seed.setdefault(seed // 5, []).append(noisy)
        # the validation fold carries the noise too
        assert (data.y_val.numpy() != y_file[va]).mean() > 0.2
        assert not cell.train_config().shuffle and cell.train_config().batch_size == 64
    # folds of one noise seed see one noisy label vector; another noise seed another
    a, b = noisy_by_noise_seed[0]
    (c,) = noisy_by_noise_seed[1]
    assert (a == b).all() and (a != c).any()


def test_ldr_faithful_preset_is_the_ldr_codes_runs():
    grid = preset("ldr-faithful")
    validate_grid(grid, check_data=False)
    assert grid.protocol == "ldr-faithful" and grid.model == "ldr_mlp"
    assert grid.seeds == list(range(10))
    assert len(grid.losses) == 9 and set(grid.losses) <= set(losslab.list_losses())
    assert grid.configs("ww_svm") == [
        {"margin": m, "class_reduction": "mean"} for m in (0.1, 1.0, 10.0)
    ]
    assert grid.configs("ldr_kl") == [{"temperature": 10.0, "margin": 0.1}]
    assert grid.configs("aldr_kl") == [{"temperature0": 10.0, "alpha": 2.0, "margin": 0.1}]
    assert grid.train["epochs"] == 100 and grid.train["patience"] is None
    # ce, ldr_kl, aldr_kl: one candidate, 10 repetitions each; the other 6 losses: 3
    # candidates on repetition 0, then the winner on the other 9
    assert Plan.of(grid).counts == {
        "groups": 36,
        "tuned_groups": 24,
        "tuning": 72,
        "fixed": 120,
        "selected": 216,
        "total": 408,
    }


def test_ldr_preset_tunes_the_ldr_temperatures():
    grid = preset("ldr")
    assert [c["temperature"] for c in grid.configs("ldr_kl")] == [0.1, 1.0, 10.0]
    assert [c["temperature0"] for c in grid.configs("aldr_kl")] == [0.1, 1.0, 10.0]
    # 1428 tuning cells (14 groups x 102 configs) + 322 second-seed finals (docs/bench.md)
    assert Plan.of(grid).total == 1750


def test_fashion_preset():
    grid = preset("fashion")
    validate_grid(grid, check_data=False)
    assert grid.datasets == ["fashion_mnist"] and grid.model == "mlp"
    assert grid.corruptions == ["clean", "uniform:0.4", "class_dependent:0.3", "long_tail:50"]
    assert grid.losses[0] == "ce" and len(grid.losses) == 10
    assert Plan.of(grid).total == 184
