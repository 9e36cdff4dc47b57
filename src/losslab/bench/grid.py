"""Benchmark grids: cells with deterministic keys, presets, YAML/TOML/command-line
parsing, and checks of everything that can be checked before training starts.

A grid is datasets x corruptions x (loss, config) x model x seeds, trained under one
:class:`~losslab.bench.protocol.Protocol`. Every problem of a grid is collected and
reported at once (:class:`GridError`, one line per problem, in the library's error
format), never only the first one.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

import losslab
from losslab._validate import describe
from losslab.bench.fingerprint import fingerprint
from losslab.bench.loss_config import resolve_loss_config
from losslab.bench.protocol import (
    DEFAULT_PROTOCOL,
    FAITHFUL_PROTOCOL,
    MODEL_KINDS,
    PROTOCOLS,
    RETRIEVAL_PROTOCOL,
    SELECT_METRICS,
    TrainConfig,
    get_protocol,
    problem,
    train_problems,
)
from losslab.data import dataset_identity, list_datasets, split_identity, unavailable
from losslab.data.corrupt import parse_corruption
from losslab.functional.noise_robust import RCE_LABEL_CLAMP

__all__ = [
    "KEY_VERSION",
    "LDR_LOSS_GRIDS",
    "PRESETS",
    "Cell",
    "GridError",
    "GridSpec",
    "canonical_corruption",
    "check_grid",
    "corruption_rate",
    "grid_from_file",
    "grid_from_mapping",
    "make_grid",
    "merge",
    "preset",
    "validate_grid",
]

#: bump when the meaning of a stored result changes, so old cells are not reused.
KEY_VERSION = 1

#: Hyperparameter grids of the LDR code (``experiment.py`` l.128-144; ldr_benchmark.md §2),
#: translated to losslab's names. Losses absent from that code get a small grid around
#: their defaults (focal, comp_sum) or their defaults alone.
#: losslab's RCE constant A = -log 1e-4 (functional.noise_robust.RCE_LABEL_CLAMP)
RCE_A = -math.log(RCE_LABEL_CLAMP)

LDR_LOSS_GRIDS: dict[str, list[dict[str, Any]]] = {
    "ce": [{}],
    "focal": [{"gamma": g} for g in (0.5, 1.0, 2.0)],
    "comp_sum": [{"tau": t} for t in (0.5, 1.5, 2.0)],
    "sum_exp": [{}],
    "gce": [{"q": q} for q in (0.05, 0.7, 0.95)],
    "mae": [{}],
    "mse": [{}],
    # the LDR code's SCE is (1 - b) CE + b 4 (1 - p_y) with b in {0.05, 0.5, 0.95}: its RCE
    # constant is 4 where losslab's (Wang et al.'s) is A = -log 1e-4 ~ 9.21, so beta = 4b / A
    "sce": [{"alpha": round(1 - b, 2), "beta": round(4 * b / RCE_A, 6)} for b in (0.05, 0.5, 0.95)],
    "tgce": [{"q": q, "k": 0.5} for q in (0.05, 0.7, 0.95)],
    "rll": [{"alpha": a} for a in (0.1, 1.0, 10.0)],
    "jsc": [{"pi": p} for p in (0.1, 0.5, 0.9)],
    "nce": [{}],
    "rce": [{}],
    "nce_rce": [{"alpha": a, "beta": round(10 - a, 2)} for a in (0.1, 5.0, 9.9)],
    "agce": [{}],
    "aul": [{}],
    # with the LDR harness's class defaults a = 3 (AGCE) / a = 6 (AUL), q = 1.5
    "nce_agce": [
        {"alpha": a, "beta": round(10 - a, 2), "a": 3.0, "q": 1.5} for a in (0.1, 5.0, 9.9)
    ],
    "nce_aul": [
        {"alpha": a, "beta": round(10 - a, 2), "a": 6.0, "q": 1.5} for a in (0.1, 5.0, 9.9)
    ],
    "cs_svm": [{"margin": m} for m in (0.1, 1.0, 10.0)],
    "ww_svm": [{"margin": m} for m in (0.1, 1.0, 10.0)],
    # the LDR code runs lambda = 10 only (its {0.1, 1, 10} grid is commented out)
    "ldr_kl": [{"temperature": 10.0, "margin": 0.1}],
    "aldr_kl": [{"temperature0": 10.0, "alpha": 2.0, "margin": 0.1}],
    "z_loss": [{}],
}


class GridError(ValueError):
    """Every problem of a grid, one line each (``str`` joins them with newlines)."""

    def __init__(self, problems: Iterable[str]):
        self.problems = list(dict.fromkeys(problems))
        super().__init__("\n".join(self.problems))


def _reason(exc: Exception) -> str:
    """An error's message without its leading ``where:``, to nest it in another."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    head, sep, rest = text.partition(": ")
    return rest if sep and " " not in head else text


