"""Result store: one embedded DuckDB file shared by every process of a grid.

DuckDB lets only one process open a database file for writing, so every access holds
an exclusive OS file lock (``filelock``) on ``<db>.lock`` for the length of one short
transaction and closes the connection before releasing it. Results are keyed by the
cell key and written with ``INSERT ... ON CONFLICT DO NOTHING`` in one transaction: a
result is either fully stored or absent (a process killed mid-write leaves nothing that
a re-run would duplicate), and two processes finishing the same cell store it once.
The OS releases the lock of a killed process, so ``kill -9`` never wedges the store.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
from filelock import FileLock

__all__ = ["RESULT_COLUMNS", "ResultStore"]

# (name, DuckDB type); JSON payloads are stored as text to stay readable by any client.
RESULT_COLUMNS: list[tuple[str, str]] = [
    ("key", "VARCHAR PRIMARY KEY"),
    ("dataset", "VARCHAR"),
    ("corruption", "VARCHAR"),
    ("noise_kind", "VARCHAR"),
    ("noise_rate", "DOUBLE"),
    ("loss", "VARCHAR"),
    ("loss_config", "VARCHAR"),
    ("model", "VARCHAR"),
    ("seed", "INTEGER"),
    ("lr", "DOUBLE"),
    ("protocol", "VARCHAR"),
    ("test_acc", "DOUBLE"),
    ("test_top5", "DOUBLE"),
    ("test_balanced_acc", "DOUBLE"),
    ("test_macro_f1", "DOUBLE"),
    ("test_nll", "DOUBLE"),
    ("test_ece", "DOUBLE"),
    ("val_acc", "DOUBLE"),
    ("val_nll", "DOUBLE"),
    ("train_clean_acc", "DOUBLE"),
    ("train_noisy_acc", "DOUBLE"),
    ("actual_noise_rate", "DOUBLE"),
    ("epochs_run", "INTEGER"),
    ("best_epoch", "INTEGER"),
    ("diverged", "BOOLEAN"),
    ("wall_time_s", "DOUBLE"),
    ("config", "VARCHAR"),
    ("metrics", "VARCHAR"),
    ("curves", "VARCHAR"),
    ("reliability", "VARCHAR"),
    ("versions", "VARCHAR"),
    ("worker", "VARCHAR"),
    ("finished_at", "TIMESTAMP"),
]
_NAMES = [c for c, _ in RESULT_COLUMNS]
_JSON = {"loss_config", "config", "metrics", "curves", "reliability", "versions"}

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS results (" + ", ".join(f"{c} {t}" for c, t in RESULT_COLUMNS) + ")",
    # which cells belong to which grid, and in which role (tune / final)
    "CREATE TABLE IF NOT EXISTS grid_cells (grid VARCHAR, key VARCHAR, role VARCHAR, "
    "dataset VARCHAR, corruption VARCHAR, loss VARCHAR, seed INTEGER, "
    "PRIMARY KEY (grid, key, role))",
    "CREATE TABLE IF NOT EXISTS grids (grid VARCHAR PRIMARY KEY, name VARCHAR, spec VARCHAR, "
    "created_at TIMESTAMP DEFAULT current_timestamp)",
]


def _dumps(v: Any) -> str:
    return json.dumps(v, sort_keys=True, default=_json_default, allow_nan=True)


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


class ResultStore:
    """A DuckDB result file plus its lock file. Cheap to construct and picklable (it
    holds only the path), so every worker process makes its own."""

    def __init__(self, path: str | os.PathLike[str], timeout_s: float = 600.0):
        self.path = Path(path)
        self.timeout_s = timeout_s
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self.path), self.timeout_s))

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """An exclusive connection (schema ensured); keep the block short."""
        with FileLock(str(self.path) + ".lock", timeout=self.timeout_s):
            con = duckdb.connect(str(self.path))
            try:
                for stmt in _SCHEMA:
                    con.execute(stmt)
                yield con
            finally:
                con.close()

    # ------------------------------------------------------------------ writing

    def insert(self, row: Mapping[str, Any]) -> bool:
        """Store one finished cell; ``False`` if its key was already stored."""
        missing = {"key", "dataset", "loss"} - set(row)
        if missing:
            raise ValueError(f"row: missing fields {sorted(missing)}")
        cols = [c for c in _NAMES if c in row]
        values = [_dumps(row[c]) if c in _JSON else row[c] for c in cols]
        sql = (
            f"INSERT INTO results ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
            "ON CONFLICT (key) DO NOTHING RETURNING key"
        )
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            inserted = con.execute(sql, values).fetchall()
            con.execute("COMMIT")
        return bool(inserted)

    def add_grid(self, grid_id: str, name: str, spec: Mapping[str, Any]) -> None:
        with self.connect() as con:
            con.execute(
                "INSERT INTO grids (grid, name, spec) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                [grid_id, name, _dumps(spec)],
            )

    def add_members(self, grid_id: str, cells: Iterable[Any], role: str) -> None:
        rows = [(grid_id, c.key, role, c.dataset, c.corruption, c.loss, c.seed) for c in cells]
        if not rows:
            return
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            con.executemany(
                "INSERT INTO grid_cells VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", rows
            )
            con.execute("COMMIT")

    # ------------------------------------------------------------------ reading

    def done_keys(self, keys: Iterable[str] | None = None) -> set[str]:
        with self.connect() as con:
            found = {r[0] for r in con.execute("SELECT key FROM results").fetchall()}
        return found if keys is None else found & set(keys)

    def count(self) -> int:
        with self.connect() as con:
            (n,) = con.execute("SELECT count(*) FROM results").fetchall()[0]
        return int(n)

    def rows(self, keys: Iterable[str] | None = None, *, parse_json: bool = True) -> list[dict]:
        """Stored results as dicts (JSON columns parsed), optionally only ``keys``."""
        with self.connect() as con:
            if keys is None:
                cur = con.execute(f"SELECT {', '.join(_NAMES)} FROM results ORDER BY key")
            else:
                ks = sorted(set(keys))
                if not ks:
                    return []
                con.execute("CREATE TEMP TABLE want (key VARCHAR)")
                con.executemany("INSERT INTO want VALUES (?)", [(k,) for k in ks])
                cur = con.execute(
                    f"SELECT {', '.join('r.' + n for n in _NAMES)} FROM results r "
                    "JOIN want USING (key) ORDER BY key"
                )
            out = [dict(zip(_NAMES, r, strict=True)) for r in cur.fetchall()]
        if parse_json:
            for r in out:
                for c in _JSON:
                    if isinstance(r.get(c), str):
                        r[c] = json.loads(r[c])
        return out

    def grids(self) -> list[dict[str, Any]]:
        """Registered grids, newest first, with their cell counts."""
        with self.connect() as con:
            rows = con.execute(
                "SELECT g.grid, g.name, g.created_at, "
                "count(DISTINCT m.key) AS cells, count(DISTINCT r.key) AS done "
                "FROM grids g LEFT JOIN grid_cells m USING (grid) "
                "LEFT JOIN results r ON r.key = m.key "
                "GROUP BY g.grid, g.name, g.created_at ORDER BY g.created_at DESC, g.grid"
            ).fetchall()
        return [dict(zip(["grid", "name", "created_at", "cells", "done"], r, strict=True))
                for r in rows]  # fmt: skip

    def members(self, grid_id: str, role: str | None = None) -> list[dict[str, Any]]:
        with self.connect() as con:
            sql = "SELECT grid, key, role, dataset, corruption, loss, seed FROM grid_cells "
            sql += "WHERE grid = ?" + (" AND role = ?" if role else "") + " ORDER BY key"
            rows = con.execute(sql, [grid_id, role] if role else [grid_id]).fetchall()
        names = ["grid", "key", "role", "dataset", "corruption", "loss", "seed"]
        return [dict(zip(names, r, strict=True)) for r in rows]
