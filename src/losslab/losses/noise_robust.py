"""Modules of the noise-robust family."""

from losslab import functional as F
from losslab.losses._base import LossModule


class MSELoss(LossModule):
    """Brier score: squared error between softmax and target (:func:`losslab.functional.mse`)."""

    function = staticmethod(F.mse)


class RCELoss(LossModule):
    """Reverse cross-entropy A (1 - p_y) (:func:`losslab.functional.rce`)."""

    function = staticmethod(F.rce)


class SCELoss(LossModule):
    """Symmetric cross-entropy alpha CE + beta RCE (:func:`losslab.functional.sce`)."""

    function = staticmethod(F.sce)


class TGCELoss(LossModule):
    """Truncated generalized cross-entropy (:func:`losslab.functional.tgce`)."""

    function = staticmethod(F.tgce)


class RLLLoss(LossModule):
    """Robust log loss (:func:`losslab.functional.rll`)."""

    function = staticmethod(F.rll)


class JSCLoss(LossModule):
    """Scaled Jensen-Shannon loss (:func:`losslab.functional.jsc`)."""

    function = staticmethod(F.jsc)
