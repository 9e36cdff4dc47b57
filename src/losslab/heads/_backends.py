"""Optional back-ends for :func:`losslab.heads.linear_cross_entropy`, selected with ``impl=``.

Each is imported lazily (never at ``import losslab``) and none is required. The own
implementation (``impl="torch"``) is the reference they are tested against.

* ``"torch_native"``: ``torch.nn.functional.linear_cross_entropy`` with chunking
  (``torch.nn.LinearCrossEntropyOptions``, PyTorch >= 2.13); CPU and GPU; no z-loss, no softcap.
* ``"cce"``: Cut Cross-Entropy (Wijmans et al., ICLR 2025, arXiv:2411.09009;
  ``pip install cut-cross-entropy``, `apple/ml-cross-entropy`); Triton kernels, Ampere+ GPU.
  ``"cce_torch_compile"`` is the package's compiled materialising reference (runs on CPU).
  No label smoothing, no z-loss; bias only in releases that accept it.
* ``"liger"``: Liger-Kernel's fused linear cross-entropy (``pip install liger-kernel``,
  `linkedin/Liger-Kernel`); Triton, GPU only. Float32 weight-gradient accumulation is
  requested where the installed version supports ``accum_dtype``.

All back-ends return a float32 loss, like the own implementation.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from losslab._validate import fail

if TYPE_CHECKING:
    from ._engine import HeadOptions


def _import(where: str, module: str, pip_name: str, impl: str) -> object:
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # never a hard dependency
        raise ImportError(
            f"{where}: impl expected an installed back-end ({impl!r} needs the optional package "
            f"{pip_name!r}: pip install {pip_name}; impl='torch' needs nothing extra), "
            f"got {impl!r}"
        ) from exc


def _unsupported(where: str, impl: str, **options: object) -> None:
    for name, value in options.items():
        if value not in (None, 0.0, False):
            fail(where, name, f"0 or None with impl={impl!r} (or use impl='torch')", repr(value))


def _need_cuda(where: str, impl: str, **tensors: Tensor) -> None:
    for name, t in tensors.items():
        if not t.is_cuda:
            fail(
                where, name, f"a CUDA tensor for impl={impl!r} (use impl='torch' on CPU)", t.device
            )


def available_backends() -> list[str]:
    """Back-ends that can run here (importable, and a GPU where one is needed)."""
    out = ["torch"]
    if hasattr(F, "linear_cross_entropy") and hasattr(torch.nn, "LinearCrossEntropyOptions"):
        out.append("torch_native")
    for impl, module, gpu in (
        ("cce_torch_compile", "cut_cross_entropy", False),
        ("cce", "cut_cross_entropy", True),
        ("liger", "liger_kernel", True),
    ):
        # find_spec, not import: importing these pulls in Triton (seconds); a broken install
        # still fails with a clear message when the back-end is actually used
        if importlib.util.find_spec(module) is None:
            continue
        if not gpu or torch.cuda.is_available():
            out.append(impl)
    return out


def run_backend(
    where: str,
    opts: HeadOptions,
    hidden: Tensor,
    weight: Tensor,
    target: Tensor,
    bias: Tensor | None,
    batch_shape: tuple[int, ...],
) -> Tensor:
    """Dispatch (N, D) hidden / (N,) target to ``opts.impl``; see the module doc."""
    impl, reduction = opts.impl, opts.reduction
    y = target.long()

    def shaped(out: Tensor) -> Tensor:
        out = out.float()
        return out.reshape(batch_shape) if reduction == "none" else out

    def native() -> Tensor:
        _unsupported(where, impl, z_loss=opts.z_loss, softcap=opts.softcap)
        if not hasattr(torch.nn, "LinearCrossEntropyOptions"):
            fail(where, "impl", "'torch_native' with torch >= 2.13", torch.__version__, ImportError)
        return shaped(
            F.linear_cross_entropy(
                hidden,
                weight,
                y,
                linear_bias=bias,
                reduction=reduction,
                ignore_index=opts.ignore_index,
                label_smoothing=opts.label_smoothing,
                options=torch.nn.LinearCrossEntropyOptions(),
            )
        )

    def cce(which: str) -> Tensor:
        mod = _import(where, "cut_cross_entropy", "cut-cross-entropy", impl)
        _unsupported(where, impl, label_smoothing=opts.label_smoothing, z_loss=opts.z_loss)
        if which == "cce":
            _need_cuda(where, impl, hidden=hidden, weight=weight)
        fn = mod.linear_cross_entropy  # type: ignore[attr-defined]
        kwargs: dict[str, object] = dict(
            ignore_index=opts.ignore_index, softcap=opts.softcap, reduction=reduction, impl=which
        )
        if bias is not None:
            if "bias" not in inspect.signature(fn).parameters:
                fail(
                    where, "bias", "None (the installed cut-cross-entropy has no bias)", "a tensor"
                )
            kwargs["bias"] = bias
        out = fn(hidden, weight, y, **kwargs)
        if reduction == "mean":
            # CCE divides by the valid count too; an all-ignored batch must give 0, not NaN
            out = torch.nan_to_num(out, nan=0.0)
        return shaped(out)

    def liger() -> Tensor:
        _need_cuda(where, impl, hidden=hidden, weight=weight)
        mod = _import(
            where, "liger_kernel.transformers.fused_linear_cross_entropy", "liger-kernel", impl
        )
        cls = mod.LigerFusedLinearCrossEntropyLoss  # type: ignore[attr-defined]
        kwargs: dict[str, object] = dict(
            ignore_index=opts.ignore_index,
            lse_square_scale=opts.z_loss,
            label_smoothing=opts.label_smoothing,
            reduction=reduction,
            softcap=opts.softcap,
        )
        if "accum_dtype" in inspect.signature(cls.__init__).parameters:
            kwargs["accum_dtype"] = torch.float32
        loss_fn = cls(**kwargs)
        return shaped(loss_fn(weight, hidden, y, bias))  # Liger takes the weight first

    runners: dict[str, Callable[[], Tensor]] = {
        "torch_native": native,
        "cce": lambda: cce("cce"),
        "cce_torch_compile": lambda: cce("torch_compile"),
        "liger": liger,
    }
    return runners[impl]()
