"""Loss modules (``nn.Module`` shells of the functional losses)."""

from losslab.losses._base import LossModule
from losslab.losses.comp_sum import CompSumLoss, GCELoss, MAELoss, SumExpLoss
from losslab.losses.cross_entropy import CELoss, FocalLoss
from losslab.losses.hinge import CSSVMLoss, WWSVMLoss
from losslab.losses.ldr import ALDRKLLoss, LDRKLLoss
from losslab.losses.spherical import ZLoss

__all__ = [
    "ALDRKLLoss",
    "CELoss",
    "CSSVMLoss",
    "CompSumLoss",
    "FocalLoss",
    "GCELoss",
    "LDRKLLoss",
    "LossModule",
    "MAELoss",
    "SumExpLoss",
    "WWSVMLoss",
    "ZLoss",
]
