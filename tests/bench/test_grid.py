import pytest

from losslab.bench.grid import (
    PRESETS,
    Cell,
    GridError,
    GridSpec,
    canonical_corruption,
    grid_from_file,
    grid_from_mapping,
    merge,
    preset,
    validate_grid,
)
from losslab.bench.plan import Plan, score
from losslab.bench.protocol import PROTOCOLS, TrainConfig, get_protocol


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
    cells = Plan.of(tiny_grid).finals({})
    again = Plan.of(GridSpec(**tiny_grid.to_dict())).finals({})
    assert [c.key for c in cells] == [c.key for c in again]
    assert len({c.key for c in cells}) == len(cells) == 2 * 2 * 2
    c = cells[0]
    assert Cell.from_dict(c.to_dict()).key == c.key
    # any field that changes the result changes the key
    d = c.to_dict()
    d["train"] = {**d["train"], "lr": 0.5}
    assert Cell.from_dict(d).key != c.key


def test_plan_tuning_then_finals_share_the_tune_seed_cell():
    g = GridSpec(datasets=["digits"], corruptions=["clean"], losses=["gce", "ce"],
                 seeds=[0, 1, 2], loss_grids={"gce": [{"q": 0.3}, {"q": 0.7}]},
                 lrs=[1e-3])  # fmt: skip
    plan = Plan.of(g)
    assert len(plan.tuning) == 2 and {c.seed for c in plan.tuning} == {0}
    assert len(plan.fixed) == 3 and {c.loss for c in plan.fixed} == {"ce"}
    finals = plan.finals({("digits", "clean", "gce"): ({"q": 0.7}, 1e-3)})
    assert len(finals) == 6
    assert finals[0].key in {c.key for c in plan.tuning}
    assert plan.counts == {"groups": 2, "tuned_groups": 1, "tuning": 2, "fixed": 3,
                           "selected": 2, "total": 7}  # fmt: skip
    with pytest.raises(ValueError, match="selected configuration"):
        plan.finals({})


def test_selection_ranks_diverged_candidates_last():
    g = GridSpec(datasets=["digits"], corruptions=["clean"], losses=["ce"], seeds=[0],
                 lrs=[0.01, 1.0])  # fmt: skip
    plan = Plan.of(g)
    low, high = plan.tuning
    rows = {
        low.key: {"val_acc": 0.5, "val_nll": 1.0, "diverged": False},
        # a better noisy-validation score from the epochs before it diverged
        high.key: {"val_acc": 0.9, "val_nll": 0.5, "diverged": True},
    }
    assert plan.select(rows) == {("digits", "clean", "ce"): ({}, 0.01)}
    assert score({"val_acc": None, "diverged": True}) < score({"val_acc": 0.1})


def test_presets_shape():
    demo = preset("demo")
    assert demo.datasets == ["digits", "vowel"]
    assert demo.corruptions == ["clean", "uniform:0.4", "class_dependent:0.3"]
    assert demo.losses == ["ce", "gce", "sce", "nce_rce", "ldr_kl", "aldr_kl"]
    assert len(demo.seeds) == 2 and len(demo.lrs) >= 2
    ldr = preset("ldr")
    assert len(ldr.corruptions) == 7 and len(ldr.seeds) == 2 and len(ldr.losses) == 23
    faithful = preset("ldr", protocol="ldr-faithful")
    assert faithful.model == "ldr_mlp" and faithful.lrs == [0.01]
    assert faithful.train["optimizer"] == "sgd" and faithful.train["shuffle"] is False
    assert faithful.train["milestones"] == [50, 75] and faithful.train["epochs"] == 100
    assert faithful.train["batch_size"] == 64 and faithful.train["weight_decay"] == 5e-3
    assert faithful.grid_id != ldr.grid_id
    with pytest.raises(ValueError, match="preset expected one of"):
        preset("nope")
    assert PRESETS["demo"]["lrs"] == [3e-3, 1e-2]  # the preset itself is not modified


def test_protocols_replace_string_comparisons():
    tuned, faithful = PROTOCOLS["tuned"], get_protocol("ldr-faithful")
    assert tuned.standardize and not faithful.standardize
    assert tuned.noise_kind("uniform") == "uniform"
    assert faithful.noise_kind("uniform") == "uniform_redraw"
    assert faithful.noise_kind("class_dependent") == "class_dependent"
    g = GridSpec(datasets=["digits"], corruptions=["clean"], losses=["ce"], seeds=[0],
                 protocol="ldr-faithful")  # fmt: skip
    assert g.lrs == [0.01] and g.model == "ldr_mlp" and g.train["epochs"] == 100
    (cell,) = Plan.of(g).fixed
    assert cell.standardize is False and cell.protocol == "ldr-faithful"
    with pytest.raises(ValueError, match="protocol expected one of"):
        get_protocol("fast")


