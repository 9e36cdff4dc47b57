"""Loss modules (``nn.Module`` shells of the functional losses)."""

from losslab.losses._base import LossModule
from losslab.losses.active_passive import (
    AGCELoss,
    AULLoss,
    NCEAGCELoss,
    NCEAULLoss,
    NCELoss,
    NCERCELoss,
)
from losslab.losses.comp_sum import CompSumLoss, GCELoss, MAELoss, SumExpLoss
from losslab.losses.cross_entropy import CELoss, FocalLoss
from losslab.losses.noise_robust import JSCLoss, MSELoss, RCELoss, RLLLoss, SCELoss, TGCELoss

__all__ = ["CELoss", "CompSumLoss", "FocalLoss", "GCELoss", "LossModule", "MAELoss", "SumExpLoss"]
__all__ += ["JSCLoss", "MSELoss", "RCELoss", "RLLLoss", "SCELoss", "TGCELoss"]
__all__ += ["AGCELoss", "AULLoss", "NCEAGCELoss", "NCEAULLoss", "NCELoss", "NCERCELoss"]
