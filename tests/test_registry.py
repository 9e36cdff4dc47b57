"""The registry's machinery, on a toy loss registered for the test and removed after it:
extra inputs, components, per-element validity, generated signatures and registration
errors."""

from __future__ import annotations

import inspect

import pytest
import torch

from losslab import registry
from losslab._reduce import KernelResult
from losslab._validate import Real
from losslab.kinds import Param
from losslab.kinds.multiclass import MulticlassInput


@pytest.fixture
def toy():
    @registry.register(
        "toy_pairs",
        family="toy",
        module="ToyPairsLoss",
        reference="a test fixture",
        constraints={"scale": Real(0.0)},
        extra_inputs=(Param("features", "Tensor", "one feature per element `(N,)`."),),
        components=("scaled", "count"),
    )
    def toy_pairs(
        inp: MulticlassInput, *, scale: float = 2.0, features: torch.Tensor
    ) -> KernelResult:
        r"""A toy loss: scale times the target logit, counted where the feature is positive.

        $$ \ell = s\, z_y $$

        Args:
            scale: $s \ge 0$.
        """
        values = scale * inp.logits.gather(1, inp.index[:, None]).squeeze(1)
        valid = features > 0
        return KernelResult(values, valid, {"scaled": values / 2, "count": valid.sum()})

    yield registry.loss_info("toy_pairs")
    registry._REGISTRY.pop("toy_pairs")


def test_extra_inputs_components_and_validity(toy):
    z = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    y = torch.tensor([0, 1, 0])
    f = torch.tensor([1.0, -1.0, 1.0])
    out = toy.function(z, y, features=f)
    torch.testing.assert_close(out, torch.tensor((2.0 + 10.0) / 2))
    parts = toy.function(z, y, features=f, return_components=True, reduction="sum")
    assert parts._fields == ("loss", "scaled", "count")
    torch.testing.assert_close(parts.loss, torch.tensor(12.0))
    torch.testing.assert_close(parts.scaled, torch.tensor(6.0))
    assert int(parts.count) == 2
    mod = toy.module(scale=2.0)
    torch.testing.assert_close(mod(z, y, features=f), out)
    assert mod(z, y, features=f, return_components=True).count == 2
    with pytest.raises(TypeError, match="features"):
        toy.function(z, y)


def test_generated_signatures(toy):
    fn = inspect.signature(toy.function)
    assert list(fn.parameters)[:5] == ["logits", "target", "scale", "features", "return_components"]
    assert fn.parameters["features"].default is inspect.Parameter.empty
    fwd = inspect.signature(toy.module.forward)
    assert "features" in fwd.parameters and "return_components" in fwd.parameters
    assert "features: one feature per element" in toy.function.__doc__
    assert "return_components:" in toy.function.__doc__


def test_components_only_where_declared():
    from losslab import functional as F

    with pytest.raises(TypeError, match="return_components"):
        F.ce(torch.zeros(2, 3), torch.tensor([0, 1]), return_components=True)


@pytest.mark.parametrize(
    ("kwargs", "doc", "match"),
    [
        ({}, "No formula here.", r"needs a summary line and the loss's definition"),
        ({"kind": "no_such_kind"}, "S.\n\n$$ x $$", r"kind expected one of"),
        ({"not_a_rule": True}, "S.\n\n$$ x $$", r"are not rules of the multiclass kind"),
        ({"properties": {"bogus": {}}}, "S.\n\n$$ x $$", r"unknown properties"),
        (
            {"kind": "binary", "properties": {"convex": {}}},
            "S.\n\n$$ x $$",
            r"multiclass losses only",
        ),
        (
            {"constraints": {"nope": Real()}},
            "S.\n\n$$ x $$",
            r"constraints for non-hyperparameters",
        ),
    ],
)
def test_registration_errors(kwargs, doc, match):
    def kernel(inp, *, a: float = 1.0):
        return inp.logits.sum(1)

    kernel.__doc__ = doc
    with pytest.raises((ValueError, TypeError), match=match):
        registry.register("bad_toy", family="toy", module="BadToy", reference="-", **kwargs)(kernel)
    assert "bad_toy" not in registry._REGISTRY


def test_hyperparameters_need_defaults_and_keywords():
    def no_default(inp, *, a: float):
        """S.

        $$ x $$
        """

    def positional(inp, a=1.0):
        """S.

        $$ x $$
        """

    for kernel, match in ((no_default, "needs a default"), (positional, "keyword-only")):
        with pytest.raises(TypeError, match=match):
            registry.register("bad_toy", family="toy", module="BadToy", reference="-")(kernel)
