"""The property vocabulary and the numerical checks that verify each property.

A property declared in the registry is a promise to users. Each one has a check here;
the generic test-suite runs the check for every loss that declares the property, at
the hyperparameters of the claim (:class:`losslab.registry.Claim`). The checks are
public so that users can verify their own losses the same way::

    from losslab.properties import verify
    verify("gce", "symmetric", seed=0)  # raises PropertyViolation on failure
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from losslab.registry import PROPERTIES, loss_info


class PropertyViolation(AssertionError):  # noqa: N818 (reads as a test failure)
    """A declared property does not hold numerically."""


def _loss_fn(name: str, params: Mapping[str, Any]) -> tuple[Callable[..., Tensor], dict]:
    spec = loss_info(name)
    cfg = spec.config(**params)

    def fn(z: Tensor, y: Tensor) -> Tensor:
        return spec.function(z, y, **cfg, reduction="none", validate=False)

    return fn, cfg


def _random_logits(g: torch.Generator, n: int, c: int, scale: float) -> Tensor:
    return torch.randn(n, c, generator=g, dtype=torch.float64) * scale


def _close(a: Tensor, b: Tensor, what: str, rtol: float = 1e-6, atol: float = 1e-7) -> None:
    if not torch.allclose(a, b, rtol=rtol, atol=atol):
        err = (a - b).abs().max().item()
        raise PropertyViolation(f"{what}: max abs difference {err:.3g}")


def check_shift_invariant(
    name: str, params: Mapping[str, Any], g: torch.Generator, n: int = 16, c: int = 7
) -> None:
    fn, _ = _loss_fn(name, params)
    z = _random_logits(g, n, c, 3.0)
    y = torch.randint(c, (n,), generator=g)
    shift = (torch.rand(n, 1, generator=g, dtype=torch.float64) - 0.5) * 40
    _close(fn(z + shift, y), fn(z, y), f"{name}: l(z + c) != l(z)")


def check_scale_invariant(
    name: str, params: Mapping[str, Any], g: torch.Generator, n: int = 16, c: int = 7
) -> None:
    fn, _ = _loss_fn(name, params)
    z = _random_logits(g, n, c, 3.0)
    y = torch.randint(c, (n,), generator=g)
    a = torch.exp((torch.rand(n, 1, generator=g, dtype=torch.float64) - 0.5) * 4)
    _close(fn(z * a, y), fn(z, y), f"{name}: l(a z) != l(z)", rtol=1e-5, atol=1e-6)


def check_symmetric(
    name: str, params: Mapping[str, Any], g: torch.Generator, n: int = 16, c: int = 7
) -> None:
    fn, _ = _loss_fn(name, params)
    totals = []
    for scale in (0.3, 3.0, 30.0):
        z = _random_logits(g, n, c, scale)
        totals.append(torch.stack([fn(z, torch.full((n,), k)) for k in range(c)]).sum(dim=0))
    t = torch.cat(totals)
    _close(t, t[:1].expand_as(t), f"{name}: sum_k l(z, k) is not constant", rtol=1e-5, atol=1e-5)


def check_bounded(
    name: str, params: Mapping[str, Any], g: torch.Generator, bound: float, n: int = 32, c: int = 7
) -> None:
    fn, _ = _loss_fn(name, params)
    for scale in (0.1, 3.0, 100.0, 1e4):
        z = _random_logits(g, n, c, scale)
        y = torch.randint(c, (n,), generator=g)
        val = fn(z, y)
        lo, hi = val.min().item(), val.max().item()
        if lo < -1e-9 or hi > bound + 1e-6 * max(1.0, abs(bound)):
            raise PropertyViolation(
                f"{name}: values in [{lo:.6g}, {hi:.6g}] at logit scale {scale:g}, "
                f"declared bound [0, {bound:.6g}]"
            )


def check_convex(
    name: str, params: Mapping[str, Any], g: torch.Generator, n: int = 32, c: int = 6
) -> None:
    fn, _ = _loss_fn(name, params)
    y = torch.randint(c, (n,), generator=g)
    a = _random_logits(g, n, c, 4.0)
    b = _random_logits(g, n, c, 4.0)
    la, lb = fn(a, y), fn(b, y)
    for t in (0.1, 0.3, 0.5, 0.7, 0.9):
        mid = fn(t * a + (1 - t) * b, y)
        excess = mid - (t * la + (1 - t) * lb)
        if excess.max().item() > 1e-7 * (1 + la.abs().max().item() + lb.abs().max().item()):
            raise PropertyViolation(
                f"{name}: convexity violated by {excess.max().item():.3g} at t={t}"
            )


def check_classification_calibrated(
    name: str,
    params: Mapping[str, Any],
    g: torch.Generator,
    c: int = 5,
    trials: int = 6,
    steps: int = 600,
) -> None:
    """Minimise the expected loss ``sum_k eta_k l(z, k)`` over z and compare argmaxes.

    ``eta`` is drawn with a clear margin between its two largest entries (and, in half the
    trials, a largest entry below 1/2, where margin losses such as Crammer-Singer's are
    known to fail), so a calibrated loss must put the argmax of ``eta`` first. All trials
    are optimised jointly (one batch of ``trials * c`` rows).
    """
    fn, _ = _loss_fn(name, params)
    etas: list[Tensor] = []
    while len(etas) < trials:
        # Normalised exponentials are a uniform Dirichlet draw, seeded by ``g``.
        e = -torch.log(torch.rand(c, generator=g, dtype=torch.float64))
        eta = e / e.sum()
        top2 = eta.topk(2).values
        if top2[0] - top2[1] > 0.08 and (len(etas) % 2 == 0 or top2[0] < 0.45):
            etas.append(eta)
    eta = torch.stack(etas)  # (trials, c)
    z = (torch.randn(trials, c, generator=g, dtype=torch.float64) * 0.01).requires_grad_()
    opt = torch.optim.Adam([z], lr=0.05)
    targets = torch.arange(c).repeat(trials)
    for _ in range(steps):
        opt.zero_grad()
        rows = z.repeat_interleave(c, dim=0)  # row t*c + k is trial t with label k
        risk = (fn(rows, targets).view(trials, c) * eta).sum()
        risk.backward()
        opt.step()
    zs = z.detach()
    for t in range(trials):
        best = int(eta[t].argmax())
        others = torch.cat([zs[t, :best], zs[t, best + 1 :]])
        if not (zs[t, best] - others.max()).item() > 1e-3:
            raise PropertyViolation(
                f"{name}: minimiser of the expected loss under eta={eta[t].numpy().round(3)} "
                f"has logits {zs[t].numpy().round(3)}; the most likely class {best} is not first"
            )


def check_reduces_to_ce(
    name: str,
    params: Mapping[str, Any],
    g: torch.Generator,
    scale: float = 1.0,
    offset: Callable[[int], float] | None = None,
    n: int = 16,
    c: int = 7,
) -> None:
    fn, _ = _loss_fn(name, params)
    z = _random_logits(g, n, c, 3.0)
    y = torch.randint(c, (n,), generator=g)
    ce = torch.nn.functional.cross_entropy(z, y, reduction="none")
    expected = scale * ce + (offset(c) if offset is not None else 0.0)
    _close(fn(z, y), expected, f"{name}: does not reduce to CE at {dict(params)}")


def verify(name: str, prop: str, *, seed: int = 0) -> None:
    """Verify the declared property ``prop`` of loss ``name``; raise on violation."""
    spec = loss_info(name)
    if prop not in spec.properties:
        raise ValueError(
            f"verify: {name} does not declare {prop!r}; it declares {sorted(spec.properties)}"
        )
    claim = spec.properties[prop]
    g = torch.Generator().manual_seed(seed)
    params = dict(claim.params)
    if prop == "bounded":
        _, cfg = _loss_fn(name, params)
        for c in (2, 7):
            check_bounded(name, params, g, claim.upper_bound(cfg, c), c=c)
    elif prop == "reduces_to_ce":
        check_reduces_to_ce(name, params, g, scale=claim.scale, offset=claim.offset)
    else:
        _CHECKS[prop](name, params, g)


__all__ = ["PROPERTIES", "PropertyViolation", "verify"]

_CHECKS: dict[str, Callable[..., None]] = {
    "shift_invariant": check_shift_invariant,
    "scale_invariant": check_scale_invariant,
    "symmetric": check_symmetric,
    "convex": check_convex,
    "classification_calibrated": check_classification_calibrated,
}
