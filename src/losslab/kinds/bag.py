"""The ``bag`` kind: instance outputs grouped into bags, one aggregate response per bag.

Learning from aggregate responses: the training set is partitioned into bags and only a
summary of each bag's responses is observed (their mean: a mean value, a fraction of
positives, class proportions). ``scores`` are the model's outputs for the ``N``
instances, ``(N,)`` or ``(N, K)``; ``bag_index`` (int64 ``(N,)``) says which of the ``B``
bags each instance belongs to; ``target`` holds the bags' responses, one row per bag, in
bag-id order. Instances may come in any order.

The per-loss rule ``task`` (a hyperparameter of the loss) says what the responses are:

* ``"regression"``: mean values, ``(B,)`` for ``(N,)`` scores or ``(B, K)`` for ``K``
  outputs; any finite value;
* ``"binary"``: fractions of positives in ``[0, 1]``, of the same shapes, with logits as
  scores (``K`` independent labels);
* ``"multiclass"``: class proportions ``(B, C)`` (rows summing to 1) with logits ``(N, C)``.

Elements are the responses: ``(B,)`` or ``(B, K)`` entries for regression and binary
responses, bags ``(B,)`` for class proportions. ``ignore_index`` masks response entries
equal to it (regression and binary); ``sample_weight`` weighs bags ``(B,)`` or elements.
Every bag ``0 .. B-1`` must have an instance unless all its responses are ignored, and
every ``bag_index`` must name one of them; both are checked with the value checks.
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

TASKS = ("binary", "multiclass", "regression")


@dataclass
class BagInput:
    """Validated inputs of an aggregate-response loss.

    Attributes:
        scores: float32/float64 instance outputs ``(N, K)`` (a ``(N,)`` input gets K = 1).
        bag_index: int64 ``(N,)`` bag of each instance.
        target: float bag responses ``(B, K)`` (ignored entries hold 0).
        counts: float ``(B,)`` number of instances per bag.
        task: ``"regression"``, ``"binary"`` or ``"multiclass"``.
        mask: bool valid elements (``element_shape``), or ``None``.
        weight: float element weights, or ``None``.
        element_shape: ``(B,)`` or ``(B, K)``, the shape of a per-element loss.
    """

    scores: Tensor
    bag_index: Tensor
    target: Tensor
    counts: Tensor
    task: str
    mask: Tensor | None
    weight: Tensor | None
    element_shape: torch.Size

    @property
    def num_bags(self) -> int:
        return int(self.target.shape[0])

    def bag_sum(self, x: Tensor) -> Tensor:
        """Per-bag sums ``(B, ...)`` of per-instance values ``(N, ...)``."""
        out = x.new_zeros((self.num_bags, *x.shape[1:]))
        return out.index_add(0, self.bag_index, x)

    def bag_mean(self, x: Tensor) -> Tensor:
        """Per-bag means of per-instance values (0 for an empty bag)."""
        counts = self.counts.clamp_min(1).view((-1,) + (1,) * (x.dim() - 1))
        return self.bag_sum(x) / counts

    def bag_log_mean_exp(self, x: Tensor) -> Tensor:
        """``log(mean_i exp(x_i))`` per bag, shifted by the bag's maximum so that it is exact
        for any finite ``x`` (a large finite negative value for an empty bag, never NaN)."""
        idx = self.bag_index.view((-1,) + (1,) * (x.dim() - 1)).expand_as(x)
        top = x.new_zeros((self.num_bags, *x.shape[1:]))
        top = top.scatter_reduce(0, idx, x.detach(), "amax", include_self=False)
        total = self.bag_sum(torch.exp(x - top[self.bag_index]))
        counts = self.counts.clamp_min(1).view((-1,) + (1,) * (x.dim() - 1))
        return top + torch.log(total.clamp_min(torch.finfo(x.dtype).tiny) / counts)

    def to_elements(self, per_bag_column: Tensor) -> Tensor:
        """``(B, K)`` values in the element shape (``(B,)`` when the input had 1-D scores)."""
        return per_bag_column.reshape(self.element_shape)


def prepare(
    loss: str,
    rules: dict[str, object],
    scores: object,
    bag_index: object,
    target: object,
    *,
    sample_weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    validate: bool = True,
) -> BagInput:
    """The validation stage of the bag kind."""
    check_reduction(loss, reduction)
    task = str(rules["task"])
    x = check_float_tensor(loss, "scores", scores, "instance outputs")
    if x.dim() not in (1, 2):
        fail(loss, "scores", "shape (N,) or (N, K)", describe(x))
    if x.dim() == 2 and x.shape[1] < 1:
        fail(loss, "scores", "at least one output column, (N, K) with K >= 1", describe(x))
    n = x.shape[0]
    if not isinstance(bag_index, Tensor) or bag_index.dtype not in INDEX_DTYPES:
        fail(loss, "bag_index", f"an int64 tensor of shape ({n},)", describe(bag_index), TypeError)
    check_same_device(loss, "bag_index", bag_index, x, "scores")
    if bag_index.shape != (n,):
        fail(loss, "bag_index", f"shape ({n},), one bag id per instance", describe(bag_index))
    t = check_float_tensor(loss, "target", target, "bag responses")
    check_same_device(loss, "target", t, x, "scores")
    k = 1 if x.dim() == 1 else x.shape[1]
    if task == "multiclass":
        if x.dim() != 2 or t.dim() != 2 or t.shape[1] != k:
            fail(
                loss,
                "target",
                f"class proportions (B, {k}) for logits (N, {k})"
                if x.dim() == 2
                else "class proportions (B, C) for logits (N, C)",
                describe(t),
            )
        element_shape = t.shape[:1]
    else:
        want = "(B,)" if x.dim() == 1 else f"(B, {k})"
        if t.dim() != x.dim() or (x.dim() == 2 and t.shape[1] != k):
            fail(
                loss,
                "target",
                f"one response per bag, {want} for scores {tuple(x.shape)}",
                describe(t),
            )
        element_shape = t.shape
    check_ignore_index(loss, ignore_index)
    if sample_weight is not None:
        check_sample_or_element_weight(loss, sample_weight, t.shape[0], element_shape, "bag")

    num_bags = t.shape[0]
    idx = bag_index.long()
    t2 = t.reshape(num_bags, k)
    mask: Tensor | None = None
    if ignore_index is not None and task != "multiclass":
        mask = (t != ignore_index).reshape(element_shape)

    checking = value_checks_enabled(validate)
    if checking:
        out = (idx < 0) | (idx >= num_bags)
        if bool(out.any()):
            fail(
                loss,
                "bag_index",
                f"bag ids in [0, {num_bags - 1}], one per response row",
                f"bag {int(idx[out][0])}, which has no response",
            )
    counts = torch.zeros(num_bags, dtype=torch.int64, device=x.device)
    counts = counts.index_add(0, idx, torch.ones_like(idx))
    if checking:
        used = counts > 0
        if mask is not None:
            used |= ~mask.reshape(num_bags, -1).any(dim=1)
        if not bool(used.all()):
            fail(
                loss,
                "bag_index",
                f"at least one instance in every bag 0..{num_bags - 1}",
                f"an empty bag {int(torch.nonzero(~used)[0])}",
            )
        check_finite(loss, "scores", x)
        valid = t2 if mask is None else t2[mask.reshape(num_bags, -1).expand_as(t2)]
        if not bool(torch.isfinite(valid).all()):
            fail(loss, "target", "finite responses", "NaN or infinite values")
        if task == "binary" and not bool(((valid >= 0) & (valid <= 1)).all()):
            bad = valid[(valid < 0) | (valid > 1)][0]
            extra = "" if ignore_index is None else f" (or ignore_index={ignore_index})"
            fail(
                loss,
                "target",
                f"fractions of positives in [0, 1]{extra}",
                f"a value {bad.item()!r}",
            )
        if task == "multiclass":
            dev = (t2.sum(dim=1) - 1).abs()
            # half precision rounds each proportion to ~3 significant digits
            tol = {torch.float64: 1e-6, torch.float32: 1e-3}.get(t2.dtype, 1e-2)
            if not bool((t2 >= 0).all()) or bool((dev > tol).any()):
                fail(
                    loss,
                    "target",
                    "class proportions (non-negative rows summing to 1)",
                    "a negative value or a row not summing to 1",
                )
        if sample_weight is not None:
            check_weights(loss, "sample_weight", sample_weight)

    cdtype = compute_dtype(x.dtype)
    target_c = t2.to(cdtype)
    if mask is not None:
        target_c = torch.where(mask.reshape(num_bags, -1), target_c, 0.0)
    w: Tensor | None = None
    if sample_weight is not None:
        sw = sample_weight.to(cdtype)
        # per-bag weights broadcast over the bag's K responses
        w = sw if sw.shape == element_shape else sw[:, None].expand(element_shape)
    return BagInput(
        x.to(cdtype).reshape(n, k),
        idx,
        target_c,
        counts.to(cdtype),
        task,
        mask,
        w,
        element_shape,
    )


BAG = define_kind(
    Kind(
        name="bag",
        description="instance outputs `(N,)` or `(N, K)` grouped by int64 `bag_index` `(N,)`, "
        "one aggregate response per bag `(B,)` / `(B, K)` (mean values, fractions of "
        "positives or class proportions)",
        inputs=(
            Param(
                "scores",
                "Tensor",
                "instance outputs `(N,)` or `(N, K)`: predictions (regression) or logits "
                "(binary, multiclass).",
            ),
            Param(
                "bag_index",
                "Tensor",
                "int64 `(N,)`: the bag of each instance, in `[0, B)`; every bag needs an instance.",
            ),
            Param(
                "target",
                "Tensor",
                "float bag responses, one row per bag in bag-id order: `(B,)` / `(B, K)` mean "
                "values or fractions of positives, or `(B, C)` class proportions.",
            ),
        ),
        options=(
            Param("sample_weight", "Tensor | None", "weights per bag `(B,)` or per element.", None),
            ignore_index_param(
                "responses equal to it are masked (regression and binary responses)."
            ),
            REDUCTION_PARAM,
            validate_param(
                "bag ids in range, no empty bag, finite scores, valid responses, negative weights"
            ),
        ),
        per_call=("sample_weight",),
        rules={"task": "binary"},
        prepare=prepare,
        returns="The loss: a scalar, or per-element values (`(B,)` or `(B, K)`) for "
        '`reduction="none"`; float32 for half-precision scores.',
        module_example=(
            ">>> import torch, losslab\n"
            ">>> loss_fn = losslab.{cls}({args})\n"
            ">>> scores = torch.tensor([[0.5], [-1.0], [2.0]])\n"
            ">>> bag_index = torch.tensor([0, 0, 1])\n"
            ">>> loss_fn(scores, bag_index, torch.tensor([[0.5], [1.0]]){call}).shape\n"
            "torch.Size([])"
        ),
    )
)

__all__ = ["BAG", "TASKS", "BagInput", "prepare"]
