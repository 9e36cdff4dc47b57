"""The ``nn.Module`` form of every registered loss, generated from its spec.

A loss module stores its configuration (tensors as buffers, so ``.to(device)`` moves
them), calls the loss in ``forward`` and round-trips through ``get_config`` /
``from_config``. :func:`make_module_class` gives each loss its own class with an explicit
constructor signature (hyperparameters and the kind's constructor options) and an
explicit ``forward`` (the kind's inputs and per-call options, and ``index=`` for stateful
losses), so ``inspect.signature`` and ``help()`` show the loss's own parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from losslab._reduce import KernelResult, reduce_result
from losslab._validate import (
    Int,
    check_hparams,
    check_ignore_index,
    check_index,
    check_reduction,
    fail,
)
from losslab.kinds import REQUIRED, resolve_annotations

if TYPE_CHECKING:
    from losslab.registry import LossSpec


def finish(
    spec: LossSpec,
    inp: Any,
    result: Tensor | KernelResult,
    options: Mapping[str, Any],
    return_components: bool,
) -> Any:
    """The one way a kernel's output becomes the loss (or its components)."""
    if return_components and spec.components_type is None:
        raise TypeError(f"{spec.name}: return_components expected False, got True")
    return reduce_result(
        result,
        options["reduction"],
        mask=inp.mask,
        weight=inp.weight,
        components=spec.components_type if return_components else None,
    )


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach().cpu().tolist()
    return value


class LossModule(nn.Module):
    """Base class of the generated loss modules: config in the constructor, tensors in
    ``forward``."""

    spec: ClassVar[LossSpec]
    #: True for losses with per-example state: ``forward`` then takes ``index=``.
    stateful: ClassVar[bool] = False

    def _setup(
        self, hyper: dict[str, Any], options: dict[str, Any], num_samples: int | None
    ) -> None:
        super().__init__()
        spec = self.spec
        check_hparams(spec.name, spec.constraints, hyper)
        check_reduction(spec.name, options.get("reduction", "mean"))
        if "ignore_index" in options:
            check_ignore_index(spec.name, options["ignore_index"])
        self._hyper_names = tuple(hyper)
        self._option_names = tuple(options)
        for key, value in {**hyper, **options}.items():
            annotation = spec.annotations.get(key) or _option_annotation(spec, key)
            if isinstance(value, (list, tuple)) and "Tensor" in annotation:
                value = torch.as_tensor(value, dtype=torch.float32)
            if isinstance(value, Tensor) or (value is None and "Tensor" in annotation):
                self.register_buffer(key, None if value is None else value.detach().clone())
            else:
                setattr(self, key, value)
        self._num_samples: int | None = None
        if spec.state is not None:
            Int(1).check(spec.name, "num_samples", num_samples)
            assert num_samples is not None
            self._num_samples = num_samples
            init = float(spec.state.init(hyper))
            # CPU at construction; .to(device) moves it with the model.
            self.register_buffer(spec.state.name, torch.full((num_samples,), init))

    def hyperparameters(self) -> dict[str, Any]:
        """The loss's hyperparameters as passed to its function."""
        return {k: getattr(self, k) for k in self._hyper_names}

    def options(self) -> dict[str, Any]:
        """The constructor's call options (``weight``, ``reduction``, ...)."""
        return {k: getattr(self, k) for k in self._option_names}

    def _forward(
        self,
        inputs: tuple[Any, ...],
        per_call: dict[str, Any],
        extras: dict[str, Any],
        index: Tensor | None,
        return_components: bool,
    ) -> Any:
        spec = self.spec
        hyper = self.hyperparameters()
        options = {**self.options(), **per_call}
        parts = {"return_components": True} if return_components else {}
        state = spec.state
        if state is None:
            return spec.function(*inputs, **hyper, **extras, **parts, **options)
        # Stateful: validate everything, compute, and only then write the state, so that a
        # call that raises leaves it unchanged.
        inp, previous = self._state_input(inputs, options, index, required=self.training)
        value = previous
        updating = self.training and state.update is not None
        if updating:
            assert state.update is not None and previous is not None
            with torch.no_grad():
                value = state.update(inp, previous, **hyper)
        result = spec.kernel(inp, **hyper, **extras, **{state.name: value})
        out = finish(spec, inp, result, options, return_components)
        if updating:
            self._write_state(inp, index, value, previous)
        return out

    def _state_input(
        self, inputs: tuple[Any, ...], options: dict[str, Any], index: Tensor | None, required: bool
    ) -> tuple[Any, Tensor | None]:
        """The validated input and the stored state of its examples (``None`` without
        ``index``, which only eval mode allows)."""
        spec = self.spec
        assert spec.state is not None
        hyper = self.hyperparameters()
        check_hparams(spec.name, spec.constraints, hyper)
        inp = spec.kind.prepare(spec.name, spec.resolve_rules(hyper), *inputs, **options)
        if index is None:
            if required:
                fail(
                    spec.name,
                    "index",
                    "the dataset indices of the batch (an int64 tensor) in training mode, "
                    "because the loss keeps per-example state",
                    None,
                    TypeError,
                )
            return inp, None
        buffer = self.get_buffer(spec.state.name)
        check_index(spec.name, index, inp.element_shape, buffer.shape[0], options["validate"])
        return inp, buffer[index]

    def _write_state(
        self, inp: Any, index: Tensor | None, value: Tensor | None, previous: Tensor | None
    ) -> None:
        assert self.spec.state is not None and index is not None and value is not None
        buffer = self.get_buffer(self.spec.state.name)
        new = value.detach().to(buffer.dtype)
        if inp.mask is not None and previous is not None:
            new = torch.where(inp.mask, new, previous)  # ignored elements keep their state
        buffer[index] = new

    def refresh_due(self, epoch: int) -> bool:
        """Whether a training loop should call :meth:`refresh` over the training set
        before epoch ``epoch`` (0-based). False for losses without a scheduled refresh."""
        state = self.spec.state
        if state is None or state.refresh_due is None:
            return False
        return bool(state.refresh_due(self.hyperparameters(), epoch))

    @torch.no_grad()
    def refresh(self, *inputs: Any, index: Tensor, **per_call: Any) -> None:
        """Recompute the state of the examples ``index`` from the model's current outputs
        (e.g. truncated GCE's pruning), for losses with a scheduled refresh."""
        spec = self.spec
        if spec.state is None or spec.state.refresh is None:
            fail(spec.name, "refresh", "a loss with a scheduled state refresh", spec.name)
        options = {**self.options(), **per_call}
        inp, previous = self._state_input(inputs, options, index, required=True)
        value = spec.state.refresh(inp, previous, **self.hyperparameters())
        self._write_state(inp, index, value, previous)

    def get_config(self) -> dict[str, Any]:
        """A JSON-able config; ``type(self).from_config(cfg)`` rebuilds an equal module."""
        cfg = {k: _to_jsonable(v) for k, v in {**self.hyperparameters(), **self.options()}.items()}
        if self._num_samples is not None:
            cfg["num_samples"] = self._num_samples
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LossModule:
        """Inverse of :meth:`get_config` (lists come back as float tensors)."""
        return cls(**config)

    def extra_repr(self) -> str:
        parts = [f"{k}={_short(v)}" for k, v in self.hyperparameters().items()]
        if self._num_samples is not None:
            parts.append(f"num_samples={self._num_samples}")
        defaults = self.spec.kind.option_defaults
        for k, v in self.options().items():
            if isinstance(v, Tensor) or v != defaults[k] or k == "reduction":
                parts.append(f"{k}={_short(v)}")
        return ", ".join(parts)


