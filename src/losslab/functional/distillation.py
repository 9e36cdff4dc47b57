"""Knowledge distillation from a teacher's logits."""

from __future__ import annotations

import torch
from torch import Tensor

from losslab._validate import Real
from losslab.kinds.distillation import DistillationInput
from losslab.registry import register


def kl_at_temperature(inp: DistillationInput, temperature: float) -> Tensor:
    r"""$\mathrm{KL}(\mathrm{softmax}(t / T) \,\|\, \mathrm{softmax}(s / T))$ per element.

    Classes the teacher gives probability 0 contribute 0 (and no NaN gradient).
    """
    log_ps = torch.log_softmax(inp.student / temperature, dim=1)
    log_pt = torch.log_softmax(inp.teacher / temperature, dim=1)
    pt = log_pt.exp()
    return torch.where(pt > 0, pt * (log_pt - log_ps), 0.0).sum(dim=1)


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
    per = alpha * temperature**2 * kl_at_temperature(inp, temperature)
    if alpha < 1.0:
        assert inp.index is not None  # the kind requires it when alpha < 1
        logp = torch.log_softmax(inp.student, dim=1)
        ce = -logp.gather(1, inp.index.unsqueeze(1)).squeeze(1)
        per = per + (1.0 - alpha) * ce
    return per
