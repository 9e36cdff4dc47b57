"""Peak memory and time of linear + cross-entropy heads on large vocabularies (CPU or GPU).

Every variant runs in its own fresh process (``--one``), so peak memory and allocator state do
not leak between variants. Results are appended to a JSON-lines file keyed by
(shape, dtype, logit scale, variant); a finished key is never run again, so a killed run resumes
where it stopped and a partial run still prints finished rows.

Measured per variant (CPU):
* peak extra resident memory: the process first builds its inputs and runs one small warm-up
  step (loads kernels, sizes thread pools), then resets the kernel's high-water mark
  (``/proc/self/clear_refs`` <- 5) and measures ``VmHWM - VmRSS(before)`` over one full
  forward + backward, with the returned gradients still alive. The floor is the size of the
  returned gradients (``hidden.grad`` + ``weight.grad``).
* forward + backward wall time: minimum over ``--reps`` full steps (the minimum is the least
  disturbed by other processes on a shared machine).
* ``gemm_floor``: the three bare products of a head, ``h @ W.T`` (N x V), ``G @ W`` and
  ``G.T @ h``, in float32 at full size: the compute floor of any exact head.

Usage::

    python benchmarks/large_vocab.py                      # all shapes, dtypes, scales
    python benchmarks/large_vocab.py --shapes small --out lv.jsonl
    python benchmarks/large_vocab.py --shapes small --dtypes float32 --scales small \
        --variants losslab,naive --rounds 2 --out lv.jsonl   # the memory and naive-time goals
    python benchmarks/large_vocab.py --table --out lv.jsonl   # print tables only
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SHAPES = {"small": (4096, 1024, 65536), "big": (8192, 2048, 131072)}
SCALES = {"small": 0.1, "large": 30.0}  # target std of the logits
VARIANTS = [
    "gemm_floor",
    "losslab",
    "naive",
    "torch_lce_default",
    "torch_lce_c1024",
    "torch_lce_c2048",
    "cce_torch_compile",
]
# rows that only make sense at one logit scale (the floor does not depend on values)
SCALE_INDEPENDENT = {"gemm_floor"}
# slow rows: measured at large logits only for these variants (the naive head at large logits
# is the subnormal-float pathology, ~8x slower: measured at the small shape only by default)
LARGE_SCALE_VARIANTS = {"losslab", "naive"}


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


def _make_fn(variant: str, dtype: Any) -> Any:
    import torch
    import torch.nn.functional as F

    if variant == "naive":

        def naive(h, w, y):
            return F.cross_entropy((h @ w.t()).float(), y)

        return naive
    if variant.startswith("torch_lce"):
        opts_cls = torch.nn.LinearCrossEntropyOptions
        if variant == "torch_lce_default":
            opts = opts_cls()
        else:
            opts = opts_cls(batch_chunk_size=int(variant.rsplit("_c", 1)[1]))

        def native(h, w, y):
            return F.linear_cross_entropy(h, w, y, options=opts)

        return native
    if variant == "cce_torch_compile":
        from cut_cross_entropy import linear_cross_entropy as cce_lce

        def cce(h, w, y):
            return cce_lce(h, w, y, impl="torch_compile")

        return cce
    if variant == "losslab":
        from losslab.heads import linear_cross_entropy

        def ours(h, w, y):
            return linear_cross_entropy(h, w, y)

        return ours
    raise ValueError(variant)


def run_one(variant: str, shape: str, dtype_name: str, scale: str, reps: int) -> dict[str, Any]:
    import torch

    torch.manual_seed(0)
    n, d, v = SHAPES[shape]
    dtype = getattr(torch, dtype_name)
    std = SCALES[scale]
    # in-place init: no float32 temporaries that would inflate the baseline
    h = torch.empty(n, d, dtype=dtype).normal_()
    w = torch.empty(v, d, dtype=dtype).normal_(0.0, std / d**0.5)
    y = torch.randint(0, v, (n,))
    out: dict[str, Any] = dict(
        variant=variant,
        shape=shape,
        N=n,
        D=d,
        V=v,
        dtype=dtype_name,
        scale=scale,
        threads=torch.get_num_threads(),
        torch=torch.__version__,
    )
    if variant == "gemm_floor":
        h32, w32 = h.float(), w.float()
        g = torch.empty(n, v).normal_()
        times = []
        c0 = time.process_time()
        for _ in range(reps):
            t0 = time.perf_counter()
            a = h32 @ w32.t()
            t1 = time.perf_counter()
            del a
            b = g @ w32
            t2 = time.perf_counter()
            del b
            c = g.t() @ h32
            t3 = time.perf_counter()
            del c
            times.append((t1 - t0, t2 - t1, t3 - t2))
        best = min(times, key=sum)
        out.update(
            time_s=sum(best),
            hWt_s=best[0],
            GW_s=best[1],
            GTh_s=best[2],
            cpu_s=(time.process_time() - c0) / reps,
        )
        return out
    fn = _make_fn(variant, dtype)
    # warm-up on a small slice: loads kernels/compiles without setting the memory high-water mark
    hw = h[:64].detach().clone().requires_grad_()
    ww = w.detach().clone().requires_grad_() if variant == "cce_torch_compile" else None
    if ww is not None:  # torch.compile specialises on shapes: warm up at full V, small N
        fn(hw, ww, y[:64]).backward()
        del ww
    else:
        ws = w[: min(v, 4096)].detach().clone().requires_grad_()
        fn(hw, ws, y[:64] % ws.shape[0]).backward()
        del ws
    del hw
    h.requires_grad_()
    w.requires_grad_()
    gc.collect()
    base = _rss_bytes("VmRSS")
    exact_peak = _reset_peak()
    c0 = time.process_time()
    t0 = time.perf_counter()
    loss = fn(h, w, y)
    loss.backward()
    t1 = time.perf_counter()
    c1 = time.process_time()
    peak = _rss_bytes("VmHWM")
    floor = h.grad.numel() * h.grad.element_size() + w.grad.numel() * w.grad.element_size()
    out.update(
        loss=float(loss.detach()),
        peak_extra_MiB=(peak - base) / 2**20,
        grad_floor_MiB=floor / 2**20,
        exact_peak=exact_peak,
        first_s=t1 - t0,
    )
    times, cpu = [t1 - t0], [c1 - c0]
    for _ in range(reps - 1):
        h.grad = w.grad = None
        del loss
        c0 = time.process_time()
        t0 = time.perf_counter()
        loss = fn(h, w, y)
        loss.backward()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    out.update(time_s=min(times), times=times, cpu_s=min(cpu))
    return out


def _key(r: dict[str, Any]) -> tuple[str, str, str, str]:
    return (r["shape"], r["dtype"], r["scale"], r["variant"])


def _load(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _merge_rounds(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per key: minimum time over rounds (least disturbed), maximum peak memory."""
    merged: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for r in rows:
        k = _key(r)
        if k not in merged or "error" in merged[k]:
            merged[k] = dict(r, rounds=1, all_times=[r.get("time_s")])
            continue
        m = merged[k]
        if "error" in r:
            continue
        m["rounds"] += 1
        m["all_times"].append(r["time_s"])
        for f in ("time_s", "cpu_s", "hWt_s", "GW_s", "GTh_s"):
            if f in r and f in m:
                m[f] = min(m[f], r[f])
        if "peak_extra_MiB" in r:
            m["peak_extra_MiB"] = max(m["peak_extra_MiB"], r["peak_extra_MiB"])
    return list(merged.values())


