"""What every registered loss promises, whatever its input kind.

Oracles exist, docstring examples run, signatures are explicit and right, the module
equals the function and round-trips, bad hyperparameters raise clearly, dtypes follow
the rules, everything compiles, and stateful losses never change state in a call that
raises. Parametrised over the registry, so a new loss is covered when it is registered.
"""

from __future__ import annotations

import copy
import doctest
import inspect
import json
import pickle

import pytest
import torch

import losslab
from losslab._validate import Choice, Int, Real, RealOrClassVector
from losslab.registry import LossSpec, per_call_params
from tests.kinds import (
    IGNORE,
    element_shape,
    forward_kwargs,
    module_kwargs,
    sample,
    with_ignored,
)
from tests.reference import REFERENCE

F64 = torch.float64


def spec_and_cfg(param: tuple[str, dict]) -> tuple[LossSpec, dict]:
    name, overrides = param
    spec = losslab.loss_info(name)
    return spec, spec.config(**overrides)


# ----------------------------------------------------------------------------- registry


def test_every_loss_has_an_oracle():
    missing = sorted(set(losslab.list_losses()) - set(REFERENCE))
    assert not missing, f"losses without an oracle in tests/reference/: {missing}"


def test_every_loss_is_exported():
    for name in losslab.list_losses():
        spec = losslab.loss_info(name)
        assert getattr(losslab.functional, name) is spec.function
        assert getattr(losslab, spec.module_name) is spec.module
        assert name in losslab.functional.__all__ and spec.module_name in losslab.__all__


def _run_doctests(obj: object, name: str) -> None:
    tests = doctest.DocTestFinder(exclude_empty=True).find(obj, name, globs={})
    examples = [t for t in tests if t.examples]
    assert examples, f"{name} has no runnable example in its docstring"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for t in examples:
        runner.run(t)
    assert runner.failures == 0, f"{name}: {runner.failures} docstring example(s) failed"


def test_docstring_examples_run(any_loss):
    spec = losslab.loss_info(any_loss)
    _run_doctests(spec.function, f"losslab.functional.{any_loss}")
    _run_doctests(spec.module, f"losslab.{spec.module_name}")


def test_docstrings_document_every_parameter(any_loss):
    spec = losslab.loss_info(any_loss)
    doc = spec.function.__doc__
    for name in inspect.signature(spec.function).parameters:
        assert f"\n    {name}: " in doc, f"{any_loss}: parameter {name!r} is not documented"
    assert "$$" in doc and "Reference:" in doc and "Returns:" in doc
    init_doc = spec.module.__doc__
    for name in inspect.signature(spec.module).parameters:
        assert f"\n    {name}: " in init_doc, f"{spec.module_name}: {name!r} is not documented"


def test_signatures_are_explicit(any_loss):
    spec = losslab.loss_info(any_loss)
    kind = spec.kind
    fn = list(inspect.signature(spec.function).parameters.values())
    want = [p.name for p in kind.inputs] + list(spec.defaults)
    want += [p.name for p in per_call_params(spec)]
    want += ["return_components"] if spec.components else []
    want += [p.name for p in kind.options]
    assert [p.name for p in fn] == want
    for p in fn[len(kind.inputs) :]:
        assert p.kind is inspect.Parameter.KEYWORD_ONLY
        assert p.annotation is not inspect.Parameter.empty
    for name, default in spec.defaults.items():
        assert inspect.signature(spec.function).parameters[name].default == default
    mod = inspect.signature(spec.module).parameters
    want_mod = list(spec.defaults) + (["num_samples"] if spec.state else [])
    want_mod += [p.name for p in kind.constructor_options]
    assert list(mod) == want_mod
    for name, default in spec.defaults.items():
        assert mod[name].default == default


def test_module_signatures_are_their_own():
    # Each class carries its own constructor, so no class can show another loss's
    # parameters (a signature written onto a shared __init__ would be the last class's).
    inits = {losslab.loss_info(n).module.__init__ for n in losslab.list_losses()}
    assert len(inits) == len(losslab.list_losses())
    assert losslab.LossModule.__init__ not in inits
    assert "q: float = 0.7" in str(inspect.signature(losslab.GCELoss))
    assert "gamma: float = 2.0" in str(inspect.signature(losslab.FocalLoss))


