"""Output heads for large output spaces.

* :func:`linear_cross_entropy` / :class:`LinearCrossEntropy`: fused, chunked linear +
  cross-entropy that never holds more than one chunk of logits (CPU and GPU); its options are
  one frozen :class:`HeadOptions`.
* :func:`vocab_parallel_linear_cross_entropy`: the same engine for tensor-parallel ranks that
  each hold a slice of the vocabulary.
* :class:`SphericalOutput`: factored output layer with exact O(D^2) updates of the spherical
  loss family (squared error, spherical softmax, the Z-loss), independent of the class count.
* :class:`MarginHead`: class centres for the angular-margin losses (ArcFace, CosFace,
  SphereFace, UNPG); :class:`ClipHead`: CLIP's loss with a learnable temperature.
* :class:`EquiangularHead` / :func:`equiangular_basis` and :class:`SimplexETFHead` /
  :func:`simplex_etf`: fixed classifiers.
* :class:`BalancedMSE`: Balanced MSE with its learnable noise scale.
* :class:`FourierHead`: hidden vector -> smooth Fourier density on [-1, 1] -> logits over
  bins, with its frequency regulariser (Gillman et al., ICLR 2025).
"""

from ._engine import HeadOptions
from .balanced_mse import BalancedMSE
from .fixed import EquiangularHead, SimplexETFHead, equiangular_basis, simplex_etf
from .fourier import FourierHead
from .linear_ce import LinearCrossEntropy, auto_chunk_size, linear_cross_entropy
from .margin import ClipHead, MarginHead
from .spherical import SphericalOutput, spherical_loss_from_stats
from .vocab_parallel import vocab_parallel_linear_cross_entropy, vocab_slice

__all__ = [
    "BalancedMSE",
    "ClipHead",
    "EquiangularHead",
    "FourierHead",
    "HeadOptions",
    "LinearCrossEntropy",
    "MarginHead",
    "SimplexETFHead",
    "SphericalOutput",
    "auto_chunk_size",
    "equiangular_basis",
    "linear_cross_entropy",
    "simplex_etf",
    "spherical_loss_from_stats",
    "vocab_parallel_linear_cross_entropy",
    "vocab_slice",
]
