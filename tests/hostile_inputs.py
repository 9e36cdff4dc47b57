"""Count how the loss API answers hostile and edge inputs, over every registered loss.

    python tests/hostile_inputs.py

Bad inputs (each loss x input fault x dtype, each hyperparameter x bad value, function and
module): an answer is *clear* when it is a ``ValueError``/``TypeError`` whose one line
starts with the loss's name; a *traceback* is any other exception or a multi-line message;
*silent* is a call that returns. Valid edge inputs (extreme scores in three dtypes): the
value and the gradient must be finite (scores up to 1e20 in float32; embeddings
and regression predictions up to 1e10, whose squares still fit). Prints the counts;
exits 1 when any bad input is silent or gives a traceback, or any edge input is not
finite.
"""

from __future__ import annotations

import inspect
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import losslab
from losslab._validate import Choice, Int, Real, RealOrClassVector
from tests.kinds import module_kwargs, sample

DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def bad_inputs(
    spec: losslab.registry.LossSpec, dtype: torch.dtype
) -> list[tuple[str, tuple, dict]]:
    inputs = sample(spec, 3, n=4, c=5, dtype=dtype)
    first, rest, target = inputs[0], inputs[1:], inputs[-1]
    cases: list[tuple[str, tuple, dict]] = [
        ("NaN", (torch.full_like(first, math.nan), *rest), {}),
        ("+inf", (torch.full_like(first, math.inf), *rest), {}),
        (
            "one NaN",
            (
                first.clone().index_put_((torch.tensor([0]),), torch.tensor(math.nan, dtype=dtype)),
                *rest,
            ),
            {},
        ),
        ("0-d scores", (first.reshape(-1)[:1].squeeze(), *rest), {}),
        ("int scores", (first.long(), *rest), {}),
        ("bool scores", (first > 0, *rest), {}),
        ("list scores", (first.tolist(), *rest), {}),
        ("numpy scores", (first.float().numpy(), *rest), {}),
        ("short target", (*inputs[:-1], target[:2]), {}),
        ("bad reduction", inputs, {"reduction": "avg"}),
        ("reduction None", inputs, {"reduction": None}),
        ("negative sample weight", inputs, {"sample_weight": -torch.ones(target.shape[0])}),
        ("NaN sample weight", inputs, {"sample_weight": torch.full((target.shape[0],), math.nan)}),
        ("short sample weight", inputs, {"sample_weight": torch.ones(1 + target.shape[0])}),
    ]
    target_param = list(inspect.signature(spec.function).parameters.values())[len(inputs) - 1]
    if target_param.default is not None:  # label-free forms take None (e.g. two views)
        cases.append(("None target", (*inputs[:-1], None), {}))
    if spec.kind.name not in ("embedding", "regression"):
        cases.append(("big target", (*inputs[:-1], torch.full_like(target, 99)), {}))
    if spec.kind.name in ("multiclass",) and not target.is_floating_point():
        cases.append(("negative target", (*inputs[:-1], torch.full_like(target, -7)), {}))
        cases.append(("float index target", (*inputs[:-1], target.double() + 0.5), {}))
    if spec.kind.name != "binary":
        cases.append(
            ("zero classes", (first[:, :0], *(t[:, :0] if t.dim() > 1 else t for t in rest)), {})
        )
    return cases


def bad_values(constraint: object, none_ok: bool) -> list[object]:
    if isinstance(constraint, RealOrClassVector):
        constraint = constraint.scalar
    if isinstance(constraint, Real):
        out: list[object] = [math.nan, "1.0"] + ([] if none_ok or constraint.allow_none else [None])
        if constraint.lo is not None:
            out.append(constraint.lo - 1.0)
        if constraint.hi is not None:
            out.append(constraint.hi + 1.0)
        return out
    if isinstance(constraint, Choice):
        return ["not-a-choice", 3]
    if isinstance(constraint, Int):
        return [constraint.lo - 1, 2.5, "3"]
    return []


def answer(name: str, call: Callable[..., object], *args: object, **kwargs: object) -> str:
    try:
        call(*args, **kwargs)
    except (ValueError, TypeError) as exc:
        msg = str(exc)
        ok = "\n" not in msg and re.match(rf"^{re.escape(name)}: ", msg)
        return "clear" if ok else "traceback"
    except Exception:  # any other exception is what is counted
        return "traceback"
    return "silent"


def build_and_call(spec: losslab.registry.LossSpec, kw: dict, inputs: tuple, index: dict) -> object:
    return spec.build(**kw)(*inputs, **index)


def main() -> int:
    counts = {"clear": 0, "traceback": 0, "silent": 0}
    bad: list[str] = []
    edge_ok = edge_total = 0
    for name in losslab.list_losses():
        spec = losslab.loss_info(name)
        index = {"index": torch.zeros(4, dtype=torch.long)} if spec.stateful else {}
        for dtype in DTYPES:
            for label, inputs, opts in bad_inputs(spec, dtype):
                got = answer(name, spec.function, *inputs, **opts)
                counts[got] += 1
                if got != "clear":
                    bad.append(f"{name} {dtype} {label}: {got}")
        inputs = sample(spec, 4, n=4, c=5, dtype=torch.float32)
        params = inspect.signature(spec.function).parameters
        for key, constraint in spec.constraints.items():
            for value in bad_values(constraint, key in params and params[key].default is None):
                for form in ("function", "module"):
                    if form == "function":
                        got = answer(name, spec.function, *inputs, **{key: value})
                    else:
                        kw = {**module_kwargs(spec), key: value}
                        got = answer(name, build_and_call, spec, kw, inputs, index)
                    counts[got] += 1
                    if got != "clear":
                        bad.append(f"{name} {key}={value!r} ({form}): {got}")
        for dtype in (torch.float16, torch.bfloat16, torch.float32):
            # squared distances and squared errors of 1e20 overflow float32: those kinds get 1e10
            big = 1e10 if spec.kind.name in ("embedding", "regression") else 1e20
            for scale in (1e2, 1e4) if dtype != torch.float32 else (1e4, big):
                edge_total += 1
                x = sample(spec, 5, n=8, c=5, dtype=dtype, scale=1.0)
                first = x[0].float() * scale / max(1.0, x[0].float().abs().max().item())
                first = first.to(dtype).requires_grad_(True)
                try:
                    val = spec.function(first, *x[1:])
                    val.backward()
                    fine = bool(torch.isfinite(val).all()) and bool(
                        torch.isfinite(first.grad).all()
                    )
                except (ValueError, TypeError):
                    fine = True  # declined with a clear error is not a wrong result
                edge_ok += fine
                if not fine:
                    bad.append(f"{name} {dtype} scale {scale:g}: non-finite value or gradient")
    total = sum(counts.values())
    print(f"losses: {len(losslab.list_losses())}")
    print(
        f"bad inputs: {total}; clear errors {counts['clear']}, tracebacks {counts['traceback']}, "
        f"accepted silently {counts['silent']}"
    )
    print(f"valid extreme inputs: {edge_total}; finite value and gradient {edge_ok}")
    for line in bad[:400]:
        print("  " + line)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
