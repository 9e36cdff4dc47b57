"""2 CPU processes over gloo: the synced stateful metrics equal the full-batch values."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from losslab.metrics import (
    AdaptiveECE,
    CalibrationMetrics,
    adaptive_ece,
    brier_score,
    classwise_ece,
    ece,
    mce,
    nll,
    smooth_ece,
)

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(101, 5, generator=g, dtype=torch.float64) * 3
    return z, torch.randint(5, (101,), generator=g)


def _worker(rank: int, port: int) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        z, y = _data()
        # Uneven shards in several batches per rank: rank 0 gets 70 samples, rank 1 31.
        mine = slice(0, 70) if rank == 0 else slice(70, 101)
        zs, ys = z[mine], y[mine]
        m, a = CalibrationMetrics(5), AdaptiveECE()
        for i in range(0, len(ys), 16):
            m.update(zs[i : i + 16], ys[i : i + 16])
            a.update(zs[i : i + 16], ys[i : i + 16])
        local_n = float(m.count)
        got = m.synced().compute()
        assert float(m.count) == local_n  # the local state is left as it was
        want = {
            "ece": ece(z, y),
            "mce": mce(z, y),
            "classwise_ece": classwise_ece(z, y),
            "smooth_ece": smooth_ece(z, y),
            "brier": brier_score(z, y),
            "nll": nll(z, y),
            "accuracy": float((z.argmax(1) == y).double().mean()),
            "n": 101.0,
        }
        for key, value in want.items():
            torch.testing.assert_close(got[key], value, rtol=1e-12, atol=1e-15, msg=key)
        synced = a.synced()
        assert len(synced) == 101
        torch.testing.assert_close(synced.compute(), adaptive_ece(z, y), rtol=1e-12, atol=0)
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
def test_two_processes_equal_the_full_batch():
    mp.spawn(_worker, args=(_free_port(),), nprocs=WORLD, join=True)
