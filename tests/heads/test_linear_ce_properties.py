"""Hypothesis properties of the fused head on random small shapes and chunkings."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from losslab.heads import linear_cross_entropy

shapes = st.tuples(st.integers(1, 24), st.integers(1, 9), st.integers(2, 40))


@settings(max_examples=30, deadline=None)
@given(
    shape=shapes,
    chunk=st.integers(1, 30),
    vchunk=st.integers(1, 45),
    seed=st.integers(0, 2**16),
    ls=st.sampled_from([0.0, 0.2]),
    cap=st.sampled_from([None, 3.0]),
)
def test_masking_equals_dropping_and_none_sums_to_sum(shape, chunk, vchunk, seed, ls, cap):
    n, d, v = shape
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(v, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, v, (n,), generator=g)
    keep = torch.rand(n, generator=g) < 0.7
    y_masked = torch.where(keep, y, torch.full_like(y, -100))
    kw = dict(label_smoothing=ls, softcap=cap, chunk_size=chunk, vocab_chunk_size=vchunk)
    masked = linear_cross_entropy(h, w, y_masked, reduction="sum", **kw)
    dropped = linear_cross_entropy(h[keep], w, y[keep], reduction="sum", **kw)
    torch.testing.assert_close(masked, dropped, rtol=1e-10, atol=1e-10)
    rows = linear_cross_entropy(h, w, y_masked, reduction="none", **kw)
    torch.testing.assert_close(rows.sum(), masked, rtol=1e-10, atol=1e-10)
    assert torch.all(rows[~keep] == 0)
    mean = linear_cross_entropy(h, w, y_masked, reduction="mean", **kw)
    torch.testing.assert_close(mean, masked / keep.sum().clamp_min(1), rtol=1e-10, atol=1e-10)


@settings(max_examples=20, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**16), shift=st.floats(-50, 50))
def test_shift_invariance_of_bias(shape, seed, shift):
    # adding the same constant to every logit (through the bias) changes nothing
    n, d, v = shape
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(v, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, v, (n,), generator=g)
    b = torch.randn(v, generator=g, dtype=torch.float64)
    a = linear_cross_entropy(h, w, y, bias=b, chunk_size=5)
    c = linear_cross_entropy(h, w, y, bias=b + shift, chunk_size=5)
    torch.testing.assert_close(a, c, rtol=1e-9, atol=1e-9)
