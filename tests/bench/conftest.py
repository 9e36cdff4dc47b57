import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import bench_helpers  # noqa: E402

# spawned pool workers and subprocesses import the helpers and the package from here
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(HERE), str(HERE.parents[1] / "src"), os.environ.get("PYTHONPATH", "")]
)


@pytest.fixture
def tiny_grid():
    from losslab.bench.grid import GridSpec

    return GridSpec(**bench_helpers.TINY)
