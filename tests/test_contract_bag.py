"""The contract of the bag kind, for every registered aggregate-response loss."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import losslab
from tests.conftest import config_id, loss_configs
from tests.reference import REFERENCE

F64 = torch.float64
BAG = losslab.list_losses(kind="bag")


@pytest.fixture(params=loss_configs(BAG), ids=config_id)
def bag_config(request):
    name, overrides = request.param
    spec = losslab.loss_info(name)
    return spec, spec.config(**overrides)


def bags(seed: int, b: int = 5, k: int = 3, task: str = "binary", scale: float = 2.0):
    """Scores ``(N, k)``, shuffled bag ids, and responses for ``task``."""
    g = torch.Generator().manual_seed(seed)
    sizes = torch.randint(1, 5, (b,), generator=g)
    bag_index = torch.repeat_interleave(torch.arange(b), sizes)
    bag_index = bag_index[torch.randperm(len(bag_index), generator=g)]
    scores = torch.randn(len(bag_index), k, generator=g, dtype=F64) * scale
    if task == "regression":
        target = torch.randn(b, k, generator=g, dtype=F64) * 3
    elif task == "binary":
        target = torch.rand(b, k, generator=g, dtype=F64)
    else:
        target = torch.softmax(torch.randn(b, k, generator=g, dtype=F64) * 2, dim=1)
    return scores, bag_index, target


def oracle(spec, cfg, scores, bag_index, target):
    out = REFERENCE[spec.name](scores.tolist(), bag_index.tolist(), target.tolist(), cfg)
    return torch.tensor(out, dtype=F64)


def all_tasks(spec, cfg):
    return [{**cfg, "task": t} for t in ("binary", "regression", "multiclass")]


def test_oracle_every_task(bag_config):
    spec, cfg = bag_config
    for c in all_tasks(spec, cfg):
        scores, bag_index, target = bags(0, task=c["task"])
        got = spec.function(scores, bag_index, target, **c, reduction="none")
        want = oracle(spec, c, scores, bag_index, target)
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


def test_one_dimensional_scores(bag_config):
    spec, cfg = bag_config
    if cfg["task"] == "multiclass":
        pytest.skip("class proportions need (N, C) logits")
    scores, bag_index, target = bags(1, k=1, task=cfg["task"])
    got = spec.function(scores[:, 0], bag_index, target[:, 0], **cfg, reduction="none")
    assert got.shape == (5,)
    torch.testing.assert_close(
        got, spec.function(scores, bag_index, target, **cfg, reduction="none")[:, 0]
    )


def test_reduction_contract(bag_config):
    spec, cfg = bag_config
    scores, bag_index, target = bags(2, task=cfg["task"])
    target[1, 2] = -100
    target[3, 0] = -100
    g = torch.Generator().manual_seed(3)
    valid = target != -100
    base = spec.function(
        scores, bag_index, torch.where(valid, target, 0.5), **cfg, reduction="none"
    )
    for sw in (torch.rand(5, generator=g, dtype=F64), torch.rand(5, 3, generator=g, dtype=F64)):
        opts = {"sample_weight": sw, "ignore_index": -100}
        none = spec.function(scores, bag_index, target, **cfg, reduction="none", **opts)
        w = sw if sw.dim() == 2 else sw[:, None].expand(5, 3)
        torch.testing.assert_close(none, base * w * valid)
        torch.testing.assert_close(
            spec.function(scores, bag_index, target, **cfg, reduction="sum", **opts), none.sum()
        )
        torch.testing.assert_close(
            spec.function(scores, bag_index, target, **cfg, reduction="mean", **opts),
            none.sum() / w[valid].sum(),
        )


def test_ignored_bag_equals_dropped_bag(bag_config):
    spec, cfg = bag_config
    scores, bag_index, target = bags(4, task=cfg["task"])
    ignored = target.clone()
    ignored[2] = -100
    keep = bag_index != 2
    renumbered = bag_index[keep] - (bag_index[keep] > 2).long()
    rows = torch.tensor([0, 1, 3, 4])
    torch.testing.assert_close(
        spec.function(scores, bag_index, ignored, **cfg, ignore_index=-100, reduction="sum"),
        spec.function(scores[keep], renumbered, target[rows], **cfg, reduction="sum"),
    )
    # an ignored bag may be empty
    spec.function(scores[keep], bag_index[keep], ignored, **cfg, ignore_index=-100)


@given(seed=st.integers(0, 10_000))
def test_instance_order_and_bag_ids_do_not_matter(seed):
    for name in BAG:
        spec = losslab.loss_info(name)
        for task in ("binary", "regression", "multiclass"):
            scores, bag_index, target = bags(seed, task=task)
            g = torch.Generator().manual_seed(seed + 1)
            perm = torch.randperm(len(bag_index), generator=g)
            relabel = torch.randperm(5, generator=g)  # bag a becomes relabel[a]
            inverse = torch.argsort(relabel)
            a = spec.function(scores, bag_index, target, task=task, reduction="none")
            b = spec.function(scores[perm], bag_index[perm], target, task=task, reduction="none")
            c = spec.function(
                scores, relabel[bag_index], target[inverse], task=task, reduction="none"
            )
            torch.testing.assert_close(a, b)
            torch.testing.assert_close(a, c[relabel])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_extreme_scores_finite_value_and_gradient(bag_config, scale, dtype):
    spec, cfg = bag_config
    for c in all_tasks(spec, cfg):
        if c["task"] == "regression" and dtype == torch.float16:
            continue  # squared errors of 1e4 exceed float16's range as inputs' gradients
        scores, bag_index, target = bags(5, task=c["task"], scale=abs(scale))
        scores[0] = scale
        x = scores.to(dtype).requires_grad_(True)
        out = spec.function(x, bag_index, target.to(dtype), **c)
        out.backward()
        assert torch.isfinite(out) and torch.isfinite(x.grad).all(), c


def test_empty_and_absent_bags_raise(bag_config):
    spec, cfg = bag_config
    scores, bag_index, target = bags(6, task=cfg["task"])
    name = spec.name
    empty = torch.where(bag_index == 3, 4, bag_index)
    with pytest.raises(
        ValueError,
        match=rf"^{name}: bag_index expected at least one instance in every bag 0..4, "
        r"got an empty bag 3",
    ):
        spec.function(scores, empty, target, **cfg)
    absent = bag_index.clone()
    absent[0] = 7
    with pytest.raises(
        ValueError,
        match=rf"^{name}: bag_index expected bag ids in \[0, 4\].*got bag 7, which has no response",
    ):
        spec.function(scores, absent, target, **cfg)
    with pytest.raises(ValueError, match=rf"^{name}: bag_index expected bag ids in \[0, 3\]"):
        spec.function(scores, bag_index, target[:4], **cfg)


def test_bad_bag_inputs(bag_config):
    spec, cfg = bag_config
    scores, bag_index, target = bags(7, task=cfg["task"])
    name = spec.name
    cases = [
        ((scores, bag_index.float(), target), {}, TypeError, r"bag_index expected an int64"),
        ((scores, bag_index[:-1], target), {}, ValueError, r"bag_index expected shape"),
        (
            (scores, bag_index, target[:, :2]),
            {},
            ValueError,
            r"target expected one response per bag",
        ),
        ((scores, bag_index, target.long()), {}, TypeError, r"target expected a floating-point"),
        (
            (scores[:, :1, None], bag_index, target),
            {},
            ValueError,
            r"scores expected shape \(N,\) or \(N, K\)",
        ),
        (
            (scores, bag_index, torch.full_like(target, float("nan"))),
            {},
            ValueError,
            r"target expected finite",
        ),
        (
            (scores, bag_index, target),
            {"sample_weight": torch.ones(4)},
            ValueError,
            r"sample_weight expected shape",
        ),
        (
            (scores, bag_index, target),
            {"ignore_index": 0.5},
            TypeError,
            r"ignore_index expected an int",
        ),
    ]
    if cfg["task"] == "binary":
        cases.append(
            (
                (scores, bag_index, target + 1),
                {},
                ValueError,
                r"target expected fractions of positives in \[0, 1\]",
            )
        )
    for inputs, opts, exc, msg in cases:
        with pytest.raises(exc, match=rf"^{name}: {msg}"):
            spec.function(*inputs, **cfg, **opts)
    mc = {**cfg, "task": "multiclass"}
    s, bi, t = bags(8, task="multiclass")
    with pytest.raises(
        ValueError, match=rf"^{name}: target expected class proportions \(non-negative"
    ):
        spec.function(s, bi, t * 2, **mc)
    with pytest.raises(ValueError, match=rf"^{name}: target expected class proportions \(B, 3\)"):
        spec.function(s, bi, t[:, 0], **mc)
    # validate=False skips the value checks, not the structural ones.
    spec.function(scores, bag_index, torch.full_like(target, 7.0), **cfg, validate=False)
    with pytest.raises(ValueError):
        spec.function(scores, bag_index[:-1], target, **cfg, validate=False)


def test_no_bags_is_attached_zero(bag_config):
    spec, cfg = bag_config
    s = torch.zeros(0, 2, dtype=F64, requires_grad=True)
    out = spec.function(s, torch.zeros(0, dtype=torch.long), torch.zeros(0, 2, dtype=F64), **cfg)
    out.backward()
    assert out.item() == 0.0 and out.requires_grad
