r"""The chunked linear + cross-entropy engine behind every fused head.

For hidden states :math:`h \in \mathbb{R}^{N \times D}`, classifier :math:`W \in \mathbb{R}^{V
\times D}` (and bias :math:`b`) the logits are :math:`z = h W^\top + b`, optionally soft-capped
(Gemma 2): :math:`z \leftarrow c \tanh(z / c)`. Per valid row :math:`i` (target
:math:`y_i \ne` ``ignore_index``), with :math:`\ell_i = \log\sum_k e^{z_{ik}}`, label smoothing
:math:`\epsilon` and PaLM's z-loss weight :math:`\lambda`:

.. math::

    L_i = (1-\epsilon)(\ell_i - z_{i y_i}) + \epsilon(\ell_i - \tfrac{1}{V}\textstyle\sum_k z_{ik})
          + \lambda \ell_i^2

which is ``F.cross_entropy(z, y, label_smoothing=eps) + lam * logsumexp(z)**2`` row by row. Its
gradient with respect to the (capped) logits is

.. math::

    G_{ik} = r_i\big[(1 + 2\lambda\ell_i)\,p_{ik} - (1-\epsilon)[k = y_i] - \epsilon / V\big],
    \qquad p_{ik} = e^{z_{ik} - \ell_i},

times :math:`1 - (z_{ik}/c)^2` under soft-capping, with :math:`r_i` = 1/#valid ("mean"),
1 ("sum") or the upstream gradient ("none"), and 0 for ignored rows. Then
:math:`\nabla h = G W`, :math:`\nabla W = G^\top h`, :math:`\nabla b = G^\top 1`.

Algorithm (chunking over tokens as in Liger-Kernel's fused linear cross-entropy,
`linkedin/Liger-Kernel`, and PyTorch 2.13's ``F.linear_cross_entropy``; log-sum-exp over
vocabulary tiles as in Cut Cross-Entropy, Wijmans et al., ICLR 2025, arXiv:2411.09009,
`apple/ml-cross-entropy`):

* ``reduction="mean"/"sum"`` with gradients wanted: each chunk of rows gets its logits from one
  GEMM, the softmax is formed in place in that buffer (:math:`G` is applied in factored form,
  see :func:`_fused_forward`), and :math:`\nabla h`,
  :math:`\nabla W` (float32 accumulator) and :math:`\nabla b` are accumulated in the forward pass
  (6NDV flops, the same as the naive head). Backward only scales them by the scalar upstream
  gradient, so a second backward through the same graph raises.
* ``reduction="none"`` (or no gradient wanted): the forward computes only the log-sum-exp with an
  online (running max / rescaled sum) reduction over (token chunk x vocabulary tile) blocks and
  saves the inputs and :math:`\ell`; backward recomputes each block's logits and applies
  :math:`G` with the per-row upstream gradient (8NDV flops), since
  :math:`\nabla W = \sum_i g_i\, G_i^\top h_i` cannot be rescaled after the token sum.

Logits are always float32 (float64 stays float64); bf16/fp16 inputs are up-cast per chunk and
the weight gradient is accumulated in float32 and cast once at the end.

Vocabulary shards: ``W`` may be the rows ``[vocab_start, vocab_start + V_r)`` of a vocabulary
of ``vocab_total`` classes split over ranks. Every per-row statistic that spans the vocabulary
(logit bounds, row max, sum of exponentials, target logit, logit sum) then goes through a
:class:`Reducer`, and so do the partial :math:`\nabla h = \sum_r G_r W_r`. The single-process
head uses the identity :class:`Reducer`; :mod:`losslab.heads.vocab_parallel` all-reduces.

Subnormal floats: on x86 CPUs, arithmetic that produces or consumes subnormal floats takes
microcode assists that are 10-100x slower. For large logits (std ~30) ``exp(z - max)`` underflows
into the subnormal range for most of the vocabulary and the naive head becomes ~8x slower.
Here a chunk whose logits all lie in [-30, 30] is exponentiated directly (no shift needed);
otherwise :math:`z - \max` is formed and, where a row's range exceeds :math:`T`, clamped from
below at :math:`-T` before ``exp``, with :math:`T` chosen so that :math:`e^{-T}` times the
smallest row factor :math:`r_i / V` is still a normal float
(about 80 - log V - log N in float32). A clamped entry contributes at most
:math:`V e^{-T} < 10^{-20}` relative error to the sum and to the gradient: far below float32
resolution, and no subnormal is ever produced.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

import torch
from torch import Tensor

from losslab._reduce import reduce_loss
from losslab._validate import Choice, Int, Real, describe, fail, value_checks_enabled

from ._checks import Check, Flag, Integer, Reduction, check_float, check_target, check_values

__all__ = [
    "BACKENDS",
    "LOCAL",
    "OPTION_NAMES",
    "HeadOptions",
    "Reducer",
    "auto_chunk_size",
    "run_head",
    "takes_options",
]

BACKENDS = ("torch", "torch_native", "cce", "cce_torch_compile", "liger")

_T = TypeVar("_T")


def _option(default: _T, check: Check) -> _T:
    return field(default=default, metadata={"check": check})


@dataclass(frozen=True)
class HeadOptions:
    """The options of the fused heads, each with its constraint; checked on construction.

    The single declaration of the options: :func:`~losslab.heads.linear_cross_entropy`,
    :class:`~losslab.heads.LinearCrossEntropy` and
    :func:`~losslab.heads.vocab_parallel_linear_cross_entropy` declare them as typed
    keyword-only parameters (so that ``inspect.signature`` and type checkers show them), and
    :func:`takes_options` verifies at import that those parameters equal these fields in name,
    order, annotation and default. See :func:`~losslab.heads.linear_cross_entropy` for their
    meaning.
    """

    ignore_index: int = _option(-100, Integer())
    label_smoothing: float = _option(0.0, Real(0.0, 1.0))
    z_loss: float = _option(0.0, Real(0.0))
    softcap: float | None = _option(None, Real(0.0, lo_open=True, allow_none=True))
    reduction: str = _option("mean", Reduction())
    chunk_size: int | None = _option(None, Integer(1, allow_none=True))
    vocab_chunk_size: int | None = _option(None, Integer(1, allow_none=True))
    shift: int = _option(0, Int(0))
    impl: str = _option("torch", Choice(BACKENDS))
    validate: bool = _option(True, Flag())
    allow_retain_graph: bool = _option(False, Flag())

    def __post_init__(self) -> None:
        self.check(type(self).__name__)

    def check(self, where: str) -> None:
        for f in _FIELDS:
            f.metadata["check"].check(where, f.name, getattr(self, f.name))

    @classmethod
    def from_arguments(cls, where: str, arguments: Mapping[str, Any]) -> HeadOptions:
        """The options among ``arguments`` (e.g. a call's ``locals()``), errors naming ``where``."""
        values = {name: arguments[name] for name in OPTION_NAMES if name in arguments}
        for f in _FIELDS:
            if f.name in values:
                f.metadata["check"].check(where, f.name, values[f.name])
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in OPTION_NAMES}


