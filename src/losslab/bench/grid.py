"""Benchmark grids: cells with deterministic keys, presets, YAML/TOML/CLI parsing and
validation of everything that can be checked before training starts.

A grid is datasets x corruptions x (loss, config) x model x seeds. Hyperparameters are
chosen per (dataset, corruption, loss): every (loss config, learning rate) candidate is
trained once on ``tune_seed`` and scored on the noisy validation split; the winner is
then run for every seed. A cell's key hashes everything that influences its result, so
the tuning run of the winner *is* its final run for ``tune_seed``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from losslab.bench.models import MODEL_KINDS
from losslab.bench.trainer import TrainConfig

__all__ = [
    "KEY_VERSION",
    "LDR_LOSS_GRIDS",
    "PRESETS",
    "PROTOCOLS",
    "Cell",
    "GridSpec",
    "canonical_corruption",
    "corruption_rate",
    "count_cells",
    "final_cells",
    "grid_from_file",
    "grid_from_mapping",
    "preset",
    "tuning_cells",
    "validate_grid",
]

#: bump when the meaning of a stored result changes, so old cells are not reused.
KEY_VERSION = 1
PROTOCOLS = ("tuned", "ldr-faithful")

#: Hyperparameter grids of the LDR code (``experiment.py`` l.128-144; ldr_benchmark.md §2),
#: translated to losslab's names. Losses absent from that code get a small grid around
#: their defaults (focal, comp_sum) or their defaults alone.
LDR_LOSS_GRIDS: dict[str, list[dict[str, Any]]] = {
    "ce": [{}],
    "focal": [{"gamma": g} for g in (0.5, 1.0, 2.0)],
    "comp_sum": [{"tau": t} for t in (0.5, 1.5, 2.0)],
    "sum_exp": [{}],
    "gce": [{"q": q} for q in (0.05, 0.7, 0.95)],
    "mae": [{}],
    "mse": [{}],
    # the LDR code's SCE is (1 - b) CE + b RCE with b in {0.05, 0.5, 0.95}
    "sce": [{"alpha": round(1 - b, 2), "beta": b} for b in (0.05, 0.5, 0.95)],
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

FOUNDATION_LOSSES = list(LDR_LOSS_GRIDS)


def canonical_corruption(spec: str) -> str:
    """The data module's canonical spelling (``Uniform-0.40`` -> ``uniform:0.4``,
    ``none`` -> ``clean``), so equal corruptions share cell keys. Invalid specs (unknown
    kind, a rate outside its range) raise ``ValueError`` here, before any training."""
    from losslab.data.corrupt import parse_corruption

    return str(parse_corruption(spec))


def corruption_rate(spec: str) -> tuple[str, float]:
    """(kind, rate) of a corruption; clean is ("clean", 0.0). The rate is the noise rate
    or, for imbalance kinds, the imbalance ratio."""
    from losslab.data.corrupt import parse_corruption

    parsed = parse_corruption(spec)
    return ("clean", 0.0) if parsed.kind == "none" else (parsed.kind, float(parsed.rate))


@dataclass(frozen=True)
class Cell:
    """One training run. ``key`` hashes every field, so equal cells share a result."""

    dataset: str
    corruption: str
    loss: str
    loss_config: Mapping[str, Any]
    model: str
    seed: int
    train: Mapping[str, Any]
    protocol: str = "tuned"
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
    def key(self) -> str:
        payload = json.dumps(
            {"v": KEY_VERSION, **self.to_dict()}, sort_keys=True, separators=(",", ":")
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:24]

    @property
    def lr(self) -> float:
        return float(self.train["lr"])

    def train_config(self) -> TrainConfig:
        return TrainConfig(**{**self.train, "seed": self.seed})

    def label(self) -> str:
        cfg = ",".join(f"{k}={v}" for k, v in sorted(self.loss_config.items()))
        return f"{self.dataset}/{self.corruption}/{self.loss}({cfg})/lr={self.lr:g}/s{self.seed}"


@dataclass
class GridSpec:
    """What to run. ``loss_grids[name]`` lists the loss's candidate configs (missing:
    ``LDR_LOSS_GRIDS`` or else the defaults); ``lrs`` the candidate learning rates."""

    datasets: list[str]
    corruptions: list[str]
    losses: list[str]
    seeds: list[int]
    lrs: list[float] = field(default_factory=lambda: [1e-3])
    loss_grids: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    model: str = "auto"
    protocol: str = "tuned"
    train: dict[str, Any] = field(default_factory=dict)
    val_fraction: float = 0.2
    tune_seed: int | None = None
    name: str = "custom"

    def __post_init__(self) -> None:
        self.corruptions = [canonical_corruption(c) for c in self.corruptions]
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol: expected one of {PROTOCOLS}, got {self.protocol!r}")
        if self.protocol == "ldr-faithful":
            self.train = {**LDR_FAITHFUL_TRAIN, **self.train}
            if self.model == "auto":
                self.model = "ldr_mlp"
        else:
            self.train = {**TUNED_TRAIN, **self.train}
        for what, seq in (("datasets", self.datasets), ("losses", self.losses)):
            if not seq:
                raise ValueError(f"{what}: expected at least one entry, got none")
        if not self.corruptions:
            raise ValueError("corruptions: expected at least one entry, got none")
        if not self.seeds or not all(isinstance(s, int) and s >= 0 for s in self.seeds):
            raise ValueError(f"seeds: expected non-negative ints, got {self.seeds!r}")
        if not self.lrs or not all(isinstance(v, (int, float)) and v > 0 for v in self.lrs):
            raise ValueError(f"lrs: expected positive learning rates, got {self.lrs!r}")
        if self.model not in MODEL_KINDS:
            raise ValueError(f"model: expected one of {list(MODEL_KINDS)}, got {self.model!r}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction: expected a number in (0, 1), got {self.val_fraction}")
        if self.tune_seed is None:
            self.tune_seed = self.seeds[0]
        unknown = sorted(set(self.train) - set(TrainConfig.__dataclass_fields__) - {"lr"})
        if unknown or "seed" in self.train:
            raise ValueError(
                f"train: unknown or reserved options {unknown or ['seed']}; "
                f"expected some of {sorted(set(TrainConfig.__dataclass_fields__) - {'seed'})}"
            )
        TrainConfig(**{**self.train, "lr": self.lrs[0]})  # fail early on bad values

    def configs(self, loss: str) -> list[dict[str, Any]]:
        return [dict(c) for c in self.loss_grids.get(loss, LDR_LOSS_GRIDS.get(loss, [{}]))]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def grid_id(self) -> str:
        d = self.to_dict()
        d.pop("name")
        h = hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()
        return f"{self.name}-{h[:10]}"

    def cell(self, dataset: str, corruption: str, loss: str, cfg: Mapping[str, Any],
             lr: float, seed: int) -> Cell:  # fmt: skip
        return Cell(
            dataset=dataset,
            corruption=corruption,
            loss=loss,
            loss_config=dict(cfg),
            model=self.model,
            seed=seed,
            train={**self.train, "lr": float(lr)},
            protocol=self.protocol,
            val_fraction=self.val_fraction,
            standardize=self.protocol != "ldr-faithful",
        )

    def groups(self) -> list[tuple[str, str, str]]:
        return list(itertools.product(self.datasets, self.corruptions, self.losses))


# Default ("tuned") protocol: Adam + cosine, early stopping on the noisy validation split.
TUNED_TRAIN: dict[str, Any] = {
    "optimizer": "adam",
    "weight_decay": 0.0,
    "batch_size": 128,
    "epochs": 40,
    "schedule": "cosine",
    "shuffle": True,
    "patience": 10,
}

# The LDR code's protocol (ldr_benchmark.md §3.3-3.4): tanh MLP, SGD momentum 0.9 with
# coupled weight decay 5e-3, batch 64 in a fixed order, 100 epochs, lr / 10 at 50 and 75.
LDR_FAITHFUL_TRAIN: dict[str, Any] = {
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
}


def tuning_cells(grid: GridSpec) -> list[Cell]:
    """Every (loss config, lr) candidate of every (dataset, corruption, loss) on
    ``grid.tune_seed``; a group with a single candidate skips tuning (empty here)."""
    cells = []
    seed = grid.seeds[0] if grid.tune_seed is None else grid.tune_seed
    for d, c, loss in grid.groups():
        cands = list(itertools.product(grid.configs(loss), grid.lrs))
        if len(cands) > 1:
            cells += [grid.cell(d, c, loss, cfg, lr, seed) for cfg, lr in cands]
    return cells


def final_cells(
    grid: GridSpec, selection: Mapping[tuple[str, str, str], tuple[Mapping[str, Any], float]]
) -> list[Cell]:
    """The selected (config, lr) of every group, for every seed. Groups with a single
    candidate need no entry in ``selection``."""
    cells = []
    for group in grid.groups():
        cfgs = grid.configs(group[2])
        if group in selection:
            cfg, lr = selection[group]
        elif len(cfgs) == 1 and len(grid.lrs) == 1:
            cfg, lr = cfgs[0], grid.lrs[0]
        else:
            raise ValueError(f"selection: no selected configuration for {group}")
        cells += [grid.cell(*group, cfg, lr, s) for s in grid.seeds]
    return cells


def count_cells(grid: GridSpec) -> int:
    """Number of distinct cells the grid runs (tuning + final, without double counts)."""
    n = len(tuning_cells(grid))
    extra_seeds = len([s for s in grid.seeds if s != grid.tune_seed])
    for _d, _c, loss in grid.groups():
        single = len(grid.configs(loss)) * len(grid.lrs) == 1
        n += len(grid.seeds) if single else extra_seeds
    return n


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
        "losses": FOUNDATION_LOSSES,
        "seeds": [0, 1, 2],
        "lrs": [1e-3, 1e-2],
        "train": {"epochs": 40, "batch_size": 128, "patience": 10},
        "model": "mlp",
    },
}


def preset(preset_name: str, /, **overrides: Any) -> GridSpec:
    """A named grid (``demo`` or ``ldr``) with fields overridden (``None`` = keep)."""
    if preset_name not in PRESETS:
        raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got {preset_name!r}")
    spec = {**PRESETS[preset_name], "name": preset_name}
    if overrides.get("protocol") == "ldr-faithful":
        # the preset's schedule, model and lr grid belong to the tuned protocol; the LDR
        # code trains with its default lr 0.01
        spec.pop("train", None)
        spec["model"] = "auto"
        spec["lrs"] = [0.01]
    for k, v in overrides.items():
        if v is None:
            continue
        spec[k] = {**spec.get("train", {}), **v} if k == "train" else v
    return GridSpec(**spec)


# ------------------------------------------------------------------------ file parsing

_TRAIN_KEYS = set(TrainConfig.__dataclass_fields__) - {"seed", "lr"}


def _expand_loss_grid(name: str, grid: Any) -> list[dict[str, Any]]:
    """A loss grid is a list of configs or a mapping ``param -> value | [values]``
    whose product is taken."""
    if grid is None:
        return LDR_LOSS_GRIDS.get(name, [{}])
    if isinstance(grid, list):
        if not all(isinstance(c, Mapping) for c in grid):
            raise TypeError(f"losses.{name}: expected a list of mappings, got {grid!r}")
        return [dict(c) for c in grid] or [{}]
    if isinstance(grid, Mapping):
        keys = sorted(grid)
        values = [v if isinstance(v, list) else [v] for v in (grid[k] for k in keys)]
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]
    raise TypeError(f"losses.{name}: expected a mapping or a list of mappings, got {grid!r}")


def grid_from_mapping(spec: Mapping[str, Any], name: str = "custom") -> GridSpec:
    """Build a grid from a parsed YAML/TOML document.

    Keys: ``preset`` (start from a preset), ``datasets``, ``corruptions``, ``losses``
    (a list of names, or a mapping name -> grid), ``seeds``, ``lr`` (number or list),
    ``model``, ``protocol``, ``val_fraction``, ``tune_seed``, and any ``TrainConfig``
    field (``epochs``, ``optimizer``, ...) at top level or under ``train``.
    """
    spec = dict(spec)
    allowed = {"preset", "datasets", "corruptions", "losses", "seeds", "lr", "lrs", "model",
               "protocol", "val_fraction", "tune_seed", "train", "name"} | _TRAIN_KEYS  # fmt: skip
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ValueError(f"grid file: unknown keys {unknown}; expected some of {sorted(allowed)}")
    out: dict[str, Any] = {}
    train = dict(spec.pop("train", {}) or {})
    train.update({k: spec.pop(k) for k in list(spec) if k in _TRAIN_KEYS})
    if train:
        out["train"] = train
    losses = spec.pop("losses", None)
    if isinstance(losses, Mapping):
        out["losses"] = list(losses)
        out["loss_grids"] = {k: _expand_loss_grid(k, v) for k, v in losses.items()}
    elif losses is not None:
        out["losses"] = [losses] if isinstance(losses, str) else list(losses)
    lr = spec.pop("lr", spec.pop("lrs", None))
    if lr is not None:
        out["lrs"] = [float(v) for v in (lr if isinstance(lr, list) else [lr])]
    seeds = spec.pop("seeds", None)
    if seeds is not None:
        out["seeds"] = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    for k in ("datasets", "corruptions"):
        if k in spec:
            v = spec.pop(k)
            out[k] = [v] if isinstance(v, str) else list(v)
    name = spec.pop("name", name)
    base = spec.pop("preset", None)
    out.update(spec)
    if base is not None:
        return preset(base, name=name, **out)
    missing = [k for k in ("datasets", "corruptions", "losses", "seeds") if k not in out]
    if missing:
        raise ValueError(f"grid file: missing keys {missing} (or give 'preset')")
    return GridSpec(name=name, **out)


def grid_from_file(path: str | Path) -> GridSpec:
    """Read a grid from a ``.yaml``/``.yml`` or ``.toml`` file (see ``grid_from_mapping``)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"grid file: {str(p)!r} does not exist")
    text = p.read_text()
    if p.suffix in (".yaml", ".yml"):
        import yaml

        doc = yaml.safe_load(text)
    elif p.suffix == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib

        doc = tomllib.loads(text)
    else:
        raise ValueError(f"grid file: expected a .yaml, .yml or .toml file, got {p.name!r}")
    if not isinstance(doc, Mapping):
        raise ValueError(f"grid file: expected a mapping at the top of {p.name!r}")
    return grid_from_mapping(doc, name=p.stem)


