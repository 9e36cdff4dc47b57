"""Stored results of unchanged cells never change with the engine: three tiny grids
(tuning, fixed and stateful groups; ldr-faithful; an lr grid with the ``auto`` model),
recorded by ``fixtures/record_plan_baseline.py``, are re-run and compared key by key and
field by field (grid membership included), with the CPU code paths pinned so that the
recording reproduces on any x86-64 machine; metrics and curves added since the recording
are not compared. A change of the engine must keep them; a deliberate change of a loss or
metric they use re-records them (say so in the commit)."""

from __future__ import annotations

import json
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _canon(v: object) -> str:
    return json.dumps(v, sort_keys=True)


def _recorded_part(got: object, recorded: object) -> object:
    """``got`` restricted to the keys the recording has, at every depth: a metric or
    curve added to the engine later is new information, not a changed result."""
    if isinstance(got, dict) and isinstance(recorded, dict):
        return {k: _recorded_part(got.get(k, "<missing>"), v) for k, v in recorded.items()}
    return got


def test_tiny_grids_reproduce_the_recorded_results(tmp_path):
    import sys

    sys.path.insert(0, str(FIXTURES))
    try:
        import record_plan_baseline as rec
    finally:
        sys.path.remove(str(FIXTURES))
    expected = json.loads((FIXTURES / "plan_baseline.json").read_text())
    got = rec.record_pinned(tmp_path / "got.json")
    assert sorted(got["grids"]) == sorted(expected["grids"])
    for gid, g in expected["grids"].items():
        assert [list(m) for m in got["grids"][gid]["members"]] == g["members"], gid
    assert sorted(got["rows"]) == sorted(expected["rows"])
    for key, row in expected["rows"].items():
        for field, value in row.items():
            mine = _recorded_part(got["rows"][key][field], value)
            assert _canon(mine) == _canon(value), (key, field)
