r"""Stateful calibration metrics: accumulate batches, merge across batches and
`torch.distributed` ranks, compute once.

`CalibrationMetrics` keeps sufficient statistics of fixed size and never the samples:

| statistic | size | gives |
|---|---|---|
| top-label bins: count, sum of confidences, sum of hits | 3 M | ECE, MCE, reliability diagram |
| classwise bins: count, sum of probabilities, sum of hits | 3 K M | classwise ECE |
| smooth-ECE grids: residuals and masses | 2 x 16001 | smooth ECE |
| sums of the Brier terms, of $-\log p_y$, of hits; the count | 4 | Brier, NLL, accuracy |

All are sums, so merging two states (`merge`, `+`) or all-reducing them across ranks
(`synced`) gives the statistics of the union of the batches: the value after any split
equals the full-batch value up to float64 rounding of the sums. Memory is
$8\,(3M(K + 1) + 32006)$ bytes, independent of the number of samples (for K = 1000
classes and M = 15 bins: 0.6 MB).

Equal-mass ECE needs the order statistics of all confidences, which no fixed-size
summary gives exactly; `AdaptiveECE` therefore keeps the samples: 9 bytes per sample
(a float64 confidence and a bool hit), gathered from every rank by `synced`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from losslab._validate import describe, fail
from losslab.metrics._inputs import F64, check_input_format, check_n_bins, predictions
from losslab.metrics._smooth import FINEST, deposit, smooth_ece_from_grid
from losslab.metrics.calibration import (
    ReliabilityBins,
    _binned,
    adaptive_ece_from,
    bin_index,
    brier_sum,
    classwise_sums,
)

__all__ = ["AdaptiveECE", "CalibrationMetrics"]


def _check_num_classes(where: str, num_classes: object) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        fail(where, "num_classes", "a positive int", describe(num_classes))
    return num_classes


def _check_group_ready(where: str) -> None:
    if not (dist.is_available() and dist.is_initialized()):
        fail(
            where,
            "group",
            "an initialised torch.distributed process group",
            "no process group",
            RuntimeError,
        )


class CalibrationMetrics(torch.nn.Module):
    """ECE, MCE, classwise ECE, smooth ECE, Brier score, NLL and accuracy of a stream of
    batches, from fixed-size sufficient statistics (see the module docstring).

    Args:
        num_classes: K, the size of the class axis of every batch.
        n_bins: M equal-width bins (Guo et al.'s 15).
        input: `"logits"` or `"probs"`: what `update` receives.

    The statistics are float64 buffers, so `state_dict`, `load_state_dict` and `.to()`
    work as for any module.

    Example:
        >>> import torch
        >>> m = CalibrationMetrics(num_classes=3)
        >>> g = torch.Generator().manual_seed(0)
        >>> for _ in range(4):
        ...     m.update(torch.randn(8, 3, generator=g), torch.randint(3, (8,), generator=g))
        >>> out = m.compute()
        >>> int(out["n"]), sorted(out)
        (32, ['accuracy', 'brier', 'classwise_ece', 'ece', 'mce', 'n', 'nll', 'smooth_ece'])
    """

    count: Tensor
    bin_count: Tensor
    bin_confidence: Tensor
    bin_correct: Tensor
    class_count: Tensor
    class_prob: Tensor
    class_hit: Tensor
    smooth_residual: Tensor
    smooth_mass: Tensor
    brier_total: Tensor
    nll_total: Tensor
    correct_total: Tensor

    def __init__(self, num_classes: int, *, n_bins: int = 15, input: str = "logits") -> None:
        super().__init__()
        where = type(self).__name__
        self.num_classes = _check_num_classes(where, num_classes)
        self.n_bins = check_n_bins(where, n_bins)
        self.input = check_input_format(where, input)
        k, m = self.num_classes, self.n_bins
        shapes = {
            "count": (),
            "bin_count": (m,),
            "bin_confidence": (m,),
            "bin_correct": (m,),
            "class_count": (k * m,),
            "class_prob": (k * m,),
            "class_hit": (k * m,),
            "smooth_residual": (FINEST + 1,),
            "smooth_mass": (FINEST + 1,),
            "brier_total": (),
            "nll_total": (),
            "correct_total": (),
        }
        for name, shape in shapes.items():
            self.register_buffer(name, torch.zeros(shape, dtype=F64))

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, n_bins={self.n_bins}, input={self.input!r}"

    @property
    def _names(self) -> list[str]:
        return [name for name, _ in self.named_buffers()]

    @torch.no_grad()
    def update(self, scores: Any, target: Any) -> None:
        """Add a batch: `scores` `(N, K, *)` (logits or probabilities, as `input`) and int
        `target` `(N, *)`, numpy or torch. A batch that raises changes nothing."""
        p = predictions(
            f"{type(self).__name__}.update",
            scores,
            target,
            input=self.input,
            num_classes=self.num_classes,
        )
        p = type(p)(*(t.to(self.count.device) for t in (p.probs, p.log_probs, p.target, p.pred)))
        conf, hit = p.confidence, p.correct
        top = _binned(bin_index(conf, self.n_bins), self.n_bins, conf, hit)
        cls = classwise_sums(p, self.n_bins)
        p_y_log = p.log_probs.gather(1, p.target.unsqueeze(1)).squeeze(1)
        self.count += len(p)
        for buf, add in zip(
            (self.bin_count, self.bin_confidence, self.bin_correct), top, strict=True
        ):
            buf += add
        for buf, add in zip((self.class_count, self.class_prob, self.class_hit), cls, strict=True):
            buf += add
        self.smooth_residual += deposit(conf, conf - hit)
        self.smooth_mass += deposit(conf, torch.ones_like(conf))
        self.brier_total += brier_sum(p)
        self.nll_total -= p_y_log.sum()
        self.correct_total += hit.sum()

    def reset(self) -> None:
        for buf in self.buffers():
            buf.zero_()

    def _check_compatible(self, other: object, where: str) -> CalibrationMetrics:
        if not isinstance(other, CalibrationMetrics) or (
            other.num_classes,
            other.n_bins,
            other.input,
        ) != (self.num_classes, self.n_bins, self.input):
            fail(
                where,
                "other",
                f"a CalibrationMetrics with num_classes={self.num_classes}, "
                f"n_bins={self.n_bins}, input={self.input!r}",
                repr(other),
            )
        return other

    @torch.no_grad()
    def merge(self, other: CalibrationMetrics) -> CalibrationMetrics:
        """Add the statistics of `other` (e.g. another worker's) to this one, in place."""
        other = self._check_compatible(other, "CalibrationMetrics.merge")
        theirs = dict(other.named_buffers())
        for name, buf in self.named_buffers():
            buf += theirs[name].to(buf.device)
        return self

    def __add__(self, other: CalibrationMetrics) -> CalibrationMetrics:
        self._check_compatible(other, "CalibrationMetrics.__add__")
        out = CalibrationMetrics(self.num_classes, n_bins=self.n_bins, input=self.input)
        out = out.to(self.count.device)
        return out.merge(self).merge(other)

    @torch.no_grad()
    def synced(self, group: Any = None) -> CalibrationMetrics:
        """A copy holding the sum of every rank's statistics (one all-reduce of a flat
        float64 vector); this object is unchanged, so calling it twice counts nothing
        twice. Every rank of ``group`` must call it."""
        _check_group_ready("CalibrationMetrics.synced")
        bufs = list(self.buffers())
        flat = torch.cat([b.reshape(-1) for b in bufs])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
        out = CalibrationMetrics(self.num_classes, n_bins=self.n_bins, input=self.input)
        out = out.to(flat.device)
        offset = 0
        for buf in out.buffers():
            size = buf.numel()
            buf.copy_(flat[offset : offset + size].view_as(buf))
            offset += size
        return out

    def reliability(self) -> ReliabilityBins:
        """The accumulated top-label reliability bins."""
        return ReliabilityBins.from_tensors(self.bin_count, self.bin_confidence, self.bin_correct)

    def compute(self) -> dict[str, float]:
        """Every metric of the accumulated batches (NaN before the first sample):
        `ece`, `mce`, `classwise_ece`, `smooth_ece`, `brier`, `nll`, `accuracy`, `n`."""
        n = float(self.count)
        if n == 0:
            nan = float("nan")
            out = dict.fromkeys(("ece", "mce", "classwise_ece", "smooth_ece"), nan)
            return {**out, "brier": nan, "nll": nan, "accuracy": nan, "n": 0.0}
        bins = self.reliability()
        k = self.num_classes
        return {
            "ece": bins.ece,
            "mce": bins.mce,
            "classwise_ece": float((self.class_hit - self.class_prob).abs().sum() / (n * k)),
            "smooth_ece": smooth_ece_from_grid(self.smooth_residual, self.smooth_mass)[0],
            "brier": float(self.brier_total / n),
            "nll": float(self.nll_total / n),
            "accuracy": float(self.correct_total / n),
            "n": n,
        }


class AdaptiveECE:
    """Equal-mass (adaptive) ECE of a stream of batches; keeps every sample.

    Memory: one float64 confidence and one bool hit per sample, 9 bytes (about 9 MB per
    million samples), on the device of the inputs. `synced` gathers every rank's samples
    (variable counts are padded for the collective). See `adaptive_ece` for the bins.

    Example:
        >>> import torch
        >>> m = AdaptiveECE(n_bins=2, input="probs")
        >>> m.update(torch.tensor([[.95, .05], [.95, .05]]), torch.tensor([0, 1]))
        >>> m.update(torch.tensor([[.55, .45], [.45, .55]]), torch.tensor([0, 1]))
        >>> round(m.compute(), 6), len(m)
        (0.45, 4)
    """

    def __init__(self, *, n_bins: int = 15, input: str = "logits") -> None:
        self.n_bins = check_n_bins("AdaptiveECE", n_bins)
        self.input = check_input_format("AdaptiveECE", input)
        self._confidence: list[Tensor] = []
        self._correct: list[Tensor] = []

    def __len__(self) -> int:
        return sum(c.numel() for c in self._confidence)

    @property
    def nbytes(self) -> int:
        """Bytes held by the stored samples."""
        return sum(
            c.numel() * 8 + h.numel() for c, h in zip(self._confidence, self._correct, strict=True)
        )

    def update(self, scores: Any, target: Any) -> None:
        p = predictions("AdaptiveECE.update", scores, target, input=self.input)
        self._confidence.append(p.confidence)
        self._correct.append(p.pred == p.target)

    def reset(self) -> None:
        self._confidence, self._correct = [], []

    def samples(self) -> tuple[Tensor, Tensor]:
        """All stored (confidence float64, hit bool) pairs."""
        if not self._confidence:
            return torch.zeros(0, dtype=F64), torch.zeros(0, dtype=torch.bool)
        return torch.cat(self._confidence), torch.cat(self._correct)

    def merge(self, other: AdaptiveECE) -> AdaptiveECE:
        if not isinstance(other, AdaptiveECE) or (other.n_bins, other.input) != (
            self.n_bins,
            self.input,
        ):
            fail(
                "AdaptiveECE.merge",
                "other",
                f"an AdaptiveECE with n_bins={self.n_bins}, input={self.input!r}",
                repr(other),
            )
        self._confidence += other._confidence
        self._correct += other._correct
        return self

    def synced(self, group: Any = None) -> AdaptiveECE:
        """A copy holding every rank's samples (this object is unchanged)."""
        _check_group_ready("AdaptiveECE.synced")
        conf, hit = self.samples()
        world = dist.get_world_size(group)
        size = torch.tensor([conf.numel()], dtype=torch.int64, device=conf.device)
        sizes = [torch.zeros_like(size) for _ in range(world)]
        dist.all_gather(sizes, size, group=group)
        longest = int(max(int(s) for s in sizes))
        packed = torch.zeros(2, longest, dtype=F64, device=conf.device)
        packed[0, : conf.numel()] = conf
        packed[1, : conf.numel()] = hit.to(F64)
        gathered = [torch.zeros_like(packed) for _ in range(world)]
        dist.all_gather(gathered, packed, group=group)
        out = AdaptiveECE(n_bins=self.n_bins, input=self.input)
        for g, s in zip(gathered, sizes, strict=True):
            out._confidence.append(g[0, : int(s)])
            out._correct.append(g[1, : int(s)] > 0.5)
        return out

    def compute(self) -> float:
        conf, hit = self.samples()
        return adaptive_ece_from(conf, hit.to(F64), self.n_bins)

    def state_dict(self) -> Mapping[str, Any]:
        conf, hit = self.samples()
        return {"n_bins": self.n_bins, "input": self.input, "confidence": conf, "correct": hit}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if (state.get("n_bins"), state.get("input")) != (self.n_bins, self.input):
            fail(
                "AdaptiveECE.load_state_dict",
                "state",
                f"n_bins={self.n_bins}, input={self.input!r}",
                f"n_bins={state.get('n_bins')!r}, input={state.get('input')!r}",
            )
        self._confidence = [state["confidence"].to(F64)]
        self._correct = [state["correct"].bool()]
