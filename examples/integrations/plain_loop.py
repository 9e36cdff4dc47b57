"""A plain PyTorch training loop with a losslab loss, on synthetic data with noisy labels.

    python examples/integrations/plain_loop.py [--loss sce] [--steps 200] [--noise 0.2]

Any registered loss works by name (`losslab list`). Stateful losses (e.g. `aldr_kl`)
keep one value per training example, so the loop passes the dataset indices of each
batch as `index=`. Prints the training loss before and after training.
"""

from __future__ import annotations

import argparse

import torch

import losslab


def synthetic(n: int, dim: int, classes: int, noise: float, seed: int):
    """Features, labels of a random linear teacher, and a `noise` fraction of them flipped."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    y = (x @ torch.randn(dim, classes, generator=g)).argmax(1)
    flip = torch.rand(n, generator=g) < noise
    other = (y + torch.randint(1, classes, (n,), generator=g)) % classes
    return x, torch.where(flip, other, y)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loss", default="sce")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--noise", type=float, default=0.2)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()

    torch.manual_seed(0)
    x, y = synthetic(1024, 16, 4, args.noise, seed=0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    spec = losslab.loss_info(args.loss)
    # num_samples is the training-set size; only stateful losses use it.
    loss_fn = spec.build(num_samples=len(x))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def training_loss() -> float:
        # eval mode: a stateful loss reads its stored state instead of updating it.
        model.eval()
        loss_fn.eval()
        with torch.no_grad():
            extra = {"index": torch.arange(len(x))} if spec.stateful else {}
            value = loss_fn(model(x), y, **extra).item()
        model.train()
        loss_fn.train()
        return value

    before = training_loss()
    step = 0
    while step < args.steps:
        for idx in torch.randperm(len(x)).split(args.batch_size):
            extra = {"index": idx} if spec.stateful else {}
            loss = loss_fn(model(x[idx]), y[idx], **extra)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step == args.steps:
                break
    print(f"{args.loss}: {args.steps} steps, loss before {before:.4f} after {training_loss():.4f}")


if __name__ == "__main__":
    main()
