import pytest
from typer.testing import CliRunner

from losslab.bench.cli import main

runner = CliRunner()


def test_unknown_loss_fails_before_training(tmp_path):
    db = tmp_path / "r.duckdb"
    res = runner.invoke(main, ["bench", "run", "-d", "digits", "--corruption", "clean",
                               "-l", "ce", "-l", "cee", "--store", str(db)])  # fmt: skip
    assert res.exit_code == 2
    assert res.stderr.strip() == (
        "bench run: losses expected registered loss names, got 'cee' (did you mean 'ce'?)"
    )
    assert not db.exists()


def test_bad_rate_and_unknown_dataset(tmp_path):
    res = runner.invoke(main, ["bench", "run", "-d", "digitz", "--corruption", "uniform:0.2",
                               "-l", "ce", "--store", str(tmp_path / "r.duckdb")])  # fmt: skip
    assert res.exit_code == 2
    assert "datasets expected catalogued dataset names, got 'digitz'" in res.stderr
    res = runner.invoke(main, ["bench", "run", "-d", "digits", "--corruption", "uniform:2",
                               "-l", "ce", "--store", str(tmp_path / "r.duckdb")])  # fmt: skip
    assert res.exit_code == 2 and "rate expected a noise rate in [0, 1]" in res.stderr


def test_dry_run_counts(tmp_path):
    res = runner.invoke(main, ["bench", "run", "-d", "digits", "--corruption", "clean",
                               "-l", "ce", "-l", "gce", "--lr", "0.01", "--lr", "0.1",
                               "--seeds", "0,1,2", "--dry-run",
                               "--store", str(tmp_path / "r.duckdb")])  # fmt: skip
    assert res.exit_code == 0, res.output
    # ce: 2 lrs tuned on seed 0 + 2 more seeds; gce: 3 q x 2 lrs + 2 more seeds
    assert "12 cells (8 tuning, 0 untuned finals, 4 finals after selection)" in " ".join(
        res.output.split()
    )
    assert not (tmp_path / "r.duckdb").exists()


def test_run_status_report(tmp_path):
    db, out = tmp_path / "r.duckdb", tmp_path / "rep"
    tiny = tmp_path / "g.yaml"
    tiny.write_text(
        "datasets: [digits]\ncorruptions: [clean, 'uniform:0.3']\n"
        "losses: {ce: {}, gce: {q: 0.7}}\nseeds: 2\nlr: 0.01\nepochs: 2\nbatch_size: 256\n"
    )
    args = ["bench", "run", "-c", str(tiny), "--store", str(db)]
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output
    flat = " ".join(res.output.split())
    assert "leaderboard" in flat and "8 cells run" in flat
    again = runner.invoke(main, args)
    assert again.exit_code == 0
    assert "0 cells run, 8 already stored" in " ".join(again.output.split())
    res = runner.invoke(main, ["bench", "status", "--store", str(db)])
    assert res.exit_code == 0 and "8/8" in res.output
    res = runner.invoke(main, ["report", "--store", str(db), "--out", str(out)])
    assert res.exit_code == 0, res.output
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 5 and "Leaderboard" in page
    md = (out / "report.md").read_text()
    assert "Clean-label training accuracy" in md and "| gce |" in md


def test_build_grid_seeds_and_conflicts():
    import pytest

    from losslab.bench.cli import build_grid

    g = build_grid(datasets=["digits"], corruptions=["clean"], losses=["ce"], seeds="5,")
    assert g.seeds == [5]
    assert build_grid(preset="demo", datasets=["digits"], seeds="3").seeds == [0, 1, 2]
    with pytest.raises(ValueError, match="--seeds"):
        build_grid(preset="demo", datasets=["digits"], seeds="0")
    with pytest.raises(ValueError) as err:
        build_grid(preset="demo", config="x.yaml")
    assert str(err.value).splitlines() == [
        "bench run: --preset and --config expected one of them, got both",
        "x.yaml: grid file expected a .yaml, .yml or .toml file, got no such file",
    ]
    with pytest.raises(ValueError) as err:
        build_grid(losses=["ce"])
    assert str(err.value).splitlines() == [
        "bench run: --dataset expected at least one value (or --preset or --config), got none",
        "bench run: --corruption expected at least one value (or --preset or --config), got none",
    ]


def test_results_page_publishes_finished_grids_only(tmp_path):
    import duckdb

    from losslab.bench.report import write_results_page

    db = tmp_path / "r.duckdb"
    tiny = tmp_path / "g.yaml"
    tiny.write_text(
        "datasets: [digits]\ncorruptions: [clean]\nlosses: {ce: {}}\nseeds: 2\nlr: 0.01\n"
        "epochs: 1\nbatch_size: 256\n"
    )
    res = runner.invoke(main, ["bench", "run", "-c", str(tiny), "--store", str(db)])
    assert res.exit_code == 0, res.output
    page = write_results_page(db, tmp_path / "docs" / "results-x.md", note="Command: test.")
    text = page.read_text()
    assert text.startswith("# losslab benchmark report")
    assert "Run record (from the store): 2 cells" in text and "Command: test." in text
    assert (
        "](results-x/mean_rank.png)" in text
        and (tmp_path / "docs/results-x/mean_rank.png").exists()
    )
    # one cell lost: the page is refused, naming the progress
    con = duckdb.connect(str(db))
    con.execute("DELETE FROM results WHERE key = (SELECT min(key) FROM results)")
    con.close()
    with pytest.raises(ValueError, match="every cell finished, got 1/2 cells done"):
        write_results_page(db, tmp_path / "docs" / "results-y.md")
    assert not (tmp_path / "docs" / "results-y.md").exists()
