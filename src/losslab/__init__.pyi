from losslab import functional as functional
from losslab import heads as heads
from losslab import losses as losses
from losslab.losses import *  # noqa: F403  (the generated module classes)
from losslab.registry import build_loss as build_loss
from losslab.registry import list_losses as list_losses
from losslab.registry import loss_info as loss_info

__version__: str
