r"""The loss registry: one entry per loss, the single source of names and metadata.

A loss is written as its math, a *kernel* on the validated input of its kind::

    @register("focal", family="cross_entropy", module="FocalLoss", reference="...",
              properties={"shift_invariant": {}}, constraints={"gamma": Real(0.0)})
    def focal(inp: MulticlassInput, *, gamma: float = 2.0) -> Tensor:
        r\"\"\"Summary line.

        $$ \ell(z, y) = -(1 - p_y)^\gamma \log p_y $$

        Args:
            gamma: ...

        Example:
            >>> ...
        \"\"\"
        ...  # per-element losses

:func:`register` builds everything else from it: the public function (the kind's
inputs, the hyperparameters and the kind's call options as one explicit signature; the
kind's validation stage, the kernel, the library's one reduction), its ``nn.Module``
class, the exports of :mod:`losslab.functional` and :mod:`losslab`, and the docstring's
generated sections (inputs, call options, returns, verified properties, reference).
:func:`build_loss`, :func:`list_losses`, :func:`loss_info`, the CLI, the docs and the
generic test-suites all read from here.
"""

from __future__ import annotations

import collections
import importlib
import inspect
import re
import textwrap
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from losslab._module import LossModule, finish, make_module_class
from losslab._reduce import KernelResult
from losslab._validate import (
    Constraint,
    Real,
    check_hparams,
    check_per_sample,
    check_values_in,
    value_checks_enabled,
)
from losslab.kinds import REQUIRED, Kind, Param, get_kind, resolve_annotations

#: The property vocabulary. Each property has a numerical check in
#: :mod:`losslab.properties`, run by the generic tests for every loss that declares it.
PROPERTIES: dict[str, str] = {
    "shift_invariant": "l(z + c) == l(z) for any per-row constant c",
    "scale_invariant": "l(a z) == l(z) for any per-row a > 0",
    "symmetric": "sum over k of l(z, k) is the same constant for every z (noise-robust, "
    "Ghosh, Kumar & Sastry, AAAI 2017)",
    "bounded": "0 <= l <= the declared bound for all logits",
    "convex": "l is convex in the logits",
    "classification_calibrated": "the minimiser of the expected loss under any class "
    "distribution ranks the most likely class first",
    "reduces_to_ce": "equals cross-entropy (up to a declared scale and constant) at the "
    "stated hyperparameters",
}


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

    def label(self, prop: str) -> str:
        at = ",".join(f"{k}={v}" for k, v in self.params.items())
        return f"{prop}[{at}]" if at else prop


@dataclass(frozen=True)
class PerSampleState:
    """Per-example state of a stateful loss (e.g. ALDR-KL's temperatures).

    The public function takes the state of the batch as the keyword ``name`` (default
    ``None``: ``init`` for every element). The module keeps one value per training example
    in the buffer ``name`` (indexed by ``forward(..., index=)``) and changes it in one of
    two ways, each computing ``f(inp, previous, **hyperparameters)`` without gradient:

    * ``update``: on every training call, before the kernel is evaluated at the new
      values (ALDR-KL's temperature ascent);
    * ``refresh``: only in the module's ``refresh(...)``, which a training loop calls over
      the training set before the epochs where ``refresh_due(config, epoch)`` holds
      (truncated GCE's pruning).

    The state is written only after the whole call succeeded, so a call that raises
    leaves it unchanged.
    """

    name: str
    init: Callable[[Mapping[str, Any]], float]
    constraint: Real
    doc: str
    update: Callable[..., Tensor] | None = None
    refresh: Callable[..., Tensor] | None = None
    refresh_due: Callable[[Mapping[str, Any], int], bool] | None = None

    def check(self, loss: str, value: object, shape: torch.Size, validate: bool) -> Tensor:
        t = check_per_sample(loss, self.name, value, shape, note=", one value per element")
        if value_checks_enabled(validate):
            check_values_in(loss, self.name, t, self.constraint, "per-element values")
        return t


