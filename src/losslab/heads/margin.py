r"""Cosine-similarity heads with learnable parts: class centres for the angular-margin
losses (:class:`MarginHead`) and CLIP's learnable temperature (:class:`ClipHead`).

The losses are functions of cosines (``losslab.functional.arcface`` etc.) and hold no
parameters; these heads own the parameters and call them.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from losslab._reduce import reduce_loss
from losslab._validate import Choice, Int, Real, check_float_tensor, describe, fail
from losslab.functional._pairs import normalize
from losslab.functional.contrastive import clip_from_logits
from losslab.kinds.embedding import prepare
from losslab.registry import loss_info

__all__ = ["ClipHead", "MarginHead"]

MARGIN_LOSSES = ("arcface", "cosface", "sphereface", "unpg")


class MarginHead(nn.Module):
    r"""Class centres $W \in \mathbb{R}^{C \times D}$ and an angular-margin loss on the
    cosines $\cos\theta_{ic} = \hat f_i^\top \hat W_c$.

    `loss` names the registered loss (`"arcface"`, `"cosface"`, `"sphereface"` or
    `"unpg"`, which also receives the features for its generated negative pairs);
    `hyperparameters` are that loss's (checked at construction). Centres start as
    $\mathcal{N}(0, 0.01^2)$ entries, as insightface's heads.

    Args:
        in_features: feature size $D$.
        num_classes: number of classes $C$.
        loss: the margin loss.
        **hyperparameters: e.g. `margin=0.5, scale=64.0`.

    Example:
        >>> import torch
        >>> from losslab.heads import MarginHead
        >>> head = MarginHead(8, 5, loss="arcface", margin=0.3, scale=16.0)
        >>> f = torch.randn(4, 8)
        >>> head(f, torch.tensor([0, 1, 2, 3])).shape
        torch.Size([])
        >>> head.logits(f, torch.tensor([0, 1, 2, 3])).shape
        torch.Size([4, 5])
    """

    def __init__(
        self, in_features: int, num_classes: int, *, loss: str = "arcface", **hyperparameters: Any
    ) -> None:
        super().__init__()
        Int(1).check("MarginHead", "in_features", in_features)
        Int(1).check("MarginHead", "num_classes", num_classes)
        Choice(MARGIN_LOSSES).check("MarginHead", "loss", loss)
        self.spec = loss_info(loss)
        self.hyperparameters = self.spec.config(**hyperparameters)
        self.loss = loss
        self.weight = nn.Parameter(torch.randn(num_classes, in_features) * 0.01)

    def cosine(self, embeddings: Tensor) -> Tensor:
        """Cosines ``(N, C)`` between the normalised features and centres."""
        x = check_float_tensor("MarginHead", "embeddings", embeddings, "features (N, D)")
        if x.dim() != 2 or x.shape[1] != self.weight.shape[1]:
            fail("MarginHead", "embeddings", f"shape (N, {self.weight.shape[1]})", describe(x))
        return normalize(x) @ normalize(self.weight.to(x.dtype)).T

    def logits(self, embeddings: Tensor, target: Tensor) -> Tensor:
        """The margined, scaled logits the loss takes the cross-entropy of (UNPG's
        generated negatives excluded)."""
        from losslab.functional import angular_margin as am

        cos = self.cosine(embeddings)
        h = self.hyperparameters
        if self.loss == "cosface" or (self.loss == "unpg" and h["margin_type"] == "cosface"):
            return am.cosface_logits(cos, target, margin=h["margin"], scale=h["scale"])
        if self.loss == "sphereface":
            return am.sphereface_logits(cos, target, margin=h["margin"], scale=h["scale"])
        fallback = h.get("fallback", False)
        return am.arcface_logits(
            cos, target, margin=h["margin"], scale=h["scale"], fallback=fallback
        )

    def forward(self, embeddings: Tensor, target: Tensor, **options: Any) -> Any:
        """The loss of features ``(N, D)`` and int64 targets ``(N,)``; ``options`` are the
        loss's call options (``reduction``, ``sample_weight``, ...)."""
        extra = {"embeddings": embeddings} if self.loss == "unpg" else {}
        return self.spec.function(
            self.cosine(embeddings), target, **self.hyperparameters, **extra, **options
        )

    def extra_repr(self) -> str:
        c, d = self.weight.shape
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters.items())
        return f"in_features={d}, num_classes={c}, loss={self.loss!r}, {args}"


class ClipHead(nn.Module):
    r"""CLIP's symmetric InfoNCE with a learnable temperature (Radford et al., ICML 2021,
    arXiv:2103.00020; reference code `mlfoundations/open_clip`).

    Keeps $t = \log(1/\tau)$ as a parameter (initialised at $\log(1/0.07)$) and uses the
    logit scale $\min(e^t, 100)$, CLIP's clamp, on the cosines of image and text
    embeddings; the loss is `losslab.functional.clip` at that scale (labels spread the
    targets over duplicates; `gather="all"` gathers the batch of every rank).

    Args:
        temperature: initial $\tau > 0$.
        max_scale: upper bound of the logit scale $e^t$ (CLIP: 100).
        learnable: learn $t$ (False keeps it fixed, as a buffer).

    Example:
        >>> import torch
        >>> from losslab.heads import ClipHead
        >>> head = ClipHead()
        >>> image, text = torch.randn(4, 8), torch.randn(4, 8)
        >>> loss = head(image, text)
        >>> loss.backward()
        >>> head.log_scale.grad.shape
        torch.Size([])
    """

    def __init__(
        self, temperature: float = 0.07, *, max_scale: float = 100.0, learnable: bool = True
    ) -> None:
        super().__init__()
        Real(0.0, lo_open=True).check("ClipHead", "temperature", temperature)
        Real(1.0).check("ClipHead", "max_scale", max_scale)
        value = torch.tensor(math.log(1.0 / temperature))
        if learnable:
            self.log_scale = nn.Parameter(value)
        else:
            self.register_buffer("log_scale", value)
        self.max_scale = max_scale

    @property
    def scale(self) -> Tensor:
        """The logit scale $\\min(e^t, $ `max_scale` $)$."""
        return self.log_scale.clamp(max=math.log(self.max_scale)).exp()

    def forward(
        self,
        image: Tensor,
        text: Tensor,
        labels: Tensor | None = None,
        *,
        sample_weight: Tensor | None = None,
        ignore_index: int | None = None,
        gather: str = "none",
        reduction: str = "mean",
        validate: bool = True,
    ) -> Tensor:
        """The loss of paired embeddings ``(N, D)``; options as `losslab.functional.clip`."""
        for name, t in (("image", image), ("text", text)):
            check_float_tensor("ClipHead", name, t, "embeddings (N, D)")
        if image.shape != text.shape or image.dim() != 2:
            fail(
                "ClipHead",
                "text",
                f"the image embeddings' shape {tuple(image.shape)} (N, D)",
                describe(text),
            )
        inp = prepare(
            "ClipHead",
            {"views": 2, "min_views": 2},
            torch.stack([image, text], dim=1),
            labels,
            sample_weight=sample_weight,
            ignore_index=ignore_index,
            gather=gather,
            reduction=reduction,
            validate=validate,
        )
        e = normalize(inp.embeddings)
        logits = self.scale.to(e.dtype) * (e[:, 0] @ e[:, 1].T)
        per = clip_from_logits(logits, inp.labels, inp.keep)
        return reduce_loss(per, reduction, mask=inp.mask, weight=inp.weight)
