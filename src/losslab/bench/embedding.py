"""Embedding cells (the ``retrieval`` protocol): train an embedding on the *seen* classes
of a dataset and score retrieval among its *unseen* classes (zero-shot retrieval, as in
Musgrave, Belongie and Lim, "A Metric Learning Reality Check", ECCV 2020).

One cell, end to end:

1. **Classes.** :func:`losslab.data.split.class_split` splits the class ids in half with
   a fixed seed (``CLASS_SPLIT_SEED``, the same for every cell, so seeds compare the same
   classes). Training rows of the seen classes are relabelled ``0..S-1``, corrupted like
   a classification cell's (class-dependent flips use the generic pair map over the seen
   ids) and split into training and an equally noisy validation set (``val_fraction`` of
   every seen class). The test set is the test split of the unseen classes.
2. **Model.** The grid's model (an MLP for the ``retrieval`` protocol) with
   ``EMBEDDING_DIM`` outputs: its output is the embedding.
3. **Objective** (:class:`EmbeddingObjective`). Embedding losses (``multi_similarity``,
   ``supcon``, ``ntxent``, ``proto_triplet``, ...) take the batch's embeddings and labels.
   Classification methods put a head on the embedding: ``arcface``/``cosface``/
   ``sphereface``/``unpg`` a :class:`~losslab.heads.MarginHead` (class centres),
   ``ebv`` a fixed :class:`~losslab.heads.EquiangularHead`, any other multiclass loss
   (``ce``) a linear layer. Heads exist for training only: retrieval always uses the
   L2-normalised embedding.
4. **Batches** (:class:`ClassBalancedSampler`): ``P`` seen classes per batch, ``m``
   rows of each (at least ``SAMPLES_PER_CLASS``), drawn with a seeded generator, so every
   anchor has positives. ``proto_triplet`` turns each batch into an episode: the first
   half of every class's rows in the batch are the support set that forms the
   prototypes, the rest are queries (:func:`episode_support`).
5. **Selection.** Every epoch scores Recall@1 of the seen validation set (each
   validation row a query against the other validation rows); the epoch with the best
   value is reported (weights restored), training stops after ``patience`` epochs
   without improvement. The row's ``val_acc`` is that Recall@1 (the leave-one-out
   1-nearest-neighbour accuracy), so a grid with several candidates per loss selects by
   it like a classification grid selects by validation accuracy.
6. **Metrics** (:func:`losslab.metrics.retrieval_metrics`): Recall@1, Recall@4 and
   MAP@R on the unseen test classes and on the seen validation set, and Recall@1 of the
   training rows against their clean labels (a model that does not fit shows there).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import losslab
from losslab.bench.grid import Cell
from losslab.bench.models import build_model, resolve_model_kind
from losslab.bench.protocol import TrainConfig, get_protocol, problem
from losslab.bench.trainer import TrainResult, _optimizer, _scheduler
from losslab.data.corrupt import CorruptionSpec, corrupt, parse_corruption
from losslab.data.split import class_split
from losslab.heads import EquiangularHead, MarginHead
from losslab.heads.margin import MARGIN_LOSSES
from losslab.metrics import retrieval_metrics

__all__ = [
    "CLASS_SPLIT_SEED",
    "EMBEDDING_DIM",
    "HEAD_METHODS",
    "METRIC_COLUMNS",
    "SAMPLES_PER_CLASS",
    "UNSEEN_FRACTION",
    "ClassBalancedSampler",
    "EmbeddingObjective",
    "RetrievalData",
    "batch_layout",
    "build_retrieval_split",
    "check_method",
    "episode_support",
    "evaluate_retrieval",
    "retrieval_cell",
    "train_embedding",
]

#: embedding size: at least the 250 seen glyph classes, so the EBV basis reaches its
#: coherence threshold (C <= D)
EMBEDDING_DIM = 256
#: the least number of rows of one class in a batch (Musgrave et al.: m = 4)
SAMPLES_PER_CLASS = 4
UNSEEN_FRACTION = 0.5
CLASS_SPLIT_SEED = 0
#: methods of retrieval grids that are heads, not registered losses: name -> head
HEAD_METHODS: dict[str, type[nn.Module]] = {"ebv": EquiangularHead}

#: the flat metric columns of a retrieval row: column -> (split, metric)
METRIC_COLUMNS = {
    "test_recall_at_1": ("test", "recall_at_1"),
    "test_recall_at_4": ("test", "recall_at_4"),
    "test_map_at_r": ("test", "map_at_r"),
    "val_recall_at_1": ("val", "recall_at_1"),
    "val_recall_at_4": ("val", "recall_at_4"),
    "val_map_at_r": ("val", "map_at_r"),
    "train_clean_recall_at_1": ("train_clean", "recall_at_1"),
    # the selection score (Recall@1 is the leave-one-out 1-NN accuracy)
    "val_acc": ("val", "recall_at_1"),
}

_WHERE = "retrieval"


@dataclass
class RetrievalData:
    """Tensors of one retrieval cell. Training and validation rows are of the seen
    classes (labels ``0..num_seen-1``; ``y_train``/``y_val`` carry the corruption,
    ``y_train_clean`` the original labels); test rows are the unseen classes' (their
    original class ids)."""

    X_train: Tensor
    y_train: Tensor
    y_train_clean: Tensor
    X_val: Tensor
    y_val: Tensor
    X_test: Tensor
    y_test: Tensor
    num_seen: int


def build_retrieval_split(cell: Cell) -> tuple[RetrievalData, dict[str, Any]]:
    """The seen/unseen split of ``cell``'s dataset, corrupted and scaled (see the module
    docstring). Returns the tensors and the metadata stored with the row."""
    from losslab.bench.cell import _load

    protocol = get_protocol(cell.protocol)
    ds = _load(cell.dataset)
    K = int(ds.num_classes)
    if K < 3:
        raise ValueError(
            problem(_WHERE, "dataset", "at least 3 classes (seen and unseen)", f"{K} classes")
        )
    seen, unseen = class_split(K, unseen_fraction=UNSEEN_FRACTION, seed=CLASS_SPLIT_SEED)
    relabel = np.full(K, -1, dtype=np.int64)
    relabel[seen] = np.arange(len(seen))
    X_all = np.asarray(ds.X_train, dtype=np.float32)
    y_all = np.asarray(ds.y_train, dtype=np.int64)
    rows = np.flatnonzero(np.isin(y_all, seen))
    X, y = X_all[rows], relabel[y_all[rows]]
    spec = parse_corruption(cell.corruption)
    spec = CorruptionSpec(protocol.noise_kind(spec.kind), spec.rate, spec.mapping)
    # the dataset's own pair map names its original classes, not the seen ids
    seed = protocol.noise_seed(cell.seed)
    res = corrupt(y, spec, num_classes=len(seen), seed=seed, dataset=None, X=X)
    idx = np.asarray(res.indices, dtype=np.int64)
    noisy = np.asarray(res.labels, dtype=np.int64)
    X, clean = X[idx], y[idx]
    tr, va = protocol.split(noisy, cell.val_fraction, cell.seed)
    y_te_all = np.asarray(ds.y_test, dtype=np.int64)
    test_rows = np.flatnonzero(np.isin(y_te_all, unseen))
    X_te = np.asarray(ds.X_test, dtype=np.float32)[test_rows]
    lo, scale = protocol.feature_scaling(X[tr])

    def norm(a: np.ndarray) -> Tensor:
        return torch.from_numpy(((a - lo) / scale).astype(np.float32))

    data = RetrievalData(
        X_train=norm(X[tr]),
        y_train=torch.from_numpy(noisy[tr]),
        y_train_clean=torch.from_numpy(clean[tr]),
        X_val=norm(X[va]),
        y_val=torch.from_numpy(noisy[va]),
        X_test=norm(X_te),
        y_test=torch.from_numpy(y_te_all[test_rows]),
        num_seen=len(seen),
    )
    meta = dict(getattr(ds, "meta", {}) or {})
    info = {
        "actual_noise_rate": float(res.actual_noise_rate),
        "n_train": len(tr),
        "n_val": len(va),
        "n_test": len(test_rows),
        "num_classes": K,
        "num_seen": len(seen),
        "unseen_classes": unseen.tolist(),
        "modality": meta.get("modality", "tabular"),
        "input_shape": list(meta.get("input_shape") or X.shape[1:]),
        "embedding_dim": EMBEDDING_DIM,
    }
    return data, info


def batch_layout(num_classes: int, batch_size: int, samples_per_class: int) -> tuple[int, int]:
    """``(P, m)``: classes per batch and rows per class of :class:`ClassBalancedSampler`."""
    p = min(num_classes, max(batch_size // samples_per_class, 2))
    return p, max(samples_per_class, batch_size // p)


class ClassBalancedSampler:
    """Batches of ``P`` distinct classes with ``m`` rows each, from seeded draws.

    ``P = min(number of classes, batch_size // samples_per_class)`` and
    ``m = max(samples_per_class, batch_size // P)``, so a batch has about
    ``batch_size`` rows even when there are few classes (5 classes and batch 128 give
    5 x 25). The classes of a batch are drawn uniformly without replacement; each class
    hands out its rows in a shuffled cycle (reshuffled when used up), so every row is
    seen about equally often and a class with fewer than ``m`` rows repeats some. An
    epoch is ``max(1, n // (P m))`` batches.

    Example:
        >>> from losslab.bench.embedding import ClassBalancedSampler
        >>> s = ClassBalancedSampler([0, 0, 0, 1, 1, 1, 2, 2, 2], 4, samples_per_class=2)
        >>> [b.tolist() for b in s.epoch()]
        [[2, 0, 8, 6], [5, 4, 7, 6]]
    """

    def __init__(
        self,
        labels: Any,
        batch_size: int,
        *,
        samples_per_class: int = SAMPLES_PER_CLASS,
        seed: int = 0,
    ) -> None:
        y = np.asarray(labels, dtype=np.int64)
        classes = np.unique(y)
        self.members = [np.flatnonzero(y == c) for c in classes]
        if len(classes) < 2:
            raise ValueError(
                problem(
                    "ClassBalancedSampler",
                    "labels",
                    "at least 2 classes (pairs need negatives)",
                    f"{len(classes)} class",
                )
            )
        self.classes_per_batch, self.per_class = batch_layout(
            len(classes), batch_size, samples_per_class
        )
        self.batches = max(1, len(y) // (self.classes_per_batch * self.per_class))
        self.rng = np.random.default_rng(seed)
        self._queues = [self.rng.permutation(m) for m in self.members]
        self._pos = [0] * len(self.members)

    def __len__(self) -> int:
        return self.batches

    def _take(self, c: int, m: int) -> np.ndarray:
        out = np.zeros(0, dtype=np.int64)
        while len(out) < m:
            if self._pos[c] == len(self._queues[c]):
                fresh = self.rng.permutation(self.members[c])
                # rows already drawn for this batch go last in the new cycle: a class
                # repeats rows within a batch only when it has fewer than m
                taken = np.isin(fresh, out)
                self._queues[c] = np.concatenate([fresh[~taken], fresh[taken]])
                self._pos[c] = 0
            i = self._pos[c]
            n = min(m - len(out), len(self._queues[c]) - i)
            out = np.concatenate([out, self._queues[c][i : i + n]])
            self._pos[c] = i + n
        return out

    def epoch(self) -> Iterator[Tensor]:
        """The row indices of each batch of one epoch (the state carries on)."""
        for _ in range(self.batches):
            chosen = self.rng.choice(len(self.members), self.classes_per_batch, replace=False)
            yield torch.from_numpy(np.concatenate([self._take(c, self.per_class) for c in chosen]))


def episode_support(labels: Tensor) -> Tensor:
    """Support flags of a batch used as an episode: of each class's rows in the batch,
    the first ``count // 2`` (in batch order) are support, the others queries (a class
    with a single row has no support and its row does not count as a query).

    Example:
        >>> import torch
        >>> from losslab.bench.embedding import episode_support
        >>> episode_support(torch.tensor([3, 3, 3, 3, 5, 5, 5])).tolist()
        [True, True, False, False, True, False, False]
    """
    same = labels[:, None] == labels[None, :]
    earlier = torch.tril(same, diagonal=-1).sum(dim=1)
    return earlier < same.sum(dim=1) // 2


def _loss_spec(loss: str) -> Any:
    spec = losslab.loss_info(loss)
    kind = spec.kind.name
    if kind == "embedding":
        if spec.rule("views") is not None or spec.rule("min_views") > 1:
            raise ValueError(
                problem(
                    _WHERE,
                    "loss",
                    "a loss of labelled embeddings (N, D) (no views)",
                    f"{loss!r}, which needs {spec.rule('views') or spec.rule('min_views')} views",
                )
            )
    elif kind != "multiclass":
        raise ValueError(
            problem(
                _WHERE,
                "loss",
                f"an embedding or multiclass loss, or one of {sorted(HEAD_METHODS)}",
                f"{loss!r} of kind {kind!r}",
            )
        )
    return spec


class EmbeddingObjective(nn.Module):
    """The training loss of a retrieval cell: ``forward(embeddings, labels, index)``.

    Holds the head of head-based methods (its parameters train with the model). See the
    module docstring for which method gets which head.

    Example:
        >>> import torch
        >>> from losslab.bench.embedding import EmbeddingObjective
        >>> obj = EmbeddingObjective("arcface", {"scale": 16.0}, dim=8, num_classes=3)
        >>> obj(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])).shape
        torch.Size([])
    """

    def __init__(
        self,
        loss: str,
        config: Mapping[str, Any],
        *,
        dim: int,
        num_classes: int,
        num_samples: int | None = None,
    ) -> None:
        super().__init__()
        self.method = loss
        self.head: nn.Module | None = None
        self.loss_fn: nn.Module | None = None
        self.episodes = False
        self.stateful = False
        if loss in HEAD_METHODS:
            self.head = HEAD_METHODS[loss](dim, num_classes, **config)
            return
        spec = _loss_spec(loss)
        if loss in MARGIN_LOSSES:
            self.head = MarginHead(dim, num_classes, loss=loss, **config)
            return
        self.loss_fn = spec.build(num_samples=num_samples, **config)
        if spec.kind.name == "multiclass":
            self.head = nn.Linear(dim, num_classes)
        self.episodes = any(p.name == "support" for p in spec.extra_inputs)
        self.stateful = spec.stateful

    def forward(self, embeddings: Tensor, labels: Tensor, index: Tensor | None = None) -> Tensor:
        if self.loss_fn is None:
            return self.head(embeddings, labels)  # type: ignore[misc,no-any-return]
        extra: dict[str, Tensor] = {}
        if self.episodes:
            extra["support"] = episode_support(labels)
        if self.stateful and index is not None:
            extra["index"] = index
        x = embeddings if self.head is None else self.head(embeddings)
        return self.loss_fn(x, labels, **extra)  # type: ignore[no-any-return]


def check_method(loss: str, config: Mapping[str, Any]) -> None:
    """Raise the error building ``loss`` with ``config`` as a retrieval method would
    (unknown name, a loss that cannot train on labelled embeddings, a bad config)."""
    EmbeddingObjective(loss, config, dim=8, num_classes=4, num_samples=8)


@torch.no_grad()
def _embed(model: nn.Module, X: Tensor, chunk: int = 4096) -> Tensor:
    model.eval()
    return torch.cat([model(X[i : i + chunk]) for i in range(0, len(X), chunk)])


def evaluate_retrieval(
    model: nn.Module, X: Tensor, y: Tensor, *, include_map: bool = True
) -> dict[str, float]:
    """Recall@1, Recall@4 (and MAP@R) of the model's embeddings of ``X``, each row a
    query against the others; NaN for every metric when an embedding is not finite."""
    e = _embed(model, X)
    if not bool(torch.isfinite(e).all()):
        keys = ["recall_at_1", "recall_at_4"] + (["map_at_r"] if include_map else [])
        return dict.fromkeys(keys, math.nan)
    return retrieval_metrics(e, y, ks=(1, 4), include_map=include_map)


def train_embedding(
    model: nn.Module, objective: EmbeddingObjective, data: RetrievalData, cfg: TrainConfig
) -> TrainResult:
    """Train ``model`` (and the objective's head) on the seen classes; select the epoch
    by validation Recall@1 (see the module docstring). Same contract as
    :func:`losslab.bench.trainer.train`: non-finite embeddings, loss or evaluation end
    the run as diverged, the best finite epoch is then reported (none: ``final is None``).
    """
    if not cfg.shuffle:
        raise ValueError(
            problem(_WHERE, "shuffle", "true (batches come from a seeded class sampler)", False)
        )
    sampler = ClassBalancedSampler(
        data.y_train.numpy(), cfg.batch_size, samples_per_class=SAMPLES_PER_CLASS, seed=cfg.seed
    )
    opt = _optimizer(nn.ModuleList([model, objective]), cfg)
    sched = _scheduler(opt, cfg)
    curves: dict[str, list[float]] = {"train_loss": [], "lr": []}
    best, best_epoch, best_state = -math.inf, -1, None
    diverged_epoch: int | None = None
    epochs_run = 0
    for epoch in range(cfg.epochs):
        model.train()
        objective.train()
        total, count = 0.0, 0
        for idx in sampler.epoch():
            emb = model(data.X_train[idx])
            if not bool(torch.isfinite(emb).all()):
                diverged_epoch = epoch
                break
            loss = objective(emb, data.y_train[idx], idx)
            if not torch.isfinite(loss):
                diverged_epoch = epoch
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        curves["lr"].append(opt.param_groups[0]["lr"])
        curves["train_loss"].append(total / max(count, 1) if diverged_epoch is None else math.nan)
        if sched is not None and diverged_epoch is None:
            sched.step()
        epochs_run = epoch + 1
        val = evaluate_retrieval(model, data.X_val, data.y_val, include_map=False)
        test = evaluate_retrieval(model, data.X_test, data.y_test, include_map=False)
        for split, metrics in (("val", val), ("test", test)):
            for k, v in metrics.items():
                curves.setdefault(f"{split}_{k}", []).append(v)
        if diverged_epoch is None and math.isnan(val["recall_at_1"]):
            diverged_epoch = epoch
        if diverged_epoch is not None:
            break
        if val["recall_at_1"] > best:
            best, best_epoch = val["recall_at_1"], epoch
            best_state = copy.deepcopy(model.state_dict())
        elif cfg.patience is not None and epoch - best_epoch >= cfg.patience:
            break
    if cfg.patience is not None or diverged_epoch is not None:
        if best_state is None:
            return TrainResult(None, curves, None, epochs_run, diverged_epoch)
        model.load_state_dict(best_state)
        reported_epoch = best_epoch
    else:
        reported_epoch = epochs_run - 1
    final: dict[str, Any] = {
        "val": evaluate_retrieval(model, data.X_val, data.y_val),
        "test": evaluate_retrieval(model, data.X_test, data.y_test),
        "train_clean": evaluate_retrieval(
            model, data.X_train, data.y_train_clean, include_map=False
        ),
    }
    return TrainResult(final, curves, reported_epoch, epochs_run, diverged_epoch)


def retrieval_cell(cell: Cell) -> tuple[TrainResult, dict[str, Any], str]:
    """Train and evaluate one retrieval cell: its result, the data metadata and the
    model kind (for :func:`losslab.bench.cell.run_cell`, which builds the row)."""
    data, info = build_retrieval_split(cell)
    torch.manual_seed(cell.seed)
    kind = resolve_model_kind(cell.model, info["modality"], info["input_shape"])
    model = build_model(kind, info["input_shape"], EMBEDDING_DIM, modality=info["modality"])
    objective = EmbeddingObjective(
        cell.loss,
        cell.loss_config,
        dim=EMBEDDING_DIM,
        num_classes=data.num_seen,
        num_samples=len(data.X_train),
    )
    cfg = cell.train_config()
    p, m = batch_layout(data.num_seen, cfg.batch_size, SAMPLES_PER_CLASS)
    info["batch_layout"] = {"classes": p, "samples_per_class": m}
    return train_embedding(model, objective, data, cfg), info, kind
