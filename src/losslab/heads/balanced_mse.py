"""Balanced MSE with its learnable noise scale (Ren et al., CVPR 2022)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from losslab._validate import Real, fail


class BalancedMSE(nn.Module):
    """Balanced MSE that learns its noise scale $\\sigma$, as in the paper.

    Holds `noise_sigma` as an `nn.Parameter` and calls
    `losslab.functional.balanced_mse` with it, so the loss and the scale train together.
    The official code gives $\\sigma$ a parameter group of its own with learning rate
    1e-2; `sigma_parameters()` returns it for that purpose.

    Args:
        init_noise_sigma: initial $\\sigma$ (the official 1.0); its sign is irrelevant.
        **config: the loss's hyperparameters and options (`method`, `prior_centers`,
            `prior_weights`, `prior_variances`, `reduction`, `validate`, `ignore_index`),
            as for `losslab.BalancedMSELoss`.

    Example:
        >>> import torch
        >>> from losslab.heads import BalancedMSE
        >>> loss_fn = BalancedMSE(init_noise_sigma=1.0)
        >>> pred = torch.tensor([[0.5], [1.5], [2.0]], requires_grad=True)
        >>> loss = loss_fn(pred, torch.tensor([[0.0], [2.0], [2.5]]))
        >>> loss.backward()
        >>> loss_fn.noise_sigma.grad is not None
        True
    """

    def __init__(self, *, init_noise_sigma: float = 1.0, **config: Any) -> None:
        super().__init__()
        Real().check("BalancedMSE", "init_noise_sigma", init_noise_sigma)
        if init_noise_sigma == 0:
            fail("BalancedMSE", "init_noise_sigma", "a finite non-zero noise scale", "0.0")
        if "noise_sigma" in config:
            fail(
                "BalancedMSE",
                "noise_sigma",
                "no value (it is the learnable parameter; set init_noise_sigma)",
                repr(config["noise_sigma"]),
                TypeError,
            )
        # Imported here: the registry builds the loss module when losslab.functional loads.
        from losslab.losses import BalancedMSELoss

        self.loss = BalancedMSELoss(**config)
        self.noise_sigma = nn.Parameter(torch.tensor(float(init_noise_sigma)))

    def sigma_parameters(self) -> list[nn.Parameter]:
        """The learnable noise scale, for an optimiser parameter group of its own."""
        return [self.noise_sigma]

    def forward(self, pred: Tensor, target: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        spec = self.loss.spec
        return spec.function(  # type: ignore[no-any-return]
            pred,
            target,
            **{**self.loss.hyperparameters(), "noise_sigma": self.noise_sigma},
            **self.loss.options(),
            sample_weight=sample_weight,
        )
