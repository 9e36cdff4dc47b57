import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import bench_helpers  # noqa: E402

bench_helpers.install()
# spawned pool workers copy sys.path; Ray workers inherit the environment
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(HERE), str(HERE.parents[1] / "src"), os.environ.get("PYTHONPATH", "")]
)


@pytest.fixture
def worker_init():
    return bench_helpers.install


@pytest.fixture
def tiny_grid():
    from losslab.bench.grid import GridSpec

    return GridSpec(**bench_helpers.TINY)
