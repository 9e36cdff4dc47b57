import multiprocessing as mp

import pytest

from losslab.bench.store import ResultStore


def _writer(path: str, worker: int, n: int) -> None:
    store = ResultStore(path)
    for i in range(n):
        # keys overlap between workers: the same cell finished twice is stored once
        key = f"k{(worker * n // 2 + i):04d}"
        store.insert({"key": key, "dataset": "d", "loss": "ce", "seed": worker,
                      "metrics": {"acc": i}, "worker": str(worker)})  # fmt: skip


def test_row_roundtrip(tmp_path):
    s = ResultStore(tmp_path / "r.duckdb")
    row = {"key": "a", "dataset": "digits", "loss": "ce", "test_acc": 0.5,
           "curves": {"val_acc": [0.1, float("nan")]}, "loss_config": {"q": 0.7}}  # fmt: skip
    assert s.insert(row) is True
    assert s.insert({**row, "test_acc": 0.9}) is False  # first result wins, never duplicated
    (got,) = s.rows()
    assert got["test_acc"] == 0.5 and got["loss_config"] == {"q": 0.7}
    assert got["curves"]["val_acc"][0] == 0.1
    assert s.done_keys() == {"a"} and s.count() == 1
    with pytest.raises(ValueError, match="key"):
        s.insert({"dataset": "d", "loss": "ce"})


@pytest.mark.distributed
def test_concurrent_writers_lose_nothing(tmp_path):
    path = str(tmp_path / "r.duckdb")
    n, workers = 20, 3
    # fork keeps the test fast; the writers share nothing but the database file
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, w, n)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    expected = {f"k{(w * n // 2 + i):04d}" for w in range(workers) for i in range(n)}
    store = ResultStore(path)
    assert store.done_keys() == expected
    assert store.count() == len(expected)


def test_store_written_before_new_columns_is_read_and_extended(tmp_path):
    import duckdb

    from losslab.bench.store import RESULT_COLUMNS

    db = tmp_path / "old.duckdb"
    old = [(c, t) for c, t in RESULT_COLUMNS if c != "diverged_epoch"]
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE results (" + ", ".join(f"{c} {t}" for c, t in old) + ")")
    con.execute("INSERT INTO results (key, dataset, loss, diverged) VALUES ('a', 'd', 'ce', true)")
    con.close()
    store = ResultStore(db)
    (row,) = store.rows()  # read-only: the file is not changed
    assert row["diverged"] is True and row["diverged_epoch"] is None
    assert store.insert({"key": "b", "dataset": "d", "loss": "ce", "diverged_epoch": 3})
    assert {r["key"]: r["diverged_epoch"] for r in store.rows()} == {"a": None, "b": 3}
