"""Naive oracles; importing the package registers every ``naive_*.py`` module."""

import importlib
import pkgutil

from tests.reference.base import REFERENCE

for _mod in pkgutil.iter_modules(__path__):
    if _mod.name.startswith("naive_"):
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["REFERENCE"]