class LossFunction(Protocol):
    """A registered public loss function (its precise signature is in the stubs)."""

    __name__: str

    def __call__(self, *inputs: Any, **options: Any) -> Tensor: ...


@dataclass(frozen=True)
class LossSpec:
    """Everything the library knows about one loss."""

    name: str
    kind: Kind
    kernel: Callable[..., Tensor | KernelResult]
    family: str
    properties: Mapping[str, Claim]
    reference: str
    defaults: Mapping[str, Any]
    annotations: Mapping[str, str]
    constraints: Mapping[str, Constraint]
    rules: Mapping[str, Any]
    module_name: str
    state: PerSampleState | None = None
    #: tensor inputs of the kernel beyond the kind's (keyword arguments of every call).
    extra_inputs: tuple[Param, ...] = ()
    #: named parts returned with ``return_components=True`` (after ``loss``).
    components: tuple[str, ...] = ()
    #: configurations beyond the defaults that the generic tests also exercise.
    test_configs: tuple[Mapping[str, Any], ...] = ()
    function: LossFunction = field(default=None)  # type: ignore[assignment]
    module: type[LossModule] = field(default=None)  # type: ignore[assignment]
    components_type: type[tuple[Any, ...]] | None = None

    @property
    def stateful(self) -> bool:
        return self.state is not None

    @property
    def summary(self) -> str:
        return _written_doc(self.kernel).splitlines()[0]

    @property
    def formula(self) -> str:
        """The first display-math block of the docstring (the loss's definition)."""
        return _formula(self.name, _written_doc(self.kernel))

    def rule(self, name: str, config: Mapping[str, Any] | None = None) -> Any:
        """A kind rule of this loss, resolved at ``config`` (defaults if omitted)."""
        value = self.rules[name]
        return value({**self.defaults, **(config or {})}) if callable(value) else value

    def resolve_rules(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v(config) if callable(v) else v for k, v in self.rules.items()}

    def property_labels(self) -> list[str]:
        """Declared properties, with the hyperparameters of conditional claims."""
        return [self.properties[p].label(p) for p in sorted(self.properties)]

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

    def build(self, *, num_samples: int | None = None, **config: Any) -> LossModule:
        """The loss's module; ``num_samples`` (the training-set size) is passed only to
        stateful losses, which keep per-example state, and ignored by the others."""
        if self.stateful:
            if num_samples is None:
                raise TypeError(
                    f"{self.name}: num_samples expected the training-set size "
                    "(this loss keeps per-example state), got None"
                )
            config = {**config, "num_samples": num_samples}
        return self.module(**config)

    def __call__(self, *inputs: Any, **options: Any) -> Tensor:
        return self.function(*inputs, **options)


_REGISTRY: dict[str, LossSpec] = {}