# ----------------------------------------------------------------------------- module


def test_module_equals_functional_and_round_trips(any_config):
    spec, cfg = spec_and_cfg(any_config)
    inputs = sample(spec, 8)
    mod = spec.build(**cfg, num_samples=64, reduction="sum")
    got = mod(*inputs, **forward_kwargs(spec, inputs))
    extra = {}
    if spec.stateful:
        # A stateful module evaluates its function at the state it has just updated.
        idx = forward_kwargs(spec, inputs)["index"]
        extra = {spec.state.name: mod.get_buffer(spec.state.name)[idx]}
    torch.testing.assert_close(got, spec.function(*inputs, **cfg, reduction="sum", **extra))
    rebuilt = type(mod).from_config(mod.get_config())
    assert rebuilt.get_config() == mod.get_config()
    json.dumps(mod.get_config())
    for clone in (pickle.loads(pickle.dumps(mod)), copy.deepcopy(mod)):
        assert clone.get_config() == mod.get_config()
        assert type(clone) is type(mod)
    text = repr(mod)
    for key, value in cfg.items():
        if not isinstance(value, torch.Tensor):
            assert f"{key}={value!r}" in text


def test_module_rejects_unknown_and_invalid_config(any_loss):
    spec = losslab.loss_info(any_loss)
    with pytest.raises(TypeError, match="not_a_parameter"):
        losslab.build_loss(any_loss, not_a_parameter=1.0, **module_kwargs(spec))
    with pytest.raises(ValueError, match=rf"^{any_loss}: reduction expected"):
        losslab.build_loss(any_loss, reduction="avg", **module_kwargs(spec))
    for key, constraint in spec.constraints.items():
        bad = _out_of_range(constraint)
        if bad is not None:
            with pytest.raises((ValueError, TypeError), match=rf"^{any_loss}: {key} expected"):
                losslab.build_loss(any_loss, **{key: bad}, **module_kwargs(spec))


def test_module_buffers_follow_dtype(any_loss):
    spec = losslab.loss_info(any_loss)
    tensor_options = [p.name for p in spec.kind.constructor_options if "Tensor" in p.annotation]
    mod = spec.build(num_samples=4, **{k: torch.ones(5) for k in tensor_options})
    mod = mod.to(F64)
    for k in tensor_options:
        assert mod.get_buffer(k).dtype == F64
        assert k in dict(mod.named_buffers())


# ----------------------------------------------------------------------------- calls


def test_no_input_mutation(any_loss):
    spec = losslab.loss_info(any_loss)
    inputs = sample(spec, 10)
    before = [t.clone() for t in inputs]
    spec.function(*inputs).item()
    assert all(torch.equal(a, b) for a, b in zip(inputs, before, strict=True))


def test_float64_stays_float64(any_loss):
    spec = losslab.loss_info(any_loss)
    assert spec.function(*sample(spec, 14)).dtype == F64


def test_half_precision_computes_in_float32(any_config):
    spec, cfg = spec_and_cfg(any_config)
    for dtype in (torch.float16, torch.bfloat16):
        # At scale 2 no logit gap reaches the float16 tail of the exponential losses.
        inputs = sample(
            spec, 13, n=16, c=6, dtype=dtype, scale=2.0 if dtype == torch.float16 else 3.0
        )
        out = spec.function(*inputs, **cfg, reduction="none")
        assert out.dtype == torch.float32 and torch.isfinite(out).all()
        ref = spec.function(
            *(t.to(F64) if t.is_floating_point() else t for t in inputs), **cfg, reduction="none"
        )
        torch.testing.assert_close(out.to(F64), ref, rtol=2e-4, atol=2e-5)


def test_sum_of_none_equals_sum_and_mean_of_elements(any_config):
    spec, cfg = spec_and_cfg(any_config)
    inputs = sample(spec, 5, n=7)
    none = spec.function(*inputs, **cfg, reduction="none")
    assert none.shape == element_shape(spec, inputs)
    torch.testing.assert_close(none.sum(), spec.function(*inputs, **cfg, reduction="sum"))
    torch.testing.assert_close(none.mean(), spec.function(*inputs, **cfg, reduction="mean"))


