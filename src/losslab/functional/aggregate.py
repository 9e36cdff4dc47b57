"""Learning from aggregate responses: bag-level, instance-level and interpolated losses.

Javanmard, Chen, Mirrokni, Badanidiyuru, Fu (ICLR 2024) compare the two natural losses
when only the mean response of each bag is observed: the bag-level loss compares the
bag's mean response with the bag's mean prediction, the instance-level loss fits every
instance's prediction to its bag's mean response. For squared error the instance-level
loss is the bag-level loss plus the within-bag variance of the predictions, a
regulariser (less variance, more bias); the interpolating estimator weighs that term by
``rho``. The ``bag`` kind (``losslab.kinds.bag``) carries the bags.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.functional import logsigmoid

from losslab._validate import Choice, Real
from losslab.kinds.bag import TASKS, BagInput
from losslab.registry import register

REFERENCE = (
    "Javanmard, Chen, Mirrokni, Badanidiyuru, Fu. Learning from Aggregate Responses: Instance "
    "Level versus Bag Level Loss Functions. ICLR 2024, arXiv:2401.11081 (no official code)"
)


def bag_level(inp: BagInput) -> Tensor:
    """Per-element loss between each bag's response and its mean prediction."""
    y = inp.target
    if inp.task == "regression":
        return inp.to_elements((y - inp.bag_mean(inp.scores)) ** 2)
    if inp.task == "binary":
        # log of the mean of sigmoids (and of 1 - sigmoid), exact at any logit
        log_p = inp.bag_log_mean_exp(logsigmoid(inp.scores))
        log_q = inp.bag_log_mean_exp(logsigmoid(-inp.scores))
        return inp.to_elements(-(y * log_p + (1 - y) * log_q))
    log_p = inp.bag_log_mean_exp(torch.log_softmax(inp.scores, dim=1))
    return -(y * log_p).sum(dim=1)


def instance_level(inp: BagInput) -> Tensor:
    """Per-element mean over each bag's instances of the loss between the bag's response
    and the instance's prediction."""
    y = inp.target[inp.bag_index]
    if inp.task == "regression":
        per = (y - inp.scores) ** 2
    elif inp.task == "binary":
        per = -(y * logsigmoid(inp.scores) + (1 - y) * logsigmoid(-inp.scores))
    else:
        per = -(y * torch.log_softmax(inp.scores, dim=1)).sum(dim=1, keepdim=True)
    mean = inp.bag_mean(per)
    return mean.squeeze(1) if inp.task == "multiclass" else inp.to_elements(mean)


@register(
    "bag_loss",
    kind="bag",
    family="aggregate",
    module="BagLoss",
    reference=REFERENCE,
    constraints={"task": Choice(TASKS)},
    task=lambda cfg: cfg["task"],
    test_configs=({"task": "regression"},),
)
def bag_loss(inp: BagInput, *, task: str = "binary") -> Tensor:
    r"""Bag-level loss: each bag's response against the bag's mean prediction.

    $$
    \ell_a = \ell\big(\bar y_a,\ \bar f_a\big),\qquad
    \bar f_a = \frac{1}{k_a} \sum_{i \in a} f(x_i)
    $$

    with $\bar y_a$ the response of bag $a$ (the mean of its instances' responses) and
    $k_a$ its size. $f$ is the prediction (regression, $\ell$ squared error), the sigmoid
    probability of a logit (binary, $\ell$ cross-entropy to the fraction of positives) or
    the softmax of the logits (multiclass, $\ell$ cross-entropy to the class proportions:
    the proportion loss of learning from label proportions). The logarithms of the mean
    probabilities are log-mean-exps of log-probabilities, exact at any logit. Unbiased
    for the model's mean response, but it sees only one number per bag.

    Args:
        task: `"binary"` (logits; responses are fractions of positives; cross-entropy),
            `"regression"` (predictions; mean values; squared error) or `"multiclass"`
            (logits `(N, C)`; class proportions `(B, C)`; cross-entropy).

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> scores = torch.tensor([1.0, 3.0, 2.0])  # predictions of three instances
        >>> bag_index = torch.tensor([0, 0, 1])
        >>> F.bag_loss(scores, bag_index, torch.tensor([2.5, 2.0]), task="regression",
        ...            reduction="none")
        tensor([0.2500, 0.0000])
    """
    return bag_level(inp)


