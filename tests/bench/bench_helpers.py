"""``TINY``: a grid of 8 two-epoch cells on digits (2 corruptions x 2 losses x 2 seeds)."""

from __future__ import annotations

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


def mark_worker_up() -> None:
    """A pool ``worker_init``: leaves ``<pid>.up`` in ``$LOSSLAB_TEST_MARKS`` once the
    worker has started (its parent watch runs from then on)."""
    import os
    from pathlib import Path

    Path(os.environ["LOSSLAB_TEST_MARKS"], f"{os.getpid()}.up").touch()