_FIELDS = fields(HeadOptions)
OPTION_NAMES = tuple(f.name for f in _FIELDS)

_F = TypeVar("_F", bound=Callable[..., Any])


def takes_options(*, omit: tuple[str, ...] = ()) -> Callable[[_F], _F]:
    """Verify that a public entry point declares the :class:`HeadOptions` (less ``omit``).

    Its keyword-only parameters named like options must be exactly the fields, in their order,
    with their annotations and defaults: the explicit signature cannot drift from the options.
    """
    want = [(f.name, f.type, f.default) for f in _FIELDS if f.name not in omit]

    def verify(fn: _F) -> _F:
        params = inspect.signature(fn).parameters.values()
        got = [(p.name, p.annotation, p.default) for p in params if p.name in OPTION_NAMES]
        kinds = {p.kind for p in params if p.name in OPTION_NAMES}
        if got != want or kinds - {inspect.Parameter.KEYWORD_ONLY}:
            raise TypeError(
                f"{fn.__qualname__}: the head options must be keyword-only parameters equal to "
                f"HeadOptions' fields {want}, got {got}"
            )
        return fn

    return verify


class Reducer:
    """Cross-rank reductions of the engine (in place); this base class is one process's identity.

    A vocabulary-parallel head subclasses it with all-reduces over its process group.
    """

    sharded = False

    def max_(self, t: Tensor) -> Tensor:
        return t

    def sum_(self, t: Tensor) -> Tensor:
        return t


