"""Time per example of one training step of a V-class output layer, D = 256, CPU.

* ``spherical``: :class:`losslab.heads.SphericalOutput` (Z-loss), forward + backward + exact
  factored SGD step; O(D^3 + m D^2) per step, independent of V.
* ``softmax naive``: ``F.cross_entropy(h @ W.T, y)``, backward, dense SGD step on W (O(V D)).
* ``softmax fused``: the same with :func:`losslab.heads.linear_cross_entropy`.

Times are the median over steps after one warm-up step, as wall and process-CPU seconds per
example; the ratios compare variants measured in the same run.

Usage: ``python benchmarks/spherical_head.py [--vocabs 10000,100000,1000000] [--batch 256]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from losslab.heads import SphericalOutput, linear_cross_entropy


def _time(step: Callable[[], None], n: int) -> tuple[float, float]:
    step()  # warm-up
    wall, cpu = [], []
    for _ in range(n):
        c0, t0 = time.process_time(), time.perf_counter()
        step()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--vocabs", default="10000,100000,1000000")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20, help="timed steps of the spherical head")
    ap.add_argument("--softmax-steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    d, m, lr = args.dim, args.batch, 0.05
    print(
        f"D={d}, batch m={m}, float32, torch {torch.__version__}, threads={torch.get_num_threads()}"
    )
    rows = []
    for v in (int(x) for x in args.vocabs.split(",")):
        h = torch.randn(m, d)
        y = torch.randint(0, v, (m,))
        head = SphericalOutput(d, v, loss="z_loss")

        def spherical(head: SphericalOutput = head, h: torch.Tensor = h, y: torch.Tensor = y):
            head(h, y).backward()
            head.step(lr)

        w = (torch.randn(v, d) / d**0.5).requires_grad_()

        def naive(w: torch.Tensor = w, h: torch.Tensor = h, y: torch.Tensor = y):
            F.cross_entropy(h @ w.T, y).backward()
            with torch.no_grad():
                w.sub_(lr * w.grad)
            w.grad = None

        def fused(w: torch.Tensor = w, h: torch.Tensor = h, y: torch.Tensor = y):
            linear_cross_entropy(h, w, y).backward()
            with torch.no_grad():
                w.sub_(lr * w.grad)
            w.grad = None

        res = {"V": v}
        res["spherical"] = _time(spherical, args.steps)
        res["softmax naive"] = _time(naive, args.softmax_steps)
        res["softmax fused"] = _time(fused, args.softmax_steps)
        rows.append(res)
        print(
            f"V={v}: "
            + ", ".join(
                f"{k} {t[0] / m * 1e6:.1f} us/ex wall, {t[1] / m * 1e6:.1f} us/ex cpu"
                for k, t in res.items()
                if k != "V"
            ),
            flush=True,
        )
        del head, w
    base = rows[0]["spherical"]
    print(
        "\n| V | spherical us/example (wall / cpu) | x spherical at V=" + f"{rows[0]['V']} (cpu) "
        "| softmax naive us/example (wall / cpu) | softmax fused us/example (wall / cpu) "
        "| naive / spherical (cpu) | fused / spherical (cpu) |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        sp, nv, fu = r["spherical"], r["softmax naive"], r["softmax fused"]
        print(
            f"| {r['V']} | {sp[0] / m * 1e6:.1f} / {sp[1] / m * 1e6:.1f} | {sp[1] / base[1]:.2f} "
            f"| {nv[0] / m * 1e6:.0f} / {nv[1] / m * 1e6:.0f} "
            f"| {fu[0] / m * 1e6:.0f} / {fu[1] / m * 1e6:.0f} "
            f"| {nv[1] / sp[1]:.0f} | {fu[1] / sp[1]:.0f} |"
        )


if __name__ == "__main__":
    main()
