"""Functional losses: pure functions ``F.<loss>(logits, target, *, ...)``."""

from losslab.functional.active_passive import agce, aul, nce, nce_agce, nce_aul, nce_rce
from losslab.functional.comp_sum import comp_sum, gce, mae, sum_exp
from losslab.functional.cross_entropy import ce, focal
from losslab.functional.noise_robust import jsc, mse, rce, rll, sce, tgce

__all__ = ["ce", "comp_sum", "focal", "gce", "mae", "sum_exp"]
__all__ += ["jsc", "mse", "rce", "rll", "sce", "tgce"]
__all__ += ["agce", "aul", "nce", "nce_agce", "nce_aul", "nce_rce"]
