"""Time of the blocked loss kernels against the rows-per-block setting, idle or next to a
competing process.

    python benchmarks/block_size.py [--losses ldr_kl mse ...] [--sizes 18 20 21]
        [--repeats 5] [--competitor none|python|matmul|loss]

Every loss is called as in ``loss_overhead.py`` (its module in training mode, ``index=``
for a stateful loss) on ``N x C`` float32 scores, with
``losslab.functional._fused.BLOCK_ELEMENTS`` set to ``2**size`` for each size, all
interleaved with torch's cross-entropy in one process; printed: the median time of each
(loss, size) divided by cross-entropy's median. ``--competitor`` starts a second process
at ``nice 5`` for the run: a Python busy loop, a two-thread matmul loop, or a loop of
``losslab.functional.mse`` forward+backward (two threads). The kernels' default is
``2**18`` elements (docs/design.md, "Speed goal").
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved_medians, machine

import losslab
from losslab.functional import _fused

COMPETITORS = {
    "none": None,
    "python": "while True: pass",
    "matmul": (
        "import torch\na = torch.randn(2000, 2000)\nwhile True: a = torch.tanh(a @ a * 1e-3)"
    ),
    "loss": (
        "import torch, losslab.functional as F\n"
        "z = torch.randn(8192, 1000, requires_grad=True); y = torch.randint(1000, (8192,))\n"
        "while True: F.mse(z, y, validate=False).backward()"
    ),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=8192)
    ap.add_argument("--c", type=int, default=1000)
    ap.add_argument("--losses", nargs="*", default=["ldr_kl", "aldr_kl", "mse", "arcface"])
    ap.add_argument("--sizes", nargs="*", type=int, default=[15, 18, 20, 21])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--competitor", choices=sorted(COMPETITORS), default="none")
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    z = (torch.randn(args.n, args.c, generator=g) * 2).requires_grad_(True)
    y = torch.randint(args.c, (args.n,), generator=g)
    index = torch.arange(args.n)

    def step(fn, size: int | None, **kw):
        def run() -> None:
            if size is not None:
                _fused.BLOCK_ELEMENTS = 2**size
            z.grad = None
            fn(z, y, **kw).backward()

        return run

    fns = {"torch cross_entropy": step(torch.nn.functional.cross_entropy, None)}
    for name in args.losses:
        spec = losslab.loss_info(name)
        if spec.kind.name != "multiclass":
            raise SystemExit(f"block_size: --losses expected multiclass losses, got {name}")
        module = spec.build(num_samples=args.n).train()
        extra = {"index": index} if spec.stateful else {}
        for size in args.sizes:
            fns[f"{name}@{size}"] = step(module, size, **extra)
    code = COMPETITORS[args.competitor]
    other = None
    if code is not None:
        other = subprocess.Popen(["nice", "-n", "5", sys.executable, "-c", code])
        time.sleep(2.0)
    try:
        med = interleaved_medians(fns, repeats=args.repeats)
    finally:
        if other is not None:
            other.kill()
    base = med["torch cross_entropy"]
    print(
        f"N={args.n}, C={args.c}, float32; median of {args.repeats} interleaved repeats; "
        f"competitor: {args.competitor}; torch cross_entropy {base * 1e3:.1f} ms; {machine()}"
    )
    print("| loss | " + " | ".join(f"2^{s}" for s in args.sizes) + " |")
    print("|---|" + "---:|" * len(args.sizes))
    for name in args.losses:
        cells = " | ".join(f"{med[f'{name}@{s}'] / base:.2f}" for s in args.sizes)
        print(f"| `{name}` | {cells} |")


if __name__ == "__main__":
    main()