@register(
    "instance_loss",
    kind="bag",
    family="aggregate",
    module="InstanceLoss",
    reference=REFERENCE,
    constraints={"task": Choice(TASKS)},
    task=lambda cfg: cfg["task"],
    test_configs=({"task": "regression"},),
)
def instance_loss(inp: BagInput, *, task: str = "binary") -> Tensor:
    r"""Instance-level loss: every instance's prediction against its bag's response.

    $$
    \ell_a = \frac{1}{k_a} \sum_{i \in a} \ell\big(\bar y_a,\ f(x_i)\big)
    $$

    with the same $f$, $\ell$ and responses as `bag_loss`. For squared error it equals the
    bag-level loss plus the within-bag variance of the predictions,
    $\ell_a = (\bar y_a - \bar f_a)^2 + \frac{1}{k_a}\sum_{i \in a} (f(x_i) - \bar f_a)^2$:
    a regularised bag-level loss, with less variance and more bias (the paper's analysis).
    Bags of one instance make it equal to `bag_loss`.

    Args:
        task: `"binary"` (logits; responses are fractions of positives; cross-entropy),
            `"regression"` (predictions; mean values; squared error) or `"multiclass"`
            (logits `(N, C)`; class proportions `(B, C)`; cross-entropy).

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> scores = torch.tensor([1.0, 3.0, 2.0])
        >>> bag_index = torch.tensor([0, 0, 1])
        >>> F.instance_loss(scores, bag_index, torch.tensor([2.5, 2.0]), task="regression",
        ...                 reduction="none")
        tensor([1.2500, 0.0000])
    """
    return instance_level(inp)


@register(
    "interpolated_aggregate_loss",
    kind="bag",
    family="aggregate",
    module="InterpolatedAggregateLoss",
    reference=REFERENCE,
    constraints={"task": Choice(TASKS), "rho": Real(0.0, 1.0)},
    task=lambda cfg: cfg["task"],
    test_configs=({"task": "regression", "rho": 0.25}, {"rho": 1.0}),
)
def interpolated_aggregate_loss(inp: BagInput, *, task: str = "binary", rho: float = 0.5) -> Tensor:
    r"""The paper's interpolating estimator between the bag- and instance-level losses.

    $$
    \ell_a = \rho\,\ell^{\mathrm{inst}}_a + (1 - \rho)\,\ell^{\mathrm{bag}}_a
    $$

    For squared error this is the bag-level loss plus $\rho$ times the within-bag
    variance of the predictions, $(\bar y_a - \bar f_a)^2 + \rho\,\frac{1}{k_a}\sum_{i \in
    a} (f(x_i) - \bar f_a)^2$, the form in which the paper defines it; the convex
    combination carries it to the cross-entropy tasks. $\rho = 0$ is `bag_loss`, $\rho =
    1$ `instance_loss`; $\rho$ trades the bag-level loss's variance against the
    instance-level loss's bias.

    Args:
        task: `"binary"` (logits; responses are fractions of positives; cross-entropy),
            `"regression"` (predictions; mean values; squared error) or `"multiclass"`
            (logits `(N, C)`; class proportions `(B, C)`; cross-entropy).
        rho: $\rho \in [0, 1]$. The paper selects it on validation data (and derives the
            optimum for linear regression); 0.5 is only the midpoint.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> scores = torch.tensor([1.0, 3.0, 2.0])
        >>> bag_index = torch.tensor([0, 0, 1])
        >>> F.interpolated_aggregate_loss(scores, bag_index, torch.tensor([2.5, 2.0]),
        ...                               task="regression", rho=0.5, reduction="none")
        tensor([0.7500, 0.0000])
    """
    return rho * instance_level(inp) + (1 - rho) * bag_level(inp)
