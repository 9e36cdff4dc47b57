"""Loss modules (``nn.Module`` shells of the functional losses)."""

from losslab.losses._base import LossModule
from losslab.losses.comp_sum import CompSumLoss, GCELoss, MAELoss, SumExpLoss
from losslab.losses.cross_entropy import CELoss, FocalLoss

__all__ = ["CELoss", "CompSumLoss", "FocalLoss", "GCELoss", "LossModule", "MAELoss", "SumExpLoss"]
