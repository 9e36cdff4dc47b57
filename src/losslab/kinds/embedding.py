"""The ``embedding`` kind: embeddings of samples (one or several views each) with labels.

Embeddings are ``(N, D)`` or ``(N, V, D)`` (``V`` views per sample, SupCon's layout:
augmentations of an image, or an image and its caption for cross-modal losses). Labels
are integers ``(N,)``: two views are a positive pair when their samples have the same
label, a negative pair otherwise; ``labels=None`` makes each sample its own class
(instance discrimination, SimCLR: only the views of one sample are positives). Label
values carry no order and no range: only equality matters.

An element is a *sample* (an anchor, averaged over its views): ``reduction="none"``
returns ``(N,)``, ``"mean"`` averages over the samples that count. An ignored sample
(label equal to ``ignore_index``) is dropped from the batch entirely: it is neither an
anchor nor anyone's positive or negative, so masking equals dropping. A kernel marks
anchors without the pairs its loss needs (no positive, no negative) as not counting
(``KernelResult.valid``); a batch where no anchor counts gives an attached 0.

``gather="all"`` evaluates the loss of the global batch of all ranks (see
:mod:`losslab.distributed` for why this is exact).

Per-loss rules: ``views`` (the exact number of views the loss needs, e.g. 2 for
cross-modal pairs; ``None``: any), ``min_views`` (the fewest views per sample).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from losslab._validate import (
    Choice,
    check_finite,
    check_float_tensor,
    check_ignore_index,
    check_per_sample,
    check_reduction,
    check_same_device,
    check_weights,
    compute_dtype,
    describe,
    fail,
    value_checks_enabled,
)
from losslab.distributed import (
    all_gather_nograd,
    all_gather_with_grad,
    rank_offset,
    require_process_group,
)
from losslab.kinds import (
    REDUCTION_PARAM,
    Kind,
    Param,
    define_kind,
    ignore_index_param,
    validate_param,
)

LABEL_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)
GATHER = ("none", "all")


@dataclass
class EmbeddingInput:
    """Validated embeddings of a batch.

    Attributes:
        embeddings: float32 or float64 ``(N, V, D)`` (a 2-D input gets ``V = 1``).
        labels: int64 ``(N,)``; ``labels=None`` gives ``0 .. N-1`` (each sample its own
            class). Ignored samples keep their raw label but are excluded by ``keep``.
        mask: bool ``(N,)`` samples that are not ignored, or ``None`` when all count.
        weight: float ``(N,)`` sample weights, or ``None``.
    """

    embeddings: Tensor
    labels: Tensor
    mask: Tensor | None
    weight: Tensor | None

    @property
    def element_shape(self) -> torch.Size:
        return self.labels.shape

    @property
    def views(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def keep(self) -> Tensor:
        """Bool ``(N,)``: the samples that take part in the batch."""
        if self.mask is None:
            return torch.ones_like(self.labels, dtype=torch.bool)
        return self.mask

    def flat(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Every view as its own row, sample-major (row ``i * V + v``): embeddings
        ``(N V, D)``, labels, sample index and ``keep``, each ``(N V,)``."""
        n, v, d = self.embeddings.shape
        sample = torch.arange(n, device=self.labels.device).repeat_interleave(v)
        return (
            self.embeddings.reshape(n * v, d),
            self.labels.repeat_interleave(v),
            sample,
            self.keep.repeat_interleave(v),
        )

    def per_sample(self, per_view: Tensor) -> Tensor:
        """``(N V,)`` values of the flattened views -> ``(N,)`` means over each sample's
        views."""
        return per_view.reshape(-1, self.views).mean(dim=1)


