"""Loss configurations that refer to the cell's training labels.

Imbalance losses take the training class counts or priors (``balanced_softmax``'s
``class_counts``, ``logit_adjusted``'s ``priors``, ``class_balanced_ce``'s
``class_counts``), which a grid cannot spell out: they depend on the dataset, the
corruption and the seed. A grid writes the name of the statistic instead, and the cell
replaces it by the statistic of its training split:

| value | replaced by |
|---|---|
| ``"train_counts"`` | per-class counts of the training labels, ``(K,)`` float |
| ``"train_priors"`` | the same counts divided by their sum |

The labels are the *noisy* training labels, the only ones a learner sees. A class with
no training example counts as one, so that logarithms and effective numbers stay finite
(long-tailed splits at ratio 100 keep at least one example per class before the
validation split, which may take it). The cell key hashes the name, not the values: the
values follow from the dataset, corruption and seed, which the key holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["TRAIN_STATISTICS", "resolve_loss_config"]

#: the names a loss config may use, and what they stand for
TRAIN_STATISTICS = {
    "train_counts": "per-class counts of the training labels",
    "train_priors": "per-class frequencies of the training labels",
}


def resolve_loss_config(
    config: Mapping[str, Any], y_train: torch.Tensor | None = None, num_classes: int = 2
) -> dict[str, Any]:
    """``config`` with every :data:`TRAIN_STATISTICS` name replaced by that statistic
    of ``y_train`` (int labels in ``[0, num_classes)``). Without labels the statistics
    are uniform placeholders of ``num_classes`` entries, for checking a config before
    any data is loaded.

    Example:
        >>> import torch
        >>> cfg = resolve_loss_config({"priors": "train_priors", "tau": 1.0},
        ...                           torch.tensor([0, 0, 0, 1]), 3)
        >>> cfg["priors"], cfg["tau"]
        (tensor([0.6000, 0.2000, 0.2000]), 1.0)
    """
    if not any(isinstance(v, str) and v in TRAIN_STATISTICS for v in config.values()):
        return dict(config)
    if y_train is None:
        counts = torch.ones(num_classes)
    else:
        counts = torch.bincount(y_train.long(), minlength=num_classes).clamp_min(1).float()
    stats = {"train_counts": counts, "train_priors": counts / counts.sum()}
    return {
        k: stats[v].clone() if isinstance(v, str) and v in stats else v for k, v in config.items()
    }
