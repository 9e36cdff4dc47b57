"""The contract of the sequence kind, for every registered sequence loss.

Elements are tokens; padding comes from ``ignore_index`` and/or ``lengths``; per-sequence
losses spread their value evenly over the valid tokens (``docs/design.md``).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import losslab
from tests.conftest import config_id, loss_configs
from tests.reference import REFERENCE

F64 = torch.float64
SEQUENCE = losslab.list_losses(kind="sequence")


@pytest.fixture(params=loss_configs(SEQUENCE), ids=config_id)
def seq_config(request):
    name, overrides = request.param
    spec = losslab.loss_info(name)
    return spec, spec.config(**overrides)


def batch(seed: int, b: int = 4, t: int = 6, v: int = 5, scale: float = 2.0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, t, v, generator=g, dtype=F64) * scale
    return z, torch.randint(v, (b, t), generator=g)


def oracle(spec, cfg, z, y, valid):
    cfg = {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in cfg.items()}
    rows = [
        REFERENCE[spec.name](z[i].tolist(), y[i].tolist(), valid[i].tolist(), cfg)
        for i in range(len(z))
    ]
    return torch.tensor(rows, dtype=F64)


def test_oracle_with_padding(seq_config):
    spec, cfg = seq_config
    z, y = batch(0)
    lengths = torch.tensor([6, 4, 1, 5])
    y[3, 2] = -100
    got = spec.function(z, y, **cfg, lengths=lengths, ignore_index=-100, reduction="none")
    valid = (torch.arange(6)[None] < lengths[:, None]) & (y != -100)
    torch.testing.assert_close(got, oracle(spec, cfg, z, y, valid), rtol=1e-9, atol=1e-10)


def test_lengths_equal_ignore_index(seq_config):
    spec, cfg = seq_config
    z, y = batch(1)
    lengths = torch.tensor([3, 6, 2, 5])
    padded = torch.where(torch.arange(6)[None] < lengths[:, None], y, -1)
    for red in ("none", "sum", "mean"):
        torch.testing.assert_close(
            spec.function(z, y, **cfg, lengths=lengths, reduction=red),
            spec.function(z, padded, **cfg, ignore_index=-1, reduction=red),
        )


def test_padding_equals_truncation(seq_config):
    spec, cfg = seq_config
    z, y = batch(2)
    lengths = torch.tensor([6, 4, 1, 3])
    none = spec.function(z, y, **cfg, lengths=lengths, reduction="none")
    for i, n in enumerate(lengths.tolist()):
        alone = spec.function(z[i : i + 1, :n], y[i : i + 1, :n], **cfg, reduction="none")
        torch.testing.assert_close(none[i, :n], alone[0])
        assert torch.all(none[i, n:] == 0)


def test_reduction_contract(seq_config):
    spec, cfg = seq_config
    z, y = batch(3)
    lengths = torch.tensor([6, 2, 5, 4])
    valid = torch.arange(6)[None] < lengths[:, None]
    g = torch.Generator().manual_seed(4)
    for sw in (torch.rand(4, generator=g, dtype=F64), torch.rand(4, 6, generator=g, dtype=F64)):
        opts = {"lengths": lengths, "sample_weight": sw}
        none = spec.function(z, y, **cfg, reduction="none", **opts)
        base = spec.function(z, y, **cfg, reduction="none", lengths=lengths)
        w = sw[:, None].expand(4, 6) if sw.dim() == 1 else sw
        torch.testing.assert_close(none, base * w * valid)
        torch.testing.assert_close(spec.function(z, y, **cfg, reduction="sum", **opts), none.sum())
        torch.testing.assert_close(
            spec.function(z, y, **cfg, reduction="mean", **opts), none.sum() / w[valid].sum()
        )


@given(seed=st.integers(0, 10_000), b=st.integers(2, 5))
def test_batch_permutation_invariance(seed, b):
    for name in SEQUENCE:
        spec = losslab.loss_info(name)
        z, y = batch(seed, b=b)
        lengths = torch.randint(0, 7, (b,), generator=torch.Generator().manual_seed(seed))
        perm = torch.randperm(b, generator=torch.Generator().manual_seed(seed + 1))
        a = spec.function(z, y, lengths=lengths, reduction="none")
        p = spec.function(z[perm], y[perm], lengths=lengths[perm], reduction="none")
        torch.testing.assert_close(a[perm], p)


def test_fully_padded_sequence_adds_nothing(seq_config):
    spec, cfg = seq_config
    z, y = batch(5)
    lengths = torch.tensor([6, 0, 3, 6])
    zz = z.clone().requires_grad_(True)
    out = spec.function(zz, y, **cfg, lengths=lengths, reduction="sum")
    out.backward()
    keep = torch.tensor([0, 2, 3])
    torch.testing.assert_close(
        out, spec.function(z[keep], y[keep], **cfg, lengths=lengths[keep], reduction="sum")
    )
    assert torch.isfinite(zz.grad).all() and torch.all(zz.grad[1] == 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_extreme_logits_finite_value_and_gradient(seq_config, scale, dtype):
    spec, cfg = seq_config
    z, y = batch(6, scale=abs(scale))
    z[0, 0, y[0, 0]] = scale
    z[1, :, :] = 0.0
    z[1, 2, :] = scale
    x = z.to(dtype).requires_grad_(True)
    out = spec.function(x, y, **cfg)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(x.grad).all()


def test_long_sequences_stay_finite(seq_config):
    # 2000 confident mistakes: the sequence probability underflows every float type.
    spec, cfg = seq_config
    z = torch.zeros(1, 2000, 4)
    z[..., 1] = 10.0
    y = torch.zeros(1, 2000, dtype=torch.long)
    x = z.requires_grad_(True)
    out = spec.function(x, y, **cfg, reduction="sum")
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(x.grad).all()


def test_neg_inf_masks_vocabulary_entries(seq_config):
    spec, cfg = seq_config
    z, y = batch(7)
    y = y.clamp(max=2)
    z[..., 3:] = float("-inf")
    x = z.requires_grad_(True)
    out = spec.function(x, y, **cfg)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(x.grad).all()
    assert torch.all(x.grad[..., 3:] == 0)
    ref = spec.function(z.detach()[..., :3], y, **cfg)
    torch.testing.assert_close(out, ref)


def test_bad_sequence_inputs(seq_config):
    spec, cfg = seq_config
    z, y = batch(8)
    name = spec.name
    ninf = z.clone()
    ninf[0, 1, y[0, 1]] = float("-inf")
    cases = [
        ((z[0], y[0]), {}, ValueError, r"logits expected shape \(B, T, V\)"),
        ((z, y.float()), {}, TypeError, r"target expected int64 token ids"),
        ((z, y[:, :3]), {}, ValueError, r"target expected token ids of shape \(4, 6\)"),
        ((z, y + 5), {}, ValueError, r"target expected token ids in \[0, 4\]"),
        ((ninf, y), {}, ValueError, r"logits expected a finite logit at the target token"),
        ((z, y), {"lengths": torch.tensor([1.0, 2, 3, 4])}, TypeError, r"lengths expected an"),
        ((z, y), {"lengths": torch.tensor([1, 2])}, ValueError, r"lengths expected shape \(4,\)"),
        ((z, y), {"lengths": torch.tensor([1, 2, 7, 0])}, ValueError, r"lengths expected lengths"),
        ((z, y), {"sample_weight": torch.ones(4, 5)}, ValueError, r"sample_weight expected shape"),
        ((z, y), {"sample_weight": torch.ones(4).long()}, TypeError, r"sample_weight expected"),
        ((z, y), {"ignore_index": 1.5}, TypeError, r"ignore_index expected an int or None"),
    ]
    for inputs, opts, exc, msg in cases:
        with pytest.raises(exc, match=rf"^{name}: {msg}"):
            spec.function(*inputs, **cfg, **opts)
    # Targets at padded positions are never read, whatever their value.
    lengths = torch.tensor([6, 2, 6, 6])
    junk = y.clone()
    junk[1, 2:] = 12345
    torch.testing.assert_close(
        spec.function(z, junk, **cfg, lengths=lengths), spec.function(z, y, **cfg, lengths=lengths)
    )
    # validate=False skips the value checks, not the structural ones.
    spec.function(torch.full_like(z, float("nan")), y, **cfg, validate=False)
    with pytest.raises(ValueError):
        spec.function(z, y[:, :3], **cfg, validate=False)


def test_empty_batch_is_attached_zero(seq_config):
    spec, cfg = seq_config
    z = torch.zeros(0, 3, 4, dtype=F64, requires_grad=True)
    out = spec.function(z, torch.zeros(0, 3, dtype=torch.long), **cfg)
    out.backward()
    assert out.item() == 0.0 and z.grad.shape == z.shape