def _ratio(r: dict[str, Any], ref: dict[str, Any] | None, field: str) -> str:
    if ref is None or "error" in ref or not ref.get(field) or not r.get(field):
        return "-"
    return f"{r[field] / ref[field]:.2f}"


def print_tables(rows: list[dict[str, Any]]) -> None:
    """Markdown tables; ratios on process CPU time (primary) and on wall time."""
    rows = _merge_rounds(rows)
    by = {_key(r): r for r in rows}
    for shape in SHAPES:
        for dt in ("float32", "bfloat16"):
            sel = [r for r in rows if r["shape"] == shape and r["dtype"] == dt]
            if not sel:
                continue
            n, d, v = SHAPES[shape]
            print(f"\n#### N={n}, D={d}, V={v}, {dt} inputs\n")
            floor = by.get((shape, "float32", "small", "gemm_floor"))  # float32 products
            naive = by.get((shape, dt, "small", "naive"))
            lce = [
                r
                for r in sel
                if r["variant"].startswith("torch_lce")
                and r["scale"] == "small"
                and "error" not in r
            ]
            best = min(lce, key=lambda r: r.get("cpu_s") or r["time_s"]) if lce else None
            if floor:
                print(
                    f"GEMM floor (float32, min over {floor['rounds']} rounds): wall "
                    f"h@W.T {floor['hWt_s']:.2f} s + G@W {floor['GW_s']:.2f} s + "
                    f"G.T@h {floor['GTh_s']:.2f} s = {floor['time_s']:.2f} s; "
                    f"cpu {floor.get('cpu_s', 0):.2f} s\n"
                )
            if best:
                print(f"best torch linear_cross_entropy configuration: {best['variant']}\n")
            print(
                "| variant | logit std | loss | peak extra MiB | x grad floor | cpu s "
                "| x GEMM floor | x naive | x best torch LCE | x own std-0.1 time "
                "| wall s | wall x GEMM floor | wall x naive | rounds |"
            )
            print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
            for r in sorted(
                sel, key=lambda r: (VARIANTS.index(r["variant"]), r["scale"] != "small")
            ):
                if r["variant"] == "gemm_floor":
                    continue
                std = f"{SCALES[r['scale']]:g}"
                if "error" in r:
                    print(f"| {r['variant']} | {std} | failed: {r['error'][:90]} |")
                    continue
                own = by.get((shape, dt, "small", r["variant"]))
                own_s = _ratio(r, own, "cpu_s") if r["scale"] != "small" else "-"
                print(
                    f"| {r['variant']} | {std} | {r['loss']:.4f} | "
                    f"{r['peak_extra_MiB']:.0f} | "
                    f"{r['peak_extra_MiB'] / r['grad_floor_MiB']:.2f} | "
                    f"{r.get('cpu_s', 0):.2f} | {_ratio(r, floor, 'cpu_s')} | "
                    f"{_ratio(r, naive, 'cpu_s')} | {_ratio(r, best, 'cpu_s')} | {own_s} | "
                    f"{r['time_s']:.2f} | {_ratio(r, floor, 'time_s')} | "
                    f"{_ratio(r, naive, 'time_s')} | {r['rounds']} |"
                )


