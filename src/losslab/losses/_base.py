"""The one ``nn.Module`` shell shared by every loss.

A loss module stores its configuration (tensors as buffers, so ``.to(device)`` moves
them), calls its registered function in ``forward`` and round-trips through
``get_config`` / ``from_config``. Subclasses only name their function::

    class FocalLoss(LossModule):
        function = staticmethod(F.focal)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from losslab.registry import CALL_OPTIONS, LossSpec, attach_module


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach().cpu().tolist()
    return value


class LossModule(nn.Module):
    """Base class of loss modules: config in the constructor, tensors in ``forward``."""

    function: ClassVar[Callable[..., Tensor]]
    spec: ClassVar[LossSpec]
    #: True for losses with per-example state: ``forward`` then takes ``index=``.
    stateful: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fn = cls.__dict__.get("function")
        if fn is None:
            return
        fn = fn.__func__ if isinstance(fn, staticmethod) else fn
        cls.spec = attach_module(fn, cls)
        cls.stateful = cls.spec.stateful
        params = [
            inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v)
            for k, v in {
                **cls.spec.defaults,
                **cls.spec.module_args,
                "weight": None,
                "ignore_index": None,
                "reduction": "mean",
                "validate": True,
            }.items()
        ]
        cls.__init__.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *params]
        )
        if not cls.__doc__:
            cls.__doc__ = f"Module form of :func:`losslab.functional.{cls.spec.name}`."

    def __init__(
        self,
        *,
        weight: Tensor | None = None,
        ignore_index: int | None = None,
        reduction: str = "mean",
        validate: bool = True,
        **config: Any,
    ) -> None:
        super().__init__()
        spec = self.spec
        module_args = {k: config.pop(k, v) for k, v in spec.module_args.items()}
        hyper = spec.config(**config)
        self._hyper_names = tuple(hyper)
        self._module_arg_names = tuple(module_args)
        self._tensor_names: tuple[str, ...] = ()
        for key, value in {**hyper, **module_args}.items():
            if isinstance(value, Tensor):
                self.register_buffer(key, value.detach().clone())
                self._tensor_names += (key,)
            else:
                setattr(self, key, value)
        if weight is not None and not isinstance(weight, Tensor):
            weight = torch.as_tensor(weight, dtype=torch.float32)
        self.register_buffer("weight", None if weight is None else weight.detach().clone())
        from losslab._validate import check_reduction

        self.reduction = check_reduction(spec.name, reduction)
        self.ignore_index = ignore_index
        self.validate = validate

    def hyperparameters(self) -> dict[str, Any]:
        """The loss's hyperparameters as passed to its function."""
        return {k: getattr(self, k) for k in self._hyper_names}

    def forward(
        self, logits: Tensor, target: Tensor, sample_weight: Tensor | None = None, **extra: Any
    ) -> Tensor:
        return self.function(
            logits,
            target,
            **self.hyperparameters(),
            weight=self.weight,
            sample_weight=sample_weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            validate=self.validate,
            **extra,
        )

    def get_config(self) -> dict[str, Any]:
        """A JSON-able config; ``type(self).from_config(cfg)`` rebuilds an equal module."""
        cfg = {
            k: _to_jsonable(getattr(self, k)) for k in (*self._hyper_names, *self._module_arg_names)
        }
        cfg.update(
            weight=_to_jsonable(self.weight),
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            validate=self.validate,
        )
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LossModule:
        """Inverse of :meth:`get_config` (lists come back as float tensors)."""
        cfg = dict(config)
        for key, value in cfg.items():
            if isinstance(value, list):
                cfg[key] = torch.tensor(value, dtype=torch.float32)
        return cls(**cfg)

    def extra_repr(self) -> str:
        items = {**self.hyperparameters(), **{k: getattr(self, k) for k in self._module_arg_names}}
        parts = [f"{k}={_short(v)}" for k, v in items.items()]
        if self.weight is not None:
            parts.append(f"weight={_short(self.weight)}")
        if self.ignore_index is not None:
            parts.append(f"ignore_index={self.ignore_index}")
        parts.append(f"reduction={self.reduction!r}")
        if not self.validate:
            parts.append("validate=False")
        return ", ".join(parts)


def _short(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"tensor(shape={tuple(value.shape)})" if value.numel() > 8 else repr(value.tolist())
    return repr(value)


__all__ = ["CALL_OPTIONS", "LossModule"]
