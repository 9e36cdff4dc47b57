"""``bench import``: an export loaded into a fresh store resumes the grid (nothing trains
again), importing twice changes nothing, and a conflicting result stops the import with
the store unchanged."""

from __future__ import annotations

import duckdb
import pytest
from typer.testing import CliRunner

from losslab.bench.cli import main
from losslab.bench.store import ResultStore, StoreError

runner = CliRunner()

RUN = ["bench", "run", "-d", "digits", "--corruption", "clean", "-l", "ce", "-l", "gce",
       "--seeds", "0,1", "--lr", "0.01", "--epochs", "1"]  # fmt: skip


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A finished grid exported: ce on 2 seeds; gce with 3 q on seed 0, its winner on seed 1
    (7 memberships: the winner is both a tuning and a final cell)."""
    tmp = tmp_path_factory.mktemp("export")
    db, out = tmp / "a.duckdb", tmp / "export"
    res = runner.invoke(main, [*RUN, "--store", str(db)])
    assert res.exit_code == 0, res.output
    assert "6 cells run" in _flat(res.output)
    res = runner.invoke(main, ["bench", "export", "--store", str(db), "--out", str(out)])
    assert res.exit_code == 0, res.output
    return db, out


def test_import_resumes_the_grid_without_training(tmp_path, exported):
    src, out = exported
    db = tmp_path / "b.duckdb"
    res = runner.invoke(main, ["bench", "import", str(out), "--store", str(db)])
    assert res.exit_code == 0, res.output
    assert "6 results imported, 0 already stored; 1 grids, 7 grid cells added" in _flat(res.output)
    a, b = ResultStore(src), ResultStore(db)
    assert b.rows() == a.rows()
    res = runner.invoke(main, [*RUN, "--store", str(db)])
    assert res.exit_code == 0, res.output
    assert "0 cells run, 6 already stored" in _flat(res.output)
    assert b.count() == 6

    # a second import adds nothing and duplicates nothing
    res = runner.invoke(main, ["bench", "import", str(out), "--store", str(db)])
    assert res.exit_code == 0, res.output
    assert "0 results imported, 6 already stored; 0 grids, 0 grid cells added" in _flat(res.output)
    assert b.count() == 6 and len(b.members(b.grids()[0]["grid"])) == 7


def test_import_into_a_store_with_other_results_merges(tmp_path, exported):
    _, out = exported
    db = tmp_path / "c.duckdb"
    other = ["bench", "run", "-d", "digits", "--corruption", "uniform:0.3", "-l", "ce",
             "--seeds", "1", "--lr", "0.01", "--epochs", "1", "--store", str(db)]  # fmt: skip
    assert runner.invoke(main, other).exit_code == 0
    counts = ResultStore(db).import_export(out)
    assert counts == {"added": 6, "skipped": 0, "grids": 1, "members": 7}
    assert ResultStore(db).count() == 7 and len(ResultStore(db).grids()) == 2


def test_conflicting_result_stops_the_import_unchanged(tmp_path, exported):
    _, out = exported
    db = tmp_path / "d.duckdb"
    ResultStore(db).import_export(out)
    before = ResultStore(db).rows()
    # the same keys with another test accuracy for one of them
    bad = tmp_path / "bad"
    bad.mkdir()
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT * REPLACE (CASE WHEN key = (SELECT min(key) FROM "
        f"'{out}/results.parquet') THEN test_acc + 0.5 ELSE test_acc END AS test_acc) "
        f"FROM '{out}/results.parquet') TO '{bad}/results.parquet' (FORMAT PARQUET)"
    )
    # plus a new grid that must not be added either
    con.execute(
        f"COPY (SELECT 'other-grid' AS grid, name, spec, created_at FROM "
        f"'{out}/grids.parquet') TO '{bad}/grids.parquet' (FORMAT PARQUET)"
    )
    con.close()
    res = runner.invoke(main, ["bench", "import", str(bad), "--store", str(db)])
    assert res.exit_code == 2
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith(f"bench import: '{bad}' expected results equal to the stored ones")
    assert "1 stored keys with other content" in line and "nothing imported" in line
    assert ResultStore(db).rows() == before and len(ResultStore(db).grids()) == 1


@pytest.mark.parametrize("what", ["missing", "empty", "file"])
def test_import_of_a_folder_that_is_not_an_export(tmp_path, what):
    src = tmp_path / "src"
    if what == "empty":
        src.mkdir()
    elif what == "file":
        src.write_text("x")
    got = {
        "missing": "no such folder",
        "empty": "no results.parquet in it",
        "file": "a regular file",
    }
    res = runner.invoke(main, ["bench", "import", str(src), "--store", str(tmp_path / "s.duckdb")])
    assert res.exit_code == 2
    assert res.stderr.strip() == (
        f"bench import: '{src}' expected a folder written by `losslab bench export` "
        f"(results.parquet, ...), got {got[what]}"
    )
    with pytest.raises(StoreError):
        ResultStore(tmp_path / "s2.duckdb").import_export(src)