def canonical_corruption(spec: str) -> str:
    """The data module's canonical spelling (``Uniform-0.40`` -> ``uniform:0.4``,
    ``none`` -> ``clean``), so equal corruptions share cell keys. Invalid specs (unknown
    kind, a rate outside its range) raise ``ValueError``."""
    return str(parse_corruption(spec))


def corruption_rate(spec: str) -> tuple[str, float]:
    """(kind, rate) of a corruption; clean is ("clean", 0.0). The rate is the noise rate
    or, for imbalance kinds, the imbalance ratio. An imbalance followed by noise is
    (``"<imbalance>:<ratio>+<noise kind>"``, noise rate), e.g. ``long_tail:100+uniform:0.3``
    is ("long_tail:100+uniform", 0.3): one noise curve per imbalance."""
    parsed = parse_corruption(spec)
    if parsed.kind == "none":
        return ("clean", 0.0)
    if parsed.then is not None:
        return (f"{parsed.kind}:{parsed.rate:g}+{parsed.then.kind}", float(parsed.then.rate))
    return (parsed.kind, float(parsed.rate))


@dataclass(frozen=True)
class Cell:
    """One training run. ``key`` hashes every field and the code fingerprint, so equal
    cells trained by equal code share a result.
    ``standardize`` mirrors the protocol's feature scaling (part of the key)."""

    dataset: str
    corruption: str
    loss: str
    loss_config: Mapping[str, Any]
    model: str
    seed: int
    train: Mapping[str, Any]
    protocol: str = DEFAULT_PROTOCOL
    val_fraction: float = 0.2
    standardize: bool = True

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["loss_config"] = dict(sorted(self.loss_config.items()))
        d["train"] = dict(sorted(self.train.items()))
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Cell:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    @property
    def config_key(self) -> str:
        """Hash of the configuration alone: equal for the same cell under any code."""
        payload = json.dumps(
            {"v": KEY_VERSION, **self.to_dict()}, sort_keys=True, separators=(",", ":")
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:24]

    @property
    def fingerprint(self) -> str:
        """Hash of the code that decides the result (``losslab.bench.fingerprint``)."""
        return fingerprint(self.loss, self.dataset, self.protocol)

    @property
    def key(self) -> str:
        """The stored result's key: configuration and code, so a result is reused only
        while the code that produced it is unchanged."""
        payload = f"{self.config_key}:{self.fingerprint}"
        return hashlib.sha256(payload.encode()).hexdigest()[:24]

    @property
    def lr(self) -> float:
        return float(self.train["lr"])

    def train_config(self) -> TrainConfig:
        return TrainConfig(**{**self.train, "seed": self.seed})

    def label(self) -> str:
        cfg = ",".join(f"{k}={v}" for k, v in sorted(self.loss_config.items()))
        return f"{self.dataset}/{self.corruption}/{self.loss}({cfg})/lr={self.lr:g}/s{self.seed}"


#: training options set for a whole grid (not per protocol), with their defaults
_GRID_TRAIN_OPTIONS: dict[str, Any] = {"select_metric": "acc", "diagnostics": False}


def _is_seed(s: object) -> bool:
    return isinstance(s, int) and not isinstance(s, bool) and s >= 0


