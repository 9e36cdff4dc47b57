"""losslab: training losses for classifiers and embedding models.

Every loss is a pure function in :mod:`losslab.functional` and an ``nn.Module`` here,
registered with its formula, reference and verified properties::

    import losslab
    loss_fn = losslab.build_loss("ldr_kl")
    losslab.list_losses(property="symmetric")
"""

from losslab import functional, heads
from losslab.losses import *  # noqa: F403
from losslab.losses import __all__ as _losses_all
from losslab.registry import build_loss, list_losses, loss_info

__version__ = "0.1.0"
__all__ = [
    "__version__",
    "build_loss",
    "functional",
    "heads",
    "list_losses",
    "loss_info",
    *_losses_all,
]
