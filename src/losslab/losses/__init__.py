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
from losslab.losses.hinge import CSSVMLoss, WWSVMLoss
from losslab.losses.ldr import ALDRKLLoss, LDRKLLoss
from losslab.losses.noise_robust import JSCLoss, MSELoss, RCELoss, RLLLoss, SCELoss, TGCELoss
from losslab.losses.spherical import ZLoss

__all__ = [
    "AGCELoss",
    "ALDRKLLoss",
    "AULLoss",
    "CELoss",
    "CSSVMLoss",
    "CompSumLoss",
    "FocalLoss",
    "GCELoss",
    "JSCLoss",
    "LDRKLLoss",
    "LossModule",
    "MAELoss",
    "MSELoss",
    "NCEAGCELoss",
    "NCEAULLoss",
    "NCELoss",
    "NCERCELoss",
    "RCELoss",
    "RLLLoss",
    "SCELoss",
    "SumExpLoss",
    "TGCELoss",
    "WWSVMLoss",
    "ZLoss",
]
