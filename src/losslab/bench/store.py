"""Result store: one embedded DuckDB file shared by every process of a grid.

DuckDB lets one process at a time open a file for writing, so every access of ours
holds an exclusive OS file lock (``filelock``) on ``<db>.lock`` for one short
transaction and closes the connection before releasing it. Results are keyed by the
cell key and written with ``INSERT ... ON CONFLICT DO NOTHING`` in one transaction: a
result is either fully stored or absent, and a cell finished twice is stored once. The
OS releases the lock of a killed process, so ``kill -9`` never wedges the store.

A program outside losslab that opens the file (a ``duckdb`` shell, even read-only)
blocks writers; they retry with backoff, say once on stderr who holds the file, and give
up with a :class:`StoreError` after ``timeout_s``. :meth:`ResultStore.export` writes a
Parquet snapshot that outside programs can read without blocking anything.

Cells are *claimed* with an expiring lease before they train (table ``claims``), so
several processes on one store (on one machine or several that share the filesystem)
split a grid instead of each training all of it; a claimer that dies stops renewing its
leases and its cells are retaken once they expire.

Readers (``status``, ``report``, ``export``) open the file read-only and never change
it, so a store in a read-only location can be read. Every fault of the file or its
location is one :class:`StoreError` line naming the path, what was expected and what
was found.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
from filelock import FileLock, Timeout

from losslab.bench.protocol import problem

__all__ = ["RESULT_COLUMNS", "ResultStore", "StoreError"]

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
    ("diverged_epoch", "INTEGER"),
    # the cell's configuration hash and its code fingerprint (whole and per part): a row
    # whose configuration is in a grid under another fingerprint is stale
    ("config_key", "VARCHAR"),
    ("fingerprint", "VARCHAR"),
    ("code", "VARCHAR"),
    ("test_worst_recall", "DOUBLE"),
    ("val_balanced_acc", "DOUBLE"),
    ("test_ece_ts", "DOUBLE"),
    ("test_nll_ts", "DOUBLE"),
    ("ts_temperature", "DOUBLE"),
    ("nc1", "DOUBLE"),
    ("nc2", "DOUBLE"),
    ("nc3", "DOUBLE"),
    ("nc4", "DOUBLE"),
    # retrieval rows (protocol task "retrieval"): Recall@k and MAP@R of unseen classes
    # (test), of the seen validation set (val), and training Recall@1 on clean labels
    ("test_recall_at_1", "DOUBLE"),
    ("test_recall_at_4", "DOUBLE"),
    ("test_map_at_r", "DOUBLE"),
    ("val_recall_at_1", "DOUBLE"),
    ("val_recall_at_4", "DOUBLE"),
    ("val_map_at_r", "DOUBLE"),
    ("train_clean_recall_at_1", "DOUBLE"),
]
_NAMES = [c for c, _ in RESULT_COLUMNS]
_JSON = {"loss_config", "config", "metrics", "curves", "reliability", "versions", "code"}
TABLES = ("results", "grid_cells", "grids")
#: what may differ between two runs of one cell: when and where it ran, and how fast
_NOT_COMPARED = {"wall_time_s", "worker", "finished_at", "versions"}

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS results (" + ", ".join(f"{c} {t}" for c, t in RESULT_COLUMNS) + ")",
    # which cells belong to which grid, and in which role (tune / final)
    "CREATE TABLE IF NOT EXISTS grid_cells (grid VARCHAR, key VARCHAR, role VARCHAR, "
    "dataset VARCHAR, corruption VARCHAR, loss VARCHAR, seed INTEGER, "
    "PRIMARY KEY (grid, key, role))",
    "CREATE TABLE IF NOT EXISTS grids (grid VARCHAR PRIMARY KEY, name VARCHAR, spec VARCHAR, "
    "created_at TIMESTAMP DEFAULT current_timestamp)",
    # a cell being trained: by whom, until when (epoch seconds) unless renewed
    "CREATE TABLE IF NOT EXISTS claims (key VARCHAR PRIMARY KEY, owner VARCHAR, expires DOUBLE)",
]


class StoreError(ValueError):
    """A result store that cannot be used: the file, its lock or its location."""


def claimer_id() -> str:
    """A new claimer's name: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _dead(owner: str) -> bool:
    """Whether a claimer on this machine has exited (its leases need not expire first)."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _dumps(v: Any) -> str:
    return json.dumps(v, sort_keys=True, default=_json_default, allow_nan=True)


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _holder(message: str) -> str:
    """'PID 123' (and the program) from DuckDB's lock-conflict message, if named."""
    head = message.split("Conflicting lock is held in", 1)
    if len(head) < 2:
        return "another program"
    return head[1].split(". ", 1)[0].strip()


