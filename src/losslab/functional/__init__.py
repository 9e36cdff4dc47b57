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

from losslab.functional.ldr import aldr_kl_temperature as aldr_kl_temperature  # noqa: E402
from losslab.functional.regression_bins import RegressionBins as RegressionBins  # noqa: E402

#: Public helpers of the families that are not losses.
HELPERS = ("aldr_kl_temperature", "RegressionBins")

globals().update({name: spec.function for name, spec in _registered().items()})
__all__ = sorted([*_registered(), *HELPERS])  # pyright: ignore[reportUnsupportedDunderAll]
