r"""Spherical output layer: exact loss, gradient and SGD update in O(D^2) per example.

Vincent, de Brébisson, Bouthillier, "Efficient Exact Gradient Update for training Deep Networks
with Very Large Sparse Targets", NIPS 2015 (arXiv:1412.7091; journal version arXiv:1606.08061);
de Brébisson & Vincent, "The Z-loss: a shift and scale invariant classification loss belonging
to the Spherical Family", 2016 (arXiv:1604.08859). Authors' code: `adbrebs/factored_output_layer`.

Outputs :math:`o = W h` with :math:`W \in \mathbb{R}^{V \times D}`. A *spherical* loss depends
on :math:`o` only through the target output :math:`o_c`, :math:`q = \|o\|^2 = h^\top Q h`
and :math:`s = \sum_k o_k = \bar w^\top h`, where :math:`Q = W^\top W` (D x D) and
:math:`\bar w = W^\top 1` are maintained, so the loss costs O(D^2) whatever V. Supported:

* ``"squared_error"``: :math:`\|o - e_c\|^2 = q - 2 o_c + 1`;
* ``"spherical_softmax"``: :math:`-\log\frac{o_c^2 + \epsilon}{q + V\epsilon}`;
* ``"z_loss"`` (de Brébisson & Vincent): :math:`\mu = s / V`,
  :math:`\sigma = \sqrt{q / V - \mu^2}`, :math:`z_c = (o_c - \mu)/\sigma`,
  :math:`L = \tfrac{1}{a}\,\mathrm{softplus}(a (b - z_c))` (shift- and scale-invariant in o).
  Not PaLM's ``z_loss`` (``logsumexp**2``) of :func:`~losslab.heads.linear_cross_entropy`.

Gradient: with :math:`\alpha = \partial L/\partial s`, :math:`\beta = \partial L/\partial q`,
:math:`\gamma = \partial L/\partial o_c` (per example, by autograd on three scalars),
:math:`\partial L/\partial o = g = \alpha 1 + 2\beta o + \gamma e_c`, hence
:math:`\nabla h = \alpha \bar w + 2\beta Q h + \gamma W_c` (O(D^2)).

Exact SGD update of W without touching its V x D entries. W is kept factored as
:math:`W = A U + 1 \omega^\top` (A: V x D, U: D x D, :math:`\omega`: D). For a batch
(rows :math:`h_i`, targets :math:`c_i`), :math:`\nabla W = \sum_i g_i h_i^\top`, so
:math:`W' = W M - \eta 1 (\sum_i \alpha_i h_i)^\top - \eta \sum_i e_{c_i} \gamma_i h_i^\top` with
:math:`M = I - \eta \sum_i 2\beta_i h_i h_i^\top`. Therefore

* :math:`U' = U M`, :math:`\omega' = M \omega - \eta \sum_i \alpha_i h_i` (O(D^3 + m D^2));
* only the target rows of A change: :math:`A'_{c_i} \mathrel{-}= \eta \gamma_i h_i^\top U'^{-1}`
  (a solve with U', O(D^3 + m D^2));
* :math:`Q' = Q - \eta (\nabla H^\top H + H^\top \nabla H) + \eta^2 H^\top K H` with
  :math:`K_{ij} = g_i^\top g_j` expanded in s, q-cross terms :math:`h_i^\top Q h_j`, the target
  outputs :math:`o_i[c_j]` and :math:`[c_i = c_j]` (O(m^2 D + m D^2));
* :math:`\bar w' = \bar w - \eta H^\top (G 1)` with :math:`(G 1)_i = \alpha_i V + 2\beta_i s_i +
  \gamma_i`.

Cost per step: O(D^3 + m D^2 + m^2 D), i.e. O(D^2) per example for batches of m ~ D, and
independent of V. The authors keep :math:`U^{-1}` by Sherman-Morrison updates; here a linear
solve with U' per step is used instead (same order, no drift of an explicit inverse).
Rounding makes U drift over many steps: :meth:`SphericalOutput.renormalize` folds U into A and
:meth:`SphericalOutput.refresh` recomputes Q and w-bar exactly (O(V D^2), every few hundred
steps is plenty).

Usage::

    head = SphericalOutput(256, 1_000_000, loss="z_loss")
    loss = head(h, target)   # O(m D^2); autograd gives dL/dh to the network
    loss.backward()          # also records the exact dL/dW in factored form
    head.step(lr)            # exact SGD step on W, O(D^3 + m D^2)
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from losslab._reduce import reduce_loss
from losslab._validate import (
    Choice,
    Constraint,
    Int,
    Real,
    check_hparams,
    check_reduction,
    describe,
    fail,
    value_checks_enabled,
)
from losslab.functional.spherical import SIGMA_FLOOR, z_score

from ._checks import check_float, check_target, check_values

__all__ = ["SphericalOutput", "spherical_loss_from_stats"]

LOSSES = ("z_loss", "squared_error", "spherical_softmax")
_CONSTRAINTS: dict[str, Constraint] = {
    "in_features": Int(1),
    "num_classes": Int(1),
    "loss": Choice(LOSSES),
    "a": Real(0.0, lo_open=True),
    "b": Real(),
    "eps": Real(0.0),
    "init_std": Real(0.0, lo_open=True, allow_none=True),
}


def spherical_loss_from_stats(
    s: Tensor,
    q: Tensor,
    oc: Tensor,
    num_classes: int,
    loss: str = "z_loss",
    *,
    a: float = 1.0,
    b: float = 0.0,
    eps: float = 1e-6,
    sigma_floor: float = SIGMA_FLOOR,
) -> Tensor:
    """Per-example loss from the spherical statistics s = sum(o), q = |o|^2 and o_c.

    ``eps`` is the spherical softmax's; the Z-loss's standard deviation is floored at
    ``sigma_floor`` exactly as in :func:`losslab.functional.z_loss`.
    """
    v = float(num_classes)
    if loss == "squared_error":
        return q - 2.0 * oc + 1.0
    if loss == "spherical_softmax":
        return torch.log(q + v * eps) - torch.log(oc * oc + eps)
    if loss == "z_loss":
        mu = s / v
        # clamped above 0 before the root: sqrt's slope is infinite at 0
        sigma = (q / v - mu * mu).clamp_min(torch.finfo(q.dtype).tiny).sqrt()
        return F.softplus(a * (b - z_score(oc - mu, sigma, sigma_floor))) / a
    fail("spherical_loss_from_stats", "loss", f"one of {LOSSES}", describe(loss))


class _SphericalFn(torch.autograd.Function):
    """Per-row losses of h; dL/dh = alpha wbar + 2 beta Q h + gamma W_c; records the step's terms.

    The reduction is applied outside (``reduce_loss``), so backward always sees per-row
    upstream gradients.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, h: Tensor, target: Tensor, head: SphericalOutput
    ) -> Tensor:
        hq = h @ head.Q  # (m, D), Q symmetric
        wc = head.target_rows(target)  # (m, D)
        with torch.enable_grad():
            s = (h @ head.wbar).detach().requires_grad_()
            q = (hq * h).sum(1).detach().requires_grad_()
            oc = (wc * h).sum(1).detach().requires_grad_()
            rows = head.loss_from_stats(s, q, oc)
            grads = torch.autograd.grad(rows.sum(), (s, q, oc), allow_unused=True)
            alpha, beta, gamma = (torch.zeros_like(s) if g is None else g for g in grads)
        ctx.save_for_backward(h, target, hq, wc, s.detach(), alpha, beta, gamma)
        ctx.head = head
        return rows.detach()

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        h, target, hq, wc, s, alpha, beta, gamma = ctx.saved_tensors
        alpha, beta, gamma = alpha * grad_out, beta * grad_out, gamma * grad_out
        head: SphericalOutput = ctx.head
        dh = alpha[:, None] * head.wbar + 2.0 * beta[:, None] * hq + gamma[:, None] * wc
        # h Q, W_c and s are valid for the step as long as W has not changed since forward
        head._record(h.detach(), target, alpha, beta, gamma, hq, wc, s, head._version)
        return dh, None, None


