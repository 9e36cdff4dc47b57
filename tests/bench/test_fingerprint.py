"""No stale cells: a cell's key hashes the code that decides its result, so changing a
loss's code makes its stored cells stale, ``bench status`` lists them and ``bench run``
trains them again under new keys (the old rows stay stored, unused)."""

from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from losslab import registry
from losslab.bench.cli import main
from losslab.bench.fingerprint import PARTS, changed_parts, code_parts, fingerprint
from losslab.bench.grid import GridSpec
from losslab.bench.store import ResultStore

runner = CliRunner()

_LOSS = '''
import torch
from losslab.kinds.multiclass import MulticlassInput
from losslab.registry import register


@register("stale_probe", family="toy", module="StaleProbeLoss", reference="a test fixture")
def stale_probe(inp: MulticlassInput, *, scale: float = 1.0) -> torch.Tensor:
    r"""Cross-entropy times a scale (a throwaway loss of the stale-cell test).

    $$ \\ell = s \\cdot (-\\log p_y) $$

    Args:
        scale: $s$.
    """
    logp = torch.log_softmax(inp.logits, dim=1)
    return {body}
'''


def _write_loss(folder, body: str) -> None:
    (folder / "stale_probe_mod.py").write_text(_LOSS.format(body=body))


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """Registers ``stale_probe`` from a file in ``tmp_path``; ``reload(body)`` re-registers
    it with another kernel body, as an edited and re-imported loss file would."""

    def load(body: str, folder=tmp_path) -> None:
        registry._REGISTRY.pop("stale_probe", None)
        sys.modules.pop("stale_probe_mod", None)
        _write_loss(folder, body)
        monkeypatch.syspath_prepend(str(folder))
        importlib.invalidate_caches()
        importlib.import_module("stale_probe_mod")

    load("-scale * logp.gather(1, inp.index[:, None]).squeeze(1)")
    yield load
    registry._REGISTRY.pop("stale_probe", None)
    sys.modules.pop("stale_probe_mod", None)


