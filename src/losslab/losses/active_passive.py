"""Modules of the active-passive family."""

from losslab import functional as F
from losslab.losses._base import LossModule


class NCELoss(LossModule):
    """Normalized cross-entropy (:func:`losslab.functional.nce`)."""

    function = staticmethod(F.nce)


class NCERCELoss(LossModule):
    """Active-passive NCE + RCE (:func:`losslab.functional.nce_rce`)."""

    function = staticmethod(F.nce_rce)


class AGCELoss(LossModule):
    """Asymmetric generalized cross-entropy (:func:`losslab.functional.agce`)."""

    function = staticmethod(F.agce)


class AULLoss(LossModule):
    """Asymmetric unhinged loss (:func:`losslab.functional.aul`)."""

    function = staticmethod(F.aul)


class NCEAGCELoss(LossModule):
    """Active-passive NCE + AGCE (:func:`losslab.functional.nce_agce`)."""

    function = staticmethod(F.nce_agce)


class NCEAULLoss(LossModule):
    """Active-passive NCE + AUL (:func:`losslab.functional.nce_aul`)."""

    function = staticmethod(F.nce_aul)