def print_goals(rows: list[dict[str, Any]]) -> None:
    """The issue's goals for the float32 rows, on CPU time (see print_tables)."""
    by = {_key(r): r for r in _merge_rounds(rows)}
    print("\n| goal (float32) | shape | measured | met |")
    print("|---|---|---|---|")
    for shape in SHAPES:
        own = by.get((shape, "float32", "small", "losslab"))
        if own is None or "error" in own:
            continue
        big_logits = by.get((shape, "float32", "large", "losslab"))
        floor = by.get((shape, "float32", "small", "gemm_floor"))
        naive = by.get((shape, "float32", "small", "naive"))
        lce = [
            r
            for k, r in by.items()
            if k[0] == shape
            and k[1] == "float32"
            and k[2] == "small"
            and k[3].startswith("torch_lce")
            and "error" not in r
        ]
        best = min(lce, key=lambda r: r["cpu_s"]) if lce else None
        checks = [
            (
                "peak extra memory <= 1.5x gradients",
                own["peak_extra_MiB"] / own["grad_floor_MiB"],
                1.5,
            )
        ]
        for name, ref, limit in (
            ("time <= 1.15x GEMM floor", floor, 1.15),
            ("time <= 0.9x naive", naive, 0.9),
            ("time <= best torch linear_cross_entropy", best, 1.0),
            ("logit std 30 time <= 1.3x own std 0.1 time", None, 1.3),
        ):
            if ref is None and big_logits is not None and "std 30" in name:
                checks.append((name, big_logits["cpu_s"] / own["cpu_s"], limit))
            elif ref is not None and "error" not in ref:
                checks.append((name, own["cpu_s"] / ref["cpu_s"], limit))
        for name, value, limit in checks:
            print(f"| {name} | {shape} | {value:.2f}x | {'yes' if value <= limit else 'no'} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--one", nargs=4, metavar=("VARIANT", "SHAPE", "DTYPE", "SCALE"))
    ap.add_argument("--shapes", default="small,big")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--scales", default=",".join(SCALES), help="logit scales to run")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument(
        "--large-logits-big-shape",
        action="store_true",
        help="also run large-logit rows of slow baselines at the big shape",
    )
    ap.add_argument("--reps", type=int, default=1, help="timed steps per process")
    ap.add_argument(
        "--rounds",
        type=int,
        default=0,
        help="round-robin passes over the variants (default: 3 small, 1 big); "
        "times are the minimum over rounds, so load from other processes hits "
        "every variant alike",
    )
    ap.add_argument("--timeout", type=int, default=900, help="seconds per variant process")
    ap.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "large_vocab.jsonl"))
    ap.add_argument("--table", action="store_true", help="only print the tables")
    args = ap.parse_args()
    if args.one:
        variant, shape, dt, scale = args.one
        reps = args.reps
        print("RESULT " + json.dumps(run_one(variant, shape, dt, scale, reps)), flush=True)
        return
    out = Path(args.out)
    if args.table:
        print_tables(_load(out))
        print_goals(_load(out))
        return
    done = {(*_key(r), r.get("round", 0)) for r in _load(out)}
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    for shape in args.shapes.split(","):
        for dt in args.dtypes.split(","):
            for rnd in range(args.rounds or (3 if shape == "small" else 1)):
                for variant in args.variants.split(","):
                    for scale in args.scales.split(","):
                        if scale == "large" and (
                            variant in SCALE_INDEPENDENT
                            or (rnd > 0 and variant != "losslab")
                            or variant not in LARGE_SCALE_VARIANTS
                            or (
                                shape == "big"
                                and variant != "losslab"
                                and not args.large_logits_big_shape
                            )
                        ):
                            continue
                        if dt != "float32" and variant in SCALE_INDEPENDENT:
                            continue  # the floor is float32 products either way
                        key = (shape, dt, scale, variant, rnd)
                        if key in done:
                            continue
                        cmd = [sys.executable, __file__, "--one", variant, shape, dt, scale]
                        if args.reps:
                            cmd += ["--reps", str(args.reps)]
                        t0 = time.time()
                        try:
                            p = subprocess.run(
                                cmd, capture_output=True, text=True, env=env, timeout=args.timeout
                            )
                            lines = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
                            if lines:
                                row = json.loads(lines[-1][7:])
                            else:
                                err = (p.stderr.strip().splitlines() or ["no output"])[-1]
                                row = dict(
                                    variant=variant,
                                    shape=shape,
                                    dtype=dt,
                                    scale=scale,
                                    error=f"rc={p.returncode}: {err}",
                                )
                        except subprocess.TimeoutExpired:
                            row = dict(
                                variant=variant,
                                shape=shape,
                                dtype=dt,
                                scale=scale,
                                error=f"timeout after {args.timeout} s",
                            )
                        row["wall_s"] = time.time() - t0
                        row["round"] = rnd
                        with out.open("a") as f:
                            f.write(json.dumps(row) + "\n")
                        print(json.dumps(row), flush=True)
                print_tables(_load(out))
    print("\n# final tables")
    print_tables(_load(out))


if __name__ == "__main__":
    main()
