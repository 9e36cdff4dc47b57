"""Modules of the comp-sum family."""

from losslab import functional as F
from losslab.losses._base import LossModule


class CompSumLoss(LossModule):
    """Comp-sum loss Phi^tau (:func:`losslab.functional.comp_sum`)."""

    function = staticmethod(F.comp_sum)


class SumExpLoss(LossModule):
    """Sum-exponential loss (:func:`losslab.functional.sum_exp`)."""

    function = staticmethod(F.sum_exp)


class GCELoss(LossModule):
    """Generalized cross-entropy (:func:`losslab.functional.gce`)."""

    function = staticmethod(F.gce)


class MAELoss(LossModule):
    """Mean absolute error 1 - p_y (:func:`losslab.functional.mae`)."""

    function = staticmethod(F.mae)
