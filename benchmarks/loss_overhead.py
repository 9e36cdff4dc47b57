"""Forward+backward time of every registered loss relative to torch's cross-entropy.

    python benchmarks/loss_overhead.py [--n 8192] [--c 1000] [--repeats 15] [--write-doc]

Every loss is called the way users call it: its module in training mode (a stateful loss
with ``index=`` and its per-example state update), on float32 inputs of its kind with
``N x C`` scores. All losses are timed round-robin in one process, so the ratios share
the machine's state. Each loss is compared with ``torch.nn.functional.cross_entropy`` on
the same logits and with the reference of its kind, the loss torch itself offers for
that input: cross-entropy (multiclass), ``binary_cross_entropy_with_logits`` on float
targets (binary: one sigmoid loss per entry, itself about 2x cross-entropy; every binary
loss gets the same float targets, or their int64 labels if it takes labels only), and Hinton
distillation written with torch ops at ``kd``'s defaults (distillation: two softmaxes
per row). The goal is every loss <= 2.0x the reference of its kind (docs/design.md,
"Speed goal"). Columns: the library default (``validate=True``, which adds host-syncing
value checks) and ``validate=False`` (hot loops).
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
#: the reference of each kind: torch's own loss for that input
REFERENCE = {
    "multiclass": "torch cross_entropy",
    "binary": "torch binary_cross_entropy_with_logits",
    "distillation": "torch KD (T=4, alpha=0.9)",
}


def torch_kd(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Hinton distillation as a user writes it with torch ops (``kd``'s defaults)."""
    temp, alpha = 4.0, 0.9
    soft = torch.nn.functional.kl_div(
        torch.log_softmax(s / temp, dim=1),
        torch.log_softmax(t / temp, dim=1),
        log_target=True,
        reduction="batchmean",
    )
    return alpha * temp**2 * soft + (1 - alpha) * torch.nn.functional.cross_entropy(s, y)


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
        # float 0/1 targets, as torch's reference needs them; the binary losses take the
        # same tensor, so neither side pays a dtype conversion the other does not
        # (losses that take labels only get them as int64, below)
        "binary": (torch.randint(2, (args.n, args.c), generator=g).float(),),
        "distillation": (torch.randn(args.n, args.c, generator=g) * 2, y),
    }
    index = torch.arange(args.n)

    def step(fn, rest, **kw):
        def run():
            z.grad = None
            fn(z, *rest, **kw).backward()

        return run

    bce_ref = torch.nn.functional.binary_cross_entropy_with_logits
    fns = {
        REFERENCE["multiclass"]: step(torch.nn.functional.cross_entropy, (y,)),
        REFERENCE["binary"]: step(bce_ref, others["binary"]),
        REFERENCE["distillation"]: step(torch_kd, others["distillation"]),
    }
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
        if spec.kind.name == "binary" and spec.rules.get("soft_targets") is False:
            rest = (rest[0].long(),)
        extra = {"index": index} if spec.stateful else {}
        for suffix, validate in (("", True), ("/novalidate", False)):
            module = spec.build(num_samples=args.n, validate=validate).train()
            fns[name + suffix] = step(module, rest, **extra)
    med = interleaved_medians(fns, repeats=args.repeats)
    base = med[REFERENCE["multiclass"]]
    rows = []
    for name in names:
        kind = losslab.loss_info(name).kind.name
        ref = med[REFERENCE[kind]]
        r, rn = med[name] / ref, med[f"{name}/novalidate"] / ref
        ok = "yes" if max(r, rn) <= GOAL else "NO"
        rows.append((name, kind, med[name] * 1e3, med[name] / base, r, rn, ok))
    met = sum(row[-1] == "yes" for row in rows)
    cmd = "python benchmarks/loss_overhead.py " + " ".join(sys.argv[1:])
    refs = ", ".join(
        f"{kind}: {REFERENCE[kind]} {med[REFERENCE[kind]] * 1e3:.1f} ms" for kind in others
    )
    lines = [
        f"Forward+backward, N={args.n}, C={args.c}, float32 logits, CPU; median of "
        f"{args.repeats} interleaved repeats. References ({refs}). Machine: {machine()}. "
        f"Command: `{cmd.strip()}`. Within {GOAL}x of the kind's reference: {met} of "
        f"{len(rows)}.",
        "",
        "| loss | kind | ms (default) | x CE | x kind reference (default, validate=True) | "
        f"x kind reference (validate=False) | <= {GOAL}x |",
        "|---|---|---:|---:|---:|---:|:-:|",
    ]
    lines += [
        f"| `{n}` | {k} | {ms:.1f} | {ce:.2f} | {r:.2f} | {rn:.2f} | {ok} |"
        for n, k, ms, ce, r, rn, ok in rows
    ]
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
