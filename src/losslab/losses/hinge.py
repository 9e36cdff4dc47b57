"""Modules of the multi-class hinge family."""

from losslab import functional as F
from losslab.losses._base import LossModule


class CSSVMLoss(LossModule):
    """Crammer-Singer multi-class hinge loss (:func:`losslab.functional.cs_svm`)."""

    function = staticmethod(F.cs_svm)


class WWSVMLoss(LossModule):
    """Weston-Watkins multi-class hinge loss (:func:`losslab.functional.ww_svm`)."""

    function = staticmethod(F.ww_svm)