LOCAL = Reducer()


def _acc_dtype(*tensors: Tensor | None) -> torch.dtype:
    """float64 if any input is float64 (gradcheck), else float32."""
    if any(t is not None and t.dtype == torch.float64 for t in tensors):
        return torch.float64
    return torch.float32


def _exp_floor(dtype: torch.dtype, vocab: int, min_scale: float) -> float:
    """Largest T such that exp(-T) * min_scale / vocab is still a normal float of ``dtype``.

    Clamping ``z - max`` at ``-T`` keeps every exp() and every entry of the gradient normal.
    Never below 40 (then e^-40 * V is still < 1e-10 relative), never above the exp limit.
    """
    log_tiny = math.log(torch.finfo(dtype).tiny)  # -87.3 (fp32), -708.4 (fp64)
    top = -log_tiny - 7.0
    t = top - math.log(max(vocab, 1)) + math.log(max(min_scale, 1e-300))
    return float(min(max(t, 40.0), top))


def auto_chunk_size(n: int, d: int, v: int, dtype: torch.dtype = torch.float32) -> int:
    """Rows per chunk so that one chunk of float32 logits is at most 0.4x the gradient memory.

    The returned gradients (N x D + V x D) are the memory floor of any exact head; a logit
    chunk of 0.4x that keeps the peak within ~1.45x the floor (measured: 1.42x at (4096, 1024,
    65536)). Larger chunks run faster on CPU (each chunk GEMM streams all of W), so the chunk
    is the largest multiple of 32 rows within that budget (at least 32 rows, at most N).
    """
    item = 4 if dtype != torch.float64 else 8
    budget = max(int(0.4 * (n * d + v * d) * item), 16 * 2**20)
    rows = max(budget // max(v * item, 1) // 32 * 32, 32)
    return int(max(1, min(rows, n)))


def _default_chunk(n: int, d: int, v: int, dtype: torch.dtype, softcap: float | None) -> int:
    """auto_chunk_size, halved under softcap (which needs a second, tanh, chunk buffer)."""
    c = auto_chunk_size(n, d, v, dtype)
    return max(32, c // 2 // 32 * 32) if softcap is not None and c > 32 else c


@dataclass(frozen=True)
class _Plan:
    """Options resolved for one call: chunk sizes and where the weight rows sit."""

    where: str
    options: HeadOptions
    chunk: int
    vocab_chunk: int
    vocab_start: int
    vocab_total: int
    reducer: Reducer


def _logits(h_c: Tensor, w: Tensor, b: Tensor | None, out: Tensor) -> Tensor:
    """out <- h_c @ w.T (+ b), computed in out's dtype without a temporary."""
    if b is None:
        return torch.mm(h_c, w.t(), out=out)
    return torch.addmm(b, h_c, w.t(), out=out)


def _cap_(z: Tensor, softcap: float, tanh_out: Tensor) -> None:
    """In place: z <- c * tanh(z / c); tanh_out <- tanh(z / c) (for the derivative)."""
    torch.div(z, softcap, out=tanh_out)
    tanh_out.tanh_()
    torch.mul(tanh_out, softcap, out=z)


def _owned(y: Tensor, owned: Tensor | None) -> Tensor:
    """Target rows of this shard; 0 where another rank holds the target (masked by the caller)."""
    return y if owned is None else torch.where(owned, y, torch.zeros_like(y))


def _mask(x: Tensor, owned: Tensor | None) -> Tensor:
    return x if owned is None else torch.where(owned, x, torch.zeros_like(x))


def _target_logit(
    h: Tensor, w: Tensor, b: Tensor | None, y: Tensor, softcap: float | None
) -> Tensor:
    """z[i, y_i] by an indexed dot product (O(N D)); used where the full row is not at hand."""
    zy = (h * w.index_select(0, y)).sum(1)
    if b is not None:
        zy = zy + b.index_select(0, y)
    if softcap is not None:
        zy = torch.tanh(zy / softcap) * softcap
    return zy


def _row_loss(
    lse: Tensor, zy: Tensor, zsum: Tensor | None, valid: Tensor, opts: HeadOptions, vocab: int
) -> Tensor:
    ls, zl = opts.label_smoothing, opts.z_loss
    loss = lse - (1.0 - ls) * zy
    if ls > 0.0 and zsum is not None:
        loss = loss - (ls / vocab) * zsum
    if zl > 0.0:
        loss = loss + zl * lse * lse
    return torch.where(valid, loss, torch.zeros_like(loss))


def _grad_from_probs_(
    p: Tensor,
    r_c: Tensor,
    lse_c: Tensor,
    y_local: Tensor | None,
    opts: HeadOptions,
    vocab: int,
    tanh_c: Tensor | None,
    prob_scale: Tensor | None = None,
) -> Tensor:
    """In place: p <- dL/dz for one block (see the module docstring).

    ``p`` holds e^{z - m} (``prob_scale`` = 1/sum) or already-normalised probabilities.
    ``y_local`` is the target column inside this block (-1 where the target is elsewhere).
    """
    ls, zl = opts.label_smoothing, opts.z_loss
    coef = r_c * (1.0 + 2.0 * zl * lse_c) if zl > 0.0 else r_c
    if prob_scale is not None:
        coef = coef * prob_scale
    p.mul_(coef[:, None])
    if y_local is not None:
        hit = y_local >= 0
        idx = torch.where(hit, y_local, torch.zeros_like(y_local))
        delta = torch.where(hit, -(1.0 - ls) * r_c, torch.zeros_like(r_c))
        p.scatter_add_(1, idx[:, None], delta[:, None].to(p.dtype))
    if ls > 0.0:
        p.sub_(((ls / vocab) * r_c)[:, None])
    if tanh_c is not None:  # d(c tanh(x/c))/dx = 1 - tanh^2, computed in place in the tanh buffer
        tanh_c.mul_(tanh_c).neg_().add_(1.0)
        p.mul_(tanh_c)
    return p


# Fast path: logits within +-_DIRECT_EXP_RANGE are exponentiated without subtracting the row
# max: e^30 * V cannot overflow float32 for any V < 1e25 and e^-30 is far from the subnormal
# range, so one in-place pass (exp) replaces three (subtract max, clamp, exp).
_DIRECT_EXP_RANGE = 30.0


def _fused_forward(
    h: Tensor,
    w: Tensor,
    b: Tensor | None,
    y: Tensor,
    owned: Tensor | None,
    valid: Tensor,
    r: Tensor,
    min_scale: float,
    plan: _Plan,
    need: tuple[bool, bool, bool],
) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """Loss rows and the (unscaled by upstream) gradients, one token chunk at a time.

    Each chunk's logits are held transposed, ``z^T = W h_c^T`` (V x c), with the large ``W`` as
    the row operand of the GEMM: on the 2-core CPU of docs/benchmarks.md, ``h_c W^T`` for
    320-416-row chunks took 1.2-1.35x the time per row of ``W h_c^T`` (interleaved
    micro-benchmark, ``x N/c`` chunks: 8.2-9.4 s vs 6.8-7.0 s at (4096, 1024, 65536)), and the
    two gradient products ran as fast or faster in this layout.

    Without soft-capping the gradient of a chunk, ``G = diag(a) E - diag(t) onehot(y) -
    diag(u) 1 1^T`` with ``E = e^{z - s}`` (``s`` = 0 or the row max), ``a = r (1 + 2 lam lse) /
    sum(E)``, ``t = (1 - eps) r`` and ``u = eps r / V``, is never written out: ``a`` scales the
    rows of ``E W`` and of ``h`` (N x D, not N x V), the target term is an indexed update of
    ``D``-vectors, and the label-smoothing term is one rank-1 update at the end. That leaves two
    reads and one in-place write of each logit chunk besides its GEMMs. Every term is linear in
    this shard's rows of ``W``, so on a shard the same formulas give this rank's part of
    ``dh`` (summed over ranks by the caller) with the target terms masked to owned targets.
    """
    opts, red, vt = plan.options, plan.reducer, plan.vocab_total
    acc = w.dtype
    n, d = h.shape
    v = w.shape[0]
    c = max(1, min(plan.chunk, n))
    flat = torch.empty(v * c, dtype=acc, device=h.device)  # a (V, k) view per chunk of k rows
    tanh_flat = torch.empty_like(flat) if opts.softcap is not None else None
    loss = torch.empty(n, dtype=acc, device=h.device)
    dh = torch.empty((n, d), dtype=acc, device=h.device) if need[0] else None
    dw = torch.zeros((v, d), dtype=acc, device=h.device) if need[1] else None
    db = torch.zeros(v, dtype=acc, device=h.device) if need[2] else None
    floor = _exp_floor(acc, vt, min_scale)
    ls = opts.label_smoothing
    w_colsum = w.sum(0) if dh is not None and ls > 0.0 and opts.softcap is None else None
    rh_sum = torch.zeros(d, dtype=acc, device=h.device)  # sum_i r_i h_i, for the eps term of dW
    for s in range(0, n, c):
        e = min(s + c, n)
        h_c = h[s:e].to(acc)
        zt = flat[: v * (e - s)].view(v, e - s)
        if b is None:
            torch.mm(w, h_c.t(), out=zt)
        else:
            torch.addmm(b[:, None], w, h_c.t(), out=zt)
        t_c = None
        if opts.softcap is not None and tanh_flat is not None:
            t_c = tanh_flat[: v * (e - s)].view(v, e - s)
            _cap_(zt, opts.softcap, t_c)
        own_c = None if owned is None else owned[s:e]
        y_c, r_c = _owned(y[s:e], own_c), r[s:e]
        zy = _mask(zt.gather(0, y_c[None, :]).squeeze(0), own_c)
        zsum = zt.sum(0) if ls > 0.0 else None
        # one global min/max (a per-column aminmax over dim 0 is ~18x slower on CPU)
        lo, hi = torch.aminmax(zt)
        bounds = red.max_(torch.stack([-lo, hi]))
        if bool((bounds <= _DIRECT_EXP_RANGE).all()):
            m = torch.zeros(e - s, dtype=acc, device=h.device)
            zt.exp_()
        else:
            m = red.max_(zt.amax(0))
            zt.sub_(m[None, :])
            if bool(bounds.sum() > floor):  # clamp: no subnormal exp (module doc)
                zt.clamp_(min=-floor)
            zt.exp_()
        ssum = zt.sum(0)
        stats = red.sum_(torch.stack([ssum, zy] if zsum is None else [ssum, zy, zsum]))
        ssum, zy = stats[0], stats[1]
        zsum = None if zsum is None else stats[2]
        lse_c = ssum.log() + m
        loss[s:e] = _row_loss(lse_c, zy, zsum, valid[s:e], opts, vt)
        if t_c is not None:  # the tanh derivative is elementwise: form G (as G^T) in place
            y_local = y_c if own_c is None else torch.where(own_c, y_c, -1)
            _grad_from_probs_(zt.t(), r_c, lse_c, y_local, opts, vt, t_c.t(), 1.0 / ssum)
            if dh is not None:
                torch.mm(zt.t(), w, out=dh[s:e])
            if dw is not None:
                dw.addmm_(zt, h_c)
            if db is not None:
                db.add_(zt.sum(1))
            continue
        a = r_c * (1.0 + 2.0 * opts.z_loss * lse_c) if opts.z_loss > 0.0 else r_c
        a = a / ssum
        t = _mask((1.0 - ls) * r_c, own_c)
        if dh is not None:
            dh_c = dh[s:e]
            torch.mm(zt.t(), w, out=dh_c)
            dh_c.mul_(a[:, None])
            dh_c.sub_(w.index_select(0, y_c) * t[:, None])
            if w_colsum is not None:
                dh_c.sub_((ls / vt) * r_c[:, None] * w_colsum)
        if dw is not None:
            dw.addmm_(zt, h_c * a[:, None])
            # index_put_(accumulate=True): ~12x faster than index_add_ over dim 0 on CPU
            dw.index_put_((y_c,), h_c * (-t)[:, None], accumulate=True)
            if ls > 0.0:
                rh_sum.add_(r_c @ h_c)
        if db is not None:
            db.addmv_(zt, a)
            db.index_put_((y_c,), -t, accumulate=True)
            if ls > 0.0:
                db.sub_((ls / vt) * r_c.sum())
    if dw is not None and ls > 0.0 and opts.softcap is None:
        dw.sub_((ls / vt) * rh_sum)
    return loss, dh, dw, db


def _lse_forward(
    h: Tensor,
    w: Tensor,
    b: Tensor | None,
    y: Tensor,
    owned: Tensor | None,
    valid: Tensor,
    plan: _Plan,
) -> tuple[Tensor, Tensor]:
    """Loss rows and lse with an online log-sum-exp over (token chunk x vocab tile) blocks."""
    opts, red, vt = plan.options, plan.reducer, plan.vocab_total
    acc = w.dtype
    n = h.shape[0]
    v = w.shape[0]
    c = max(1, min(plan.chunk, n))
    vb = max(1, min(plan.vocab_chunk, v))
    buf = torch.empty((c, vb), dtype=acc, device=h.device)
    tanh_buf = torch.empty_like(buf) if opts.softcap is not None else None
    loss = torch.empty(n, dtype=acc, device=h.device)
    lse = torch.empty(n, dtype=acc, device=h.device)
    floor = _exp_floor(acc, vt, 1.0)
    for s in range(0, n, c):
        e = min(s + c, n)
        h_c = h[s:e].to(acc)
        m_run = torch.full((e - s,), -math.inf, dtype=acc, device=h.device)
        s_run = torch.zeros(e - s, dtype=acc, device=h.device)
        zsum = torch.zeros(e - s, dtype=acc, device=h.device)
        for vs in range(0, v, vb):
            ve = min(vs + vb, v)
            z = buf[: e - s, : ve - vs]
            _logits(h_c, w[vs:ve], None if b is None else b[vs:ve], z)
            if opts.softcap is not None and tanh_buf is not None:
                _cap_(z, opts.softcap, tanh_buf[: e - s, : ve - vs])
            if opts.label_smoothing > 0.0:
                zsum += z.sum(1)
            m_new = torch.maximum(m_run, z.amax(1))
            z.sub_(m_new[:, None]).clamp_(min=-floor).exp_()
            s_run = s_run * torch.exp(m_run - m_new) + z.sum(1)
            m_run = m_new
        own_c = None if owned is None else owned[s:e]
        zy = _mask(_target_logit(h_c, w, b, _owned(y[s:e], own_c), opts.softcap), own_c)
        if red.sharded:  # rescale each rank's sum to the global row max, then add them up
            m = red.max_(m_run.clone())
            s_run = s_run * torch.exp(m_run - m)
            s_run, zy, zsum = red.sum_(torch.stack([s_run, zy, zsum])).unbind(0)
            m_run = m
        lse_c = s_run.log() + m_run
        lse[s:e] = lse_c
        loss[s:e] = _row_loss(lse_c, zy, zsum, valid[s:e], opts, vt)
    return loss, lse


def _recompute_backward(
    h: Tensor,
    w: Tensor,
    b: Tensor | None,
    y: Tensor,
    lse: Tensor,
    r: Tensor,
    plan: _Plan,
    need: tuple[bool, bool, bool],
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Gradients for per-row upstream factors r, recomputing logits block by block.

    On a shard, targets outside ``[0, w.shape[0])`` (held by another rank) simply never hit a
    column here; ``dh`` is this rank's part.
    """
    opts, vt = plan.options, plan.vocab_total
    acc = w.dtype
    n, d = h.shape
    v = w.shape[0]
    c = max(1, min(plan.chunk, n))
    vb = max(1, min(plan.vocab_chunk, v))
    buf = torch.empty((c, vb), dtype=acc, device=h.device)
    tanh_buf = torch.empty_like(buf) if opts.softcap is not None else None
    dh = torch.zeros((n, d), dtype=acc, device=h.device) if need[0] else None
    dw = torch.zeros((v, d), dtype=acc, device=h.device) if need[1] else None
    db = torch.zeros(v, dtype=acc, device=h.device) if need[2] else None
    # p = exp(z - lse) <= 1 is multiplied by |r_i|: clamp per row so that the product stays normal
    log_tiny = math.log(torch.finfo(acc).tiny)
    top = -log_tiny - 7.0
    floor = (top + torch.log(r.abs().clamp_min(1e-300))).clamp(40.0, top)
    for s in range(0, n, c):
        e = min(s + c, n)
        h_c = h[s:e].to(acc)
        lse_c, r_c, y_c = lse[s:e], r[s:e], y[s:e]
        lower = (lse_c - floor[s:e])[:, None]
        for vs in range(0, v, vb):
            ve = min(vs + vb, v)
            z = buf[: e - s, : ve - vs]
            _logits(h_c, w[vs:ve], None if b is None else b[vs:ve], z)
            t_c = None
            if opts.softcap is not None and tanh_buf is not None:
                t_c = tanh_buf[: e - s, : ve - vs]
                _cap_(z, opts.softcap, t_c)
            torch.maximum(z, lower, out=z)
            z.sub_(lse_c[:, None]).exp_()
            inside = (y_c >= vs) & (y_c < ve)
            y_local = torch.where(inside, y_c - vs, torch.full_like(y_c, -1))
            _grad_from_probs_(z, r_c, lse_c, y_local, opts, vt, t_c)
            if dh is not None:
                dh[s:e].addmm_(z, w[vs:ve])
            if dw is not None:
                dw[vs:ve].addmm_(z.t(), h_c)
            if db is not None:
                db[vs:ve] += z.sum(0)
    return dh, dw, db


class _HeadFn(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        target: Tensor,
        plan: _Plan,
        need: tuple[bool, bool, bool],
    ) -> Tensor:
        opts = plan.options
        acc = _acc_dtype(hidden, weight, bias)
        n, v = hidden.shape[0], weight.shape[0]
        valid = target != opts.ignore_index
        # local row of the target; outside [0, v) on a shard: another rank holds it
        y = torch.where(valid, target, torch.zeros_like(target)).long() - plan.vocab_start
        owned = None if v == plan.vocab_total else (y >= 0) & (y < v)
        w = weight.to(acc)  # no copy for float32 weights; one up-cast copy for bf16/fp16
        b = None if bias is None else bias.to(acc)
        ctx.plan, ctx.need = plan, need
        ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        ctx.precomputed = opts.reduction != "none" and any(need)
        if ctx.precomputed:
            scale = (
                1.0 / valid.sum().clamp_min(1).to(acc)
                if opts.reduction == "mean"
                else torch.ones((), dtype=acc)
            )
            r = valid.to(acc) * scale
            min_scale = 1.0 / max(n, 1) if opts.reduction == "mean" else 1.0
            loss, dh, dw, db = _fused_forward(
                hidden, w, b, y, owned, valid, r, min_scale, plan, need
            )
            if dh is not None:
                plan.reducer.sum_(dh)
            # Kept as attributes (not saved tensors): backward hands them to autograd and drops
            # its own reference, so AccumulateGrad can adopt the float32 buffers without a copy.
            ctx.grads = [dh, dw, db]
        else:
            loss, lse = _lse_forward(hidden, w, b, y, owned, valid, plan)
            if any(need):
                ctx.save_for_backward(hidden, weight, bias, y, valid, lse)
        # Ignored tokens carry loss 0; the library's one reduction divides by the valid count.
        return reduce_loss(loss, opts.reduction, mask=valid)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        plan: _Plan = ctx.plan
        dtypes = ctx.dtypes
        tail = (None, None, None)
        if ctx.precomputed:
            if ctx.grads is None:
                raise RuntimeError(
                    f"{plan.where}: gradients for reduction={plan.options.reduction!r} are "
                    "computed in the forward pass and handed out once; backward through the same "
                    "graph twice (retain_graph=True) needs allow_retain_graph=True (keeps a copy "
                    "of them)."
                )
            if plan.options.allow_retain_graph:  # keep the buffers; hand out scaled copies
                return (
                    *(
                        None if g is None else (g * grad_out.to(g.dtype)).to(dt)
                        for g, dt in zip(ctx.grads, dtypes, strict=True)
                    ),
                    *tail,
                )
            grads, ctx.grads = ctx.grads, None
            out: list[Tensor | None] = []
            for g, dt in zip(grads, dtypes, strict=True):
                if g is None:
                    out.append(None)
                    continue
                g.mul_(grad_out.to(g.dtype))  # in place: our own buffer, no second V x D copy
                out.append(g if g.dtype == dt else g.to(dt))
                del g
            del grads
            return (*out, *tail)
        hidden, weight, bias, y, valid, lse = ctx.saved_tensors
        acc = lse.dtype
        w = weight.to(acc)
        b = None if bias is None else bias.to(acc)
        r = valid.to(acc) * grad_out.to(acc)
        dh, dw, db = _recompute_backward(hidden, w, b, y, lse, r, plan, ctx.need)
        if dh is not None:
            plan.reducer.sum_(dh)
        return (
            None if dh is None else dh.to(dtypes[0]),
            None if dw is None else dw.to(dtypes[1]),
            None if db is None or dtypes[2] is None else db.to(dtypes[2]),
            *tail,
        )


def _check_structure(
    where: str,
    hidden: Tensor,
    weight: Tensor,
    target: Tensor,
    bias: Tensor | None,
    shift: int,
) -> None:
    """Types, shapes, devices and the shift: free checks that always run."""
    check_float(where, "hidden", hidden)
    check_float(where, "weight", weight)
    check_target(where, target)
    if bias is not None:
        check_float(where, "bias", bias)
    if weight.dim() != 2:
        fail(where, "weight", "a 2-D tensor (V, D)", describe(weight))
    if hidden.dim() < 1 or hidden.shape[-1] != weight.shape[1]:
        fail(where, "hidden", f"shape (..., {weight.shape[1]}) (D of weight)", describe(hidden))
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        fail(where, "bias", f"shape ({weight.shape[0]},) (V of weight)", describe(bias))
    if target.shape != hidden.shape[:-1]:
        fail(
            where,
            "target",
            f"shape {tuple(hidden.shape[:-1])} (hidden's shape without D)",
            describe(target),
        )
    for name, t in (("weight", weight), ("target", target), ("bias", bias)):
        if t is not None and t.device != hidden.device:
            fail(where, name, f"a tensor on {hidden.device} (hidden's device)", f"{t.device}")
    if shift:
        if hidden.dim() < 2:
            fail(where, "hidden", f"shape (..., T, D) for shift={shift}", describe(hidden))
        t_len = hidden.shape[-2]
        if shift >= t_len:
            fail(
                where,
                "shift",
                f"an integer in [0, {t_len - 1}] (below the sequence length T={t_len})",
                repr(shift),
            )


def run_head(
    where: str,
    hidden: Tensor,
    weight: Tensor,
    target: Tensor,
    bias: Tensor | None,
    opts: HeadOptions,
    *,
    vocab_start: int = 0,
    vocab_size: int | None = None,
    reducer: Reducer = LOCAL,
) -> Tensor:
    """Check the inputs, then the fused head (or an optional back-end) on ``(..., D)`` hidden.

    ``weight`` holds the rows ``[vocab_start, vocab_start + V_r)`` of ``vocab_size`` classes
    (default: all of them), combined over ranks by ``reducer``. Errors name ``where``.
    """
    _check_structure(where, hidden, weight, target, bias, opts.shift)
    v_total = weight.shape[0] if vocab_size is None else vocab_size
    if vocab_start + weight.shape[0] > v_total:
        fail(
            where,
            "vocab_start",
            f"a slice inside the vocabulary: vocab_start + {weight.shape[0]} (rows of weight) "
            f"<= vocab_size={v_total}",
            repr(vocab_start),
        )
    if opts.shift:
        hidden = hidden[..., : -opts.shift, :]
        target = target[..., opts.shift :]
    batch_shape = tuple(target.shape)
    h2, y1 = hidden.reshape(-1, hidden.shape[-1]), target.reshape(-1)
    if value_checks_enabled(opts.validate):
        check_values(
            where,
            y1,
            v_total,
            opts.ignore_index,
            {"hidden": h2, "weight": weight, "bias": bias},
            rows="rows" if vocab_size is None else "classes in total",
            combine=reducer.sum_ if reducer.sharded else None,
        )
    if opts.impl != "torch":
        from ._backends import run_backend

        return run_backend(where, opts, h2, weight, y1, bias, batch_shape)
    n, d = h2.shape
    acc = _acc_dtype(hidden, weight, bias)
    v = weight.shape[0]
    plan = _Plan(
        where=where,
        options=opts,
        chunk=int(opts.chunk_size or _default_chunk(n, d, v, acc, opts.softcap)),
        vocab_chunk=int(opts.vocab_chunk_size or (v if v <= 65536 else 32768)),
        vocab_start=vocab_start,
        vocab_total=v_total,
        reducer=reducer,
    )
    grad_on = torch.is_grad_enabled()
    need = (
        grad_on and h2.requires_grad,
        grad_on and weight.requires_grad,
        grad_on and bias is not None and bias.requires_grad,
    )
    out = _HeadFn.apply(h2, weight, bias, y1, plan, need)
    return out.reshape(batch_shape) if opts.reduction == "none" else out
