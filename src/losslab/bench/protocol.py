"""Training protocols and options: what a cell trains with, before any model exists.

A :class:`Protocol` bundles every choice that differs between the default ``tuned``
protocol and ``ldr-faithful`` (the LDR code's protocol, ldr_benchmark.md §3): training
defaults, the model that ``auto`` means, feature scaling, the convention of uniform
noise, the validation split (random or k-fold) and the default learning rates. Code
elsewhere asks the protocol object instead of comparing protocol names.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from losslab._validate import describe
from losslab.data import train_val_split

__all__ = [
    "DEFAULT_PROTOCOL",
    "FAITHFUL_PROTOCOL",
    "MODEL_KINDS",
    "OPTIMIZERS",
    "PROTOCOLS",
    "RETRIEVAL_PROTOCOL",
    "SCHEDULES",
    "SELECT_METRICS",
    "Protocol",
    "TrainConfig",
    "get_protocol",
    "problem",
    "train_problems",
]

MODEL_KINDS = ("auto", "mlp", "cnn", "ldr_mlp")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "cosine", "step")
#: validation metrics (higher is better) that early stopping and selection can use
SELECT_METRICS = ("acc", "balanced_acc", "macro_f1", "worst_recall")


def problem(where: str, arg: str, expected: str, got: object) -> str:
    """One problem in the library's error format (see ``losslab._validate.fail``)."""
    return f"{where}: {arg} expected {expected}, got {got}"


def _is_int(v: object) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and math.isfinite(v)


