import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import bench_standin  # noqa: E402

bench_standin.install()
# spawned pool workers copy sys.path; Ray workers inherit the environment
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(HERE), str(HERE.parents[1] / "src"), os.environ.get("PYTHONPATH", "")]
)


@pytest.fixture
def worker_init():
    return bench_standin.install


TINY = dict(
    name="tiny",
    datasets=["digits"],
    corruptions=["clean", "uniform:0.3"],
    losses=["ce", "gce"],
    loss_grids={"gce": [{"q": 0.7}]},
    seeds=[0, 1],
    lrs=[1e-2],
    model="mlp",
    train={"epochs": 2, "batch_size": 256, "patience": None},
)


@pytest.fixture
def tiny_grid():
    from losslab.bench.grid import GridSpec

    return GridSpec(**TINY)