def test_all_ignored_batch_is_attached_zero(any_loss):
    spec = losslab.loss_info(any_loss)
    inputs = sample(spec, 7)
    inputs = with_ignored(spec, inputs, torch.ones(element_shape(spec, inputs), dtype=torch.bool))
    first = inputs[0].clone().requires_grad_(True)
    out = spec.function(first, *inputs[1:], ignore_index=IGNORE)
    assert out.item() == 0.0 and out.requires_grad
    out.backward()
    assert torch.all(first.grad == 0)


def test_gradcheck_float64(any_config):
    spec, cfg = spec_and_cfg(any_config)
    inputs = sample(spec, 9, n=4, c=4, scale=1.5)
    first = inputs[0].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: spec.function(x, *inputs[1:], **cfg, reduction="none"),
        (first,),
        eps=1e-6,
        atol=1e-5,
    )


def test_compiles_fullgraph(any_loss):
    spec = losslab.loss_info(any_loss)
    inputs = sample(spec, 15, dtype=torch.float32)
    torch._dynamo.reset()
    compiled = torch.compile(lambda *a: spec.function(*a), fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(*inputs), spec.function(*inputs))


@pytest.mark.slow
def test_compiles_fullgraph_inductor(any_loss):
    spec = losslab.loss_info(any_loss)
    inputs = sample(spec, 16, dtype=torch.float32)
    torch._dynamo.reset()
    compiled = torch.compile(lambda *a: spec.function(*a), fullgraph=True)
    torch.testing.assert_close(compiled(*inputs), spec.function(*inputs), rtol=1e-5, atol=1e-6)


def test_invalid_hyperparameters_raise(any_loss):
    spec = losslab.loss_info(any_loss)
    inputs = sample(spec, 18, dtype=torch.float32)
    for key, constraint in spec.constraints.items():
        bad = _out_of_range(constraint)
        if bad is None:
            continue
        with pytest.raises((ValueError, TypeError), match=rf"^{any_loss}: {key} expected"):
            spec.function(*inputs, **{key: bad})
    with pytest.raises(TypeError, match="unexpected keyword argument 'not_a_parameter'"):
        spec.function(*inputs, not_a_parameter=1)


def _out_of_range(constraint):
    if isinstance(constraint, RealOrClassVector):
        constraint = constraint.scalar
    if isinstance(constraint, Real):
        if constraint.lo is not None:
            return constraint.lo - 1.0
        if constraint.hi is not None:
            return constraint.hi + 1.0
        return float("nan")
    if isinstance(constraint, Choice):
        return "not-a-choice"
    if isinstance(constraint, Int):
        return constraint.lo - 1
    return None


# ----------------------------------------------------------------------------- bad input


def _bad_inputs(spec: LossSpec) -> list[tuple[str, tuple, dict]]:
    """(label, inputs, options) that every loss of every kind must reject."""
    inputs = sample(spec, 19, n=4, c=5, dtype=torch.float32)
    first, rest = inputs[0], inputs[1:]
    target = inputs[-1]
    return (
        [
            ("NaN", (torch.full_like(first, float("nan")), *rest), {}),
            ("+inf", (torch.full_like(first, float("inf")), *rest), {}),
            ("1-D scores", (first.reshape(-1)[:1].squeeze(), *rest), {}),
            ("int scores", (first.long(), *rest), {}),
            ("list scores", (first.tolist(), *rest), {}),
            ("short target", (*inputs[:-1], target[:2]), {}),
            *(
                # embedding labels and regression targets have no range: 99 is valid
                []
                if spec.kind.name in ("embedding", "regression")
                else [("big target", (*inputs[:-1], torch.full_like(target, 99)), {})]
            ),
            ("bad reduction", inputs, {"reduction": "avg"}),
            ("negative sample weight", inputs, {"sample_weight": -torch.ones(target.shape[0])}),
        ]
        + (
            []
            if spec.kind.name == "binary"  # (N, 0) scores are an empty batch of elements
            else [
                (
                    "zero classes",
                    (first[:, :0], *(t[:, :0] if t.dim() > 1 else t for t in rest)),
                    {},
                )
            ]
        )
    )


