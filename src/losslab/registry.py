"""The loss registry: one entry per loss, the single source of names and metadata.

Each functional loss is registered once with :func:`register`; its ``nn.Module`` shell
attaches itself when its class is defined (see :class:`losslab.losses.LossModule`), so
the functional file never imports the module file. :func:`build_loss`,
:func:`list_losses`, :func:`loss_info` and the ``losslab`` CLI all read from here, and
the generic test-suite parametrises over it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from losslab._validate import Constraint, check_hparams

#: Keyword arguments of every classification loss that are call options, not hyperparameters.
CALL_OPTIONS = ("weight", "sample_weight", "ignore_index", "reduction", "validate")
#: Per-call inputs that a module passes through ``forward(..., **extra)``.
PER_CALL = ("sample_weight", "index", "sample_temperature", "return_components")


@dataclass(frozen=True)
class Claim:
    """A declared property and the hyperparameters under which it holds.

    Attributes:
        params: hyperparameter overrides (on top of the defaults) at which the claim holds.
        bound: for ``bounded``: the upper bound, a number or ``f(config, num_classes)``.
        offset: for ``reduces_to_ce``: ``loss == CE + offset(num_classes)``.
        scale: for ``reduces_to_ce``: ``loss == scale * CE + offset``.
    """

    params: Mapping[str, Any] = field(default_factory=dict)
    bound: float | Callable[[Mapping[str, Any], int], float] | None = None
    offset: Callable[[int], float] | None = None
    scale: float = 1.0

    def upper_bound(self, config: Mapping[str, Any], num_classes: int) -> float:
        if self.bound is None:
            raise ValueError("this claim declares no bound")
        return float(self.bound(config, num_classes) if callable(self.bound) else self.bound)


@dataclass(frozen=True)
class LossSpec:
    """Everything the library knows about one loss."""

    name: str
    function: Callable[..., torch.Tensor]
    family: str
    properties: Mapping[str, Claim]
    reference: str
    formula: str
    defaults: Mapping[str, Any]
    constraints: Mapping[str, Constraint]
    soft_targets: bool = True
    neg_inf_ok: bool = True
    #: the fewest classes the loss is defined for (e.g. 2 where it divides by C - 1).
    min_classes: int = 1
    stateful: bool = False
    #: configurations beyond the defaults that the generic tests also exercise.
    test_configs: tuple[Mapping[str, Any], ...] = ()
    #: constructor-only arguments of the module (e.g. ``num_samples`` of a stateful loss).
    module_args: Mapping[str, Any] = field(default_factory=dict)
    module: type | None = None

    @property
    def summary(self) -> str:
        doc = inspect.getdoc(self.function) or ""
        return doc.splitlines()[0] if doc else ""

    def property_labels(self) -> list[str]:
        """Declared properties, with the hyperparameters of conditional claims."""
        out = []
        for prop in sorted(self.properties):
            params = self.properties[prop].params
            at = ",".join(f"{k}={v}" for k, v in params.items())
            out.append(f"{prop}[{at}]" if at else prop)
        return out

    def check_config(self, config: Mapping[str, Any]) -> None:
        """Raise on unknown or out-of-range hyperparameters."""
        unknown = sorted(set(config) - set(self.defaults))
        if unknown:
            raise TypeError(
                f"{self.name}: unknown hyperparameter(s) {unknown}; "
                f"expected some of {sorted(self.defaults)}"
            )
        check_hparams(self.name, self.constraints, config)

    def config(self, **overrides: Any) -> dict[str, Any]:
        """Defaults merged with validated overrides."""
        self.check_config(overrides)
        return {**self.defaults, **overrides}

    def build(self, *, num_samples: int | None = None, **config: Any) -> torch.nn.Module:
        """The loss's module; ``num_samples`` (the training-set size) is passed only to
        stateful losses, which keep per-example state, and ignored by the others."""
        if self.module is None:
            raise ValueError(f"{self.name}: no module is attached to this loss")
        if self.stateful:
            if num_samples is None:
                raise TypeError(
                    f"{self.name}: num_samples expected the training-set size "
                    "(this loss keeps per-example state), got None"
                )
            config = {**config, "num_samples": num_samples}
        return self.module(**config)


_REGISTRY: dict[str, LossSpec] = {}
_BY_FUNCTION: dict[Callable[..., Any], str] = {}


def _hyperparameter_defaults(fn: Callable[..., Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in inspect.signature(fn).parameters.values():
        if p.kind is not inspect.Parameter.KEYWORD_ONLY:
            continue
        if p.name in CALL_OPTIONS or p.name in PER_CALL:
            continue
        if p.default is inspect.Parameter.empty:
            raise TypeError(f"{fn.__name__}: hyperparameter {p.name!r} needs a default")
        out[p.name] = p.default
    return out


def register(
    name: str,
    *,
    family: str,
    reference: str,
    formula: str,
    properties: Mapping[str, Claim | Mapping[str, Any]] | Iterable[str] = (),
    constraints: Mapping[str, Constraint] | None = None,
    soft_targets: bool = True,
    neg_inf_ok: bool = True,
    min_classes: int = 1,
    stateful: bool = False,
    test_configs: Iterable[Mapping[str, Any]] = (),
    module_args: Mapping[str, Any] | None = None,
) -> Callable[[Callable[..., torch.Tensor]], Callable[..., torch.Tensor]]:
    """Register a functional loss under ``name``; returns the function unchanged."""
    from losslab.properties import PROPERTIES

    if isinstance(properties, Mapping):
        claims = {
            k: v if isinstance(v, Claim) else Claim(params=dict(v)) for k, v in properties.items()
        }
    else:
        claims = {k: Claim() for k in properties}
    unknown = sorted(set(claims) - set(PROPERTIES))
    if unknown:
        raise ValueError(f"register({name!r}): unknown properties {unknown}; see PROPERTIES")

    def deco(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        if name in _REGISTRY:
            raise ValueError(f"register: the name {name!r} is already registered")
        defaults = _hyperparameter_defaults(fn)
        cons = dict(constraints or {})
        stray = sorted(set(cons) - set(defaults))
        if stray:
            raise ValueError(f"register({name!r}): constraints for non-hyperparameters {stray}")
        spec = LossSpec(
            name=name,
            function=fn,
            family=family,
            properties=claims,
            reference=reference,
            formula=formula,
            defaults=defaults,
            constraints=cons,
            soft_targets=soft_targets,
            neg_inf_ok=neg_inf_ok,
            min_classes=min_classes,
            stateful=stateful,
            test_configs=tuple(test_configs),
            module_args=dict(module_args or {}),
        )
        _REGISTRY[name] = spec
        _BY_FUNCTION[fn] = name
        return fn

    return deco


def attach_module(function: Callable[..., Any], module: type) -> LossSpec:
    """Record ``module`` as the ``nn.Module`` shell of the registered ``function``."""
    name = _BY_FUNCTION.get(function)
    if name is None:
        raise ValueError(f"{module.__name__}: its function {function!r} is not registered")
    spec = _REGISTRY[name]
    object.__setattr__(spec, "module", module)
    return spec


def spec_of(function: Callable[..., Any]) -> LossSpec:
    """The spec of a registered function."""
    return _REGISTRY[_BY_FUNCTION[function]]


def loss_info(name: str) -> LossSpec:
    """The :class:`LossSpec` of a registered loss."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown loss {name!r}; registered losses: {', '.join(sorted(_REGISTRY))}"
        ) from None


