"""Training with `torch.compile`: the model and the loss compiled as one graph.

    python examples/integrations/compiled_training.py [--loss ldr_kl] [--steps 50]

losslab's losses compile with `fullgraph=True`: the value checks (`validate=True`) are
skipped while compiling and hyperparameters are plain Python, so the loss adds no graph
break. The first call compiles (inductor needs a C++ compiler), later calls reuse the
graph. `--backend aot_eager` traces the same graph
without generating code.
"""

from __future__ import annotations

import argparse

import torch

import losslab


def synthetic(n: int, dim: int, classes: int, seed: int):
    """Features and labels of a random linear teacher."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    return x, (x @ torch.randn(dim, classes, generator=g)).argmax(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loss", default="ldr_kl")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--backend", default="inductor")
    args = ap.parse_args()

    torch.manual_seed(0)
    x, y = synthetic(1024, 16, 4, seed=0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    loss_fn = losslab.build_loss(args.loss)
    if loss_fn.stateful:
        raise SystemExit(f"{args.loss} keeps per-example state; pick a stateless loss here")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    @torch.compile(backend=args.backend, fullgraph=True)
    def compute_loss(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return loss_fn(model(xb), yb)

    def training_loss() -> float:
        with torch.no_grad():
            return compute_loss(x, y).item()

    before = training_loss()
    step = 0
    while step < args.steps:
        # 1024 examples in batches of 64: every training batch has the same shape.
        for idx in torch.randperm(len(x)).split(64):
            loss = compute_loss(x[idx], y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step == args.steps:
                break
    print(f"{args.loss}: {args.steps} steps, loss before {before:.4f} after {training_loss():.4f}")


if __name__ == "__main__":
    main()
