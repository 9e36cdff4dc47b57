"""2 CPU processes over gloo: with ``gather="all"``, every batch-coupled loss gives, after
backward and data-parallel gradient averaging, the parameter gradients (and the loss) of
one process on the concatenated batch."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import losslab
from losslab import functional as F
from losslab.distributed import all_gather_with_grad
from losslab.heads import ClipHead

WORLD = 2
SIZES = (5, 3)  # unequal local batches: the gather pads and trims
EMBEDDING = losslab.list_losses(kind="embedding")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model(d_in: int, d: int) -> torch.nn.Linear:
    torch.manual_seed(0)
    return torch.nn.Linear(d_in, d).double()


def _averaged_grads(model: torch.nn.Module) -> list[torch.Tensor]:
    """What DistributedDataParallel does: the mean of the ranks' gradients."""
    out = []
    for p in model.parameters():
        g = p.grad.clone()
        dist.all_reduce(g)
        out.append(g / WORLD)
    return out


def _check(name, rank, make_loss, x, y, extra_local=None):
    start = sum(SIZES[:rank])
    local = slice(start, start + SIZES[rank])
    ref_model = _model(x.shape[-1], 4)
    ref = make_loss(ref_model(x), y, "none", extra_local)
    ref.backward()
    ref_grads = [p.grad for p in ref_model.parameters()]
    model = _model(x.shape[-1], 4)
    got = make_loss(model(x[local]), y[local], "all", extra_local)
    got.backward()
    torch.testing.assert_close(got.detach(), ref.detach(), rtol=1e-10, atol=1e-12, msg=name)
    for a, b in zip(_averaged_grads(model), ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11, msg=name)


def _worker(rank: int, port: int) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        n = sum(SIZES)
        g = torch.Generator().manual_seed(1)
        x = torch.randn(n, 2, 6, generator=g, dtype=torch.float64)
        y = torch.tensor([0, 1, 0, 2, 1, 2, 0, 1])
        sw = torch.rand(n, generator=g, dtype=torch.float64)
        y_ignored = y.clone()
        y_ignored[[1, 6]] = -1
        for name in EMBEDDING:
            fn = getattr(F, name)
            _check(name, rank, lambda e, t, gather, _, fn=fn: fn(e, t, gather=gather), x, y)
        # Masks and sample weights travel with the batch.
        start = sum(SIZES[:rank])
        local = slice(start, start + SIZES[rank])
        for name in ("supcon", "multi_similarity", "clip"):
            fn = getattr(F, name)

            def masked(e, t, gather, _, fn=fn):
                w = sw if gather == "none" else sw[local]
                return fn(e, t, gather=gather, sample_weight=w, ignore_index=-1)

            _check(name + "+mask", rank, masked, x, y_ignored)
        # Instance labels (labels=None) stay distinct across ranks.
        _check("ntxent/None", rank, lambda e, t, gather, _: F.ntxent(e, gather=gather), x, y)
        # ClipHead: the learnable temperature's gradient is averaged like any parameter.
        ref_head, head = ClipHead().double(), ClipHead().double()
        e = torch.nn.functional.normalize(x, dim=-1)
        ref = ref_head(e[:, 0], e[:, 1])
        ref.backward()
        got = head(e[local, 0], e[local, 1], gather="all")
        got.backward()
        grad = head.log_scale.grad.clone()
        dist.all_reduce(grad)
        torch.testing.assert_close(grad / WORLD, ref_head.log_scale.grad, rtol=1e-9, atol=1e-12)
        # UNPG: local rows, global generated pairs; exact for equal local batches.
        half = 4
        cos_w = torch.randn(3, 4, generator=g, dtype=torch.float64)
        rows = slice(rank * half, (rank + 1) * half)
        f_ref = _model(6, 4)
        emb = f_ref(x[:, 0])
        cos = (
            torch.nn.functional.normalize(emb, dim=1)
            @ torch.nn.functional.normalize(cos_w, dim=1).T
        )
        ref = F.unpg(cos, y, embeddings=emb, scale=8.0)
        ref.backward()
        f_model = _model(6, 4)
        emb = f_model(x[rows, 0])
        cos = (
            torch.nn.functional.normalize(emb, dim=1)
            @ torch.nn.functional.normalize(cos_w, dim=1).T
        )
        F.unpg(cos, y[rows], embeddings=emb, scale=8.0, gather="all").backward()
        for a, b in zip(
            _averaged_grads(f_model), [p.grad for p in f_ref.parameters()], strict=True
        ):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11, msg="unpg")
        # The gather itself: unequal sizes, gradient = sum over ranks of the local slice's.
        v = torch.full((SIZES[rank], 2), float(rank + 1), dtype=torch.float64, requires_grad=True)
        both = all_gather_with_grad(v)
        assert both.shape == (n, 2) and torch.equal(
            both[: SIZES[0]], torch.ones(SIZES[0], 2, dtype=torch.float64)
        )
        (both * torch.arange(n, dtype=torch.float64)[:, None]).sum().backward()
        want = WORLD * torch.arange(n, dtype=torch.float64)[local, None].expand(-1, 2)
        torch.testing.assert_close(v.grad, want)
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
def test_gather_all_equals_single_process_on_the_concatenated_batch():
    mp.spawn(_worker, args=(_free_port(),), nprocs=WORLD, join=True)