class SphericalOutput(nn.Module):
    """Factored V x D output layer trained with exact O(D^2)-per-example spherical losses.

    The weight ``W = A @ U + 1 omega^T`` and the statistics ``Q = W^T W``, ``wbar = W^T 1``
    live in buffers (not parameters: an optimiser step on a dense V x D matrix is exactly what
    this layer avoids). ``forward`` returns the loss; after ``backward``, :meth:`step` applies
    the exact SGD update of W for the recorded gradients. See the module docstring.
    """

    A: Tensor
    U: Tensor
    omega: Tensor
    Q: Tensor
    wbar: Tensor

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        loss: str = "z_loss",
        a: float = 1.0,
        b: float = 0.0,
        eps: float = 1e-6,
        reduction: str = "mean",
        init_std: float | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        options = dict(in_features=in_features, num_classes=num_classes, loss=loss, a=a, b=b)
        check_hparams(name, _CONSTRAINTS, {**options, "eps": eps, "init_std": init_std})
        check_reduction(name, reduction)
        self.in_features, self.num_classes = int(in_features), int(num_classes)
        self.loss, self.a, self.b, self.eps, self.reduction = loss, a, b, eps, reduction
        std = init_std if init_std is not None else 1.0 / math.sqrt(in_features)
        A = torch.empty(num_classes, in_features, dtype=dtype, device=device).normal_(0.0, std)
        self.register_buffer("A", A)
        self.register_buffer("U", torch.eye(in_features, dtype=dtype, device=device))
        self.register_buffer("omega", torch.zeros(in_features, dtype=dtype, device=device))
        self.register_buffer("Q", A.T @ A)
        self.register_buffer("wbar", A.sum(0))
        self._pending: list[tuple[Any, ...]] = []
        self._version = 0  # bumped by every change of W; cached h Q / W_c are reused if equal

    # -- construction / inspection (O(V D^2), not for the training loop) --------------------
    @classmethod
    def from_weight(cls, weight: Tensor, **kwargs: Any) -> SphericalOutput:
        """A layer whose W equals ``weight`` (V x D, finite)."""
        name = f"{cls.__name__}.from_weight"
        check_float(name, "weight", weight)
        if weight.dim() != 2:
            fail(name, "weight", "a 2-D tensor (V, D)", describe(weight))
        if not bool(torch.isfinite(weight).all()):
            fail(name, "weight", "finite values", "NaN or infinite values")
        head = cls(
            weight.shape[1], weight.shape[0], dtype=weight.dtype, device=weight.device, **kwargs
        )
        with torch.no_grad():
            head.A.copy_(weight)
        head.refresh()
        return head

    @property
    def weight(self) -> Tensor:
        """The dense W = A U + 1 omega^T (O(V D^2))."""
        return self.A @ self.U + self.omega

    def logits(self, h: Tensor) -> Tensor:
        """Dense outputs o = W h for evaluation (O(V D) per example)."""
        return (h.to(self.A.dtype) @ self.U.T) @ self.A.T + h.to(self.A.dtype) @ self.omega[:, None]

    @torch.no_grad()
    def refresh(self) -> None:
        """Recompute Q = W^T W and wbar = W^T 1 exactly (removes rounding drift)."""
        w = self.weight
        self.Q.copy_(w.T @ w)
        self.wbar.copy_(w.sum(0))
        self._version += 1

    @torch.no_grad()
    def renormalize(self) -> None:
        """Fold U and omega into A (U <- I, omega <- 0); W is unchanged. O(V D^2)."""
        self.A.copy_(self.weight)
        self.U.copy_(torch.eye(self.in_features, dtype=self.U.dtype, device=self.U.device))
        self.omega.zero_()
        self._version += 1

    # -- O(D^2) per example -----------------------------------------------------------------
    def target_rows(self, target: Tensor) -> Tensor:
        """Rows W_c = A_c U + omega for the given classes (m x D)."""
        return self.A.index_select(0, target) @ self.U + self.omega

    def loss_from_stats(self, s: Tensor, q: Tensor, oc: Tensor) -> Tensor:
        return spherical_loss_from_stats(
            s, q, oc, self.num_classes, self.loss, a=self.a, b=self.b, eps=self.eps
        )

    def forward(self, h: Tensor, target: Tensor, *, validate: bool = True) -> Tensor:
        """Loss of ``h`` (m x D) for ``target`` (m,); ``validate`` checks the target range and
        that ``h`` is finite (a host sync; skipped under ``torch.compile``)."""
        name = type(self).__name__
        check_float(name, "h", h)
        check_target(name, target)
        if h.dim() != 2 or h.shape[1] != self.in_features:
            fail(name, "h", f"shape (m, {self.in_features})", describe(h))
        if target.shape != h.shape[:1]:
            fail(
                name, "target", f"shape ({h.shape[0]},) (one class per row of h)", describe(target)
            )
        if value_checks_enabled(validate):
            check_values(name, target, self.num_classes, None, {"h": h}, rows="classes")
        x = h.to(self.A.dtype)
        if not (torch.is_grad_enabled() and x.requires_grad) and torch.is_grad_enabled():
            x = x.detach().requires_grad_()  # so that backward runs and records dL/dW
        return reduce_loss(_SphericalFn.apply(x, target.long(), self), self.reduction)

    def _record(self, *record: Any) -> None:
        self._pending.append(record)

    def zero_grad_pending(self) -> None:
        """Drop recorded gradients without applying them."""
        self._pending.clear()

    @torch.no_grad()
    def step(self, lr: float) -> None:
        """Exact SGD step W <- W - lr * dL/dW for all gradients recorded since the last step.

        ``lr``: a finite real >= 0. All new values are computed before any is stored, so a
        step that raises (bad ``lr``, singular factor) leaves the layer and the recorded
        gradients as they were.
        """
        Real(0.0).check(f"{type(self).__name__}.step", "lr", lr)
        if not self._pending:
            return
        pending = self._pending
        H, C, al, be, ga = (torch.cat([p[k] for p in pending]) for k in range(5))
        v, eta = float(self.num_classes), float(lr)
        if all(p[8] == self._version for p in pending):  # reuse forward's O(m D^2) products
            HQ, WC, s = (torch.cat([p[k] for p in pending]) for k in (5, 6, 7))
        else:
            HQ, WC, s = H @ self.Q, self.target_rows(C), H @ self.wbar
        dH = al[:, None] * self.wbar + 2.0 * be[:, None] * HQ + ga[:, None] * WC  # = G W
        # K = G G^T, g_i = al_i 1 + 2 be_i o_i + ga_i e_{c_i}
        P = HQ @ H.T  # o_i . o_j
        X = H @ WC.T  # X[i, j] = o_i[c_j]
        E = (C[:, None] == C[None, :]).to(H.dtype)
        bs = be * s
        K = (
            v * al[:, None] * al[None, :]
            + 2.0 * (al[:, None] * bs[None, :] + bs[:, None] * al[None, :])
            + (al[:, None] * ga[None, :] + ga[:, None] * al[None, :])
            + 4.0 * be[:, None] * be[None, :] * P
            + 2.0 * (be[:, None] * ga[None, :] * X + ga[:, None] * be[None, :] * X.T)
            + ga[:, None] * ga[None, :] * E
        )
        g1 = al * v + 2.0 * bs + ga
        # statistics from the old W (through dH, HQ, s)
        cross = dH.T @ H
        Q = self.Q.add(cross + cross.T, alpha=-eta).add_(H.T @ (K @ H), alpha=eta * eta)
        wbar = self.wbar.add(-eta * (H.T @ g1))
        # factors: M = I - eta * sum_i 2 be_i h_i h_i^T
        M = torch.eye(self.in_features, dtype=H.dtype, device=H.device) - eta * (
            H.T @ (2.0 * be[:, None] * H)
        )
        U = self.U @ M
        omega = M @ self.omega - eta * (H.T @ al)
        # A'_{c_i} -= eta ga_i h_i^T U'^{-1}  <=>  rows (U'^{-T} h_i)^T
        rows = torch.linalg.solve(U.T, H.T).T  # (m, D) = h_i^T U'^{-1}
        self.Q.copy_(Q)
        self.wbar.copy_(wbar)
        self.U.copy_(U)
        self.omega.copy_(omega)
        self.A.index_add_(0, C, -eta * ga[:, None] * rows)
        self._pending = []
        self._version += 1

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, num_classes={self.num_classes}, "
            f"loss={self.loss!r}, a={self.a}, b={self.b}, eps={self.eps}, "
            f"reduction={self.reduction!r}"
        )