def test_bad_input_is_one_clear_error(any_loss):
    spec = losslab.loss_info(any_loss)
    for label, inputs, opts in _bad_inputs(spec):
        with pytest.raises(
            (ValueError, TypeError),
            match=rf"^{any_loss}: \w+ expected|^{any_loss}: target contains",
        ) as err:
            spec.function(*inputs, **opts)
        assert "\n" not in str(err.value), label


def test_module_and_function_raise_the_same_errors(any_loss):
    spec = losslab.loss_info(any_loss)
    for label, inputs, opts in _bad_inputs(spec):
        ctor = {k: v for k, v in opts.items() if k != "sample_weight"}
        per_call = {k: v for k, v in opts.items() if k == "sample_weight"}
        try:
            mod = spec.build(num_samples=64, **ctor)
        except (ValueError, TypeError) as ctor_err:
            with pytest.raises(type(ctor_err)):
                spec.function(*inputs, **opts)
            continue
        with pytest.raises((ValueError, TypeError)) as f_err:
            spec.function(*inputs, **opts)
        extra = {}
        if spec.stateful:
            extra = {"index": torch.zeros(4, dtype=torch.long)}
        with pytest.raises(type(f_err.value)) as m_err:
            mod(*inputs, **per_call, **extra)
        assert str(m_err.value) == str(f_err.value), label


# ----------------------------------------------------------------------------- state


def _stateful():
    return [n for n in losslab.list_losses() if losslab.loss_info(n).stateful]


@pytest.mark.parametrize("name", _stateful())
def test_failed_call_leaves_state_unchanged(name):
    spec = losslab.loss_info(name)
    mod = spec.build(num_samples=8)
    good = sample(spec, 20, n=4, c=5, dtype=torch.float32)
    mod(*good, index=torch.tensor([0, 1, 2, 3]))
    state = mod.get_buffer(spec.state.name).clone()
    calls = [
        (inputs, opts, {"index": torch.tensor([4, 5, 6, 7])})
        for _, inputs, opts in _bad_inputs(spec)
        if set(opts) <= {"sample_weight"}  # the others are constructor options
    ]
    calls += [
        (good, {}, {"index": torch.tensor([4, 5, 6])}),
        (good, {}, {"index": torch.tensor([4, 5, 6, 99])}),
        (good, {}, {"index": torch.tensor([4.0, 5, 6, 7])}),
        (good, {}, {"index": [4, 5, 6, 7]}),
        (good, {}, {}),
    ]
    for inputs, per_call, extra in calls:
        with pytest.raises((ValueError, TypeError), match=rf"^{name}: "):
            mod(*inputs, **per_call, **extra)
        assert torch.equal(mod.get_buffer(spec.state.name), state)
        if spec.state.refresh is not None and "index" in extra:
            with pytest.raises((ValueError, TypeError), match=rf"^{name}: "):
                mod.refresh(*inputs, **per_call, **extra)
            assert torch.equal(mod.get_buffer(spec.state.name), state)


@pytest.mark.parametrize("name", [n for n in _stateful() if losslab.loss_info(n).state.refresh])
def test_refresh_changes_only_the_given_examples(name):
    spec = losslab.loss_info(name)
    mod = spec.build(num_samples=8)
    inputs = sample(spec, 22, n=4, c=5, scale=4.0)
    before = mod.get_buffer(spec.state.name).clone()
    mod.refresh(*inputs, index=torch.tensor([1, 3, 5, 7]))
    after = mod.get_buffer(spec.state.name)
    assert torch.equal(after[[0, 2, 4, 6]], before[[0, 2, 4, 6]])
    with pytest.raises(TypeError, match=rf"^{name}: index expected"):
        mod.refresh(*inputs, index=None)


@pytest.mark.parametrize("name", _stateful())
def test_eval_mode_needs_no_index(name):
    spec = losslab.loss_info(name)
    mod = spec.build(num_samples=8).eval()
    inputs = sample(spec, 21, n=4, c=5)
    torch.testing.assert_close(mod(*inputs), spec.function(*inputs))
    with pytest.raises(TypeError, match=rf"^{name}: index expected"):
        mod.train()(*inputs)