def register(
    name: str,
    *,
    family: str,
    reference: str,
    module: str,
    kind: str = "multiclass",
    properties: Mapping[str, Claim | Mapping[str, Any]] | Iterable[str] = (),
    constraints: Mapping[str, Constraint] | None = None,
    state: PerSampleState | None = None,
    extra_inputs: Iterable[Param] = (),
    components: Iterable[str] = (),
    test_configs: Iterable[Mapping[str, Any]] = (),
    **rules: Any,
) -> Callable[[Callable[..., Tensor | KernelResult]], LossFunction]:
    """Register the kernel of loss ``name``; returns its public function.

    Args:
        name: registry name (``"focal"``); also the public function's name.
        family: docs family (``docs/losses/<family>.md``).
        reference: paper (and official code) the loss follows.
        module: name of the generated ``nn.Module`` class (``"FocalLoss"``).
        kind: input kind (:mod:`losslab.kinds`), ``"multiclass"`` by default.
        properties: declared properties, each verified by the generic tests, optionally
            with the hyperparameters under which it holds (:class:`Claim`).
        constraints: hyperparameter constraints (``Real``, ``Int``, ``Choice``, ...),
            checked on every call and at module construction.
        state: per-example state, for stateful losses.
        extra_inputs: tensor inputs beyond the kind's (e.g. a feature map), passed by
            keyword to the function, the module's ``forward`` and the kernel; the kernel
            validates them.
        components: names of the parts the kernel returns in ``KernelResult.components``;
            the function and module then take ``return_components=True`` and return a
            NamedTuple ``(loss, *components)``.
        test_configs: hyperparameters beyond the defaults for the generic tests.
        **rules: rules of the kind (e.g. ``soft_targets=False``); a value may be a
            callable of the configuration.
    """
    kind_obj = get_kind(kind)
    if isinstance(properties, Mapping):
        claims = {
            k: v if isinstance(v, Claim) else Claim(params=dict(v)) for k, v in properties.items()
        }
    else:
        claims = {k: Claim() for k in properties}
    unknown = sorted(set(claims) - set(PROPERTIES))
    if unknown:
        raise ValueError(f"register({name!r}): unknown properties {unknown}; see PROPERTIES")
    if claims and kind != "multiclass":
        # The numerical checks of losslab.properties take multi-class inputs; a property
        # of another kind needs a check of its own before it can be declared.
        raise ValueError(f"register({name!r}): properties are verified for multiclass losses only")
    stray_rules = sorted(set(rules) - set(kind_obj.rules))
    if stray_rules:
        raise ValueError(
            f"register({name!r}): rules {stray_rules} are not rules of the {kind} kind "
            f"({sorted(kind_obj.rules)})"
        )

    extras = tuple(extra_inputs)
    parts = tuple(components)

    def deco(kernel: Callable[..., Tensor | KernelResult]) -> LossFunction:
        if name in _REGISTRY:
            raise ValueError(f"register: the name {name!r} is already registered")
        per_call = ([state.name] if state else []) + [p.name for p in extras]
        defaults, annotations = _hyperparameters(name, kernel, per_call)
        cons = dict(constraints or {})
        stray = sorted(set(cons) - set(defaults))
        if stray:
            raise ValueError(f"register({name!r}): constraints for non-hyperparameters {stray}")
        written = _written_doc(kernel)
        _formula(name, written)  # fail at import when the definition is missing
        spec = LossSpec(
            name=name,
            kind=kind_obj,
            kernel=kernel,
            family=family,
            properties=claims,
            reference=reference,
            defaults=defaults,
            annotations=annotations,
            constraints=cons,
            rules={**kind_obj.rules, **rules},
            module_name=module,
            state=state,
            extra_inputs=extras,
            components=parts,
            test_configs=tuple(test_configs),
            components_type=(
                collections.namedtuple(f"{module}Components", ["loss", *parts]) if parts else None
            ),
        )
        function = _make_function(spec)
        function.__doc__ = render_doc(spec, written)
        object.__setattr__(spec, "function", function)
        object.__setattr__(
            spec, "module", make_module_class(spec, render_module_doc(spec, written))
        )
        _REGISTRY[name] = spec
        return function

    return deco


