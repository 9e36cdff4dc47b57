"""Functional losses: pure functions ``F.<loss>(inputs..., *, hyperparameters, options)``.

Every module of this package that does not start with an underscore is a loss family;
importing it registers its losses, and the registry supplies the exports. Static
signatures for type checkers and IDEs are in the generated ``__init__.pyi``.
"""

import importlib as _importlib
import pkgutil as _pkgutil

from losslab.registry import registered as _registered

for _family in _pkgutil.iter_modules(__path__):
    if not _family.name.startswith("_"):
        _importlib.import_module(f"{__name__}.{_family.name}")

from losslab.functional.angular_margin import (  # noqa: E402
    arcface_logits as arcface_logits,
)
from losslab.functional.angular_margin import (  # noqa: E402
    cosface_logits as cosface_logits,
)
from losslab.functional.angular_margin import (  # noqa: E402
    sphereface_logits as sphereface_logits,
)
from losslab.functional.imbalance import (  # noqa: E402
    class_balanced_weights as class_balanced_weights,
)
from losslab.functional.imbalance import (  # noqa: E402
    post_hoc_logit_adjust as post_hoc_logit_adjust,
)
from losslab.functional.ldr import aldr_kl_temperature as aldr_kl_temperature  # noqa: E402
from losslab.functional.metric_learning import (  # noqa: E402
    MultiSimilarityMiner as MultiSimilarityMiner,
)
from losslab.functional.regression_bins import RegressionBins as RegressionBins  # noqa: E402
from losslab.functional.retrieval import soft_topk_probs as soft_topk_probs  # noqa: E402

#: Public helpers of the families that are not losses, ordered by module (the generated
#: stubs import them in this order).
HELPERS = (
    "arcface_logits",
    "cosface_logits",
    "sphereface_logits",
    "class_balanced_weights",
    "post_hoc_logit_adjust",
    "aldr_kl_temperature",
    "MultiSimilarityMiner",
    "RegressionBins",
    "soft_topk_probs",
)

globals().update({name: spec.function for name, spec in _registered().items()})
__all__ = sorted([*_registered(), *HELPERS])  # pyright: ignore[reportUnsupportedDunderAll]
