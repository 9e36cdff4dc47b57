"""Modules of the LDR family, including the stateful ALDR-KL."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from losslab import functional as F
from losslab._validate import Int, describe, fail, value_checks_enabled
from losslab.losses._base import LossModule


class LDRKLLoss(LossModule):
    """LDR-KL loss (:func:`losslab.functional.ldr_kl`)."""

    function = staticmethod(F.ldr_kl)


class ALDRKLLoss(LossModule):
    """Adaptive LDR-KL with one temperature per training example.

    ``ALDRKLLoss(num_samples=len(train_set))``; call it as ``loss(logits, target,
    index=idx)`` with ``idx`` the dataset indices of the batch. In training mode every
    call ascends the temperatures of the batch's examples in closed form
    (:func:`losslab.functional.aldr_kl_temperature`), stores them in the ``sample_temperature``
    buffer, and returns :func:`losslab.functional.aldr_kl` at the new values (which
    carry no gradient), as the official ``ALDRLoss_V1`` does. In eval mode the stored
    temperatures are used and left unchanged. Ignored elements keep their temperature.
    """

    function = staticmethod(F.aldr_kl)

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        num_samples = self.get_config()["num_samples"]
        Int(1).check("aldr_kl", "num_samples", num_samples)
        self._num_samples: int = num_samples
        # CPU at construction; .to(device) moves it with the model (never pick a device here).
        lam0 = float(self.hyperparameters()["temperature0"])
        self.register_buffer("sample_temperature", torch.full((num_samples,), lam0))

    def forward(
        self,
        logits: Tensor,
        target: Tensor,
        sample_weight: Tensor | None = None,
        **extra: Any,
    ) -> Tensor:
        index = extra.pop("index", None)
        if extra:
            raise TypeError(f"aldr_kl: unexpected keyword arguments {sorted(extra)}")
        if index is None:
            fail(
                "aldr_kl",
                "index",
                "the dataset indices of the batch (int64 tensor), "
                "because the loss keeps a temperature per example",
                None,
                TypeError,
            )
        expected_shape = target.shape if not target.is_floating_point() else target.shape[:1]
        if not isinstance(index, Tensor) or index.dtype != torch.int64:
            fail(
                "aldr_kl", "index", "an int64 tensor of dataset indices", describe(index), TypeError
            )
        if index.shape != expected_shape:
            fail("aldr_kl", "index", f"shape {tuple(expected_shape)}", describe(index))
        n = self._num_samples
        if value_checks_enabled(self.validate) and bool(((index < 0) | (index >= n)).any()):
            fail(
                "aldr_kl",
                "index",
                f"dataset indices in [0, {n - 1}]",
                f"values from {int(index.min())} to {int(index.max())}",
            )
        hp = self.hyperparameters()
        state = self.get_buffer("sample_temperature")
        previous = state[index]
        if self.training:
            new = F.aldr_kl_temperature(
                logits,
                temperature0=hp["temperature0"],
                alpha=hp["alpha"],
                normalize=hp["normalize"],
                sample_temperature=previous,
            ).to(previous.dtype)
            if self.ignore_index is not None and not target.is_floating_point():
                new = torch.where(target != self.ignore_index, new, previous)
            state[index] = new
        else:
            new = previous
        return F.aldr_kl(
            logits,
            target,
            **hp,
            sample_temperature=new,
            weight=self.weight,
            sample_weight=sample_weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            validate=self.validate,
        )