def _hyperparameters(
    name: str, kernel: Callable[..., Any], per_call: list[str]
) -> tuple[dict[str, Any], dict[str, str]]:
    params = list(inspect.signature(kernel).parameters.values())
    if not params or params[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        raise TypeError(f"register({name!r}): a kernel takes the validated input first")
    defaults: dict[str, Any] = {}
    annotations: dict[str, str] = {}
    for p in params[1:]:
        if p.kind is not inspect.Parameter.KEYWORD_ONLY:
            raise TypeError(f"register({name!r}): hyperparameter {p.name!r} must be keyword-only")
        if p.name in per_call:
            continue
        if p.default is inspect.Parameter.empty:
            raise TypeError(f"register({name!r}): hyperparameter {p.name!r} needs a default")
        defaults[p.name] = p.default
        annotations[p.name] = _annotation_text(p.annotation)
    missing = sorted(set(per_call) - {p.name for p in params})
    if missing:
        raise TypeError(f"register({name!r}): the kernel lacks the keyword(s) {missing}")
    return defaults, annotations


def _annotation_text(annotation: object) -> str:
    if annotation is inspect.Parameter.empty:
        return "Any"
    if isinstance(annotation, str):
        return annotation
    return inspect.formatannotation(annotation)


# --------------------------------------------------------------------------- public function


def _call(
    spec: LossSpec,
    inputs: tuple[Any, ...],
    hyper: dict[str, Any],
    options: dict[str, Any],
    per_call: dict[str, Any],
    return_components: bool = False,
) -> Any:
    check_hparams(spec.name, spec.constraints, hyper)
    kind = spec.kind
    inp = kind.prepare(spec.name, spec.resolve_rules(hyper), *inputs, **options)
    if spec.state is not None and per_call[spec.state.name] is not None:
        per_call = {
            **per_call,
            spec.state.name: spec.state.check(
                spec.name, per_call[spec.state.name], inp.element_shape, options["validate"]
            ),
        }
    return finish(spec, inp, spec.kernel(inp, **hyper, **per_call), options, return_components)


def _make_function(spec: LossSpec) -> LossFunction:
    """The public function with an explicit signature: inputs, ``*``, hyperparameters,
    the state keyword (stateful losses), the kind's call options."""
    kind = spec.kind
    inputs = [p.name for p in kind.inputs]
    positional = [
        p.name if p.default is REQUIRED else f"{p.name}=_inputs[{p.name!r}]" for p in kind.inputs
    ]
    keywords = [f"{k}=_hyper[{k!r}]" for k in spec.defaults]
    keywords += [_keyword(p) for p in per_call_params(spec)]
    if spec.components:
        keywords.append("return_components=False")
    keywords += [f"{p.name}=_options[{p.name!r}]" for p in kind.options]
    hyper = "{" + ", ".join(f"{k!r}: {k}" for k in spec.defaults) + "}"
    opts = "{" + ", ".join(f"{p.name!r}: {p.name}" for p in kind.options) + "}"
    calls = "{" + ", ".join(f"{p.name!r}: {p.name}" for p in per_call_params(spec)) + "}"
    parts = "return_components" if spec.components else "False"
    source = (
        f"def {spec.name}({', '.join(positional)}, *, {', '.join(keywords)}):\n"
        f"    return _call(_spec, ({', '.join(inputs)},), {hyper}, {opts}, {calls}, {parts})\n"
    )
    namespace: dict[str, Any] = {
        "_call": _call,
        "_spec": spec,
        "_hyper": dict(spec.defaults),
        "_options": kind.option_defaults,
        "_inputs": {p.name: p.default for p in kind.inputs},
        "_extras": {p.name: p.default for p in spec.extra_inputs},
    }
    exec(compile(source, f"<losslab.functional.{spec.name}>", "exec"), namespace)
    fn = namespace[spec.name]
    fn.__module__ = spec.kernel.__module__
    fn.__qualname__ = spec.name
    fn.__annotations__ = resolve_annotations(
        {
            **{p.name: p.annotation for p in kind.inputs},
            **spec.annotations,
            **{p.name: p.annotation for p in per_call_params(spec)},
            **({"return_components": "bool"} if spec.components else {}),
            **{p.name: p.annotation for p in kind.options},
            "return": "Any" if spec.components else "Tensor",
        }
    )
    fn.kernel = spec.kernel
    fn.spec = spec
    return fn  # type: ignore[no-any-return]


def per_call_params(spec: LossSpec) -> tuple[Param, ...]:
    """The per-call keyword inputs of a loss beyond its kind's: its state, then its extra
    inputs."""
    if spec.state is None:
        return spec.extra_inputs
    return (Param(spec.state.name, "Tensor | None", spec.state.doc, None), *spec.extra_inputs)


def _keyword(p: Param) -> str:
    return p.name if p.default is REQUIRED else f"{p.name}=_extras.get({p.name!r})"


# --------------------------------------------------------------------------- documentation

_SECTION = re.compile(r"^(Args|Example|Examples):\s*$")


def _written_doc(kernel: Callable[..., Any]) -> str:
    return inspect.cleandoc(getattr(kernel, "__doc__", None) or "")


def _formula(name: str, doc: str) -> str:
    m = re.search(r"\$\$(.+?)\$\$", doc, flags=re.S)
    if not doc or m is None:
        raise ValueError(
            f"register({name!r}): the kernel's docstring needs a summary line and the "
            "loss's definition as a $$ ... $$ math block"
        )
    return " ".join(m.group(1).split())


def _sections(doc: str) -> tuple[str, dict[str, list[str]]]:
    """Split a cleaned docstring into its text before the first section and the
    ``Args`` / ``Example`` sections (their indented bodies)."""
    lines = doc.splitlines()
    intro: list[str] = []
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines:
        m = _SECTION.match(line)
        if m:
            current = sections.setdefault("Example" if m.group(1) == "Examples" else m.group(1), [])
        elif current is None:
            intro.append(line)
        else:
            current.append(line)
    return "\n".join(intro).rstrip(), sections


def _components_param(spec: LossSpec) -> Param:
    names = ", ".join(f"`{c}`" for c in spec.components)
    return Param(
        "return_components",
        "bool",
        f"return a NamedTuple `(loss, {', '.join(spec.components)})` instead of the loss: "
        f"the parts {names}, reduced like the loss where they are per element.",
        False,
    )


def _param_doc(p: Param) -> str:
    default = "" if p.default is REQUIRED else f" Default: `{p.default!r}`."
    return textwrap.fill(
        f"{p.name}: {p.doc}{default}", width=88, initial_indent="    ", subsequent_indent="        "
    )


def render_doc(spec: LossSpec, written: str) -> str:
    """The public docstring: the written summary, math and prose; ``Args`` with the
    kind's inputs, the written hyperparameters, the state and the kind's call options;
    then ``Returns``, the verified properties, the reference and the written example."""
    intro, sections = _sections(written)
    args = [_param_doc(p) for p in spec.kind.inputs]
    args += [line for line in sections.get("Args", []) if line.strip()]
    args += [_param_doc(p) for p in per_call_params(spec)]
    if spec.components:
        args.append(_param_doc(_components_param(spec)))
    args += [_param_doc(p) for p in spec.kind.options]
    returns = textwrap.fill(spec.kind.returns, 88, initial_indent="    ", subsequent_indent="    ")
    out = [intro, "", "Args:", *args, "", "Returns:", returns]
    if spec.properties:
        out += ["", "Properties:"]
        out += ["    Verified by the test-suite (`losslab.properties.verify`):"]
        for prop in sorted(spec.properties):
            claim = spec.properties[prop]
            at = ", ".join(f"`{k}={v!r}`" for k, v in claim.params.items())
            line = f"- `{prop}`{' at ' + at if at else ''}: {PROPERTIES[prop]}."
            out.append(textwrap.fill(line, 88, initial_indent="    ", subsequent_indent="      "))
    out += [
        "",
        "Reference:",
        textwrap.fill(spec.reference, 88, initial_indent="    ", subsequent_indent="    "),
    ]
    if "Example" in sections:
        out += ["", "Example:", *sections["Example"]]
    return "\n".join(out).rstrip() + "\n"


def render_module_doc(spec: LossSpec, written: str) -> str:
    """The module class's docstring: summary, constructor arguments, ``forward``'s inputs
    and a runnable example."""
    intro, sections = _sections(written)
    kind = spec.kind
    summary = intro.splitlines()[0]
    ctor = [line for line in sections.get("Args", []) if line.strip()]
    if spec.state is not None:
        ctor.append("    num_samples: the training-set size; one state value is kept per example.")
    ctor += [_param_doc(p) for p in kind.constructor_options]
    forward = [_param_doc(p) for p in kind.inputs]
    forward += [_param_doc(p) for p in kind.options if p.name in kind.per_call]
    forward += [_param_doc(p) for p in spec.extra_inputs]
    if spec.components:
        forward.append(_param_doc(_components_param(spec)))
    if spec.state is not None:
        forward.append(
            "    index: int64 dataset indices of the batch, one per element; required in "
            "training mode, where the state of those examples is updated. Default: `None`."
        )
    args = "num_samples=10" if spec.state is not None else ""
    call = ", index=torch.tensor([3, 7])" if spec.state is not None else ""
    example = kind.module_example.format(cls=spec.module_name, args=args, call=call)
    out = [
        summary,
        "",
        f"Module form of `losslab.functional.{spec.name}` (see its documentation for the "
        "definition): hyperparameters and constructor options are fixed at construction "
        "(tensors become buffers).",
        "",
        "Args:",
        *ctor,
        "",
        "Forward:",
        *forward,
        "",
        "Example:",
        *("    " + line for line in example.splitlines()),
    ]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- look-up


def spec_of(function: Callable[..., Any]) -> LossSpec:
    """The spec of a registered public function."""
    spec = getattr(function, "spec", None)
    if not isinstance(spec, LossSpec):
        raise ValueError(f"spec_of: function expected a registered loss, got {function!r}")
    return spec


def _loaded() -> dict[str, LossSpec]:
    # The family modules register their losses when imported, and they import this
    # module: the registry loads them on first look-up instead of at its own import.
    importlib.import_module("losslab.functional")
    return _REGISTRY


def loss_info(name: str) -> LossSpec:
    """The :class:`LossSpec` of a registered loss."""
    _loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"loss_info: name expected one of the registered losses "
            f"({', '.join(sorted(_REGISTRY))}), got {name!r}"
        ) from None


