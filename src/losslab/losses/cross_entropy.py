"""Modules of the cross-entropy family."""

from losslab import functional as F
from losslab.losses._base import LossModule


class CELoss(LossModule):
    """Cross-entropy with soft targets and label smoothing (:func:`losslab.functional.ce`)."""

    function = staticmethod(F.ce)


class FocalLoss(LossModule):
    """Multi-class focal loss (:func:`losslab.functional.focal`)."""

    function = staticmethod(F.focal)
