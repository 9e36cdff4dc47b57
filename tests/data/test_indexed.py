"""IndexedDataset: batches carry the dataset indices that stateful losses take."""

from __future__ import annotations

import doctest

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import losslab
import losslab.data.indexed
from losslab.data import IndexedDataset


def test_batches_carry_their_rows_indices() -> None:
    X = torch.arange(30.0).reshape(10, 3)
    y = torch.arange(10) % 3
    loader = DataLoader(
        IndexedDataset(TensorDataset(X, y)),
        batch_size=4,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    seen = []
    for xb, yb, idx in loader:
        assert idx.dtype == torch.int64
        assert torch.equal(xb, X[idx]) and torch.equal(yb, y[idx])
        seen += idx.tolist()
    assert sorted(seen) == list(range(10)) and seen != list(range(10))


def test_stateful_loss_trains_from_the_loader() -> None:
    torch.manual_seed(0)
    X, y = torch.randn(24, 5), torch.arange(24) % 3
    loss_fn = losslab.build_loss("aldr_kl", num_samples=len(X))
    model = torch.nn.Linear(5, 3)
    before = loss_fn.get_buffer(next(n for n, _ in loss_fn.named_buffers())).clone()
    for xb, yb, idx in DataLoader(IndexedDataset(TensorDataset(X, y)), batch_size=8):
        loss_fn(model(xb), yb, index=idx).backward()
    after = loss_fn.get_buffer(next(n for n, _ in loss_fn.named_buffers()))
    # every example's per-sample state was written at its own index
    assert not torch.equal(before, after) and after.shape == before.shape == (24,)
    loss_fn.eval()
    assert torch.isfinite(loss_fn(model(X), y))  # eval mode needs no index=


def test_items_that_are_not_tuples_and_bad_datasets() -> None:
    ds = IndexedDataset([10, 20, 30])
    assert len(ds) == 3 and ds[1] == (20, 1)
    with pytest.raises(TypeError, match="IndexedDataset: dataset expected a map-style dataset"):
        IndexedDataset(iter([1, 2]))


def test_docstring_example_runs() -> None:
    result = doctest.testmod(losslab.data.indexed)
    assert result.attempted >= 1 and result.failed == 0


def test_exported_lazily_without_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, losslab.data; assert 'torch' not in sys.modules; "
        "losslab.data.IndexedDataset; assert 'torch' in sys.modules"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_every_exported_name_resolves() -> None:
    import losslab.data as data

    assert set(data.__all__) == set(data._FROM)
    for name in data.__all__:
        assert getattr(data, name) is not None
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        data.nope  # noqa: B018
