"""Timing helpers shared by the benchmark scripts: interleaved repeats, medians, ratios."""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return (
        f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, Python {platform.python_version()}"
    )


def interleaved_medians(
    fns: dict[str, Callable[[], object]], *, repeats: int, warmup: int = 2
) -> dict[str, float]:
    """Median wall time of each function, measured round-robin so drift hits all alike.

    The order is shuffled every round (seeded): a fixed order lets a position effect
    (e.g. the first call after the previous round's frees) bias one function.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    rng = random.Random(0)
    names = list(fns)
    for _ in range(repeats):
        rng.shuffle(names)
        for name in names:
            fn = fns[name]
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in samples.items()}


def write_section(doc: Path, marker: str, body: str) -> None:
    """Replace the text between ``<!-- marker:start -->`` and ``<!-- marker:end -->``."""
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    if start in text:
        head, rest = text.split(start, 1)
        tail = rest.split(end, 1)[1]
        text = f"{head}{start}\n{body}\n{end}{tail}"
    else:
        text = f"{text.rstrip()}\n\n{start}\n{body}\n{end}\n"
    doc.write_text(text)


def save_json(name: str, payload: dict) -> Path:
    out = ROOT / "benchmarks" / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    return out
