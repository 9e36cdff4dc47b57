"""Distillation beyond Hinton's KL: Dual-Head KD's logit-level loss and Plackett-Luce
distillation (family ``distillation``)."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn.functional import logsigmoid

from losslab._validate import Real
from losslab.kinds.distillation import DistillationInput
from losslab.registry import register


@register(
    "dhkd",
    kind="distillation",
    family="distillation",
    module="DHKDLoss",
    reference="Yang, Zong, Huang, Feng, An. Dual-Head Knowledge Distillation: Enhancing "
    "Logits Utilization with an Auxiliary Head. KDD 2025, arXiv:2411.08937; code: "
    "github.com/penghui-yang/DHKD (distiller_zoo/BinaryKLNorm.py, helper/loops.py)",
    constraints={"temperature": Real(0.0, lo_open=True), "alpha": Real(0.0)},
    test_configs=({"normalize": False}, {"temperature": 1.0, "alpha": 0.1}),
)
def dhkd(
    inp: DistillationInput, *, temperature: float = 2.0, alpha: float = 1.0, normalize: bool = True
) -> Tensor:
    r"""Dual-Head KD's logit-level loss (BinaryKL-Norm), for the student's auxiliary head.

    $$
    \ell = \alpha\,T^2 \sum_{k} \mathrm{KL}\Big(\mathrm{Bern}(\tfrac12)\,\Big\|\,
    \mathrm{Bern}\big(\sigma(\tfrac{s_k - t_k}{T})\big)\Big)
    = \alpha\,T^2 \sum_k \log\cosh\frac{s_k - t_k}{2T}
    $$

    with $s$ the logits of the student's **auxiliary** head and $t$ the teacher's logits:
    each class's logit gap to the teacher is pulled to 0 independently, so the loss sees
    what the softmax hides (a shift of all logits, their scale). DHKD trains a student
    with two heads on one backbone: the original (linear) classifier with cross-entropy
    only, used at test time, and an auxiliary head with this loss only,

    $$ \gamma\,\mathrm{CE}(\mathrm{head}_1(x), y) + \ell(\mathrm{head}_2(x), t), $$

    because the two losses on one linear head have conflicting gradients and collapse it
    (the paper's analysis), while both help the shared backbone. Compute the first term
    with `ce` on the main head's logits. The logit-level loss compares logits, so give the
    teacher as logits: with `teacher_format="probs"` its log-probabilities stand in for
    them, which differ by the row's log-partition.

    Args:
        temperature: $T > 0$; 2 as in the official scripts (`--BinaryKL_T`).
        alpha: weight $\alpha \ge 0$; 1 as in the official CIFAR-100 runs (0.1 on
            ImageNet).
        normalize: `True` for BinaryKL-Norm (the official DHKD loss above); `False` for
            plain BinaryKL, $\alpha T^2 \sum_k \mathrm{KL}(\mathrm{Bern}(\sigma(t_k/T))
            \,\|\, \mathrm{Bern}(\sigma(s_k/T)))$, the logit-level loss the paper starts
            from (also in the repository).

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> aux = torch.tensor([[1.0, -3.0], [0.5, 0.5]])  # student's auxiliary head
        >>> teacher = torch.tensor([[0.0, 0.0], [0.5, 0.5]])
        >>> F.dhkd(aux, teacher, reduction="none")
        tensor([1.1568, 0.0000])
    """
    s, t = inp.student / temperature, inp.teacher / temperature
    if normalize:
        # KL(Bern(1/2) || Bern(sigmoid(d))) = -(log sigmoid(d) + log sigmoid(-d)) / 2 - log 2;
        # logsigmoid is exact at any d (softplus switches to x above 20).
        d = s - t
        per_class = -0.5 * (logsigmoid(d) + logsigmoid(-d)) - math.log(2.0)
    else:
        pt = torch.sigmoid(t)
        per_class = pt * (logsigmoid(t) - logsigmoid(s)) + (1 - pt) * (
            logsigmoid(-t) - logsigmoid(-s)
        )
    return alpha * temperature**2 * per_class.sum(dim=1)


@register(
    "pld",
    kind="distillation",
    family="distillation",
    module="PLDLoss",
    reference="Bassam, Zhu, Bian. PLD: A Choice-Theoretic List-Wise Knowledge Distillation. "
    "NeurIPS 2025, arXiv:2506.12542 (no official code released; written from the paper)",
    constraints={"temperature": Real(0.0, lo_open=True)},
    needs_target=True,
    test_configs=({"temperature": 4.0},),
)
def pld(inp: DistillationInput, *, temperature: float = 1.0) -> Tensor:
    r"""Plackett-Luce distillation: a teacher-weighted ranking loss over the classes.

    $$
    \ell = \sum_{k=1}^{C} q_{\pi_k}\Big(\log \sum_{m \ge k} e^{s_{\pi_m}} - s_{\pi_k}\Big),
    \qquad q = \mathrm{softmax}(t / \tau)
    $$

    with $\pi$ the teacher-optimal permutation: the true class $y$ first, then the other
    classes by decreasing teacher logit. Term $k$ is the Plackett-Luce negative
    log-likelihood of choosing $\pi_k$ among the classes not yet ranked, weighted by the
    teacher's confidence in it; it replaces cross-entropy (no separate hard-label term):
    weights $(1, 0, \dots, 0)$ give CE, uniform weights ListMLE. Convex and invariant to
    adding a constant to the student's logits. The suffix log-sum-exps are one reversed
    `logcumsumexp`; teacher ties keep class order.

    Args:
        temperature: teacher temperature $\tau > 0$; 1 (the paper's best on ImageNet; its
            CIFAR-100 runs use 4). The student's logits are not scaled.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> student = torch.zeros(1, 3)
        >>> teacher = torch.tensor([[3.0, 1.0, 0.0]])
        >>> F.pld(student, teacher, torch.tensor([1]))
        tensor(0.7103)
    """
    assert inp.index is not None  # the kind requires it (needs_target)
    s, t = inp.student, inp.teacher
    q = torch.softmax(t / temperature, dim=1)
    is_target = torch.zeros_like(t, dtype=torch.bool).scatter_(1, inp.index.unsqueeze(1), True)
    key = torch.where(is_target, math.inf, t)
    order = torch.sort(key, dim=1, descending=True, stable=True).indices
    s_ranked = s.gather(1, order)
    q_ranked = q.gather(1, order)
    suffix = torch.logcumsumexp(s_ranked.flip(1), dim=1).flip(1)
    # where(): a class the teacher gives no mass (a probability teacher with zeros) adds 0.
    return torch.where(q_ranked > 0, q_ranked * (suffix - s_ranked), 0.0).sum(dim=1)