def prepare(
    loss: str,
    rules: dict[str, object],
    embeddings: object,
    labels: object = None,
    *,
    sample_weight: Tensor | None = None,
    ignore_index: int | None = None,
    gather: str = "none",
    reduction: str = "mean",
    validate: bool = True,
) -> EmbeddingInput:
    """The validation stage of the embedding kind."""
    check_reduction(loss, reduction)
    Choice(GATHER).check(loss, "gather", gather)
    x = check_float_tensor(loss, "embeddings", embeddings, "embeddings, one row per sample")
    if x.dim() not in (2, 3):
        fail(loss, "embeddings", "shape (N, D) or (N, V, D)", describe(x))
    if x.dim() == 2:
        x = x.unsqueeze(1)
    n, v, d = x.shape
    if v < 1:
        fail(loss, "embeddings", "at least one view per sample, shape (N, V, D)", describe(x))
    if d < 1:
        fail(loss, "embeddings", "at least one embedding dimension", describe(x))
    need = rules["views"]
    if need is not None and v != need:
        fail(loss, "embeddings", f"{need} views per sample, shape (N, {need}, D)", describe(x))
    low = int(rules["min_views"])  # type: ignore[call-overload]
    if v < low:
        fail(loss, "embeddings", f"at least {low} views per sample (N, V, D)", describe(x))
    if labels is None:
        y = torch.arange(n, device=x.device)
    else:
        if not isinstance(labels, Tensor):
            fail(loss, "labels", "an int64 tensor or None", describe(labels), TypeError)
        check_same_device(loss, "labels", labels, x, "embeddings")
        if labels.dtype not in LABEL_DTYPES:
            fail(
                loss, "labels", "integer class labels (int64) or None", describe(labels), TypeError
            )
        if labels.shape != (n,):
            fail(loss, "labels", f"shape ({n},), one label per sample", describe(labels))
        y = labels.long()
    check_ignore_index(loss, ignore_index)
    if sample_weight is not None:
        check_per_sample(loss, "sample_weight", sample_weight, torch.Size((n,)))
    if value_checks_enabled(validate):
        check_finite(loss, "embeddings", x)
        if sample_weight is not None:
            check_weights(loss, "sample_weight", sample_weight)

    cdtype = compute_dtype(x.dtype)
    x = x.to(cdtype)
    w = None if sample_weight is None else sample_weight.to(cdtype)
    if gather == "all":
        require_process_group(loss)
        if labels is None:
            # Instance labels must stay distinct across ranks.
            y = y + rank_offset(n, x.device)
        x = all_gather_with_grad(x)
        y = all_gather_nograd(y)
        if w is not None:
            w = all_gather_nograd(w)
    mask = None if ignore_index is None or labels is None else y != ignore_index
    return EmbeddingInput(x, y, mask, w)


EMBEDDING = define_kind(
    Kind(
        name="embedding",
        description="embeddings `(N, D)` or `(N, V, D)` (V views per sample) with integer "
        "labels `(N,)`; equal labels make positive pairs",
        inputs=(
            Param(
                "embeddings",
                "Tensor",
                "`(N, D)` embeddings, or `(N, V, D)` with `V` views per sample (augmentations, "
                "or the two modalities of a pair).",
            ),
            Param(
                "labels",
                "Tensor | None",
                "integer labels `(N,)`: samples with equal labels are positives; `None` makes "
                "each sample its own class (only its views are positives).",
                None,
            ),
        ),
        options=(
            Param("sample_weight", "Tensor | None", "per-sample weights `(N,)`.", None),
            ignore_index_param("samples whose label equals it are dropped from the batch."),
            Param(
                "gather",
                "str",
                '`"none"`, or `"all"`: evaluate the loss of the global batch gathered from '
                "every rank, with gradients through the gathered copies (exact under "
                "data-parallel gradient averaging; see `losslab.distributed`).",
                "none",
            ),
            REDUCTION_PARAM,
            validate_param("non-finite embeddings, negative weights"),
        ),
        per_call=("sample_weight",),
        rules={"views": None, "min_views": 1},
        prepare=prepare,
        returns='The loss: a scalar, or per-sample values `(N,)` for `reduction="none"` '
        '(the global batch\'s samples with `gather="all"`); float32 for half-precision '
        "embeddings.",
        module_example=(
            ">>> import torch, losslab\n"
            ">>> loss_fn = losslab.{cls}({args})\n"
            ">>> views = torch.nn.functional.normalize(torch.randn(4, 2, 8), dim=-1)\n"
            ">>> loss_fn(views, torch.tensor([0, 0, 1, 1]){call}).shape\n"
            "torch.Size([])"
        ),
    )
)

__all__ = ["EMBEDDING", "GATHER", "EmbeddingInput", "prepare"]
