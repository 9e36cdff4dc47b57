"""Functional losses: pure functions ``F.<loss>(logits, target, *, ...)``."""

from losslab.functional.comp_sum import comp_sum, gce, mae, sum_exp
from losslab.functional.cross_entropy import ce, focal

__all__ = ["ce", "comp_sum", "focal", "gce", "mae", "sum_exp"]
