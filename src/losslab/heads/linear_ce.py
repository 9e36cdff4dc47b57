"""Fused linear + cross-entropy head that never builds the N x V logit matrix.

The public function and module; the math, the algorithm and the kernels are in
:mod:`losslab.heads._engine`, the options and their constraints in
:class:`~losslab.heads.HeadOptions`.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ._engine import OPTION_NAMES, HeadOptions, auto_chunk_size, run_head, takes_options

__all__ = ["LinearCrossEntropy", "auto_chunk_size", "linear_cross_entropy"]

_FN = "linear_cross_entropy"


@takes_options()
def linear_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    target: Tensor,
    *,
    bias: Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    reduction: str = "mean",
    chunk_size: int | None = None,
    vocab_chunk_size: int | None = None,
    shift: int = 0,
    impl: str = "torch",
    validate: bool = True,
    allow_retain_graph: bool = False,
) -> Tensor:
    r"""Cross-entropy of ``hidden @ weight.T + bias`` without materialising the logits.

    Equals ``F.cross_entropy(z, target, ignore_index=..., label_smoothing=..., reduction=...)``
    plus ``z_loss * logsumexp(z)**2`` per valid token (PaLM's z-loss, reduced like the CE),
    where ``z = softcap * tanh((hidden @ weight.T + bias) / softcap)`` if ``softcap`` is set.
    See :mod:`losslab.heads._engine` for the math and the algorithm.

    Args:
        hidden: ``(N, D)`` or ``(..., D)`` (e.g. ``(B, T, D)``), any float dtype.
        weight: ``(V, D)`` classifier / un-embedding matrix.
        target: ``(N,)`` or ``(...)`` int class indices; ``ignore_index`` rows are skipped.
        bias: optional ``(V,)``.
        ignore_index: an integer; targets equal to it carry no loss.
        label_smoothing: in [0, 1], PyTorch convention (mass ``eps / V`` on every class).
        z_loss: finite weight >= 0 of ``logsumexp(z)**2`` (PaLM; not the spherical Z-loss,
            see :mod:`losslab.heads.spherical`).
        softcap: finite ``c > 0`` of Gemma-2 tanh soft-capping of the logits, or None.
        reduction: ``"mean"`` (over valid tokens; all-ignored gives 0 with zero gradients),
            ``"sum"`` or ``"none"`` (shape of ``target`` after ``shift``, 0 at ignored rows).
        chunk_size: integer >= 1, token rows per chunk (default: :func:`auto_chunk_size`).
        vocab_chunk_size: integer >= 1, vocabulary tile for the log-sum-exp-only forward and
            the recomputing backward of ``reduction="none"`` (default: whole vocabulary for
            V <= 65536, else 32768).
        shift: next-token prediction: ``hidden[..., :-shift, :]`` predicts
            ``target[..., shift:]``; an integer below the sequence length ``T`` (dim -2).
        impl: ``"torch"`` (the engine, CPU and GPU), or an optional back-end
            (``"torch_native"``, ``"cce"``, ``"cce_torch_compile"``, ``"liger"``), see
            :mod:`losslab.heads._backends`.
        validate: check the target range and that ``hidden``, ``weight`` and ``bias`` are
            finite (one host sync); skipped under ``torch.compile``.
        allow_retain_graph: for "mean"/"sum" the gradients are made in the forward pass and
            handed to autograd once (no copy); set True to backpropagate through the same graph
            several times (``retain_graph=True``, ``gradcheck``) at the cost of a copy.

    Returns:
        float32 loss (float64 for float64 inputs): scalar, or per token for ``"none"``.
    """
    opts = HeadOptions.from_arguments(_FN, locals())
    return run_head(_FN, hidden, weight, target, bias, opts)


class LinearCrossEntropy(nn.Module):
    """Module form of :func:`linear_cross_entropy`; the options go to the constructor.

    ``forward(hidden, weight, target, bias=None)``: the classifier weight is passed in (it is
    usually the model's un-embedding or a tied embedding), like ``F.linear_cross_entropy``.
    The options live in one frozen :class:`~losslab.heads.HeadOptions` (``self.options``);
    reading or assigning an option attribute (``head.z_loss = 1e-4``) goes through it, so an
    assignment is checked like a constructor argument.
    """

    options: HeadOptions

    @takes_options()
    def __init__(
        self,
        *,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        z_loss: float = 0.0,
        softcap: float | None = None,
        reduction: str = "mean",
        chunk_size: int | None = None,
        vocab_chunk_size: int | None = None,
        shift: int = 0,
        impl: str = "torch",
        validate: bool = True,
        allow_retain_graph: bool = False,
    ) -> None:
        super().__init__()
        self.options = HeadOptions.from_arguments(type(self).__name__, locals())

    def __getattr__(self, name: str) -> Any:
        if name in OPTION_NAMES and "options" in self.__dict__:
            return getattr(self.__dict__["options"], name)
        return super().__getattr__(name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in OPTION_NAMES:
            config = {**self.options.as_dict(), name: value}
            name, value = "options", HeadOptions.from_arguments(type(self).__name__, config)
        super().__setattr__(name, value)

    def get_config(self) -> dict[str, Any]:
        return self.options.as_dict()

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LinearCrossEntropy:
        return cls(**config)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())

    def forward(
        self, hidden: Tensor, weight: Tensor, target: Tensor, bias: Tensor | None = None
    ) -> Tensor:
        return run_head(type(self).__name__, hidden, weight, target, bias, self.options)
