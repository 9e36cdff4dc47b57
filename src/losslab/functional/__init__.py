"""Functional losses: pure functions ``F.<loss>(logits, target, *, ...)``."""

from losslab.functional.active_passive import agce, aul, nce, nce_agce, nce_aul, nce_rce
from losslab.functional.comp_sum import comp_sum, gce, mae, sum_exp
from losslab.functional.cross_entropy import ce, focal
from losslab.functional.hinge import cs_svm, ww_svm
from losslab.functional.ldr import aldr_kl, aldr_kl_temperature, ldr_kl
from losslab.functional.noise_robust import jsc, mse, rce, rll, sce, tgce
from losslab.functional.spherical import z_loss

__all__ = [
    "agce",
    "aldr_kl",
    "aldr_kl_temperature",
    "aul",
    "ce",
    "comp_sum",
    "cs_svm",
    "focal",
    "gce",
    "jsc",
    "ldr_kl",
    "mae",
    "mse",
    "nce",
    "nce_agce",
    "nce_aul",
    "nce_rce",
    "rce",
    "rll",
    "sce",
    "sum_exp",
    "tgce",
    "ww_svm",
    "z_loss",
]
