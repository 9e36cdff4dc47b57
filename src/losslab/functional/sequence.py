"""Sequence-level losses on ``(B, T, V)`` logits: EMO, EISL and DCO.

``emo`` is a per-token loss; ``eisl`` and ``dco`` give one value per sequence, which the
``sequence`` kind spreads over the sequence's valid tokens (see its module). None of them
holds a ``(B, T, V)`` activation: they read the logits through the chunked functions of
``_sequence_ops``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from losslab._reduce import KernelResult
from losslab._validate import Choice, Real, describe, fail, value_checks_enabled
from losslab.functional._sequence_ops import emo_terms, gathered_log_softmax
from losslab.kinds.sequence import SequenceInput
from losslab.registry import register

# --------------------------------------------------------------------------- EMO


def _cost_embedding(loss: str, embedding: object, inp: SequenceInput) -> Tensor | None:
    """The frozen cost embedding with L2-normalised rows (no gradient flows to it)."""
    if embedding is None:
        return None
    if not isinstance(embedding, Tensor) or not embedding.is_floating_point():
        fail(loss, "embedding", "a float tensor (V, D) or None", describe(embedding), TypeError)
    if embedding.dim() != 2 or embedding.shape[0] != inp.num_classes or embedding.shape[1] < 1:
        fail(
            loss,
            "embedding",
            f"shape ({inp.num_classes}, D), one row per vocabulary entry",
            describe(embedding),
        )
    if embedding.device != inp.logits.device:
        fail(loss, "embedding", f"a tensor on {inp.logits.device}", f"{embedding.device}")
    e = embedding.detach().to(inp.logits.dtype)
    if value_checks_enabled(True) and not bool(torch.isfinite(e.sum())):
        fail(loss, "embedding", "finite values", "NaN or infinite values")
    norms = torch.linalg.vector_norm(e, dim=1, keepdim=True)
    # An all-zero row has no direction: it is left at zero, i.e. at cost 1 from every token.
    return e / norms.clamp_min(torch.finfo(e.dtype).tiny)


@register(
    "emo",
    kind="sequence",
    family="sequence",
    module="EMOLoss",
    reference="Ren, Wu, Zhu. EMO: Earth Mover Distance Optimization for Auto-Regressive "
    "Language Modeling. ICLR 2024, arXiv:2310.04691; code: github.com/DRSY/EMO (emo_patch.py, "
    "language_modeling/gpt2.py) and its PyPI package EMOLoss 0.0.3",
    constraints={
        "mode": Choice((0, 1, 2)),
        "max_ratio": Real(0.0, lo_open=True, allow_none=True),
    },
    # Modes 1 and 2 and exclude_target put stop-gradients into the value, so their gradient
    # is not the derivative of their value and gradcheck cannot apply: they are tested
    # against the official formulas in tests/test_sequence.py instead.
    test_configs=(),
)
def emo(
    inp: SequenceInput,
    *,
    embedding: Tensor | None = None,
    mode: int = 0,
    max_ratio: float | None = 3.0,
    exclude_target: bool = False,
) -> Tensor:
    r"""Earth mover's distance to the target token under a frozen embedding's cosine cost.

    $$
    \mathrm{DEMD}_t = \sum_{k=1}^{V} p_{t,k}\,\big(1 - \cos(e_k, e_{y_t})\big),\qquad
    p_t = \mathrm{softmax}(z_t)
    $$

    per token, with $e_k$ the rows of the frozen cost `embedding` (e.g. a copy of the
    pre-trained output layer). For a one-hot target the transport problem has a single
    solution, so $\mathrm{DEMD}_t$ is the exact earth mover's distance; it is computed as
    $1 - \langle \hat e_{y_t}, \sum_k p_{t,k} \hat e_k\rangle$ in $O(V D)$ per token,
    never with the $V \times V$ cost matrix, and neither the softmax nor the costs are
    stored (the gradient of the logits is the only $(B, T, V)$ tensor). Without an
    embedding every two distinct tokens are at cost 1 and $\mathrm{DEMD}_t = 1 - p_{t,y_t}$.

    `mode` 1 and 2 are the official package's combinations with the token NLL, with
    $\mathrm{sg}$ the stop-gradient: mode 1 is $\tfrac12(\mathrm{NLL}_t + \min(r_t,
    r_{\max})\,\mathrm{DEMD}_t)$ with $r_t = \mathrm{sg}(\mathrm{NLL}_t /
    \mathrm{DEMD}_t)$ (the EMO term equals the NLL in value and rescales its gradient),
    mode 2 is $\mathrm{sg}(\mathrm{DEMD}_t/\mathrm{NLL}_t)\,\mathrm{NLL}_t +
    \mathrm{DEMD}_t$. Their gradients are not the derivatives of their values (by design
    of the stop-gradients).

    Args:
        embedding: the cost embedding `(V, D)`, frozen (no gradient flows to it) and
            row-normalised inside; `None` for one-hot embeddings.
        mode: 0 (the DEMD bound alone), 1 (NLL emphasised: the official package's
            default, for domain adaptation) or 2 (EMO emphasised, for continual
            pre-training).
        max_ratio: cap $r_{\max}$ of the ratio in mode 1; 3 as in the package and the
            continual fine-tuning script, `None` for no cap (the LM and instruction-tuning
            scripts).
        exclude_target: the adaptive variant of the instruction-tuning code: the target's
            own probability is removed from the transported mass without a gradient,
            which adds $\mathrm{sg}(p_{t,y_t})\cos(e_{y_t}, e_{y_t})$ to the value of
            $\mathrm{DEMD}_t$ (and so changes the ratios of modes 1 and 2) but not its
            gradient.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]]])
        >>> target = torch.tensor([[0, 2]])
        >>> emb = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
        >>> F.emo(logits, target, embedding=emb, reduction="none")
        tensor([[0.0742, 0.4335]])
        >>> F.emo(logits, target, embedding=emb, mode=1, reduction="none")
        tensor([[0.2319, 1.0019]])
    """
    emb = _cost_embedding("emo", embedding, inp)
    nll, demd = emo_terms(inp.logits, inp.index, emb)
    value = demd
    if exclude_target:
        q_y = torch.exp(-nll.detach())
        self_cos = 1.0 if emb is None else (emb[inp.index] ** 2).sum(dim=-1)
        value = demd + q_y * self_cos
    if mode == 0:
        return value
    if mode == 1:
        ratio = (nll / (value + 1e-10)).detach()
        if max_ratio is not None:
            ratio = ratio.clamp_max(max_ratio)
        return 0.5 * (nll + ratio * value)
    return (value / (nll + 1e-10)).detach() * nll + value


# --------------------------------------------------------------------------- EISL


def _check_ngrams(ngrams: object) -> tuple[int, ...]:
    if (
        not isinstance(ngrams, (tuple, list))
        or not ngrams
        or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in ngrams)
    ):
        fail("eisl", "ngrams", "a non-empty tuple of n-gram sizes >= 1", describe(ngrams))
    return tuple(ngrams)


@register(
    "eisl",
    kind="sequence",
    family="sequence",
    module="EISLLoss",
    reference="Liu et al. Don't Take It Literally: An Edit-Invariant Sequence Loss for Text "
    "Generation. NAACL 2022, arXiv:2106.15078; code: github.com/guangyliu/EISL (EISL.py)",
    constraints={
        "tau": Real(0.0, lo_open=True),
        "min_log_prob": Real(None, 0.0),
    },
    test_configs=({"ngrams": (1, 2, 3), "tau": 0.5}, {"ngrams": (4,), "min_log_prob": -3.0}),
)
def eisl(
    inp: SequenceInput,
    *,
    ngrams: tuple[int, ...] = (1, 2),
    tau: float = 1.0,
    gumbel: bool = False,
    min_log_prob: float = -20.0,
) -> Tensor:
    r"""Edit-invariant sequence loss: target n-grams matched anywhere in the output.

    $$
    G^{n}_{ij} = \frac1n \sum_{k=0}^{n-1} \max\big(\log p_{i+k}(y_{j+k}), m\big),\quad
    W^{n}_{\cdot j} = \mathrm{softmax}_i\big(G^{n}_{\cdot j} / \tau\big),\quad
    \ell = -\frac{1}{|\mathcal N|}\sum_{n \in \mathcal N}\ \mathrm{mean}_j
    \sum_i W^{n}_{ij} G^{n}_{ij}
    $$

    per sequence: $G^n_{ij}$ is the mean log-probability of the target n-gram starting at
    $j$ when placed at output position $i$ (the official convolution of the
    log-probability matrix with an identity filter), and the soft alignment $W$ lets each
    target n-gram be matched wherever the output produces it, so a shifted or inserted
    token costs little where token-aligned cross-entropy charges every later position.
    Padding is masked: output windows and target n-grams that contain a padded position
    are left out, n-gram sizes longer than a sequence's valid length are skipped for it,
    and a sequence shorter than every size falls back to its mean aligned log-probability
    (the whole sequence as one n-gram, as in the official code). `"mean"` divides the sum
    over sequences by the number of valid tokens; the official loss is the mean over
    sequences, i.e. `reduction="sum"` divided by `B`. Add token cross-entropy to it as the
    official trainer does (`ce_factor`).

    Args:
        ngrams: the n-gram sizes $\mathcal N$, weighted equally; `(1, 2)` as in the
            official machine-translation scripts.
        tau: temperature $\tau > 0$ of the soft alignment; 1 as in the code.
        gumbel: add Gumbel noise to the alignment logits, drawn from torch's global
            generator (`torch.manual_seed` makes it reproducible), as the official
            `gumbel_softmax`. Off by default: the loss is then a deterministic function
            of the logits.
        min_log_prob: floor $m \le 0$ of the log-probabilities; -20 as in the code.

    Example:
        >>> import torch
        >>> from losslab import functional as F
        >>> logits = torch.tensor([[[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0]]])
        >>> F.eisl(logits, torch.tensor([[0, 1, 2]]), reduction="sum")
        tensor(0.3019)
        >>> F.eisl(logits, torch.tensor([[2, 0, 1]]), reduction="sum")  # shifted target
        tensor(1.0163)
    """
    sizes = _check_ngrams(ngrams)
    b, t, _ = inp.logits.shape
    # m[b, i, j] = log p_i(y_j): the (B, T, T) matrix the n-grams are read from.
    cols = inp.index[:, None, :].expand(b, t, t)
    m = gathered_log_softmax(inp.logits, cols).clamp_min(min_log_prob)
    valid = inp.valid
    counts = valid.sum(dim=1)
    aligned = torch.where(valid, m.diagonal(dim1=1, dim2=2), 0.0).sum(dim=1)
    fallback = aligned / counts.clamp_min(1)
    terms, used = [], []
    for n in sizes:
        if n > t:
            continue
        span = t - n + 1
        g = m[:, :span, :span]
        for k in range(1, n):
            g = g + m[:, k : k + span, k : k + span]
        g = g / n
        window = valid[:, :span]
        for k in range(1, n):
            window = window & valid[:, k : k + span]
        scores = g / tau
        if gumbel:
            scores = scores - torch.empty_like(scores).exponential_().log()
        # finfo.min, not -inf: a column without any valid window stays finite (uniform)
        # instead of 0/0, and is dropped below.
        scores = torch.where(window[:, :, None], scores, torch.finfo(scores.dtype).min)
        w = torch.softmax(scores, dim=1)
        per_target = (w * g).sum(dim=1)
        n_windows = window.sum(dim=1)
        terms.append(torch.where(window, per_target, 0.0).sum(dim=1) / n_windows.clamp_min(1))
        used.append(n_windows > 0)
    if terms:
        term = torch.stack(terms)
        weight = torch.stack(used).to(term.dtype)
        n_used = weight.sum(dim=0)
        ngram = (term * weight).sum(dim=0) / n_used.clamp_min(1)
        per_sequence = -torch.where(n_used > 0, ngram, fallback)
    else:
        per_sequence = -fallback
    return inp.spread(per_sequence)


# --------------------------------------------------------------------------- DCO

#: Below this sequence log-probability, (1 - p)^N = 1 - N p to within N * 2e-18 and the
#: loss is -log N - log p (its gradient factor is 1); the closed form would lose p.
_DCO_ASYMPTOTE = -40.0


def _log1mexp(x: Tensor) -> Tensor:
    """``log(1 - exp(x))`` for ``x <= 0`` without cancellation at either end."""
    return torch.where(x > -math.log(2.0), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


@register(
    "dco",
    kind="sequence",
    family="sequence",
    module="DCOLoss",
    reference="Chen, Raventos, Cheng, Ganguli, Druckmann. Rethinking Fine-Tuning when Scaling "
    "Test-Time Compute: Limiting Confidence Improves Mathematical Reasoning. 2025, "
    "arXiv:2502.07154 (no official code)",
    constraints={"n": Real(1.0), "min_factor": Real(0.0, 1.0)},
    test_configs=({"n": 1}, {"n": 4, "min_factor": 0.3}, {"n": 256}),
)
def dco(inp: SequenceInput, *, n: float = 16, min_factor: float = 0.0) -> Tensor | KernelResult:
    r"""Direct coverage optimisation: minus the log pass@N probability of the target.

    $$
    \ell = -\log\big(1 - (1 - \hat p)^{N}\big),\qquad \hat p = \prod_{t} p_t(y_t),\qquad
    \nabla \ell = F(N, \hat p)\, \nabla\Big(-\sum_t \log p_t(y_t)\Big),\quad
    F = \frac{N (1 - \hat p)^{N-1} \hat p}{1 - (1 - \hat p)^{N}}
    $$

    per sequence, over its valid tokens: the probability that at least one of $N$
    independent samples reproduces the target sequence. The gradient is the sequence
    cross-entropy's scaled by $F \in (0, 1]$, which falls to 0 once $\hat p \gtrsim 1/N$:
    confident examples stop being pushed further ("limiting confidence"). $N = 1$ is the
    sequence cross-entropy. Everything is computed from $\log \hat p$ in log space
    ($\log(1 - \hat p)$ without cancellation at either end, and the asymptote
    $-\log N - \log \hat p$ below $\log \hat p = -40$), so values and gradients stay finite
    for any sequence length; $F$ enters the gradient as a constant (the paper's surrogate
    form), which gives the exact first derivative and the exact value.

    Args:
        n: $N \ge 1$, the number of samples of the pass@N evaluation the model is tuned
            for (the paper sets it near the test-time $N$; it gives no default, 16 here is
            an arbitrary mid-range choice). Real values are allowed.
        min_factor: sequences whose factor $F$ falls below it are left out of the
            reduction (the paper replaces such examples in the batch); 0 keeps all.

    Example:
        >>> import math, torch
        >>> from losslab import functional as F
        >>> half = torch.tensor([[[0.0, 0.0]]])  # one token, p = 0.5
        >>> round(F.dco(half, torch.tensor([[0]]), n=4).item(), 6)
        0.064539
        >>> round(F.dco(half, torch.tensor([[0]]), n=1).item(), 6) == round(math.log(2), 6)
        True
    """
    valid = inp.valid
    lp = gathered_log_softmax(inp.logits, inp.index[..., None]).squeeze(-1)
    log_p = torch.where(valid, lp, 0.0).sum(dim=1)
    lp_ = log_p.detach()
    small = lp_ < _DCO_ASYMPTOTE
    safe = torch.where(small, -1.0, lp_)
    log_miss = _log1mexp(safe)  # log(1 - p)
    closed = -_log1mexp(n * log_miss)
    value = torch.where(small, -math.log(n) - lp_, closed)
    if n == 1:
        factor = torch.ones_like(lp_)
    else:
        log_factor = math.log(n) + safe + (n - 1) * log_miss + closed
        factor = torch.where(small, 1.0, torch.exp(log_factor))
    per_sequence = value - factor * (log_p - lp_)
    values = inp.spread(per_sequence)
    if min_factor > 0:
        return KernelResult(values, valid=(factor >= min_factor)[:, None].expand_as(values))
    return values
