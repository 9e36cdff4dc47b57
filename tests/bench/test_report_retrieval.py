"""Reports, ``bench status`` and the store on a retrieval grid: the flat Recall@k / MAP@R
columns are stored, every report path ranks test Recall@1, shows Recall@1, Recall@4 and
MAP@R, and leaves out the panels that need class probabilities. One tiny grid is trained
(digits, 2 losses, 2 corruptions, 2 seeds, 1 epoch: a few seconds)."""

from __future__ import annotations

import re
import runpy
import shutil
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from losslab.bench.backends import InProcessBackend
from losslab.bench.cli import main
from losslab.bench.embedding import METRIC_COLUMNS
from losslab.bench.grid import GridSpec
from losslab.bench.report import (
    RETRIEVAL,
    RETRIEVAL_BOARD_COLUMNS,
    final_frame,
    grid_task,
    leaderboard,
    resolve_grid,
    write_report,
)
from losslab.bench.runner import run_grid
from losslab.bench.store import RESULT_COLUMNS, ResultStore

ROOT = Path(__file__).resolve().parents[2]
FLAT = [c for c in METRIC_COLUMNS if c != "val_acc"]


@pytest.fixture(scope="module")
def grid_store(tmp_path_factory):
    spec = GridSpec(
        name="tiny-retrieval",
        datasets=["digits"],
        corruptions=["clean", "uniform:0.4"],
        losses=["multi_similarity", "ce"],
        seeds=[0, 1],
        protocol="retrieval",
        train={"epochs": 1, "batch_size": 40, "patience": None},
    )
    db = tmp_path_factory.mktemp("retrieval") / "r.duckdb"
    assert run_grid(spec, db, InProcessBackend()).ran == 8
    return ResultStore(db)


@pytest.fixture(scope="module")
def frame(grid_store):
    return final_frame(grid_store, resolve_grid(grid_store)["grid"])


@pytest.fixture(scope="module")
def written(grid_store, tmp_path_factory):
    return write_report(grid_store, tmp_path_factory.mktemp("report"))


def expected_means(frame: pd.DataFrame) -> pd.DataFrame:
    """Per loss: the mean over (dataset, corruption) groups of the seed means."""
    cols = [c for c, _ in RETRIEVAL.means]
    g = frame.astype({c: float for c in cols}).groupby(["dataset", "corruption", "loss"])
    return g[cols].mean().groupby("loss").mean()


def test_store_has_the_flat_retrieval_columns(grid_store):
    with duckdb.connect(str(grid_store.path), read_only=True) as con:
        types = dict(
            con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'results'"
            ).fetchall()
        )
    assert {c: types[c] for c in FLAT} == dict.fromkeys(FLAT, "DOUBLE")
    rows = grid_store.rows()
    assert len(rows) == 8
    for r in rows:
        for col in FLAT:
            split, name = METRIC_COLUMNS[col]
            assert r[col] == r["metrics"][split][name], col
            assert 0.0 <= r[col] <= 1.0
        assert r["val_acc"] == r["val_recall_at_1"] and r["test_acc"] is None


def test_grid_task_and_leaderboard_rank_recall_at_1(frame):
    assert grid_task(frame) is RETRIEVAL
    board = leaderboard(frame)
    assert list(board.columns) == RETRIEVAL_BOARD_COLUMNS
    exp = expected_means(frame)
    got = board.set_index("loss")
    for col in exp.columns:
        np.testing.assert_allclose(got.loc[exp.index, col], exp[col], rtol=0, atol=1e-12)
    # mean rank of the seed-mean Recall@1 within each group (1 = best)
    r1 = frame.astype({"test_recall_at_1": float})
    seed_mean = r1.groupby(["corruption", "loss"])["test_recall_at_1"].mean().unstack()
    ranks = seed_mean.rank(axis=1, ascending=False).mean()
    np.testing.assert_allclose(got.loc[ranks.index, "mean_rank"], ranks)
    assert got.loc["ce", "better_than_ce"] == "ref"
    # 2 groups x 2 seeds = 4 pairs: fewer than a verdict needs
    assert got.loc["multi_similarity", "better_than_ce"] == "n/a"
    pairs = got.loc["multi_similarity", ["wins", "ties", "defeats"]].sum()
    assert pairs == 4