class ResultStore:
    """A DuckDB result file plus its lock file. Cheap to construct and picklable (it
    holds only the path and timeouts), so every worker process makes its own.

    ``timeout_s``: how long an access waits for the lock (ours, or DuckDB's when an
    outside program holds the file open) before it fails.
    """

    def __init__(self, path: str | os.PathLike[str], timeout_s: float = 600.0):
        self.path = Path(path)
        self.timeout_s = float(timeout_s)
        self._schema_ok: tuple[int, int] | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self.path), self.timeout_s))

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    # ------------------------------------------------------------------ access

    def _fail(self, expected: str, got: str, path: Path | None = None) -> StoreError:
        return StoreError(problem("store", repr(str(path or self.path)), expected, got))

    def _check_location(self, write: bool) -> bool:
        """Raise on a store path that cannot work; return whether to take the file lock
        (a reader in a location it cannot write reads without it: no writer of ours can
        work there either)."""
        p = self.path
        for parent in p.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise self._fail("a path inside a directory", "a regular file", parent)
                break
        if p.is_dir():
            raise self._fail("a DuckDB result file", "a directory")
        if self.lock_path.is_dir():
            raise self._fail("a lock file", "a directory", self.lock_path)
        if not write:
            if not p.exists():
                raise self._fail(
                    "an existing result store",
                    "no such file (run `losslab bench run` to create it)",
                )
            if not os.access(p, os.R_OK):
                raise self._fail("a readable file", "a file without read permission")
            lock_ok = (
                os.access(self.lock_path, os.W_OK)
                if self.lock_path.exists()
                else os.access(p.parent, os.W_OK)
            )
            return lock_ok
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._fail(
                "a directory that can be created", exc.strerror or _first_line(exc), p.parent
            ) from None
        if not os.access(p.parent, os.W_OK | os.X_OK):
            raise self._fail(
                "a writable directory (for the store, its lock and its journal)",
                "a read-only directory",
                p.parent,
            )
        if p.exists() and not os.access(p, os.W_OK):
            raise self._fail("a writable file", "a read-only file")
        if self.lock_path.exists() and not os.access(self.lock_path, os.W_OK):
            raise self._fail("a writable lock file", "a read-only file", self.lock_path)
        return True

    @contextmanager
    def _lock(self, take: bool) -> Iterator[None]:
        if not take:
            yield
            return
        lock = FileLock(str(self.lock_path), timeout=self.timeout_s)
        try:
            lock.acquire()
        except Timeout:
            raise self._fail(
                f"its lock within {self.timeout_s:g} s",
                "it held by another losslab process",
                self.lock_path,
            ) from None
        except OSError as exc:
            raise self._fail(
                "a usable lock file", exc.strerror or _first_line(exc), self.lock_path
            ) from None
        try:
            yield
        finally:
            lock.release()

    def _open(self, write: bool) -> duckdb.DuckDBPyConnection:
        """Connect, retrying while another program holds DuckDB's own lock on the file."""
        deadline = time.monotonic() + self.timeout_s
        delay, told = 0.05, False
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=not write)
            except duckdb.Error as exc:
                msg = _first_line(exc)
                if "Could not set lock" not in msg:
                    # the path is already named; DuckDB's quoted copy of it is noise
                    found = re.sub(r'\s*"[^"]*"', "", msg).replace("IO Error: ", "")
                    raise self._fail("a DuckDB result file", found) from None
                holder = _holder(msg)
                if time.monotonic() >= deadline:
                    raise self._fail(
                        "no other program holding it open",
                        f"it held by {holder} for {self.timeout_s:g} s (close that connection; "
                        "read through `losslab bench export` instead)",
                    ) from None
                if not told and delay >= 0.8:
                    told = True
                    print(
                        f"store: {str(self.path)!r} is held open by {holder}; waiting up to "
                        f"{self.timeout_s:g} s (outside readers: use `losslab bench export`)",
                        file=sys.stderr,
                        flush=True,
                    )
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    @contextmanager
    def connect(self, write: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for one short transaction: exclusive and with the schema ensured
        (``write``), or read-only (never changes the file or its location)."""
        take_lock = self._check_location(write)
        with self._lock(take_lock):
            con = self._open(write)
            try:
                if write:
                    self._ensure_schema(con)
                else:
                    tables = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
                    if "results" not in tables:
                        raise self._fail(
                            "a losslab result store", "a DuckDB file without a results table"
                        )
                yield con
            except duckdb.Error as exc:
                what = "a readable and writable" if write else "a readable"
                raise self._fail(f"{what} DuckDB result file", _first_line(exc)) from None
            finally:
                con.close()

    def _ensure_schema(self, con: duckdb.DuckDBPyConnection) -> None:
        # once per file: the schema costs a third of a short connection
        st = self.path.stat()
        if self._schema_ok == (st.st_dev, st.st_ino):
            return
        for stmt in _SCHEMA:
            con.execute(stmt)
        # stores written before a column existed get it (NULL in old rows)
        for c in set(_NAMES) - self._columns(con):
            con.execute(f"ALTER TABLE results ADD COLUMN {c} {dict(RESULT_COLUMNS)[c]}")
        self._schema_ok = (st.st_dev, st.st_ino)

    # ------------------------------------------------------------------ writing

    def insert(self, row: Mapping[str, Any]) -> bool:
        """Store one finished cell (and drop its claim); ``False`` if already stored."""
        missing = {"key", "dataset", "loss"} - set(row)
        if missing:
            raise ValueError(
                problem(
                    "ResultStore.insert",
                    "row",
                    "the fields key, dataset, loss",
                    f"a row without {sorted(missing)}",
                )
            )
        cols = [c for c in _NAMES if c in row]
        values = [_dumps(row[c]) if c in _JSON else row[c] for c in cols]
        sql = (
            f"INSERT INTO results ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
            "ON CONFLICT (key) DO NOTHING RETURNING key"
        )
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            inserted = con.execute(sql, values).fetchall()
            con.execute("DELETE FROM claims WHERE key = ?", [row["key"]])
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

    def retire_members(self, grid_id: str, keep: Iterable[str]) -> int:
        """Drop the grid's members whose key is not in ``keep`` (cells of older code);
        their results stay stored but no longer count for the grid. Returns how many
        member keys were dropped."""
        keep = list(keep)
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            (n,) = con.execute(
                "SELECT count(DISTINCT key) FROM grid_cells WHERE grid = ? "
                "AND key NOT IN (SELECT unnest(?))",
                [grid_id, keep],
            ).fetchall()[0]
            con.execute(
                "DELETE FROM grid_cells WHERE grid = ? AND key NOT IN (SELECT unnest(?))",
                [grid_id, keep],
            )
            con.execute("COMMIT")
        return int(n)

    # ------------------------------------------------------------------ leases

    def claim(self, keys: Sequence[str], owner: str, lease_s: float, limit: int = 1) -> list[str]:
        """Claim up to ``limit`` of ``keys`` (in their order) that are neither stored nor
        under another live lease, for ``lease_s`` seconds; returns the claimed keys. A
        lease ends when it expires, or at once when its claimer ran on this machine and
        has exited."""
        if not keys or limit < 1:
            return []
        now = time.time()
        keys = list(keys)
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            con.execute("DELETE FROM claims WHERE expires < ?", [now])
            owners = [r[0] for r in con.execute("SELECT DISTINCT owner FROM claims").fetchall()]
            dead = [o for o in owners if _dead(o)]
            if dead:
                con.execute("DELETE FROM claims WHERE owner IN (SELECT unnest(?))", [dead])
            busy = {
                r[0]
                for r in con.execute(
                    "SELECT key FROM results WHERE key IN (SELECT unnest(?)) UNION "
                    "SELECT key FROM claims WHERE key IN (SELECT unnest(?))",
                    [keys, keys],
                ).fetchall()
            }
            free = [k for k in keys if k not in busy][:limit]
            if free:
                con.executemany(
                    "INSERT INTO claims VALUES (?, ?, ?)", [(k, owner, now + lease_s) for k in free]
                )
            con.execute("COMMIT")
        return free

    def renew(self, owner: str, keys: Iterable[str], lease_s: float) -> None:
        """Extend ``owner``'s leases on ``keys``."""
        keys = list(keys)
        if keys:
            with self.connect() as con:
                con.execute(
                    "UPDATE claims SET expires = ? WHERE owner = ? AND key IN (SELECT unnest(?))",
                    [time.time() + lease_s, owner, keys],
                )

    def release(self, owner: str) -> None:
        """Drop every lease of ``owner`` (its unfinished cells become free at once)."""
        with self.connect() as con:
            con.execute("DELETE FROM claims WHERE owner = ?", [owner])

    def claimed(self, keys: Iterable[str] | None = None) -> dict[str, str]:
        """Live leases: key -> owner."""
        with self.connect(write=False) as con:
            if not self._has_table(con, "claims"):
                return {}
            rows = con.execute(
                "SELECT key, owner FROM claims WHERE expires >= ?", [time.time()]
            ).fetchall()
        found = dict(rows)
        return found if keys is None else {k: found[k] for k in keys if k in found}

    # ------------------------------------------------------------------ reading

    @staticmethod
    def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
        return name in {r[0] for r in con.execute("SHOW TABLES").fetchall()}

    @staticmethod
    def _columns(con: duckdb.DuckDBPyConnection) -> set[str]:
        return {
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'results'"
            ).fetchall()
        }

    def done_keys(self) -> set[str]:
        with self.connect(write=False) as con:
            return {r[0] for r in con.execute("SELECT key FROM results").fetchall()}

    def count(self) -> int:
        with self.connect(write=False) as con:
            (n,) = con.execute("SELECT count(*) FROM results").fetchall()[0]
        return int(n)

    def rows(self, keys: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Stored results as dicts (JSON columns parsed), optionally only ``keys``;
        columns a store predates are ``None``."""
        with self.connect(write=False) as con:
            have = self._columns(con)
            cols = ", ".join(f"r.{n}" if n in have else f"NULL AS {n}" for n in _NAMES)
            if keys is None:
                cur = con.execute(f"SELECT {cols} FROM results r ORDER BY r.key")
            else:
                ks = sorted(set(keys))
                if not ks:
                    return []
                cur = con.execute(
                    f"SELECT {cols} FROM results r WHERE r.key IN (SELECT unnest(?)) "
                    "ORDER BY r.key",
                    [ks],
                )
            out = [dict(zip(_NAMES, r, strict=True)) for r in cur.fetchall()]
        for r in out:
            for c in _JSON:
                if isinstance(r.get(c), str):
                    r[c] = json.loads(r[c])
        return out

    def grids(self) -> list[dict[str, Any]]:
        """Registered grids, newest first, with their spec and stored member counts."""
        with self.connect(write=False) as con:
            rows = con.execute(
                "SELECT g.grid, g.name, g.created_at, g.spec, "
                "count(DISTINCT m.key) AS cells, count(DISTINCT r.key) AS done, "
                "count(DISTINCT CASE WHEN r.diverged THEN r.key END) AS diverged "
                "FROM grids g LEFT JOIN grid_cells m USING (grid) "
                "LEFT JOIN results r ON r.key = m.key "
                "GROUP BY g.grid, g.name, g.created_at, g.spec "
                "ORDER BY g.created_at DESC, g.grid"
            ).fetchall()
        names = ["grid", "name", "created_at", "spec", "cells", "done", "diverged"]
        out = [dict(zip(names, r, strict=True)) for r in rows]
        for g in out:
            g["spec"] = json.loads(g["spec"]) if g["spec"] else {}
        return out

    def members(self, grid_id: str, role: str | None = None) -> list[dict[str, Any]]:
        with self.connect(write=False) as con:
            sql = "SELECT grid, key, role, dataset, corruption, loss, seed FROM grid_cells "
            sql += "WHERE grid = ?" + (" AND role = ?" if role else "") + " ORDER BY key"
            rows = con.execute(sql, [grid_id, role] if role else [grid_id]).fetchall()
        names = ["grid", "key", "role", "dataset", "corruption", "loss", "seed"]
        return [dict(zip(names, r, strict=True)) for r in rows]

    def member_results(self, grid_id: str) -> list[dict[str, Any]]:
        """The grid's stored members, without their curves: key, configuration (dataset,
        corruption, loss, loss_config, lr, seed), config_key, fingerprint and code parts
        (``None`` in rows stored before fingerprints)."""
        names = ["key", "dataset", "corruption", "loss", "loss_config", "lr", "seed"]
        extra = ["config_key", "fingerprint", "code"]
        with self.connect(write=False) as con:
            have = self._columns(con)
            cols = [f"r.{c}" for c in names] + [
                f"r.{c}" if c in have else f"NULL AS {c}" for c in extra
            ]
            rows = con.execute(
                f"SELECT DISTINCT {', '.join(cols)} FROM results r "
                "JOIN grid_cells m ON m.key = r.key WHERE m.grid = ? ORDER BY r.key",
                [grid_id],
            ).fetchall()
        out = [dict(zip(names + extra, r, strict=True)) for r in rows]
        for r in out:
            for c in ("loss_config", "code"):
                if isinstance(r[c], str):
                    r[c] = json.loads(r[c])
        return out

    def run_record(self, keys: Sequence[str]) -> tuple[Any, Any, float, int]:
        """(first finish time, last finish time, summed cell seconds, cells) of ``keys``."""
        with self.connect(write=False) as con:
            row = con.execute(
                "SELECT min(finished_at), max(finished_at), sum(wall_time_s), count(*) "
                "FROM results WHERE key IN (SELECT unnest(?))",
                [list(keys)],
            ).fetchone()
        first, last, total, n = row if row is not None else (None, None, 0.0, 0)
        return first, last, float(total or 0.0), int(n)

    def import_export(self, folder: str | os.PathLike[str]) -> dict[str, int]:
        """Load a folder written by :meth:`export` into this store, in one transaction.

        Idempotent: a result whose key is already stored is skipped when its content
        (configuration, metrics, curves, code fingerprint; not wall time, worker, finish
        time or library versions) is equal, and the import fails without changing the
        store when it differs. Grids and memberships are added unless present. Returns
        counts: ``added``, ``skipped`` (results), ``grids``, ``members`` (added).

        Example (a finished grid committed as Parquet, resumed on another machine)::

            ResultStore("results/bench.duckdb").import_export("results/ldr-export")
        """
        src = Path(folder)
        where = ("bench import", repr(str(src)))
        expected = "a folder written by `losslab bench export` (results.parquet, ...)"
        if not src.is_dir():
            got = "a regular file" if src.exists() else "no such folder"
            raise StoreError(problem(*where, expected, got))
        files = {t: src / f"{t}.parquet" for t in TABLES}
        if not files["results"].is_file():
            raise StoreError(problem(*where, expected, "no results.parquet in it"))
        comparable = [c for c in _NAMES if c not in _NOT_COMPARED]
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                for t, f in files.items():
                    if f.is_file():
                        con.execute(
                            f"CREATE TEMP TABLE incoming_{t} AS SELECT * FROM read_parquet(?)",
                            [str(f)],
                        )
                have = {
                    r[0]
                    for r in con.execute(
                        "SELECT column_name FROM information_schema.columns "
                        "WHERE table_name = 'incoming_results'"
                    ).fetchall()
                }
                if "key" not in have:
                    raise StoreError(problem(*where, expected, "results without a key column"))
                (dupes,) = con.execute(
                    "SELECT count(*) - count(DISTINCT key) FROM incoming_results"
                ).fetchall()[0]
                if dupes:
                    raise StoreError(problem(*where, expected, f"{dupes} repeated result keys"))
                cols = [c for c in _NAMES if c in have]
                differ = " OR ".join(
                    f"i.{c} IS DISTINCT FROM r.{c}" for c in comparable if c in have and c != "key"
                )
                conflicts = [
                    r[0]
                    for r in con.execute(
                        f"SELECT i.key FROM incoming_results i JOIN results r USING (key) "
                        f"WHERE {differ or 'false'} ORDER BY i.key"
                    ).fetchall()
                ]
                if conflicts:
                    shown = ", ".join(conflicts[:3]) + (" ..." if len(conflicts) > 3 else "")
                    raise StoreError(
                        problem(
                            *where,
                            "results equal to the stored ones under the same key",
                            f"{len(conflicts)} stored keys with other content ({shown}); "
                            "nothing imported",
                        )
                    )
                (total,) = con.execute("SELECT count(*) FROM incoming_results").fetchall()[0]
                added = con.execute(
                    f"INSERT INTO results ({', '.join(cols)}) SELECT {', '.join(cols)} "
                    "FROM incoming_results ON CONFLICT (key) DO NOTHING RETURNING key"
                ).fetchall()
                counts = {"added": len(added), "skipped": int(total) - len(added)}
                for t, names in (
                    ("grids", "grid, name, spec, created_at"),
                    ("grid_cells", "grid, key, role, dataset, corruption, loss, seed"),
                ):
                    n = 0
                    if files[t].is_file():
                        n = len(
                            con.execute(
                                f"INSERT INTO {t} ({names}) SELECT {names} FROM incoming_{t} "
                                "ON CONFLICT DO NOTHING RETURNING 1"
                            ).fetchall()
                        )
                    counts["members" if t == "grid_cells" else t] = n
            except duckdb.Error as exc:
                con.execute("ROLLBACK")
                raise StoreError(problem(*where, expected, _first_line(exc))) from None
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        return counts

    def export(self, out_dir: str | os.PathLike[str]) -> list[Path]:
        """A read-only snapshot for outside programs: one Parquet file per table
        (``results``, ``grid_cells``, ``grids``) in ``out_dir``, each replaced atomically,
        written under a short read lock."""
        out = Path(out_dir)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._fail(
                "a directory for the export", exc.strerror or _first_line(exc), out
            ) from None
        if not os.access(out, os.W_OK):
            raise self._fail("a writable directory for the export", "a read-only directory", out)
        files = []
        with self.connect(write=False) as con:
            for table in TABLES:
                if not self._has_table(con, table):
                    continue
                dest = out / f"{table}.parquet"
                tmp = out / f".{table}.parquet.tmp{os.getpid()}"
                quoted = str(tmp).replace("'", "''")
                con.execute(f"COPY {table} TO '{quoted}' (FORMAT PARQUET)")
                os.replace(tmp, dest)
                files.append(dest)
        return files
