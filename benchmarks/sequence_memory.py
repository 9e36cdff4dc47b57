"""Peak memory of the sequence losses on language-model logits (B, T, V), CPU.

Every variant runs in its own fresh process (``--one``). The process builds the float32
logits ``(B, T, V)``, the targets and (for EMO) a cost embedding ``(V, D)``, runs one small
warm-up step (loads kernels, sizes thread pools), then resets the kernel's high-water mark
(``/proc/self/clear_refs`` <- 5) and measures ``VmHWM - VmRSS(before)`` over one forward +
backward with the gradient of the logits still alive. The issue's budget is 3x the size
of the logits for the peak extra memory, the gradient (1x) included.

Variants:

* ``emo`` / ``eisl`` / ``dco``: ``losslab.functional.emo(..., embedding=E)`` (mode 1, the
  official package's combination), ``eisl`` (n-grams 1, 2) and ``dco`` (N = 16);
* ``emo_official``: the PyPI ``EMOLoss`` 0.0.3 computation written out in plain torch
  (dense one-hot, softmax, ``Q @ E``; no next-token shift);
* ``eisl_official``: ``EISL.py``'s ``batch_log_EISL_cnn`` written out (log-softmax of the
  whole tensor, ``relu(x + 20) - 20``, gather, identity ``conv2d``; softmax without noise);
* ``ce``: ``torch.nn.functional.cross_entropy`` on the same logits, for scale.

Usage::

    python benchmarks/sequence_memory.py --out seq.jsonl       # all variants, the issue's shape
    python benchmarks/sequence_memory.py --table seq.jsonl     # print the table of a run
    python benchmarks/sequence_memory.py --batch 2 --length 64 --vocab 4096 --dim 64  # quick
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from typing import Any

VARIANTS = ["emo", "emo_official", "eisl", "eisl_official", "dco", "ce"]


def _rss_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _official_emo(logits: Any, labels: Any, cost_embedding: Any) -> Any:
    import torch

    v = logits.shape[-1]
    z = logits.reshape(-1, v)
    y = labels.reshape(-1)
    mle = torch.nn.functional.cross_entropy(z, y, reduction="none")
    one_hot = torch.nn.functional.one_hot(y, num_classes=v).to(z.dtype)
    stable = (one_hot + 1e-15) / torch.linalg.vector_norm(
        one_hot + 1e-15, ord=1, dim=-1, keepdim=True
    )
    emb = cost_embedding / torch.linalg.vector_norm(cost_embedding, ord=2, dim=1, keepdim=True)
    p_repr = stable @ emb
    q_repr = torch.log_softmax(z, dim=-1).exp() @ emb
    emo = 1 - (p_repr * q_repr).sum(-1)
    ratio = torch.clamp((mle / (emo + 1e-10)).detach(), max=3.0)
    return ((ratio * emo + mle) * 0.5).mean()


def _official_eisl(logits: Any, target: Any, ngrams: tuple[int, ...] = (1, 2)) -> Any:
    import torch

    lp = torch.log_softmax(logits, dim=-1)
    b, t, _ = lp.shape
    lp = torch.relu(lp + 20) - 20
    cost = lp.gather(2, target[:, None, :].expand(b, t, t)).unsqueeze(1)
    total = torch.zeros((), dtype=lp.dtype)
    for n in ngrams:
        eye = torch.eye(n, dtype=lp.dtype).view(1, 1, n, n)
        term = (torch.nn.functional.conv2d(cost, eye) / n).squeeze(1)
        w = torch.softmax(term, dim=1)
        total = total + term.mul(w).sum(1).mean(1).sum() / len(ngrams)
    return -total / b


def _make_fn(variant: str, emb: Any) -> Any:
    import torch

    from losslab import functional as F

    fns = {
        "emo": lambda z, y: F.emo(z, y, embedding=emb, mode=1),
        "emo_official": lambda z, y: _official_emo(z, y, emb),
        "eisl": lambda z, y: F.eisl(z, y),
        "eisl_official": _official_eisl,
        "dco": lambda z, y: F.dco(z, y),
        "ce": lambda z, y: torch.nn.functional.cross_entropy(z.transpose(1, 2), y),
    }
    return fns[variant]


def run_one(variant: str, b: int, t: int, v: int, d: int) -> dict[str, Any]:
    import torch

    torch.manual_seed(0)
    # in-place init: no temporaries that would inflate the baseline
    z = torch.empty(b, t, v).normal_()
    y = torch.randint(0, v, (b, t))
    emb = torch.empty(v, d).normal_() if variant.startswith("emo") else None
    fn = _make_fn(variant, emb)
    small = z[:1, : min(t, 8)].detach().clone().requires_grad_(True)
    fn(small, y[:1, : min(t, 8)]).backward()
    del small
    z.requires_grad_(True)
    gc.collect()
    base = _rss_bytes("VmRSS")
    exact = _reset_peak()
    c0, t0 = time.process_time(), time.perf_counter()
    loss = fn(z, y)
    loss.backward()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _rss_bytes("VmHWM")
    logits_bytes = z.numel() * z.element_size()
    return dict(
        variant=variant,
        B=b,
        T=t,
        V=v,
        D=d,
        loss=float(loss.detach()),
        logits_MiB=logits_bytes / 2**20,
        peak_extra_MiB=(peak - base) / 2**20,
        x_logits=(peak - base) / logits_bytes,
        exact_peak=exact,
        wall_s=wall,
        cpu_s=cpu,
        threads=torch.get_num_threads(),
        torch=torch.__version__,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--dim", type=int, default=768, help="cost-embedding width D (EMO)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--out", help="append each variant's JSON line to this file")
    ap.add_argument("--table", help="only print the table of the JSON lines in this file")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    shape = (args.batch, args.length, args.vocab, args.dim)
    if args.one:
        print(json.dumps(run_one(args.one, *shape)))
        return
    if args.table:
        with open(args.table) as f:
            print_table([json.loads(line) for line in f if line.strip()])
        return
    rows = []
    for variant in args.variants.split(","):
        cmd = [sys.executable, __file__, "--one", variant]
        cmd += ["--batch", str(args.batch), "--length", str(args.length)]
        cmd += ["--vocab", str(args.vocab), "--dim", str(args.dim)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"{variant}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(rows[-1]) + "\n")
    print_table(rows)


def print_table(rows: list[dict[str, Any]]) -> None:
    r0 = rows[0]
    print(
        f"\nB={r0['B']}, T={r0['T']}, V={r0['V']}, D={r0['D']}, float32 logits "
        f"({r0['logits_MiB']:.0f} MiB), torch {r0['torch']}, {r0['threads']} threads\n"
    )
    print("| variant | peak extra MiB | x logits | CPU s | wall s | loss |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['variant']} | {r['peak_extra_MiB']:.0f} | {r['x_logits']:.2f} | "
            f"{r['cpu_s']:.1f} | {r['wall_s']:.1f} | {r['loss']:.4f} |"
        )


if __name__ == "__main__":
    main()