# -------------------------------------------------------------------------- validation


def _close(name: str, known: Iterable[str]) -> str:
    import difflib

    hint = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


def validate_grid(grid: GridSpec, *, check_data: bool = True) -> None:
    """Check names, corruptions, loss configs and data availability, so that a bad grid
    fails with one clear ``ValueError`` before any cell trains."""
    import losslab

    problems: list[str] = []
    known_losses = losslab.list_losses()
    for loss in grid.losses:
        if loss not in known_losses:
            problems.append(
                f"loss {loss!r} is unknown{_close(loss, known_losses)}; known: {known_losses}"
            )
            continue
        info = losslab.loss_info(loss)
        extra = {"num_samples": 8} if getattr(info, "stateful", False) else {}
        for cfg in grid.configs(loss):
            try:
                losslab.build_loss(loss, **cfg, **extra)
            except (TypeError, ValueError) as exc:
                problems.append(f"loss {loss!r} with config {cfg}: {exc}")
    from losslab.data import list_datasets, load_dataset

    known_data = [str(getattr(d, "name", d)) for d in list_datasets()]
    for d in grid.datasets:
        if d not in known_data:
            problems.append(f"dataset {d!r} is unknown{_close(d, known_data)}; known: {known_data}")
        elif check_data:
            try:
                load_dataset(d)
            except ValueError as exc:  # DataNotAvailableError is a ValueError
                problems.append(f"dataset {d!r} is not available: {exc}")
    if problems:
        raise ValueError("invalid grid:\n  - " + "\n  - ".join(problems))
