"""The identities of Javanmard et al. (2024) between the bag-level, instance-level and
interpolated aggregate losses."""

from __future__ import annotations

import math

import pytest
import torch

from losslab import functional as F

F64 = torch.float64
TASKS = ("binary", "regression", "multiclass")


def data(seed: int, b: int = 6, k: int = 3, task: str = "regression", max_size: int = 5):
    g = torch.Generator().manual_seed(seed)
    sizes = torch.randint(1, max_size + 1, (b,), generator=g)
    bag_index = torch.repeat_interleave(torch.arange(b), sizes)
    scores = torch.randn(len(bag_index), k, generator=g, dtype=F64) * 2
    if task == "regression":
        target = torch.randn(b, k, generator=g, dtype=F64)
    elif task == "binary":
        target = torch.rand(b, k, generator=g, dtype=F64)
    else:
        target = torch.softmax(torch.randn(b, k, generator=g, dtype=F64), dim=1)
    return scores, bag_index, target


def within_bag_variance(scores, bag_index, b):
    out = []
    for a in range(b):
        f = scores[bag_index == a]
        out.append(((f - f.mean(0)) ** 2).mean(0))
    return torch.stack(out)


def test_instance_level_is_bag_level_plus_within_bag_variance():
    scores, bag_index, target = data(0)
    inst = F.instance_loss(scores, bag_index, target, task="regression", reduction="none")
    bag = F.bag_loss(scores, bag_index, target, task="regression", reduction="none")
    torch.testing.assert_close(inst - bag, within_bag_variance(scores, bag_index, 6))


@pytest.mark.parametrize("rho", [0.0, 0.3, 1.0])
def test_interpolation_weighs_the_variance_term(rho):
    scores, bag_index, target = data(1)
    got = F.interpolated_aggregate_loss(
        scores, bag_index, target, task="regression", rho=rho, reduction="none"
    )
    bag = F.bag_loss(scores, bag_index, target, task="regression", reduction="none")
    torch.testing.assert_close(got, bag + rho * within_bag_variance(scores, bag_index, 6))


@pytest.mark.parametrize("task", TASKS)
def test_ends_of_the_interpolation(task):
    scores, bag_index, target = data(2, task=task)
    args = (scores, bag_index, target)
    for rho, fn in ((0.0, F.bag_loss), (1.0, F.instance_loss)):
        torch.testing.assert_close(
            F.interpolated_aggregate_loss(*args, task=task, rho=rho, reduction="none"),
            fn(*args, task=task, reduction="none"),
        )


@pytest.mark.parametrize("task", TASKS)
def test_bags_of_one_make_the_three_losses_coincide(task):
    scores, bag_index, target = data(3, task=task, max_size=1)
    args = (scores, bag_index, target)
    bag = F.bag_loss(*args, task=task, reduction="none")
    torch.testing.assert_close(F.instance_loss(*args, task=task, reduction="none"), bag)
    torch.testing.assert_close(
        F.interpolated_aggregate_loss(*args, task=task, reduction="none"), bag
    )


@pytest.mark.parametrize("task", TASKS)
def test_constant_predictions_in_a_bag_make_instance_equal_bag(task):
    scores, bag_index, target = data(4, task=task)
    per_bag = torch.randn(6, 3, generator=torch.Generator().manual_seed(5), dtype=F64)
    scores = per_bag[bag_index]
    args = (scores, bag_index, target)
    torch.testing.assert_close(
        F.instance_loss(*args, task=task, reduction="none"),
        F.bag_loss(*args, task=task, reduction="none"),
    )


def test_binary_bag_level_uses_the_mean_probability():
    # Two instances at p = 0.9 and 0.1: the bag predicts 1/2 exactly.
    logit = torch.log(torch.tensor([9.0], dtype=F64))
    scores = torch.cat([logit, -logit])
    out = F.bag_loss(scores, torch.tensor([0, 0]), torch.tensor([0.5], dtype=F64))
    assert out.item() == pytest.approx(math.log(2.0), rel=1e-12)
    inst = F.instance_loss(scores, torch.tensor([0, 0]), torch.tensor([0.5], dtype=F64))
    assert inst.item() > out.item()


def test_multiclass_bag_level_is_the_proportion_loss():
    scores, bag_index, target = data(6, task="multiclass")
    got = F.bag_loss(scores, bag_index, target, task="multiclass", reduction="none")
    mean_p = torch.zeros(6, 3, dtype=F64).index_add(0, bag_index, torch.softmax(scores, 1))
    mean_p = mean_p / torch.bincount(bag_index)[:, None]
    torch.testing.assert_close(got, -(target * mean_p.log()).sum(1))
