"""The ``sequence`` kind: per-position distributions over a vocabulary and target tokens.

``logits`` are ``(B, T, V)``: for each of ``B`` sequences and ``T`` positions, logits (or
log-probabilities, which are logits of the same distribution) over ``V`` vocabulary
entries; ``-inf`` masks an entry, except at the target. ``target`` holds the int64 token
ids ``(B, T)``, aligned with the logits (no shift: position ``t`` of the logits predicts
``target[:, t]``). Padding is given by ``ignore_index`` (targets equal to it), by
``lengths`` (positions ``t >= lengths[b]`` are padding; their target values are never
read), or both.

Elements are tokens, ``(B, T)``. A per-token loss (``emo``) has one value per token. A
per-sequence loss (``dco``, ``eisl``) computes one value per sequence from its valid
tokens and spreads it evenly over them (``SequenceInput.spread``), so that ``"sum"`` is
the sum over sequences and ``"mean"`` divides it by the number of valid tokens (weighted:
``sum(w l) / sum(w)`` over valid tokens), the library's one reduction either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from losslab._validate import (
    check_finite,
    check_float_tensor,
    check_ignore_index,
    check_reduction,
    check_same_device,
    check_sample_or_element_weight,
    check_weights,
    compute_dtype,
    describe,
    fail,
    value_checks_enabled,
)
from losslab.kinds import (
    REDUCTION_PARAM,
    Kind,
    Param,
    define_kind,
    ignore_index_param,
    validate_param,
)
from losslab.kinds.multiclass import INDEX_DTYPES


@dataclass
class SequenceInput:
    """Validated inputs of a sequence loss.

    Attributes:
        logits: float32 or float64 ``(B, T, V)`` (half precision is upcast).
        index: int64 target tokens ``(B, T)``; padded and ignored positions hold 0, so
            that gathering is always in range (their values are masked out).
        mask: bool ``(B, T)`` valid tokens, or ``None`` when every position is valid.
        weight: float ``(B, T)`` token weights (``sample_weight`` broadcast), or ``None``.
        num_classes: the vocabulary size ``V``.
    """

    logits: Tensor
    index: Tensor
    mask: Tensor | None
    weight: Tensor | None
    num_classes: int

    @property
    def element_shape(self) -> torch.Size:
        return self.index.shape

    @property
    def valid(self) -> Tensor:
        """The valid tokens as a bool ``(B, T)`` tensor (all ``True`` without padding)."""
        if self.mask is None:
            return torch.ones(self.index.shape, dtype=torch.bool, device=self.index.device)
        return self.mask

    def spread(self, per_sequence: Tensor) -> Tensor:
        """A per-sequence value ``(B,)`` as per-token values ``(B, T)``: each valid token
        carries ``value / (number of valid tokens)``, so the tokens of a sequence sum to
        its value."""
        counts = self.valid.sum(dim=1).clamp_min(1).to(per_sequence.dtype)
        return (per_sequence / counts)[:, None].expand(self.index.shape)


def prepare(
    loss: str,
    rules: dict[str, object],
    logits: object,
    target: object,
    *,
    lengths: Tensor | None = None,
    sample_weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> SequenceInput:
    """The validation stage of the sequence kind."""
    check_reduction(loss, reduction)
    x = check_float_tensor(loss, "logits", logits, "logits or log-probabilities")
    if x.dim() != 3:
        fail(loss, "logits", "shape (B, T, V)", describe(x))
    b, t, v = x.shape
    if t < 1 or v < 1:
        fail(loss, "logits", "shape (B, T, V) with T >= 1 and V >= 1", describe(x))
    if not isinstance(target, Tensor):
        fail(loss, "target", "a torch.Tensor of token ids", describe(target), TypeError)
    if target.dtype not in INDEX_DTYPES:
        fail(loss, "target", "int64 token ids", describe(target), TypeError)
    check_same_device(loss, "target", target, x, "logits")
    if target.shape != (b, t):
        fail(loss, "target", f"token ids of shape {(b, t)}", describe(target))
    check_ignore_index(loss, ignore_index)
    if lengths is not None:
        if not isinstance(lengths, Tensor) or lengths.dtype not in INDEX_DTYPES:
            fail(loss, "lengths", f"an int64 tensor of shape ({b},)", describe(lengths), TypeError)
        if lengths.shape != (b,):
            fail(loss, "lengths", f"shape ({b},), one length per sequence", describe(lengths))
        check_same_device(loss, "lengths", lengths, x, "logits")
    if sample_weight is not None:
        check_sample_or_element_weight(loss, sample_weight, b, torch.Size((b, t)), "sequence")

    index = target.long()
    mask: Tensor | None = None
    if ignore_index is not None:
        mask = index != ignore_index
    if lengths is not None:
        inside = torch.arange(t, device=x.device)[None, :] < lengths[:, None]
        mask = inside if mask is None else mask & inside

    if value_checks_enabled(validate):
        if lengths is not None and bool(((lengths < 0) | (lengths > t)).any()):
            bad = lengths[(lengths < 0) | (lengths > t)][0]
            fail(loss, "lengths", f"lengths in [0, {t}]", f"a length {int(bad)}")
        all_finite = check_finite(loss, "logits", x, neg_inf="to mask a vocabulary entry")
        out = (index < 0) | (index >= v)
        if mask is not None:
            out &= mask
        if bool(out.any()):
            extra = "" if ignore_index is None else f" (or ignore_index={ignore_index})"
            fail(loss, "target", f"token ids in [0, {v - 1}]{extra}", f"token {int(index[out][0])}")
        if not all_finite:
            safe = torch.where(out, 0, index)
            at_target = torch.isneginf(x.gather(2, safe[..., None]).squeeze(2))
            if mask is not None:
                at_target &= mask
            if bool(at_target.any()):
                fail(loss, "logits", "a finite logit at the target token", "-inf at the target")
        if sample_weight is not None:
            check_weights(loss, "sample_weight", sample_weight)

    if mask is not None:
        index = torch.where(mask, index, 0)
    cdtype = compute_dtype(x.dtype)
    w: Tensor | None = None
    if sample_weight is not None:
        sw = sample_weight.to(cdtype)
        w = sw[:, None].expand(b, t) if sw.dim() == 1 else sw
    return SequenceInput(x.to(cdtype), index, mask, w, v)


SEQUENCE = define_kind(
    Kind(
        name="sequence",
        description="logits or log-probabilities `(B, T, V)` over a vocabulary with int64 "
        "target tokens `(B, T)`, padding by `ignore_index` and/or `lengths`",
        inputs=(
            Param(
                "logits",
                "Tensor",
                "`(B, T, V)` logits or log-probabilities: one distribution over the `V` "
                "vocabulary entries per position (`-inf` masks an entry).",
            ),
            Param(
                "target",
                "Tensor",
                "int64 token ids `(B, T)`, aligned with the logits (position `t` predicts "
                "`target[:, t]`; no shift).",
            ),
        ),
        options=(
            Param(
                "lengths",
                "Tensor | None",
                "int64 `(B,)` valid lengths: positions `t >= lengths[b]` are padding (their "
                "targets are never read).",
                None,
            ),
            Param(
                "sample_weight",
                "Tensor | None",
                "weights per sequence `(B,)` or per token `(B, T)`.",
                None,
            ),
            ignore_index_param("target tokens equal to it are padding."),
            REDUCTION_PARAM,
            validate_param("token range, non-finite logits, lengths, negative weights"),
        ),
        per_call=("lengths", "sample_weight"),
        rules={},
        prepare=prepare,
        returns='The loss: a scalar, or per-token values `(B, T)` for `reduction="none"` (a '
        "per-sequence loss spreads its value evenly over the sequence's valid tokens); "
        "float32 for half-precision logits.",
        module_example=(
            ">>> import torch, losslab\n"
            ">>> loss_fn = losslab.{cls}({args})\n"
            ">>> logits = torch.linspace(-2.0, 2.0, 48).reshape(2, 4, 6)\n"
            ">>> target = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])\n"
            ">>> loss_fn(logits, target, lengths=torch.tensor([4, 2]){call}).shape\n"
            "torch.Size([])"
        ),
    )
)

__all__ = ["SEQUENCE", "SequenceInput", "prepare"]