def list_losses(
    family: str | None = None, property: str | None = None, kind: str | None = None
) -> list[str]:
    """Names of registered losses, optionally filtered by family, property or kind."""
    _loaded()
    if property is not None and property not in PROPERTIES:
        raise ValueError(
            f"list_losses: property expected one of {sorted(PROPERTIES)}, got {property!r}"
        )
    families = {s.family for s in _REGISTRY.values()}
    if family is not None and family not in families:
        raise ValueError(f"list_losses: family expected one of {sorted(families)}, got {family!r}")
    kinds = {s.kind.name for s in _REGISTRY.values()}
    if kind is not None and kind not in kinds:
        raise ValueError(f"list_losses: kind expected one of {sorted(kinds)}, got {kind!r}")
    return sorted(
        n
        for n, s in _REGISTRY.items()
        if (family is None or s.family == family)
        and (property is None or property in s.properties)
        and (kind is None or s.kind.name == kind)
    )


def build_loss(name: str, **config: Any) -> LossModule:
    """Build the module of loss ``name``, e.g. ``build_loss("focal", gamma=2.0)``.

    Accepts the same keywords as the module's constructor: hyperparameters, the kind's
    constructor options (``weight``, ``ignore_index``, ``reduction``, ``validate``, ...)
    and ``num_samples`` for stateful losses.
    """
    spec = loss_info(name)
    allowed = {p.name for p in spec.kind.constructor_options} | {"num_samples"}
    spec.check_config({k: v for k, v in config.items() if k not in allowed})
    return spec.module(**config)


def registered() -> dict[str, LossSpec]:
    """Every registered loss by name (a copy)."""
    return dict(_loaded())
