"""losslab: training losses for classifiers and embedding models.

Every loss is a pure function in :mod:`losslab.functional` and an ``nn.Module`` here,
registered with its formula, reference and verified properties::

    import losslab
    loss_fn = losslab.build_loss("ldr_kl")
    losslab.list_losses(property="symmetric")

The package imports its submodules (and torch) on first use of one of its names, so
that ``losslab --help`` and ``import losslab`` alone stay fast. Static types are in
``__init__.pyi``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> module that defines it (the loss module classes come from losslab.losses)
_FROM = {
    "functional": "losslab.functional",
    "heads": "losslab.heads",
    "losses": "losslab.losses",
    "build_loss": "losslab.registry",
    "list_losses": "losslab.registry",
    "loss_info": "losslab.registry",
}


def __getattr__(name: str) -> Any:
    if name in _FROM:
        module = importlib.import_module(_FROM[name])
        value = module if module.__name__ == f"losslab.{name}" else getattr(module, name)
    elif name == "__all__":
        value = ["__version__", *sorted(_FROM), *importlib.import_module("losslab.losses").__all__]
    else:
        losses = importlib.import_module("losslab.losses")
        if name not in losses.__all__:
            raise AttributeError(f"module 'losslab' has no attribute {name!r}")
        value = getattr(losses, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__getattr__("__all__")))
