"""DistributedDataParallel on CPU processes (gloo backend) with a losslab loss.

    python examples/integrations/ddp_gloo.py [--loss nce_rce] [--steps 40] [--world-size 2]

Each process trains a DDP replica on its shard of the data (`DistributedSampler`); DDP
averages the gradients, so every replica takes the same step. The loss is the ordinary
per-process loss of the local batch: a losslab loss needs nothing for DDP. Processes
talk over the loopback interface only. Rank 0 prints the training loss on the whole
data set before and after training.
"""

from __future__ import annotations

import argparse
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import losslab


def synthetic(n: int, dim: int, classes: int, seed: int):
    """Features and labels of a random linear teacher."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    return x, (x @ torch.randn(dim, classes, generator=g)).argmax(1)


def worker(rank: int, world_size: int, port: int, loss_name: str, steps: int) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    torch.set_num_threads(1)
    torch.manual_seed(0)  # the same initial weights on every rank
    x, y = synthetic(1024, 16, 4, seed=0)
    model = DistributedDataParallel(
        torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    )
    loss_fn = losslab.build_loss(loss_name)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sampler = DistributedSampler(TensorDataset(x, y), num_replicas=world_size, rank=rank)
    loader = DataLoader(TensorDataset(x, y), batch_size=32, sampler=sampler)

    def training_loss() -> float:
        with torch.no_grad():
            return loss_fn(model.module(x), y).item()

    before = training_loss()
    step, epoch = 0, 0
    while step < steps:
        sampler.set_epoch(epoch)
        for xb, yb in loader:
            loss = loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step == steps:
                break
        epoch += 1
    after = training_loss()
    if rank == 0:
        print(
            f"{loss_name}: {steps} steps on {world_size} processes, "
            f"loss before {before:.4f} after {after:.4f}"
        )
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loss", default="nce_rce")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--world-size", type=int, default=2)
    args = ap.parse_args()
    if losslab.loss_info(args.loss).stateful:
        raise SystemExit(f"{args.loss} keeps per-example state; pick a stateless loss here")
    mp.spawn(
        worker,
        args=(args.world_size, free_port(), args.loss, args.steps),
        nprocs=args.world_size,
    )


if __name__ == "__main__":
    main()
