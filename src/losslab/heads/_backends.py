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

import torch
import torch.nn.functional as F
from torch import Tensor

_FN = "linear_cross_entropy"
BACKENDS = ("torch", "torch_native", "cce", "cce_torch_compile", "liger")


def _import(module: str, pip_name: str, impl: str) -> object:
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # never a hard dependency
        raise ImportError(
            f"{_FN}: impl={impl!r} needs the optional package {pip_name!r} "
            f"(pip install {pip_name}); impl='torch' needs nothing extra"
        ) from exc


def _unsupported(impl: str, **options: object) -> None:
    bad = [k for k, v in options.items() if v not in (None, 0.0, False)]
    if bad:
        raise ValueError(
            f"{_FN}: impl={impl!r} does not support {', '.join(bad)}; use impl='torch'"
        )


def _need_cuda(impl: str, *tensors: Tensor) -> None:
    if not all(t.is_cuda for t in tensors):
        raise ValueError(f"{_FN}: impl={impl!r} runs on CUDA tensors only; use impl='torch' on CPU")


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


def _z_and_reduce(
    loss_rows: Tensor, valid: Tensor, reduction: str, batch_shape: tuple[int, ...]
) -> Tensor:
    loss_rows = loss_rows.float()
    if reduction == "none":
        return loss_rows.reshape(batch_shape)
    if reduction == "sum":
        return loss_rows.sum()
    return loss_rows.sum() / valid.sum().clamp_min(1)


def run_backend(
    impl: str,
    hidden: Tensor,
    weight: Tensor,
    target: Tensor,
    *,
    bias: Tensor | None,
    ignore_index: int,
    label_smoothing: float,
    z_loss: float,
    softcap: float | None,
    reduction: str,
    batch_shape: tuple[int, ...],
) -> Tensor:
    """Dispatch (N, D) hidden / (N,) target to an optional back-end; see the module doc."""
    runners: dict[str, Callable[[], Tensor]] = {}
    y = target.long()

    def native() -> Tensor:
        _unsupported(impl, z_loss=z_loss, softcap=softcap)
        if not hasattr(torch.nn, "LinearCrossEntropyOptions"):
            raise ImportError(f"{_FN}: impl='torch_native' needs torch >= 2.13")
        out = F.linear_cross_entropy(
            hidden,
            weight,
            y,
            linear_bias=bias,
            reduction="none" if reduction == "none" else reduction,
            ignore_index=ignore_index,
            label_smoothing=label_smoothing,
            options=torch.nn.LinearCrossEntropyOptions(),
        )
        out = out.float()
        return out.reshape(batch_shape) if reduction == "none" else out

    def cce(which: str) -> Tensor:
        mod = _import("cut_cross_entropy", "cut-cross-entropy", impl)
        _unsupported(impl, label_smoothing=label_smoothing, z_loss=z_loss)
        if which == "cce":
            _need_cuda(impl, hidden, weight)
        fn = mod.linear_cross_entropy  # type: ignore[attr-defined]
        kwargs: dict[str, object] = dict(
            ignore_index=ignore_index, softcap=softcap, reduction=reduction, impl=which
        )
        if bias is not None:
            if "bias" not in inspect.signature(fn).parameters:
                raise ValueError(f"{_FN}: the installed cut-cross-entropy has no bias support")
            kwargs["bias"] = bias
        out = fn(hidden, weight, y, **kwargs).float()
        if reduction == "mean":
            # CCE divides by the valid count too; an all-ignored batch must give 0, not NaN
            out = torch.nan_to_num(out, nan=0.0)
        return out.reshape(batch_shape) if reduction == "none" else out

    def liger() -> Tensor:
        _need_cuda(impl, hidden, weight)
        mod = _import("liger_kernel.transformers.fused_linear_cross_entropy", "liger-kernel", impl)
        cls = mod.LigerFusedLinearCrossEntropyLoss  # type: ignore[attr-defined]
        kwargs: dict[str, object] = dict(
            ignore_index=ignore_index,
            lse_square_scale=z_loss,
            label_smoothing=label_smoothing,
            reduction=reduction,
            softcap=softcap,
        )
        if "accum_dtype" in inspect.signature(cls.__init__).parameters:
            kwargs["accum_dtype"] = torch.float32
        loss_fn = cls(**kwargs)
        out = loss_fn(weight, hidden, y, bias)  # Liger takes the weight first
        out = out.float()
        return out.reshape(batch_shape) if reduction == "none" else out

    runners["torch_native"] = native
    runners["cce"] = lambda: cce("cce")
    runners["cce_torch_compile"] = lambda: cce("torch_compile")
    runners["liger"] = liger
    if impl not in runners:
        raise ValueError(f"{_FN}: unknown impl {impl!r}; expected one of {BACKENDS}")
    return runners[impl]()
