"""Forward+backward time of every registered loss relative to torch's cross-entropy.

    python benchmarks/loss_overhead.py [--n 8192] [--c 1000] [--repeats 15] [--write-doc]

Every loss is called the way users call it: its module in training mode (a stateful loss
with ``index=`` and its per-example state update), on float32 inputs of its kind with
``N x C`` scores. All losses are timed round-robin in one process, so the ratios share
the machine's state; the goal is every loss <= 2.0x ``torch.nn.functional.cross_entropy``
on the same logits. Columns: the library default (``validate=True``, which adds
host-syncing value checks) and ``validate=False`` (hot loops).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import ROOT, interleaved_medians, machine, save_json, write_section

import losslab

GOAL = 2.0
PAIRWISE = {"mw"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=8192)
    ap.add_argument("--c", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--losses", nargs="*", help="only these losses (default: all)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--write-doc", action="store_true", help="update docs/benchmarks.md")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    z = (torch.randn(args.n, args.c, generator=g) * 2).requires_grad_(True)
    y = torch.randint(args.c, (args.n,), generator=g)
    others = {
        # the non-differentiated inputs of each kind, on the same N x C scores
        "multiclass": (y,),
        "binary": (torch.randint(2, (args.n, args.c), generator=g),),
        "distillation": (torch.randn(args.n, args.c, generator=g) * 2, y),
    }
    index = torch.arange(args.n)

    def step(fn, rest, **kw):
        def run():
            z.grad = None
            fn(z, *rest, **kw).backward()

        return run

    fns = {"torch.nn.functional.cross_entropy": step(torch.nn.functional.cross_entropy, (y,))}
    # The kinds whose inputs are N x C scores; the embedding, sequence, bag and regression
    # losses take other shapes and have no like-for-like reference here.
    # mw compares every pair of elements: quadratic in the N x C entries, not like-for-like.
    names = [
        n
        for n in losslab.list_losses()
        if losslab.loss_info(n).kind.name in others
        and n not in PAIRWISE
        and (not args.losses or n in args.losses)
    ]
    for name in names:
        spec = losslab.loss_info(name)
        rest = others[spec.kind.name]
        extra = {"index": index} if spec.stateful else {}
        for suffix, validate in (("", True), ("/novalidate", False)):
            module = spec.build(num_samples=args.n, validate=validate).train()
            fns[name + suffix] = step(module, rest, **extra)
    med = interleaved_medians(fns, repeats=args.repeats)
    base = med["torch.nn.functional.cross_entropy"]
    rows = []
    for name in names:
        r, rn = med[name] / base, med[f"{name}/novalidate"] / base
        rows.append((name, med[name] * 1e3, r, rn, "yes" if max(r, rn) <= GOAL else "NO"))
    cmd = "python benchmarks/loss_overhead.py " + " ".join(sys.argv[1:])
    lines = [
        f"Forward+backward, N={args.n}, C={args.c}, float32 logits, CPU; median of "
        f"{args.repeats} interleaved repeats. Reference: torch cross_entropy "
        f"{base * 1e3:.1f} ms. Machine: {machine()}. Command: `{cmd.strip()}`.",
        "",
        "| loss | ms (default) | x CE (default, validate=True) | x CE (validate=False) | "
        f"<= {GOAL}x |",
        "|---|---:|---:|---:|:-:|",
    ]
    lines += [f"| `{n}` | {ms:.1f} | {r:.2f} | {rn:.2f} | {ok} |" for n, ms, r, rn, ok in rows]
    table = "\n".join(lines)
    print(table)
    save_json(
        "loss_overhead",
        {"args": vars(args), "machine": machine(), "ce_seconds": base, "seconds": med},
    )
    if args.write_doc:
        write_section(ROOT / "docs" / "benchmarks.md", "loss-overhead", table)


if __name__ == "__main__":
    main()
