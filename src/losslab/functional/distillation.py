"""Knowledge distillation from a teacher's logits."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from losslab._validate import Real
from losslab.functional._fused import as_rows, row_dot
from losslab.kinds.distillation import DistillationInput
from losslab.registry import register


class _KDRows(torch.autograd.Function):
    r"""``alpha T^2 KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) CE(s, y)`` per row of
    ``(R, C)``, with its gradients written out:

    * student: ``alpha T (softmax(s/T) - softmax(t/T)) + (1 - alpha)(softmax(s) - e_y)``;
    * teacher: ``alpha T p_t ((log p_t - log p_s) - KL)``.

    Classes the teacher gives probability 0 (``-inf`` teacher logits) contribute 0.
    """

    @staticmethod
    def forward(
        ctx: Any, s: Tensor, t: Tensor, index: Tensor | None, temperature: float, alpha: float
    ) -> Tensor:
        log_ps = torch.log_softmax(s / temperature, dim=1)
        log_pt = torch.log_softmax(t / temperature, dim=1)
        pt = log_pt.exp()
        # log p_t - log p_s, with masked teacher classes (p_t = 0) at 0 instead of -inf
        gap = torch.sub(log_pt, log_ps).nan_to_num_(neginf=0.0)
        kl = row_dot(pt, gap).reshape(-1)
        per = (alpha * temperature**2) * kl
        log_p = None
        if alpha < 1.0:
            assert index is not None
            log_p = torch.log_softmax(s, dim=1)
            per = per - (1.0 - alpha) * log_p.gather(1, index.unsqueeze(1)).squeeze(1)
        ctx.temperature, ctx.alpha = temperature, alpha
        ctx.save_for_backward(log_ps, pt, gap, kl, index, log_p)
        return per

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        log_ps, pt, gap, kl, index, log_p = ctx.saved_tensors
        temp, alpha = ctx.temperature, ctx.alpha
        g = grad_out.unsqueeze(1)
        grad_s = grad_t = None
        if ctx.needs_input_grad[0]:
            grad_s = torch.exp(log_ps).sub_(pt).mul_(g * (alpha * temp))
            if log_p is not None:
                grad_s.add_(torch.exp(log_p).mul_(g * (1.0 - alpha)))
                grad_s.scatter_add_(1, index.unsqueeze(1), -g * (1.0 - alpha))
        if ctx.needs_input_grad[1]:
            grad_t = (gap - kl.unsqueeze(1)).mul_(pt).mul_(g * (alpha * temp))
        return grad_s, grad_t, None, None, None


@register(
    "kd",
    kind="distillation",
    family="distillation",
    module="KDLoss",
    reference="Hinton, Vinyals, Dean. Distilling the Knowledge in a Neural Network. NIPS "
    "2014 Deep Learning Workshop, arXiv:1503.02531",
    constraints={"temperature": Real(0.0, lo_open=True), "alpha": Real(0.0, 1.0)},
    needs_target=lambda cfg: cfg["alpha"] < 1.0,
    test_configs=({"alpha": 1.0}, {"temperature": 1.0, "alpha": 0.5}, {"alpha": 0.0}),
)
def kd(inp: DistillationInput, *, temperature: float = 4.0, alpha: float = 0.9) -> Tensor:
    r"""Hinton knowledge distillation: softened KL to the teacher plus hard-label CE.

    $$
    \ell = \alpha\,T^2\,\mathrm{KL}\big(\mathrm{softmax}(t / T) \,\|\,
    \mathrm{softmax}(s / T)\big) + (1 - \alpha)\,\mathrm{CE}(s, y)
    $$

    The $T^2$ factor keeps the gradient of the soft term, $T\,(\mathrm{softmax}(s/T) -
    \mathrm{softmax}(t/T))$ per logit, of the same order as the hard term's as $T$ grows
    (Hinton et al., section 2). The hard target $y$ is needed only when $\alpha < 1$;
    with `"mean"` the KL is averaged over elements, i.e. PyTorch's `kl_div(...,
    reduction="batchmean")` for `(N, C)` inputs. The teacher may be given as
    probabilities (`teacher_format="probs"`).

    Args:
        temperature: $T > 0$; 4 as in the CRD/DHKD benchmark code.
        alpha: weight $\alpha \in [0, 1]$ of the distillation term; 0.9 as in the same
            code's KD runs ($\alpha = 1$: pure distillation, no target needed).

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> student = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
        >>> teacher = torch.tensor([[3.0, 0.0, -1.0], [0.0, 0.0, 2.0]])
        >>> F.kd(student, teacher, torch.tensor([0, 2]), reduction="none")
        tensor([0.2231, 0.4736])
    """
    index = None if inp.index is None else inp.index.reshape(-1)
    per = _KDRows.apply(
        as_rows(inp.student), as_rows(inp.teacher), index, float(temperature), float(alpha)
    )
    return per.reshape(inp.element_shape)
