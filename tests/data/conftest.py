"""Fixtures of the data tests.

CI-safe datasets are built into a fresh temporary cache. Fetched datasets are looked up
in the real cache (``$LOSSLAB_DATA`` or ``~/.cache/losslab``); their tests skip with the
fetch command in the reason when they are absent, so the suite never needs a network.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def ci_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("losslab-data")