def test_report_names_the_retrieval_metrics_and_states_the_statistics(written, frame):
    text = written.markdown.read_text()
    assert "| loss | mean rank | 95% CI | Recall@1 | Recall@4 | MAP@R |" in text
    assert "## Statistics" in text
    assert "Friedman test over 2 (dataset, corruption) groups and 2 losses" in text
    assert "mean test Recall@1 over seeds of the selected configuration" in text
    assert "wins, ties and losses of test Recall@1" in text
    assert "### Each loss against ce" in text
    assert "## digits: test Recall@1, Recall@4 and MAP@R on unseen classes" in text
    assert "## Recall@1 vs noise, by loss family" in text
    assert "## Clean-label training Recall@1 (under-fitting check)" in text
    # nothing that needs class probabilities or classification columns
    assert "## Calibration" not in text and "test accuracy" not in text
    assert {p.name for p in written.figures} == {
        "cd_diagram.png", "mean_rank.png", "accuracy_vs_noise.png"
    }  # fmt: skip
    for p in written.figures:
        assert p.stat().st_size > 1000 and f"]({p.name})" in text
    # a table cell is the seed mean ± std of the stored column
    part = frame[(frame["loss"] == "ce") & (frame["corruption"] == "uniform:0.4")]
    m = part["test_map_at_r"].astype(float)
    assert f"{m.mean():.3f} ± {m.std():.3f}" in text
    table = text.split("## digits: ")[1]
    row = next(line for line in table.splitlines() if line.startswith("| ce | "))
    assert row.count("±") == 6  # 2 corruptions x Recall@1, Recall@4, MAP@R
    page = written.html.read_text()
    assert page.count("data:image/png;base64,") == 3 and "<th>MAP@R</th>" in page


def test_status_prints_the_retrieval_leaderboard(grid_store, frame):
    res = CliRunner().invoke(main, ["bench", "status", "--store", str(grid_store.path)])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    for heading in ("R@1", "MAP@R", "w/t/l", "better?", "mean rank of test Recall@1"):
        assert heading in out
    exp = expected_means(frame)
    for loss in ("ce", "multi_similarity"):
        r1, mapr = exp.loc[loss, "test_recall_at_1"], exp.loc[loss, "test_map_at_r"]
        assert re.search(rf"{loss} [\d.]+ [\d.-]+ {r1:.3f} {mapr:.3f} ", out), out
    assert "Friedman over 2 groups: p = " in out


def test_results_doc_script_publishes_the_retrieval_report(grid_store, tmp_path, monkeypatch):
    page = tmp_path / "docs" / "results-r.md"
    script = runpy.run_path(str(ROOT / "scripts" / "results_doc.py"), run_name="results_doc")
    argv = ["results_doc.py", "--store", str(grid_store.path), "--out", str(page)]
    monkeypatch.setattr(sys, "argv", argv)
    assert script["main"]() == 0
    text = page.read_text()
    assert "Recall@1" in text and "MAP@R" in text and "Run record (from the store)" in text
    for name in ("cd_diagram", "mean_rank", "accuracy_vs_noise"):
        assert (tmp_path / "docs" / "results-r" / f"{name}.png").exists()


def test_store_written_before_the_columns_reports_the_same(grid_store, frame, tmp_path):
    db = tmp_path / "old.duckdb"
    shutil.copy(grid_store.path, db)
    with duckdb.connect(str(db)) as con:
        for col in FLAT:
            con.execute(f"ALTER TABLE results DROP COLUMN {col}")
    old = ResultStore(db)
    gid = resolve_grid(grid_store)["grid"]
    board = leaderboard(final_frame(old, gid))
    pd.testing.assert_frame_equal(board, leaderboard(frame))
    # a write adds the columns (NULL in the old rows); the report still reads the values
    old.add_grid("other-0", "other", {})
    assert all(r["test_map_at_r"] is None for r in old.rows())
    assert {c for c, _ in RESULT_COLUMNS} >= set(FLAT)
    pd.testing.assert_frame_equal(leaderboard(final_frame(old, gid)), leaderboard(frame))


def test_loss_without_a_finite_epoch_ranks_last(grid_store, frame, tmp_path, monkeypatch):
    from losslab.bench import report as report_mod

    # every seed of multi_similarity under noise diverged before a finite epoch
    bad = (frame["loss"] == "multi_similarity") & (frame["corruption"] == "uniform:0.4")
    rows = frame.copy()
    rows.loc[bad, FLAT] = np.nan
    rows.loc[bad, "diverged"] = True
    monkeypatch.setattr(report_mod, "final_frame", lambda *_: rows)
    text = write_report(grid_store, tmp_path / "out").markdown.read_text()
    assert "multi_similarity in digits/uniform:0.4" in text
    assert "(counted as Recall@1 0 in the paired comparisons)" in " ".join(text.split())
    table = text.split("## digits: ")[1]
    row = next(line for line in table.splitlines() if line.startswith("| multi_similarity |"))
    assert row.count("diverged") == 3
