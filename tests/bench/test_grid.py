import pytest

from losslab.bench.grid import (
    Cell,
    GridSpec,
    canonical_corruption,
    count_cells,
    final_cells,
    grid_from_file,
    grid_from_mapping,
    preset,
    tuning_cells,
    validate_grid,
)
from losslab.bench.store import ResultStore


def test_canonical_corruption():
    assert canonical_corruption("Uniform:0.40") == "uniform:0.4"
    assert canonical_corruption("class-dependent:0.3") == "class_dependent:0.3"
    assert canonical_corruption("none") == "clean"
    assert canonical_corruption("long_tail:100") == "long_tail:100"
    with pytest.raises(ValueError, match="corruption"):
        canonical_corruption("uniform:abc")
    with pytest.raises(ValueError, match="rate"):
        GridSpec(datasets=["digits"], corruptions=["uniform:1.7"], losses=["ce"], seeds=[0])


def test_keys_deterministic_and_distinct(tiny_grid):
    cells = final_cells(tiny_grid, {})
    again = final_cells(GridSpec(**tiny_grid.to_dict()), {})
    assert [c.key for c in cells] == [c.key for c in again]
    assert len({c.key for c in cells}) == len(cells) == 2 * 2 * 2
    c = cells[0]
    assert Cell.from_dict(c.to_dict()).key == c.key
    # any field that changes the result changes the key
    d = c.to_dict()
    d["train"] = {**d["train"], "lr": 0.5}
    assert Cell.from_dict(d).key != c.key


def test_tuning_then_finals_share_the_tune_seed_cell():
    g = GridSpec(datasets=["digits"], corruptions=["clean"], losses=["gce"], seeds=[0, 1, 2],
                 loss_grids={"gce": [{"q": 0.3}, {"q": 0.7}]}, lrs=[1e-3, 1e-2])  # fmt: skip
    tune = tuning_cells(g)
    assert len(tune) == 4 and {c.seed for c in tune} == {0}
    finals = final_cells(g, {("digits", "clean", "gce"): ({"q": 0.7}, 1e-2)})
    assert len(finals) == 3
    assert finals[0].key in {c.key for c in tune}
    assert count_cells(g) == 4 + 2


def test_presets_shape():
    demo = preset("demo")
    assert demo.datasets == ["digits", "vowel"]
    assert demo.corruptions == ["clean", "uniform:0.4", "class_dependent:0.3"]
    assert demo.losses == ["ce", "gce", "sce", "nce_rce", "ldr_kl", "aldr_kl"]
    assert len(demo.seeds) == 2 and len(demo.lrs) >= 2
    ldr = preset("ldr")
    assert len(ldr.corruptions) == 7 and len(ldr.seeds) == 3 and len(ldr.losses) == 23
    faithful = preset("ldr", protocol="ldr-faithful")
    assert faithful.model == "ldr_mlp"
    assert faithful.train["optimizer"] == "sgd" and faithful.train["shuffle"] is False
    assert faithful.train["milestones"] == [50, 75] and faithful.train["epochs"] == 100
    assert faithful.train["batch_size"] == 64 and faithful.train["weight_decay"] == 5e-3
    assert faithful.grid_id != ldr.grid_id
    with pytest.raises(ValueError, match="preset"):
        preset("nope")


def test_yaml_and_toml(tmp_path):
    y = tmp_path / "g.yaml"
    y.write_text(
        "datasets: [digits]\ncorruptions: [clean, 'uniform:0.2']\n"
        "losses:\n  ce: {}\n  gce: {q: [0.3, 0.7]}\nseeds: 2\nlr: [0.01]\nepochs: 3\n"
    )
    g = grid_from_file(y)
    assert g.seeds == [0, 1] and g.configs("gce") == [{"q": 0.3}, {"q": 0.7}]
    assert g.train["epochs"] == 3 and g.name == "g"
    t = tmp_path / "g.toml"
    t.write_text('preset = "demo"\nseeds = [5]\n[train]\nepochs = 2\n')
    g2 = grid_from_file(t)
    assert g2.seeds == [5] and g2.train["epochs"] == 2 and g2.datasets == ["digits", "vowel"]
    with pytest.raises(ValueError, match="unknown keys"):
        grid_from_mapping({"datasets": ["digits"], "bogus": 1})
    with pytest.raises(ValueError, match="missing keys"):
        grid_from_mapping({"datasets": ["digits"]})


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"losses": ["ce", "not_a_loss"]}, "loss 'not_a_loss' is unknown"),
        ({"datasets": ["nodata"]}, "dataset 'nodata' is unknown"),
        ({"datasets": ["unfetched"]}, "dataset 'unfetched' is not available"),
        ({"loss_grids": {"gce": [{"qq": 1}]}}, "loss 'gce' with config"),
    ],
)
def test_bad_grid_fails_before_training(tiny_grid, tmp_path, change, match, monkeypatch):
    if change.get("datasets") == ["unfetched"]:
        import losslab.data as data

        def load(name, **kw):
            if name == "unfetched":
                raise data.DataNotAvailableError("run `losslab data fetch unfetched`")
            return real(name, **kw)

        real = data.load_dataset
        infos = [*data.list_datasets(), "unfetched"]
        monkeypatch.setattr(data, "load_dataset", load)
        monkeypatch.setattr(data, "list_datasets", lambda: infos)
    g = GridSpec(**{**tiny_grid.to_dict(), **change})
    import losslab.bench.runner as runner

    monkeypatch.setattr(runner, "run_cell", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(ValueError, match=match):
        runner.run_grid(g, tmp_path / "r.duckdb")
    assert not (tmp_path / "r.duckdb").exists() or ResultStore(tmp_path / "r.duckdb").count() == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"seeds": []}, "seeds"),
        ({"lrs": [-1.0]}, "lrs"),
        ({"model": "resnet"}, "model"),
        ({"protocol": "x"}, "protocol"),
        ({"train": {"epochs": 0}}, "epochs"),
        ({"train": {"warmup": 3}}, "train"),
    ],
)
def test_bad_spec_values(kwargs, match):
    base = {"datasets": ["digits"], "corruptions": ["clean"], "losses": ["ce"], "seeds": [0]}
    with pytest.raises((ValueError, TypeError), match=match):
        GridSpec(**{**base, **kwargs})


def test_validate_ok(tiny_grid):
    validate_grid(tiny_grid)
