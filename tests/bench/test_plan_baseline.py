"""Stored results of unchanged cells never change with the engine: three tiny grids
(tuning, fixed and stateful groups; ldr-faithful; an lr grid with the ``auto`` model),
recorded by ``fixtures/record_plan_baseline.py``, are re-run and compared key by key and
field by field (grid membership included), with the CPU code paths pinned so that the
recording reproduces on any x86-64 machine. A change of the engine must keep them; a
deliberate change of a loss or metric they use re-records them (say so in the commit)."""

from __future__ import annotations

import json
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _canon(v: object) -> str:
    return json.dumps(v, sort_keys=True)


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
            assert _canon(got["rows"][key][field]) == _canon(value), (key, field)