#: option -> (test, what is expected); every TrainConfig field but ``seed``.
_TRAIN_CHECKS: dict[str, tuple[Any, str]] = {
    "optimizer": (lambda v: v in OPTIMIZERS, f"one of {list(OPTIMIZERS)}"),
    "lr": (lambda v: _is_number(v) and v > 0, "a positive number"),
    "momentum": (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "weight_decay": (lambda v: _is_number(v) and v >= 0, "a non-negative number"),
    "batch_size": (lambda v: _is_int(v) and v >= 1, "a positive int"),
    "epochs": (lambda v: _is_int(v) and v >= 1, "a positive int"),
    "schedule": (lambda v: v in SCHEDULES, f"one of {list(SCHEDULES)}"),
    "milestones": (
        lambda v: isinstance(v, (list, tuple)) and all(_is_int(m) and m >= 1 for m in v),
        "a list of positive epoch numbers",
    ),
    "gamma": (lambda v: _is_number(v) and v > 0, "a positive number"),
    "shuffle": (lambda v: isinstance(v, bool), "true or false"),
    "patience": (lambda v: v is None or (_is_int(v) and v >= 1), "null or a positive int"),
    "seed": (lambda v: _is_int(v) and v >= 0, "a non-negative int"),
    "select_metric": (lambda v: v in SELECT_METRICS, f"one of {list(SELECT_METRICS)}"),
    "diagnostics": (lambda v: isinstance(v, bool), "true or false"),
}


def train_problems(options: Mapping[str, Any], where: str) -> list[str]:
    """Every unknown or ill-typed training option, one problem each."""
    out = []
    for k, v in options.items():
        if k not in _TRAIN_CHECKS:
            out.append(
                problem(where, k, f"a training option ({', '.join(_TRAIN_CHECKS)})", repr(k))
            )
        else:
            ok, what = _TRAIN_CHECKS[k]
            try:
                good = bool(ok(v))
            except TypeError:
                good = False
            if not good:
                out.append(problem(where, k, what, describe(v)))
    return out


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one training run (all JSON-able). ``select_metric``: the
    noisy-validation metric that picks the best epoch; ``diagnostics``: also measure
    neural collapse of the reported weights on the training set."""

    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int = 30
    schedule: str = "cosine"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    shuffle: bool = True
    patience: int | None = None  # epochs without validation improvement before stopping
    seed: int = 0
    select_metric: str = "acc"
    diagnostics: bool = False
    #: where the model, data and loss live ("cpu", "cuda", "cuda:1", "mps"); a run
    #: option, not a grid option: it is no part of a cell's key (see docs/bench.md)
    device: str = "cpu"

    def __post_init__(self) -> None:
        options = asdict(self)
        device = options.pop("device")
        problems = train_problems(options, "TrainConfig")
        if not isinstance(device, str):
            problems.append(
                problem("TrainConfig", "device", "a device name (str)", describe(device))
            )
        if problems:
            raise ValueError(problems[0])
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))


@dataclass(frozen=True)
class Protocol:
    """Everything a training protocol fixes.

    ``train``: training defaults (a grid's options override them); ``model``: what a
    grid's ``auto`` model becomes (``auto`` stays per dataset: CNN for images, else MLP);
    ``scaling``: ``standardize`` (z-scores) or ``minmax`` (to [-1, 1]), both from training
    statistics; ``uniform_noise``: the corruption kind a grid's ``uniform`` means;
    ``lrs``: the learning rates of a grid that names none; ``task``: ``classification``
    or ``retrieval`` (embedding cells, :mod:`losslab.bench.embedding`), which decides
    how a cell trains and which metric columns its row has.
    """

    name: str
    train: Mapping[str, Any]
    model: str
    scaling: str
    uniform_noise: str
    lrs: tuple[float, ...]
    #: ``None``: a stratified random validation split of ``val_fraction`` per seed; an int
    #: k: k-fold cross-validation without shuffling, a seed being a repetition
    #: (noise seed ``seed // k``, fold ``seed % k``)
    folds: int | None = None
    doc: str = field(default="", compare=False)
    task: str = "classification"

    @property
    def standardize(self) -> bool:
        return self.scaling == "standardize"

    def feature_scaling(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature offset and scale from training rows (constant features keep 1)."""
        if self.standardize:
            lo, scale = X.mean(0), X.std(0)
        else:
            lo = (X.max(0) + X.min(0)) / 2
            scale = (X.max(0) - X.min(0)) / 2
        return lo, np.where(scale > 1e-8, scale, 1.0)

    def noise_seed(self, seed: int) -> int:
        """The seed of the label noise of repetition ``seed``."""
        return seed if self.folds is None else seed // self.folds

    def split(
        self, noisy: np.ndarray, val_fraction: float, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(training, validation) row indices of repetition ``seed``, both in file order.

        With ``folds`` = k, the validation rows are fold ``seed % k`` of scikit-learn's
        ``KFold(n_splits=k)`` without shuffling (contiguous blocks of the file, the first
        ``n % k`` one row longer) and the training rows the other folds."""
        if self.folds is None:
            return train_val_split(noisy, val_fraction=val_fraction, seed=seed)
        from sklearn.model_selection import KFold

        folds = KFold(n_splits=self.folds).split(np.zeros((len(noisy), 1)))
        tr, va = next(itertools.islice(folds, seed % self.folds, None))
        return tr.astype(np.int64), va.astype(np.int64)

    def noise_kind(self, kind: str) -> str:
        """The corruption kind this protocol trains with for a grid's ``kind``."""
        return self.uniform_noise if kind == "uniform" else kind


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            name="tuned",
            # Adam + cosine, early stopping on the noisy validation split
            train={
                "optimizer": "adam",
                "weight_decay": 0.0,
                "batch_size": 128,
                "epochs": 40,
                "schedule": "cosine",
                "shuffle": True,
                "patience": 10,
            },
            model="auto",
            scaling="standardize",
            uniform_noise="uniform",
            lrs=(1e-3,),
            doc="batch-normalised MLP or CNN, Adam, cosine, early stopping, z-scored features",
        ),
        Protocol(
            name="ldr-faithful",
            # the LDR code: SGD momentum 0.9 with coupled weight decay 5e-3, batch 64 in a
            # fixed order, 100 epochs, lr / 10 at 50 and 75, no early stopping
            train={
                "optimizer": "sgd",
                "momentum": 0.9,
                "weight_decay": 5e-3,
                "batch_size": 64,
                "epochs": 100,
                "schedule": "step",
                "milestones": [50, 75],
                "gamma": 0.1,
                "shuffle": False,
                "patience": None,
            },
            model="ldr_mlp",
            # the LIBSVM files the LDR code reads are min-max scaled to [-1, 1]
            scaling="minmax",
            # it redraws a noisy label from all K classes (it may redraw itself)
            uniform_noise="uniform_redraw",
            lrs=(0.01,),
            # KFold(n_splits=5) without shuffling over the noisy training file, trained in
            # file order, validated on the held-out fold
            folds=5,
            doc="the LDR code's tanh MLP, SGD step schedule, min-max features, redraw noise, "
            "5 unshuffled folds",
        ),
        Protocol(
            name="retrieval",
            # embedding MLP on the seen classes, class-balanced batches, early stopping on
            # seen-validation Recall@1 (losslab.bench.embedding)
            train={
                "optimizer": "adam",
                "weight_decay": 0.0,
                "batch_size": 128,
                "epochs": 40,
                "schedule": "cosine",
                "shuffle": True,
                "patience": 8,
            },
            model="mlp",
            scaling="standardize",
            uniform_noise="uniform",
            lrs=(1e-3,),
            doc="embedding MLP on seen classes, Recall@k and MAP@R on unseen classes",
            task="retrieval",
        ),
    )
}


#: the protocol of a grid that names none, and the one the presets were chosen for
DEFAULT_PROTOCOL = "tuned"
#: the LDR code's protocol, named here once (presets refer to it through this constant)
FAITHFUL_PROTOCOL = "ldr-faithful"
#: zero-shot retrieval of embeddings (losslab.bench.embedding)
RETRIEVAL_PROTOCOL = "retrieval"


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ValueError(problem("bench", "protocol", f"one of {list(PROTOCOLS)}", repr(name)))
    return PROTOCOLS[name]