def test_fingerprint_is_the_same_in_another_process():
    code = (
        "import json; from losslab.bench.fingerprint import code_parts, fingerprint; "
        "print(json.dumps([fingerprint('aldr_kl', 'digits'), code_parts('aldr_kl', 'digits')]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    fp, parts = json.loads(out)
    assert fp == fingerprint("aldr_kl", "digits")
    assert parts == code_parts("aldr_kl", "digits")
    assert sorted(parts) == sorted(PARTS)


def test_parts_separate_losses_and_datasets():
    ce, gce = code_parts("ce", "digits"), code_parts("gce", "digits")
    # ce and gce live in different files; trainer, model and data code are shared
    assert ce["loss"] != gce["loss"]
    assert {p: ce[p] for p in PARTS if p != "loss"} == {p: gce[p] for p in PARTS if p != "loss"}
    assert code_parts("ce", "synthetic")["data"] != ce["data"]
    assert changed_parts(ce, "ce", "digits") == []
    assert changed_parts(None, "ce", "digits") == list(PARTS)


def test_key_hashes_configuration_and_code():
    grid = GridSpec(["digits"], ["clean"], ["ce", "gce"], [0], lrs=[0.01])
    ce = grid.cell("digits", "clean", "ce", {}, 0.01, 0)
    gce = grid.cell("digits", "clean", "gce", {"q": 0.7}, 0.01, 0)
    assert len({ce.key, ce.config_key, gce.key, gce.config_key}) == 4
    assert ce.fingerprint == fingerprint("ce", "digits")
    assert grid.cell("digits", "clean", "ce", {}, 0.01, 0).key == ce.key


def test_changed_loss_code_makes_cells_stale_and_run_trains_them(tmp_path, probe):
    db = tmp_path / "r.duckdb"
    run = ["bench", "run", "-d", "digits", "--corruption", "clean", "-l", "stale_probe",
           "--seeds", "1", "--lr", "0.01", "--epochs", "1", "--store", str(db)]  # fmt: skip
    status = ["bench", "status", "--store", str(db)]
    res = runner.invoke(main, run)
    assert res.exit_code == 0, res.output
    assert "1 cells run, 0 already stored" in " ".join(res.output.split())
    (first,) = ResultStore(db).rows()

    # the same code: nothing is stale and nothing trains
    res = runner.invoke(main, status)
    assert res.exit_code == 0 and "stale:" not in res.output
    assert "0 cells run, 1 already stored" in " ".join(runner.invoke(main, run).output.split())

    probe("-2.0 * scale * logp.gather(1, inp.index[:, None]).squeeze(1)")
    res = runner.invoke(main, status)
    assert res.exit_code == 0, res.output
    flat = " ".join(res.output.split())
    assert "stale: grid " in flat and "1 stored cells ran other code (loss code changed: 1)" in flat
    assert "digits/clean/stale_probe()/lr=0.01/s0" in flat
    assert "0/1" in flat  # the stale row does not count as done

    res = runner.invoke(main, run)
    assert res.exit_code == 0, res.output
    flat = " ".join(res.output.split())
    assert "1 stored cells ran other code" in flat and "1 cells run, 0 already stored" in flat
    rows = {r["key"]: r for r in ResultStore(db).rows()}
    assert len(rows) == 2 and first["key"] in rows  # the old row stays
    (new,) = [r for k, r in rows.items() if k != first["key"]]
    assert new["config_key"] == first["config_key"]
    assert new["fingerprint"] != first["fingerprint"]
    assert changed_parts(first["code"], "stale_probe", "digits") == ["loss"]
    # the doubled loss trains differently (a different stored result)
    assert new["curves"]["train_loss"] != first["curves"]["train_loss"]
    # the grid now holds the new row only: nothing stale, nothing left to train
    (g,) = ResultStore(db).grids()
    assert [m["key"] for m in ResultStore(db).members(g["grid"])] == [new["key"]] * len(
        ResultStore(db).members(g["grid"])
    )
    res = runner.invoke(main, status)
    assert "stale:" not in res.output and "1/1" in res.output
    assert "0 cells run, 1 already stored" in " ".join(runner.invoke(main, run).output.split())


def test_rows_from_before_fingerprints_are_stale(tmp_path):
    """A store written before fingerprints (key = configuration hash, no code columns)."""
    from losslab.bench.backends import InProcessBackend
    from losslab.bench.plan import Plan
    from losslab.bench.runner import run_grid, stale_rows

    db = ResultStore(tmp_path / "r.duckdb")
    grid = GridSpec(
        ["digits"], ["clean"], ["ce"], [0], lrs=[0.01], train={"epochs": 1}, model="mlp"
    )
    run_grid(grid, db, InProcessBackend())
    (row,) = db.rows()
    with db.connect() as con:  # rewrite the row as an old engine stored it
        con.execute(
            "UPDATE results SET key = config_key, fingerprint = NULL, code = NULL, "
            "config_key = NULL"
        )
        con.execute("UPDATE grid_cells SET key = ?", [row["config_key"]])
    (old,) = stale_rows(db, Plan.of(grid))
    assert old.key == row["config_key"] and old.changed == PARTS
    assert run_grid(grid, db, InProcessBackend()).ran == 1
    assert stale_rows(db, Plan.of(grid)) == []


def test_loss_source_text_not_location_decides(tmp_path, probe):
    before = code_parts("stale_probe", "digits")["loss"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe("-scale * logp.gather(1, inp.index[:, None]).squeeze(1)", elsewhere)
    assert code_parts("stale_probe", "digits")["loss"] == before


_HELPER_USER = '''
import torch
from losslab.functional._stale_probe_helper import shrink
from losslab.kinds.multiclass import MulticlassInput
from losslab.registry import register


@register("stale_probe", family="toy", module="StaleProbeLoss", reference="a test fixture")
def stale_probe(inp: MulticlassInput) -> torch.Tensor:
    r"""Cross-entropy through a helper module (a throwaway loss of the stale-cell test).

    $$ \\ell = -\\log p_y $$
    """
    logp = torch.log_softmax(shrink(inp.logits), dim=1)
    return -logp.gather(1, inp.index[:, None]).squeeze(1)
'''


def test_helper_module_of_a_loss_is_part_of_its_fingerprint(tmp_path, monkeypatch, probe):
    """A kernel that calls code of another losslab.functional module (as the fused
    autograd Functions in functional/_fused.py are called) is stale when that code
    changes, though the kernel's own file did not."""

    def load(helper_body: str) -> str:
        helper = tmp_path / "stale_probe_helper.py"
        helper.write_text(f"def shrink(x):\n    return {helper_body}\n")
        spec = importlib.util.spec_from_file_location(
            "losslab.functional._stale_probe_helper", helper
        )
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, spec.name, module)
        spec.loader.exec_module(module)
        registry._REGISTRY.pop("stale_probe", None)
        sys.modules.pop("stale_probe_mod", None)
        (tmp_path / "stale_probe_mod.py").write_text(_HELPER_USER)
        importlib.invalidate_caches()
        importlib.import_module("stale_probe_mod")
        return code_parts("stale_probe", "digits")["loss"]

    before = load("x")
    assert load("x") == before
    assert load("x / 2") != before
