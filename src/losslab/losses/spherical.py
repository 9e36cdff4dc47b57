"""Modules of the spherical family."""

from losslab import functional as F
from losslab.losses._base import LossModule


class ZLoss(LossModule):
    """Z-loss of de Brebisson & Vincent (:func:`losslab.functional.z_loss`)."""

    function = staticmethod(F.z_loss)
