"""Functional losses: pure functions ``F.<loss>(logits, target, *, ...)``."""

from losslab.functional.comp_sum import comp_sum, gce, mae, sum_exp
from losslab.functional.cross_entropy import ce, focal
from losslab.functional.hinge import cs_svm, ww_svm
from losslab.functional.ldr import aldr_kl, aldr_kl_temperature, ldr_kl
from losslab.functional.spherical import z_loss

__all__ = [
    "aldr_kl",
    "aldr_kl_temperature",
    "ce",
    "comp_sum",
    "cs_svm",
    "focal",
    "gce",
    "ldr_kl",
    "mae",
    "sum_exp",
    "ww_svm",
    "z_loss",
]
