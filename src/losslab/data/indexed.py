"""Sample indices for stateful losses: a dataset wrapper that yields ``(x, y, index)``."""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

__all__ = ["IndexedDataset"]


class IndexedDataset(Dataset):
    """A map-style dataset whose item ``i`` is ``dataset[i]`` followed by ``i``.

    Stateful losses (ALDR-KL, TGCE, ...) keep one value per training example and need
    the dataset indices of each batch (``loss(logits, y, index=idx)``) in training mode.
    Wrapping the training set gives them through any ``DataLoader`` (shuffled, batched,
    with workers): the default collate turns the indices into an int64 tensor. A tuple
    item ``(x, y)`` becomes ``(x, y, i)``; any other item ``x`` becomes ``(x, i)``.
    Evaluation needs no wrapper: in eval mode a stateful loss takes no ``index=``.

    Example:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> import losslab
        >>> from losslab.data import IndexedDataset
        >>> X, y = torch.randn(10, 4), torch.arange(10) % 3
        >>> loss_fn = losslab.build_loss("aldr_kl", num_samples=len(X))
        >>> loader = DataLoader(IndexedDataset(TensorDataset(X, y)), batch_size=4, shuffle=True)
        >>> xb, yb, idx = next(iter(loader))
        >>> idx.dtype, loss_fn(torch.randn(len(xb), 3), yb, index=idx).shape
        (torch.int64, torch.Size([]))
    """

    def __init__(self, dataset: Any):
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError(
                "IndexedDataset: dataset expected a map-style dataset (__getitem__ and "
                f"__len__), got {type(dataset).__name__}"
            )
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        item = self.dataset[index]
        if isinstance(item, tuple):
            return (*item, index)
        return (item, index)