def _option_annotation(spec: LossSpec, name: str) -> str:
    for p in spec.kind.options:
        if p.name == name:
            return p.annotation
    return "Any"


def _short(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"tensor(shape={tuple(value.shape)})" if value.numel() > 8 else repr(value.tolist())
    return repr(value)


def make_module_class(spec: LossSpec, doc: str) -> type[LossModule]:
    """The loss's module class, with explicit ``__init__`` and ``forward`` signatures."""
    kind = spec.kind
    ctor = kind.constructor_options
    keywords = [f"{k}=_hyper[{k!r}]" for k in spec.defaults]
    if spec.state is not None:
        keywords.append("num_samples=None")
    keywords += [f"{p.name}=_options[{p.name!r}]" for p in ctor]
    hyper = "{" + ", ".join(f"{k!r}: {k}" for k in spec.defaults) + "}"
    opts = "{" + ", ".join(f"{p.name!r}: {p.name}" for p in ctor) + "}"
    num = "num_samples" if spec.state is not None else "None"
    init_src = (
        f"def __init__(self, *, {', '.join(keywords)}):\n    self._setup({hyper}, {opts}, {num})\n"
    )
    inputs = [p.name if p.default is REQUIRED else f"{p.name}=None" for p in kind.inputs]
    per_call = [f"{k}=None" for k in kind.per_call]
    per_call += [p.name if p.default is REQUIRED else f"{p.name}=None" for p in spec.extra_inputs]
    if spec.state is not None:
        per_call.append("index=None")
    if spec.components:
        per_call.append("return_components=False")
    if any(p.default is REQUIRED for p in spec.extra_inputs):
        # required extra inputs are keyword-only, after the optional per-call options
        per_call = [f"{k}=None" for k in kind.per_call] + ["*"] + per_call[len(kind.per_call) :]
    call = "{" + ", ".join(f"{k!r}: {k}" for k in kind.per_call) + "}"
    extras = "{" + ", ".join(f"{p.name!r}: {p.name}" for p in spec.extra_inputs) + "}"
    index = "index" if spec.state is not None else "None"
    parts = "return_components" if spec.components else "False"
    forward_src = (
        f"def forward(self, {', '.join(inputs + per_call)}):\n"
        f"    return self._forward(({', '.join(p.name for p in kind.inputs)},), {call}, "
        f"{extras}, {index}, {parts})\n"
    )
    namespace: dict[str, Any] = {
        "_hyper": dict(spec.defaults),
        "_options": kind.option_defaults,
    }
    exec(compile(init_src + forward_src, f"<losslab.{spec.module_name}>", "exec"), namespace)
    init, forward = namespace["__init__"], namespace["forward"]
    init.__annotations__ = resolve_annotations(
        {
            **spec.annotations,
            **({"num_samples": "int | None"} if spec.state is not None else {}),
            **{p.name: p.annotation for p in ctor},
            "return": "None",
        }
    )
    forward.__annotations__ = resolve_annotations(
        {
            **{p.name: p.annotation for p in kind.inputs},
            **{p.name: p.annotation for p in kind.options if p.name in kind.per_call},
            **({"index": "Tensor | None"} if spec.state is not None else {}),
            "return": "Tensor",
        }
    )
    cls = type(
        spec.module_name,
        (LossModule,),
        {
            "__init__": init,
            "forward": forward,
            "spec": spec,
            "stateful": spec.state is not None,
            "__doc__": doc,
            "__module__": "losslab.losses",
            "__qualname__": spec.module_name,
        },
    )
    for fn in (init, forward):
        fn.__qualname__ = f"{spec.module_name}.{fn.__name__}"
        fn.__module__ = "losslab.losses"
    return cls


__all__ = ["LossModule", "finish", "make_module_class"]
