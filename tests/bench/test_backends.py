import pytest

from losslab.bench.backends import InProcessBackend, PoolBackend, RayBackend, make_backend
from losslab.bench.runner import run_grid
from losslab.bench.store import ResultStore

COMPARE = ("test_acc", "test_nll", "test_ece", "val_acc", "train_clean_acc", "curves", "metrics")


def _results(store: ResultStore) -> dict:
    return {r["key"]: {k: r[k] for k in COMPARE} for r in store.rows()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    from bench_helpers import TINY

    from losslab.bench.grid import GridSpec

    store = ResultStore(tmp_path_factory.mktemp("ref") / "inprocess.duckdb")
    run_grid(GridSpec(**TINY), store, InProcessBackend())
    return _results(store)


@pytest.mark.distributed
def test_pool_equals_inprocess(reference, tiny_grid, tmp_path):
    store = ResultStore(tmp_path / "pool.duckdb")
    run_grid(tiny_grid, store, PoolBackend(2))
    assert len(reference) == 8
    assert _results(store) == reference


@pytest.mark.distributed
@pytest.mark.slow  # starting Ray and its workers takes ~30-50 s on a busy 2-core machine
def test_ray_equals_inprocess(reference, tiny_grid, tmp_path):
    ray = pytest.importorskip("ray")
    store = ResultStore(tmp_path / "ray.duckdb")
    try:
        run_grid(tiny_grid, store, RayBackend(num_cpus=2))
    finally:
        ray.shutdown()
    assert _results(store) == reference


def test_make_backend():
    assert isinstance(make_backend("inprocess"), InProcessBackend)
    assert isinstance(make_backend("inprocess", workers=2), PoolBackend)
    assert isinstance(make_backend("ray", workers=2), RayBackend)
    with pytest.raises(ValueError, match="backend"):
        make_backend("dask")
    for bad in (0, -2, True):
        with pytest.raises(ValueError, match="workers expected a positive int"):
            PoolBackend(bad)
        with pytest.raises(ValueError, match="workers expected a positive int"):
            make_backend("inprocess", workers=bad)