def _is_lr(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < float("inf")


@dataclass
class GridSpec:
    """What to run. ``loss_grids[name]`` lists the loss's candidate configs (missing:
    ``LDR_LOSS_GRIDS`` or else the defaults); ``lrs`` the candidate learning rates
    (``None``: the protocol's). Construction checks the structure and raises
    :class:`GridError` listing every problem; :func:`check_grid` checks names and data.

    ``dataset_corruptions``: per-dataset corruption lists that replace ``corruptions``
    for those datasets (a naturally imbalanced dataset is not made long-tailed again).

    ``select_metric``: the noisy-validation metric (higher is better) that picks each
    cell's best epoch and each group's configuration. ``diagnostics``: also record
    neural collapse (NC1-NC4) of every cell. Both enter a cell's key (through its
    training options) only when they differ from their defaults (``"acc"``, ``False``),
    so cells and grids without them keep their keys."""

    datasets: list[str]
    corruptions: list[str]
    losses: list[str]
    seeds: list[int]
    lrs: list[float] | None = None
    loss_grids: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    model: str = "auto"
    protocol: str = DEFAULT_PROTOCOL
    train: dict[str, Any] = field(default_factory=dict)
    val_fraction: float = 0.2
    tune_seed: int | None = None
    name: str = "custom"
    select_metric: str = "acc"
    diagnostics: bool = False
    dataset_corruptions: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"grid {self.name}"
        out: list[str] = []
        for key in ("datasets", "corruptions", "losses", "seeds"):
            value = getattr(self, key)
            if isinstance(value, (str, int)) or not isinstance(value, Iterable) or not value:
                out.append(problem(where, key, "a non-empty list", describe(value)))
                setattr(self, key, [])
            else:
                setattr(self, key, list(value))
        for key in ("datasets", "losses"):
            bad = [v for v in getattr(self, key) if not isinstance(v, str)]
            out += [problem(where, key, "names (strings)", describe(v)) for v in bad]
        # a registered dataset runs as name@content-digest, so its cell keys (and the
        # grid id) change with its data
        self.datasets = [dataset_identity(d) for d in self.datasets]
        corruptions = []
        for c in self.corruptions:
            try:
                corruptions.append(canonical_corruption(c))
            except (TypeError, ValueError) as exc:
                out.append(
                    problem(
                        where, "corruptions", "'clean' or 'KIND:RATE'", f"{c!r} ({_reason(exc)})"
                    )
                )
                corruptions.append(c)
        self.corruptions = corruptions
        if not isinstance(self.dataset_corruptions, Mapping):
            out.append(
                problem(
                    where,
                    "dataset_corruptions",
                    "a mapping of dataset -> corruptions",
                    describe(self.dataset_corruptions),
                )
            )
            self.dataset_corruptions = {}
        own: dict[str, list[str]] = {}
        for d, cs in self.dataset_corruptions.items():
            arg = f"dataset_corruptions.{d}"
            if d not in self.datasets:
                out.append(problem(where, arg, f"a dataset of the grid {self.datasets}", repr(d)))
            if isinstance(cs, str) or not isinstance(cs, Iterable) or not cs:
                out.append(problem(where, arg, "a non-empty list", describe(cs)))
                continue
            own[d] = []
            for c in cs:
                try:
                    own[d].append(canonical_corruption(c))
                except (TypeError, ValueError) as exc:
                    out.append(
                        problem(where, arg, "'clean' or 'KIND:RATE'", f"{c!r} ({_reason(exc)})")
                    )
        self.dataset_corruptions = own
        out += [
            problem(where, "seeds", "non-negative ints", describe(s))
            for s in self.seeds
            if not _is_seed(s)
        ]
        proto = PROTOCOLS.get(self.protocol) if isinstance(self.protocol, str) else None
        if proto is None:
            out.append(
                problem(where, "protocol", f"one of {list(PROTOCOLS)}", describe(self.protocol))
            )
            proto = PROTOCOLS[DEFAULT_PROTOCOL]
        if self.lrs is None:
            self.lrs = list(proto.lrs)
        elif isinstance(self.lrs, (str, int, float)) or not self.lrs:
            out.append(
                problem(where, "lrs", "a non-empty list of positive numbers", describe(self.lrs))
            )
        else:
            self.lrs = list(self.lrs)
            out += [
                problem(where, "lr", "a positive number", describe(v))
                for v in self.lrs
                if not _is_lr(v)
            ]
        if self.model not in MODEL_KINDS:
            out.append(problem(where, "model", f"one of {list(MODEL_KINDS)}", describe(self.model)))
        elif self.model == "auto":
            self.model = proto.model
        if not isinstance(self.val_fraction, (int, float)) or not 0 < self.val_fraction < 1:
            out.append(
                problem(where, "val_fraction", "a number in (0, 1)", describe(self.val_fraction))
            )
        if self.tune_seed is None and self.seeds:
            self.tune_seed = self.seeds[0]
        elif self.tune_seed is not None and not _is_seed(self.tune_seed):
            out.append(problem(where, "tune_seed", "a non-negative int", describe(self.tune_seed)))
        if not isinstance(self.train, Mapping):
            out.append(
                problem(where, "train", "a mapping of training options", describe(self.train))
            )
            self.train = {}
        for key, use in (("seed", "seeds"), *((k, k) for k in _GRID_TRAIN_OPTIONS)):
            if key in self.train:
                out.append(
                    problem(where, f"train.{key}", f"no value (use {use})", repr(self.train[key]))
                )
        if self.select_metric not in SELECT_METRICS:
            out.append(
                problem(
                    where,
                    "select_metric",
                    f"one of {list(SELECT_METRICS)}",
                    describe(self.select_metric),
                )
            )
        if not isinstance(self.diagnostics, bool):
            out.append(problem(where, "diagnostics", "true or false", describe(self.diagnostics)))
        out += train_problems(
            {k: v for k, v in self.train.items() if k not in ("seed", *_GRID_TRAIN_OPTIONS)},
            where,
        )
        self.train = {**proto.train, **self.train}
        if not isinstance(self.loss_grids, Mapping):
            out.append(problem(where, "loss_grids", "a mapping", describe(self.loss_grids)))
            self.loss_grids = {}
        for loss, cfgs in self.loss_grids.items():
            if not isinstance(cfgs, list) or not all(isinstance(c, Mapping) for c in cfgs):
                out.append(
                    problem(where, f"losses.{loss}", "a list of config mappings", describe(cfgs))
                )
        if out:
            raise GridError(out)

    @property
    def protocol_spec(self) -> Any:
        return get_protocol(self.protocol)

    def configs(self, loss: str) -> list[dict[str, Any]]:
        return [dict(c) for c in self.loss_grids.get(loss, LDR_LOSS_GRIDS.get(loss, [{}]))]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def corruptions_for(self, dataset: str) -> list[str]:
        """The corruptions ``dataset`` is trained under."""
        return list(self.dataset_corruptions.get(dataset, self.corruptions))

    def _measured(self) -> dict[str, Any]:
        """The grid-level training options that differ from their defaults."""
        return {
            k: getattr(self, k)
            for k, default in _GRID_TRAIN_OPTIONS.items()
            if getattr(self, k) != default
        }

    @property
    def grid_id(self) -> str:
        d = self.to_dict()
        d.pop("name")
        for k in _GRID_TRAIN_OPTIONS:
            d.pop(k)
        d.update(self._measured())
        if not d["dataset_corruptions"]:  # grids from before the field keep their ids
            d.pop("dataset_corruptions")
        h = hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()
        return f"{self.name}-{h[:10]}"

    def cell(
        self, dataset: str, corruption: str, loss: str, cfg: Mapping[str, Any], lr: float, seed: int
    ) -> Cell:
        return Cell(
            dataset=dataset,
            corruption=corruption,
            loss=loss,
            loss_config=dict(cfg),
            model=self.model,
            seed=seed,
            train={**self.train, "lr": float(lr), **self._measured()},
            protocol=self.protocol,
            val_fraction=self.val_fraction,
            standardize=self.protocol_spec.standardize,
        )


# ---------------------------------------------------------------------------- presets

PRESETS: dict[str, dict[str, Any]] = {
    # < 2 min on 2 cores: 2 small datasets, a short schedule and a 2-value lr grid.
    "demo": {
        "datasets": ["digits", "vowel"],
        "corruptions": ["clean", "uniform:0.4", "class_dependent:0.3"],
        "losses": ["ce", "gce", "sce", "nce_rce", "ldr_kl", "aldr_kl"],
        "seeds": [0, 1],
        "lrs": [3e-3, 1e-2],
        "train": {"epochs": 15, "batch_size": 256, "patience": 5},
        "model": "mlp",
    },
    "ldr": {
        "datasets": ["vowel", "letter"],
        "corruptions": [
            "clean",
            "uniform:0.3",
            "uniform:0.6",
            "uniform:0.9",
            "class_dependent:0.1",
            "class_dependent:0.3",
            "class_dependent:0.5",
        ],
        "losses": list(LDR_LOSS_GRIDS),
        # the LDR paper's lambda grid {0.1, 1, 10} for LDR-KL and ALDR-KL (its code runs
        # 10 only), and truncated GCE pruning on the LDR code's schedule scaled to 40
        # epochs: every 4 epochs after half of training (the code: every 10 of 100)
        "loss_grids": {
            "ldr_kl": [{"temperature": t, "margin": 0.1} for t in (0.1, 1.0, 10.0)],
            "aldr_kl": [{"temperature0": t, "alpha": 2.0, "margin": 0.1} for t in (0.1, 1.0, 10.0)],
            "tgce": [
                {"q": q, "k": 0.5, "prune_start": 23, "prune_every": 4} for q in (0.05, 0.7, 0.95)
            ],
        },
        "seeds": [0, 1],
        "lrs": [1e-3, 1e-2],
        "train": {"epochs": 40, "batch_size": 128, "patience": 10},
        "model": "mlp",
    },
    # the LDR code's own runs: its 9 losses with its grids (LDR/ALDR lambda 10, WW-SVM
    # averaged over classes), trained by the LDR code's protocol; seeds 0-9 are the 10
    # repetitions (noise seed 0 or 1) x (fold 0-4)
    FAITHFUL_PROTOCOL: {
        "datasets": ["vowel"],
        "corruptions": ["clean", "uniform:0.3", "uniform:0.6", "class_dependent:0.3"],
        "losses": ["ce", "cs_svm", "ww_svm", "gce", "sce", "jsc", "nce_rce", "ldr_kl", "aldr_kl"],
        "loss_grids": {
            "ww_svm": [{"margin": m, "class_reduction": "mean"} for m in (0.1, 1.0, 10.0)],
        },
        "seeds": list(range(10)),
        "protocol": FAITHFUL_PROTOCOL,
    },
    # fashion_mnist with the MLP: CE and the 9 best losses of the earlier ldr run (LDR-KL
    # and ALDR-KL at lambda 10), one learning rate, a short schedule (budget: docs/bench.md)
    "fashion": {
        "datasets": ["fashion_mnist"],
        "corruptions": ["clean", "uniform:0.4", "class_dependent:0.3", "long_tail:50"],
        "losses": [
            "ce",
            "sce",
            "nce_rce",
            "gce",
            "jsc",
            "nce_aul",
            "nce_agce",
            "comp_sum",
            "rll",
            "agce",
        ],
        "seeds": [0, 1, 2],
        "lrs": [1e-3],
        "train": {"epochs": 10, "batch_size": 256, "patience": 5},
        "model": "mlp",
    },
    # Issue 14: long-tailed classes with and without label noise, selected by balanced
    # accuracy. Shuttle is imbalanced by nature (its smallest class has a handful of rows),
    # so it keeps its own distribution instead of a long-tail profile.
    "imbalance": {
        "datasets": ["shuttle", "letter", "fashion_mnist"],
        "corruptions": [
            "long_tail:10",
            "long_tail:100",
            "long_tail:10+uniform:0.3",
            "long_tail:100+uniform:0.3",
        ],
        "dataset_corruptions": {"shuttle": ["clean", "uniform:0.3"]},
        "losses": [
            "ce",
            "focal",
            "balanced_softmax",
            "logit_adjusted",
            "class_balanced_ce",
            "dice",
            "anyloss_macro",
            "ldr_kl",
            "gce",
        ],
        "loss_grids": {
            "focal": [{"gamma": g} for g in (1.0, 2.0)],
            "balanced_softmax": [{"class_counts": "train_counts"}],
            "logit_adjusted": [{"priors": "train_priors", "tau": 1.0}],
            "class_balanced_ce": [
                {"class_counts": "train_counts", "beta": b} for b in (0.999, 0.9999)
            ],
            "anyloss_macro": [{"metric": "f1"}],
            "gce": [{"q": q} for q in (0.3, 0.7)],
        },
        "seeds": [0, 1, 2],
        "lrs": [1e-3, 1e-2],
        "select_metric": "balanced_acc",
        "train": {"epochs": 30, "batch_size": 256, "patience": 8},
        "model": "mlp",
    },
    # zero-shot retrieval (losslab.bench.embedding): train on half of the classes, Recall@k
    # and MAP@R on the other half; training settings are the retrieval protocol's
    "retrieval": {
        "datasets": ["glyphs", "fashion_mnist"],
        "corruptions": ["clean"],
        "losses": [
            "multi_similarity",
            "supcon",
            "arcface",
            "unpg",
            "proto_triplet",
            "ebv",
            "ce",
        ],
        "seeds": [0, 1, 2],
        "lrs": [3e-4, 1e-3, 3e-3],
        "protocol": RETRIEVAL_PROTOCOL,
    },
}
_TRAINING_KEYS = ("train", "model", "lrs")


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``overrides`` on top of ``base``: ``None`` keeps the base value, ``train`` is
    merged option by option. The one way grids are combined (presets, files, flags)."""
    out = dict(base)
    for k, v in overrides.items():
        if v is None:
            continue
        if k == "train" and isinstance(v, Mapping) and isinstance(out.get("train"), Mapping):
            out["train"] = {**out["train"], **v}
        else:
            out[k] = v
    return out


def _preset_spec(preset_name: str, protocol: Any) -> dict[str, Any]:
    if preset_name not in PRESETS:
        raise GridError([problem("grid", "preset", f"one of {sorted(PRESETS)}", repr(preset_name))])
    spec = {**PRESETS[preset_name], "name": preset_name}
    if protocol not in (None, DEFAULT_PROTOCOL):
        # a preset's schedule, model and lr grid belong to the protocol they were chosen
        # for; another protocol brings its own
        for k in _TRAINING_KEYS:
            spec.pop(k, None)
    return spec


def preset(preset_name: str, /, **overrides: Any) -> GridSpec:
    """A named grid (a key of ``PRESETS``) with fields overridden (``None`` = keep)."""
    return GridSpec(**merge(_preset_spec(preset_name, overrides.get("protocol")), overrides))


# ------------------------------------------------------------------------ file parsing

_TRAIN_KEYS = {f.name for f in fields(TrainConfig)} - {"seed", "lr", *_GRID_TRAIN_OPTIONS}
_FILE_KEYS = {
    *_GRID_TRAIN_OPTIONS,
    "dataset_corruptions",
    "preset",
    "datasets",
    "corruptions",
    "losses",
    "seeds",
    "lr",
    "lrs",
    "model",
    "protocol",
    "val_fraction",
    "tune_seed",
    "train",
    "name",
} | _TRAIN_KEYS
_FLOAT_KEYS = {"momentum", "weight_decay", "gamma", "val_fraction"}


def _as_float(v: Any) -> Any:
    """YAML 1.1 reads ``1e-3`` as a string: accept numeric strings for real-valued keys."""
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


def _loss_grid(where: str, name: str, grid: Any, out: list[str]) -> list[dict[str, Any]] | None:
    """A loss grid is a list of configs or a mapping ``param -> value | [values]`` whose
    product is taken; ``None``/``{}`` keeps the default grid."""
    arg = f"losses.{name}"
    if grid is None:
        return None
    if isinstance(grid, list):
        bad = [c for c in grid if not isinstance(c, Mapping)]
        if bad:
            out.append(
                problem(
                    where,
                    arg,
                    "a list of hyperparameter mappings",
                    f"{describe(bad[0])} in the list",
                )
            )
            return None
        return [dict(c) for c in grid] or [{}]
    if isinstance(grid, Mapping):
        keys = sorted(grid)
        values = [v if isinstance(v, list) else [v] for v in (grid[k] for k in keys)]
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]
    out.append(
        problem(
            where, arg, "a mapping of hyperparameter values or a list of mappings", describe(grid)
        )
    )
    return None


def grid_from_mapping(spec: Mapping[str, Any], name: str = "custom") -> GridSpec:
    """Build a grid from a parsed YAML/TOML document (every problem reported at once).

    Keys: ``preset`` (start from a preset), ``datasets``, ``corruptions``, ``losses``
    (a list of names, or a mapping name -> grid), ``seeds`` (a count or a list), ``lr``
    (number or list), ``model``, ``protocol``, ``val_fraction``, ``tune_seed``, and any
    ``TrainConfig`` field (``epochs``, ``optimizer``, ...) at top level or under ``train``.
    """
    spec, problems = spec_from_mapping(spec, where=name)
    return make_grid(spec, where=name, default_name=name, problems=problems)


def spec_from_mapping(doc: Mapping[str, Any], where: str) -> tuple[dict[str, Any], list[str]]:
    """The keyword arguments of :class:`GridSpec` (plus ``preset``) from a grid document,
    and a problem for every value that cannot be read (left out of the arguments)."""
    out: list[str] = []
    doc = dict(doc)
    for k in sorted(set(doc) - _FILE_KEYS, key=str):
        close = difflib.get_close_matches(str(k), sorted(_FILE_KEYS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        out.append(
            problem(where, "keys", f"grid keys ({', '.join(sorted(_FILE_KEYS))})", f"{k!r}{hint}")
        )
        doc.pop(k)
    spec: dict[str, Any] = {}
    train = doc.pop("train", None) or {}
    if not isinstance(train, Mapping):
        out.append(problem(where, "train", "a mapping of training options", describe(train)))
        train = {}
    train = {**train, **{k: doc.pop(k) for k in list(doc) if k in _TRAIN_KEYS}}
    train = {k: _as_float(v) if k in _FLOAT_KEYS else v for k, v in train.items()}
    if train:
        spec["train"] = train
    losses = doc.pop("losses", None)
    if isinstance(losses, Mapping):
        spec["losses"] = list(losses)
        grids = {k: _loss_grid(where, k, v, out) for k, v in losses.items()}
        spec["loss_grids"] = {k: v for k, v in grids.items() if v is not None}
    elif losses is not None:
        spec["losses"] = [losses] if isinstance(losses, str) else losses
    lr = doc.pop("lr", None)
    lr = doc.pop("lrs", None) if lr is None else lr
    if lr is not None:
        values = [_as_float(v) for v in (lr if isinstance(lr, list) else [lr])]
        bad = [v for v in values if not _is_lr(v)]
        if bad:
            out.append(
                problem(where, "lr", "a positive number or a list of them", describe(bad[0]))
            )
        else:
            spec["lrs"] = [float(v) for v in values]
    seeds = doc.pop("seeds", None)
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        spec["seeds"] = list(range(seeds))
    elif seeds is not None:
        spec["seeds"] = seeds
    for k in ("datasets", "corruptions"):
        if k in doc:
            v = doc.pop(k)
            spec[k] = [v] if isinstance(v, str) else v
    if "val_fraction" in doc:
        doc["val_fraction"] = _as_float(doc["val_fraction"])
    spec.update(doc)
    return spec, out


def _read_document(path: Path) -> Any:
    where = str(path)
    if not path.is_file():
        got = "a directory" if path.is_dir() else "no such file"
        raise GridError([problem(where, "grid file", "a .yaml, .yml or .toml file", got)])
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise GridError(
            [problem(where, "grid file", "a readable text file", _reason(exc))]
        ) from None
    if path.suffix in (".yaml", ".yml"):
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            what = getattr(exc, "problem", None) or type(exc).__name__
            raise GridError(
                [problem(where, "grid file", "valid YAML", f"a syntax error{at} ({what})")]
            ) from None
    if path.suffix == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise GridError([problem(where, "grid file", "valid TOML", f"{exc}")]) from None
    raise GridError([problem(where, "grid file", "a .yaml, .yml or .toml file", repr(path.name))])


def spec_from_file(path: str | Path) -> tuple[dict[str, Any], list[str]]:
    """:func:`spec_from_mapping` of a ``.yaml``/``.yml`` or ``.toml`` file, named after
    the file's stem. An unreadable file raises :class:`GridError`."""
    p = Path(path)
    doc = _read_document(p)
    if not isinstance(doc, Mapping):
        raise GridError([problem(str(p), "grid file", "a mapping of grid keys", describe(doc))])
    spec, problems = spec_from_mapping(doc, where=str(p))
    return {"name": p.stem, **spec}, problems


def grid_from_file(path: str | Path) -> GridSpec:
    """Read a grid from a ``.yaml``/``.yml`` or ``.toml`` file (see ``grid_from_mapping``)."""
    spec, problems = spec_from_file(path)
    return make_grid(spec, where=str(path), problems=problems)


def make_grid(
    spec: Mapping[str, Any],
    *,
    where: str = "grid",
    default_name: str = "custom",
    check_names: bool = False,
    check_data: bool = False,
    problems: Iterable[str] = (),
) -> GridSpec:
    """A :class:`GridSpec` from keyword arguments (``preset`` starts from a preset).
    Raises :class:`GridError` listing every structural problem and, with
    ``check_names``, every unknown loss, bad loss config and unknown or (with
    ``check_data``) unfetched dataset, all at once, after ``problems`` found earlier."""
    spec = dict(spec)
    base = spec.pop("preset", None)
    problems = list(problems)
    if base is not None:
        try:
            spec = merge(_preset_spec(base, spec.get("protocol")), spec)
        except GridError as exc:
            problems += [p.replace("grid:", f"{where}:", 1) for p in exc.problems]
    spec.setdefault("name", default_name)
    missing = [k for k in ("datasets", "corruptions", "losses", "seeds") if k not in spec]
    if base is None:
        problems += [
            problem(where, k, "a value (or a preset that sets it)", "none") for k in missing
        ]
    grid = None
    if not missing:
        try:
            grid = GridSpec(**{k: v for k, v in spec.items() if k in GridSpec.__dataclass_fields__})
        except GridError as exc:
            problems += [p.replace(f"grid {spec['name']}:", f"{where}:", 1) for p in exc.problems]
        except TypeError as exc:  # a key of the wrong kind, e.g. a non-string name
            problems.append(problem(where, "grid", "valid grid keys", _reason(exc)))
    if check_names:
        raw = spec.get("loss_grids")
        grids: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        problems += _name_problems(
            where,
            spec.get("losses"),
            grids,
            spec.get("datasets"),
            check_data=check_data,
            protocol=spec.get("protocol", DEFAULT_PROTOCOL),
        )
    if problems or grid is None:
        raise GridError(problems)
    return grid


# -------------------------------------------------------------------------- validation


def _close(name: str, known: Iterable[str]) -> str:
    hint = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


def _name_problems(
    where: str,
    losses: Any,
    loss_grids: Mapping[str, Any],
    datasets: Any,
    *,
    check_data: bool,
    protocol: Any = DEFAULT_PROTOCOL,
) -> list[str]:
    """Unknown losses, configs a loss rejects, unknown and unfetched datasets. Tolerates
    malformed values (the structural checks report those). Retrieval grids also accept
    head methods (``ebv``) and check that each loss can train an embedding."""
    out: list[str] = []
    known_losses = losslab.list_losses()
    proto = PROTOCOLS.get(protocol) if isinstance(protocol, str) else None
    retrieval = proto is not None and proto.task == "retrieval"
    if retrieval:
        from losslab.bench import embedding

        known_losses = [*known_losses, *embedding.HEAD_METHODS]
    for loss in losses if isinstance(losses, list) else []:
        if not isinstance(loss, str):
            continue
        if loss not in known_losses:
            out.append(
                problem(
                    where,
                    "losses",
                    "registered loss names",
                    f"{loss!r}{_close(loss, known_losses)}",
                )
            )
            continue
        cfgs = loss_grids.get(loss, LDR_LOSS_GRIDS.get(loss, [{}]))
        for i, cfg in enumerate(cfgs if isinstance(cfgs, list) else []):
            if not isinstance(cfg, Mapping):
                continue
            try:
                if retrieval:
                    embedding.check_method(loss, cfg)
                else:
                    losslab.loss_info(loss).build(num_samples=8, **resolve_loss_config(cfg))
            except (TypeError, ValueError) as exc:
                out.append(
                    problem(
                        where,
                        f"losses.{loss}[{i}]",
                        f"a valid {loss} config",
                        f"{dict(cfg)} ({_reason(exc)})",
                    )
                )
    known_data = [d.name for d in list_datasets()]
    for d in datasets if isinstance(datasets, list) else []:
        if not isinstance(d, str):
            continue
        if split_identity(d)[0] not in known_data:
            out.append(
                problem(
                    where, "datasets", "catalogued dataset names", f"{d!r}{_close(d, known_data)}"
                )
            )
        elif check_data and (why := unavailable(d)) is not None:
            out.append(problem(where, "datasets", "fetched datasets", f"{d!r}, {why}"))
    return out


def check_grid(grid: GridSpec, *, check_data: bool = True) -> list[str]:
    """Every problem with the grid's names: unknown losses or datasets, loss configs the
    loss rejects, and (``check_data``) datasets that are not fetched."""
    grids = {loss: grid.configs(loss) for loss in grid.losses}
    return _name_problems(
        f"grid {grid.name}",
        grid.losses,
        grids,
        grid.datasets,
        check_data=check_data,
        protocol=grid.protocol,
    )


def validate_grid(grid: GridSpec, *, check_data: bool = True) -> None:
    """Raise :class:`GridError` listing every problem of :func:`check_grid`."""
    problems = check_grid(grid, check_data=check_data)
    if problems:
        raise GridError(problems)
