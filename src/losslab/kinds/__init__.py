"""Input kinds: what a loss takes, how it is validated, and how it is reduced.

A registered loss is written as a *kernel* on the validated input of its kind (see
:func:`losslab.registry.register`). The kind owns everything around the math:

* the positional inputs and their documentation (``logits, target`` for ``multiclass``);
* the call options (``weight``, ``sample_weight``, ``ignore_index``, ``reduction``,
  ``validate``, ...), their defaults, annotations and documentation;
* the validation stage that turns raw arguments into one input object (shapes, dtypes,
  target formats, value checks), parametrised by per-loss *rules* declared in ``register``;
* the reduction rule: every input object carries a validity ``mask`` and element
  ``weight`` with which the registry reduces the kernel's per-element losses
  (:func:`losslab._reduce.reduce_result`).

Adding a kind is adding one module here (see ``docs/design.md``, "Adding a kind").
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

#: Marks a parameter without default.
REQUIRED: Any = object()


@dataclass(frozen=True)
class Param:
    """One input or call option: its name, default, type (as source text) and doc."""

    name: str
    annotation: str
    doc: str
    default: Any = REQUIRED


class Input(Protocol):
    """What every kind's validation stage returns (plus kind-specific fields)."""

    mask: Tensor | None
    weight: Tensor | None

    @property
    def element_shape(self) -> torch.Size: ...


@dataclass(frozen=True)
class Kind:
    """An input kind: inputs, call options, per-loss rules, validation stage, docs.

    Attributes:
        name: ``"multiclass"``, ``"binary"``, ...
        inputs: positional tensor inputs of the public function and of ``forward``.
        options: keyword-only call options of the public function, in order.
        per_call: the options a module takes in ``forward`` rather than its constructor.
        rules: per-loss rules declared in ``register`` and their defaults; a rule's value
            may be a callable of the loss's configuration.
        prepare: ``prepare(loss_name, rules, *inputs, **options) -> Input``.
        returns: the docstring's ``Returns`` text.
        module_example: doctest lines showing a module of this kind (``{cls}``, ``{args}``
            and ``{call}`` are filled in per loss).
    """

    name: str
    inputs: tuple[Param, ...]
    options: tuple[Param, ...]
    per_call: tuple[str, ...]
    rules: Mapping[str, Any]
    prepare: Callable[..., Any]
    returns: str
    module_example: str
    description: str = ""

    @property
    def option_defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.options}

    @property
    def constructor_options(self) -> tuple[Param, ...]:
        return tuple(p for p in self.options if p.name not in self.per_call)


def ignore_index_param(doc: str = "elements whose target equals it are masked out.") -> Param:
    return Param("ignore_index", "int | None", doc, None)


#: The reduction option, the same for every kind.
REDUCTION_PARAM = Param(
    "reduction",
    "str",
    '`"none"` (per element `w * l`), `"sum"`, or `"mean"` (`sum(w l) / sum(w)` over valid '
    "elements).",
    "mean",
)


def validate_param(checks: str) -> Param:
    """The ``validate`` option; ``checks`` names the kind's value checks."""
    return Param(
        "validate", "bool", f"run the value checks ({checks}); skipped while compiling.", True
    )


def resolve_annotations(annotations: dict[str, str]) -> dict[str, Any]:
    """Annotation source texts as runtime objects where they evaluate (``"Tensor | None"``
    becomes ``torch.Tensor | None``), so ``inspect.signature`` and ``help()`` show types."""
    names = {"Tensor": Tensor, "Any": Any, "Callable": Callable, "Mapping": Mapping}
    out: dict[str, Any] = {}
    for key, text in annotations.items():
        try:
            out[key] = eval(text, names)  # texts come from the library's own signatures
        except Exception:
            out[key] = text
    return out


KINDS: dict[str, Kind] = {}


def define_kind(kind: Kind) -> Kind:
    if kind.name in KINDS:
        raise ValueError(f"define_kind: the kind {kind.name!r} is already defined")
    KINDS[kind.name] = kind
    return kind


def get_kind(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"register: kind expected one of {sorted(KINDS)}, got {name!r}") from None


__all__ = [
    "KINDS",
    "REDUCTION_PARAM",
    "REQUIRED",
    "Input",
    "Kind",
    "Param",
    "define_kind",
    "get_kind",
    "ignore_index_param",
    "resolve_annotations",
    "validate_param",
]

# Every module of this package defines one kind (and imports the names above).
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