def list_losses(family: str | None = None, property: str | None = None) -> list[str]:
    """Names of registered losses, optionally filtered by family or declared property."""
    _ensure_loaded()
    if property is not None:
        from losslab.properties import PROPERTIES

        if property not in PROPERTIES:
            raise ValueError(
                f"list_losses: property expected one of {sorted(PROPERTIES)}, got {property!r}"
            )
    families = {s.family for s in _REGISTRY.values()}
    if family is not None and family not in families:
        raise ValueError(f"list_losses: family expected one of {sorted(families)}, got {family!r}")
    return sorted(
        n
        for n, s in _REGISTRY.items()
        if (family is None or s.family == family) and (property is None or property in s.properties)
    )


def build_loss(name: str, **config: Any) -> torch.nn.Module:
    """Build the module of loss ``name``, e.g. ``build_loss("focal", gamma=2.0)``.

    Accepts the same keywords as the module's constructor: hyperparameters, ``weight``,
    ``ignore_index``, ``reduction``, ``validate`` and module-only arguments.
    """
    spec = loss_info(name)
    if spec.module is None:
        raise ValueError(f"loss {name!r} has no module attached")
    return spec.module(**config)


def _ensure_loaded() -> None:
    # Importing the package registers every loss and attaches every module.
    import losslab  # noqa: F401
