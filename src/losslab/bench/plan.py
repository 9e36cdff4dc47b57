"""The plan of a grid: which cells train, in which phase, and how many there are.

Hyperparameters are chosen per (dataset, corruption, loss) *group*: a group with more
than one (loss config, learning rate) candidate trains every candidate once on
``tune_seed`` and scores it on the noisy validation split; the winner then runs for every
seed. A cell's key hashes everything that influences its result, so the tuning run of
the winner *is* its final run for ``tune_seed``. A group with a single candidate needs
no tuning: its cells are final from the start (``fixed``).

The runner, the command line, ``status`` and the report all read a grid through one
:class:`Plan`, built once.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from losslab.bench.grid import Cell, GridSpec

__all__ = ["Group", "Plan", "Selection", "score"]

#: (dataset, corruption, loss) -> (selected loss config, selected learning rate)
Selection = dict[tuple[str, str, str], tuple[dict[str, Any], float]]


@dataclass(frozen=True)
class Group:
    dataset: str
    corruption: str
    loss: str
    candidates: tuple[tuple[dict[str, Any], float], ...]

    @property
    def id(self) -> tuple[str, str, str]:
        return (self.dataset, self.corruption, self.loss)

    @property
    def tuned(self) -> bool:
        return len(self.candidates) > 1


def score(row: Mapping[str, Any]) -> tuple[bool, float, float]:
    """Higher is better: a candidate that trained to the end beats one that diverged,
    then noisy-validation accuracy, then lower validation NLL (missing values last)."""

    def finite(v: Any, default: float) -> float:
        return default if v is None or not math.isfinite(v) else float(v)

    return (
        not row.get("diverged"),
        finite(row.get("val_acc"), -math.inf),
        -finite(row.get("val_nll"), math.inf),
    )


@dataclass(frozen=True)
class Plan:
    grid: GridSpec
    groups: tuple[Group, ...]
    #: every candidate of every tuned group, on the tuning seed
    tuning: tuple[Cell, ...]
    #: the final cells of groups with a single candidate, every seed
    fixed: tuple[Cell, ...]
    counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, grid: GridSpec) -> Plan:
        lrs = grid.lrs or []  # set by GridSpec from the protocol when not given
        groups = tuple(
            Group(d, c, loss, tuple(itertools.product(grid.configs(loss), lrs)))
            for d, c, loss in itertools.product(grid.datasets, grid.corruptions, grid.losses)
        )
        seed = grid.tune_seed if grid.tune_seed is not None else grid.seeds[0]
        tuning = tuple(
            grid.cell(*g.id, cfg, lr, seed) for g in groups if g.tuned for cfg, lr in g.candidates
        )
        fixed = tuple(
            grid.cell(*g.id, *g.candidates[0], s) for g in groups if not g.tuned for s in grid.seeds
        )
        extra_seeds = len([s for s in grid.seeds if s != seed])
        tuned_groups = sum(g.tuned for g in groups)
        counts = {
            "groups": len(groups),
            "tuned_groups": tuned_groups,
            "tuning": len(tuning),
            "fixed": len(fixed),
            # finals of tuned groups that are not their own tuning run
            "selected": tuned_groups * extra_seeds,
        }
        counts["total"] = counts["tuning"] + counts["fixed"] + counts["selected"]
        return cls(grid, groups, tuning, fixed, counts)

    @property
    def total(self) -> int:
        """Distinct cells the grid trains (tuning and finals, without double counts)."""
        return self.counts["total"]

    def possible_keys(self) -> set[str]:
        """Every key the grid can store under the current code: its tuning and fixed
        cells and every candidate's final for every seed (whatever selection picks). A
        member of the grid outside this set ran other code or another grid version."""
        keys = {c.key for c in (*self.tuning, *self.fixed)}
        for g in self.groups:
            if g.tuned:
                keys |= {
                    self.grid.cell(*g.id, *c, s).key for c in g.candidates for s in self.grid.seeds
                }
        return keys

    def select(self, rows_by_key: Mapping[str, Mapping[str, Any]]) -> Selection:
        """Per tuned group, the candidate with the best :func:`score` (ties: grid order).
        Needs every tuning row."""
        best: dict[tuple[str, str, str], tuple[tuple[bool, float, float], dict, float]] = {}
        for cell in self.tuning:
            row = rows_by_key.get(cell.key)
            if row is None:
                raise ValueError(f"selection: {cell.label()} expected a stored result, got none")
            group = (cell.dataset, cell.corruption, cell.loss)
            s = score(row)
            if group not in best or s > best[group][0]:
                best[group] = (s, dict(cell.loss_config), cell.lr)
        return {g: (cfg, lr) for g, (_, cfg, lr) in best.items()}

    def finals(
        self, selection: Mapping[tuple[str, str, str], tuple[Mapping[str, Any], float]]
    ) -> list[Cell]:
        """Every group's selected candidate (its only one if untuned), for every seed."""
        cells = []
        for g in self.groups:
            if g.tuned:
                if g.id not in selection:
                    raise ValueError(
                        f"selection: group {'/'.join(g.id)} expected a selected configuration, "
                        "got none"
                    )
                cfg, lr = selection[g.id]
            else:
                cfg, lr = g.candidates[0]
            cells += [self.grid.cell(*g.id, cfg, lr, s) for s in self.grid.seeds]
        return cells
