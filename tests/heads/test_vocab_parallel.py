"""2 CPU processes over gloo: vocab-parallel head == single-process head (value and grads)."""

from __future__ import annotations

import itertools
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from losslab.heads import linear_cross_entropy
from losslab.heads.vocab_parallel import vocab_parallel_linear_cross_entropy, vocab_slice

WORLD = 2
CASES = [
    dict(reduction=red, label_smoothing=ls, z_loss=zl, softcap=cap, bias=bias)
    for red in ("mean", "sum", "none")
    for ls, zl, cap, bias in [
        (0.0, 0.0, None, False),
        (0.1, 0.0, None, True),
        (0.0, 1e-2, 4.0, False),
        (0.1, 1e-2, 4.0, True),
    ]
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _grads(fn, h, w, b, y, go, **kw):
    h = h.clone().requires_grad_()
    w = w.clone().requires_grad_()
    b = None if b is None else b.clone().requires_grad_()
    loss = fn(h, w, y, b)
    loss.backward(go)
    return loss.detach(), h.grad, w.grad, None if b is None else b.grad


def _worker(rank: int, port: int) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        n, d, v = 29, 8, 37  # V odd: uneven slices 19 + 18
        start, stop = vocab_slice(v, rank, WORLD)
        for i, case in enumerate(CASES):
            g = torch.Generator().manual_seed(i)
            h = torch.randn(n, d, generator=g, dtype=torch.float64) * 2
            w = torch.randn(v, d, generator=g, dtype=torch.float64)
            b = torch.randn(v, generator=g, dtype=torch.float64) if case["bias"] else None
            y = torch.randint(0, v, (n,), generator=g)
            y[:5] = -100
            red = case["reduction"]
            go = (
                torch.randn(n, generator=g, dtype=torch.float64)
                if red == "none"
                else torch.tensor(1.3, dtype=torch.float64)
            )
            kw = {k: case[k] for k in ("reduction", "label_smoothing", "z_loss", "softcap")}

            def single(h, w, y, b, kw=kw):
                return linear_cross_entropy(h, w, y, bias=b, chunk_size=7, **kw)

            def parallel(h, w_s, y, b_s, kw=kw, start=start, v=v):
                return vocab_parallel_linear_cross_entropy(
                    h, w_s, y, bias=b_s, vocab_start=start, vocab_size=v, chunk_size=7, **kw
                )

            ref = _grads(single, h, w, b, y, go)
            got = _grads(parallel, h, w[start:stop], None if b is None else b[start:stop], y, go)
            torch.testing.assert_close(got[0], ref[0], rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(got[1], ref[1], rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(got[2], ref[2][start:stop], rtol=1e-10, atol=1e-12)
            if b is not None:
                torch.testing.assert_close(got[3], ref[3][start:stop], rtol=1e-10, atol=1e-12)
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
def test_vocab_parallel_two_processes_equal_single_process():
    mp.spawn(_worker, args=(_free_port(),), nprocs=WORLD, join=True)


def test_vocab_slice_covers_vocabulary():
    for v, p in [(10, 3), (37, 2), (5, 8)]:
        slices = [vocab_slice(v, r, p) for r in range(p)]
        assert slices[0][0] == 0 and slices[-1][1] == v
        assert all(a[1] == b[0] for a, b in itertools.pairwise(slices))


def test_requires_initialised_process_group():
    if dist.is_initialized():
        pytest.skip("a process group is already initialised")
    with pytest.raises(
        RuntimeError,
        match=r"vocab_parallel_linear_cross_entropy: group expected an initialised "
        r"torch\.distributed process group",
    ):
        vocab_parallel_linear_cross_entropy(
            torch.zeros(2, 3),
            torch.zeros(4, 3),
            torch.zeros(2, dtype=torch.long),
            vocab_start=0,
            vocab_size=4,
        )