def test_merge_keeps_base_for_none_and_merges_train():
    base = {"seeds": [0], "train": {"epochs": 3, "patience": 1}}
    out = merge(base, {"seeds": None, "train": {"epochs": 5}, "lrs": [0.1]})
    assert out == {"seeds": [0], "train": {"epochs": 5, "patience": 1}, "lrs": [0.1]}
    assert base["train"] == {"epochs": 3, "patience": 1}


def test_yaml_and_toml(tmp_path):
    y = tmp_path / "g.yaml"
    y.write_text(
        "datasets: [digits]\ncorruptions: [clean, 'uniform:0.2']\n"
        "losses:\n  ce: {}\n  gce: {q: [0.3, 0.7]}\nseeds: 2\nlr: [0.01]\nepochs: 3\n"
        "weight_decay: 1e-4\n"
    )
    g = grid_from_file(y)
    assert g.seeds == [0, 1] and g.configs("gce") == [{"q": 0.3}, {"q": 0.7}]
    assert g.train["epochs"] == 3 and g.name == "g" and g.train["weight_decay"] == 1e-4
    t = tmp_path / "g.toml"
    t.write_text('preset = "demo"\nseeds = [5]\n[train]\nepochs = 2\n')
    g2 = grid_from_file(t)
    assert g2.seeds == [5] and g2.train["epochs"] == 2 and g2.datasets == ["digits", "vowel"]
    assert g2.train["batch_size"] == 256  # the preset's, under the file's
    with pytest.raises(ValueError, match="keys expected grid keys"):
        grid_from_mapping({"datasets": ["digits"], "bogus": 1})
    with pytest.raises(ValueError, match="losses expected a value"):
        grid_from_mapping({"datasets": ["digits"]})


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"losses": ["ce", "not_a_loss"]}, "losses expected registered loss names, got 'not_a_"),
        ({"datasets": ["nodata"]}, "datasets expected catalogued dataset names, got 'nodata'"),
        ({"datasets": ["vowel"]}, "datasets expected fetched datasets, got 'vowel'"),
        ({"loss_grids": {"gce": [{"qq": 1}]}}, r"losses.gce\[0\] expected a valid gce config"),
    ],
)
def test_bad_grid_fails_before_training(tiny_grid, tmp_path, change, match, monkeypatch):
    monkeypatch.setenv("LOSSLAB_DATA", str(tmp_path / "empty-cache"))
    g = GridSpec(**{**tiny_grid.to_dict(), **change})
    import losslab.bench.backends as backends
    import losslab.bench.runner as runner

    monkeypatch.setattr(backends, "run_cell", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(GridError, match=match):
        runner.run_grid(g, tmp_path / "r.duckdb", backends.InProcessBackend())
    assert not (tmp_path / "r.duckdb").exists()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"seeds": []}, "seeds"),
        ({"seeds": [-1]}, "seeds"),
        ({"lrs": [-1.0]}, "lr"),
        ({"model": "resnet"}, "model"),
        ({"protocol": "x"}, "protocol"),
        ({"train": {"epochs": 0}}, "epochs expected a positive int"),
        ({"train": {"patience": "soon"}}, "patience expected null or a positive int"),
        ({"train": {"warmup": 3}}, "warmup"),
        ({"train": {"seed": 3}}, "train.seed"),
    ],
)
def test_bad_spec_values(kwargs, match):
    base = {"datasets": ["digits"], "corruptions": ["clean"], "losses": ["ce"], "seeds": [0]}
    with pytest.raises(GridError, match=match):
        GridSpec(**{**base, **kwargs})


def test_every_structural_problem_is_reported_at_once():
    with pytest.raises(GridError) as err:
        GridSpec(datasets=["digits"], corruptions=["uniform:2", "clean", "bogus:0.1"],
                 losses=["ce"], seeds=[0], model="vit", train={"epochs": 0})  # fmt: skip
    problems = err.value.problems
    assert len(problems) == 4, problems
    assert any("'uniform:2'" in p for p in problems) and any("'bogus:0.1'" in p for p in problems)


def test_train_config_checks_types():
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="patience expected null or a positive int, got 'soon'"):
        TrainConfig(patience="soon")  # type: ignore[arg-type]


def test_validate_ok(tiny_grid):
    validate_grid(tiny_grid)
