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


# ------------------------------------------------------------------------ your own data


def _own_csv(path, flip_every: int = 4, shift: float = 0.0):
    """120 rows, 3 separable classes, a given noisy label flipped on every 4th row."""
    import numpy as np

    rng = np.random.default_rng(0)
    lines = ["a,b,label,noisy"]
    for i in range(120):
        k = i % 3
        a, b = rng.normal(size=2) * 0.3 + (k * 2.0 + shift, -k * 1.0)
        noisy = (k + 1) % 3 if i % flip_every == 0 else k
        lines.append(f"{a:.4f},{b:.4f},{k},{noisy}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_run_on_own_data_with_given_noisy_labels(tmp_path, monkeypatch):
    from losslab.bench.store import ResultStore

    monkeypatch.setenv("LOSSLAB_DATA", str(tmp_path / "cache"))
    csv, db = _own_csv(tmp_path / "mine.csv"), tmp_path / "r.duckdb"
    args = ["bench", "run", "--data", str(csv), "--noisy-column", "noisy", "-l", "ce",
            "--epochs", "2", "--lr", "0.01", "--store", str(db)]  # fmt: skip
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output
    rows = {r["corruption"]: r for r in ResultStore(db).rows()}
    # without --corruption: the data as it is, and with its given noisy labels
    assert set(rows) == {"clean", "given"}
    ident = rows["given"]["dataset"]
    assert ident.startswith("mine@") and rows["clean"]["dataset"] == ident
    assert rows["clean"]["actual_noise_rate"] == 0.0
    # the training rows (75 % of 120, validation included) carry every 4th label flipped
    assert 0.15 < rows["given"]["actual_noise_rate"] < 0.35
    assert rows["given"]["versions"]["device"] == "cpu"
    # changed data under the same name: new cells, the old results are not reused
    _own_csv(csv, shift=0.5)
    again = runner.invoke(main, args)
    assert again.exit_code == 0 and "2 cells run, 0 already stored" in " ".join(
        again.output.split()
    )
    assert len({r["dataset"] for r in ResultStore(db).rows()}) == 2
    # the same data registered from Python runs under its name with the grid API too
    from losslab.bench import GridSpec

    grid = GridSpec(datasets=["mine"], corruptions=["given"], losses=["ce"], seeds=[0])
    assert grid.datasets[0].startswith("mine@") and grid.datasets[0] != ident


def test_bad_own_data_is_one_line_per_problem(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSLAB_DATA", str(tmp_path / "cache"))
    bad = tmp_path / "bad.csv"
    bad.write_text("a,colour,label\n1,red,0\n2,blue,1\n")
    db = tmp_path / "r.duckdb"
    res = runner.invoke(main, ["bench", "run", "--data", str(bad),
                               "--data", str(tmp_path / "x.txt"),
                               "-l", "cee", "--store", str(db)])  # fmt: skip
    assert res.exit_code == 2 and "Traceback" not in res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith(f"bench run: --data {bad}: features expected numeric columns")
    assert "got 'colour'" in lines[0]
    assert "x.txt: data file expected a .npz, .csv or .parquet file" in lines[1]
    assert "losses expected registered loss names, got 'cee'" in lines[2]
    assert not db.exists() and not (tmp_path / "cache" / "user").exists()


def test_given_needs_given_labels_and_columns_need_data(tmp_path):
    res = runner.invoke(main, ["bench", "run", "-d", "digits", "--corruption", "given",
                               "--corruption", "uniform:2", "--corruption", "pair:-1",
                               "-l", "ce", "--noisy-column", "n", "--dry-run"])  # fmt: skip
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 4, lines  # every problem at once, not the first only
    assert "--noisy-column expected --data with a .csv or .parquet file, got none" in lines[0]
    assert sum("'uniform:2'" in line for line in lines) == 1
    assert sum("'pair:-1'" in line for line in lines) == 1
    assert any("'given' with 'digits', which has none" in line for line in lines)


def test_device_is_checked_and_kept_out_of_the_key(tmp_path):
    import torch

    from losslab.bench.grid import GridSpec

    if not torch.cuda.is_available():
        res = runner.invoke(main, ["bench", "run", "-d", "digits", "--corruption", "clean",
                                   "-l", "ce", "--device", "cuda", "--dry-run"])  # fmt: skip
        assert res.exit_code == 2
        assert res.stderr.strip().splitlines() == [
            "bench run: --device expected an available device, got 'cuda' (no CUDA device "
            f"here; torch {torch.__version__})"
        ]
    res = runner.invoke(main, ["bench", "run", "-d", "digits", "--corruption", "clean",
                               "-l", "ce", "--device", "gpu", "--dry-run"])  # fmt: skip
    assert res.exit_code == 2
    assert "--device expected cpu, cuda, cuda:N or mps, got 'gpu'" in res.stderr
    # a grid has no device: the same cells whatever the device of the run
    grid = GridSpec(datasets=["digits"], corruptions=["clean"], losses=["ce"], seeds=[0])
    cell = grid.cell("digits", "clean", "ce", {}, 0.01, 0)
    assert "device" not in cell.to_dict()["train"] and cell.train_config().device == "cpu"


def test_grid_files_cannot_set_the_device(tmp_path):
    g = tmp_path / "g.yaml"
    g.write_text("datasets: [digits]\ncorruptions: [clean]\nlosses: [ce]\nseeds: 1\ndevice: cuda\n")
    res = runner.invoke(main, ["bench", "run", "-c", str(g), "--dry-run"])
    assert res.exit_code == 2
    [line] = res.stderr.strip().splitlines()
    assert line.startswith(f"{g}: device expected a training option (optimizer, ")
    assert line.endswith(", got 'device'")
