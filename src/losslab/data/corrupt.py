"""Seeded, recorded label corruptions: label noise and class imbalance.

Noise (all samples kept, labels changed; ``rate`` is the noise rate in [0, 1]):

* ``uniform`` (symmetric, "flip" convention): with probability ``rate`` a label is
  replaced by one of the *other* K - 1 classes, uniformly, so the expected flip rate is
  ``rate``: T = (1 - rate) I + rate / (K - 1) (1 - I) (van Rooyen et al. 2015;
  Patrini et al. 2017, "Making deep neural networks robust to label noise").
* ``uniform_redraw`` (the LDR code's convention, ``utils.uniform_noise`` of
  Optimization-AI/ICML2023_LDR): with probability ``rate`` the label is redrawn from all K
  classes, itself included, so the expected flip rate is ``rate (K - 1) / K``:
  T = (1 - rate) I + rate / K.
* ``class_dependent`` (pair flip): with probability ``rate`` label y becomes ``m[y]``.
  The map ``m`` is the user's ``mapping`` if given; else the LDR code's pair swaps for
  ``dataset="letter"`` (B<->D, C<->G, E<->F, H<->N, I<->L, K<->X, M<->W, O<->Q, P<->R, U<->V)
  and ``dataset="vowel"`` (0<->1, 2<->3, 4<->5, 6<->7, 8<->9; class 10 kept); else
  y -> (y + 1) mod K (the LDR ``classDep_noise``, as in Han et al. 2018 "Co-teaching" pair
  flip). Classes that map to themselves never flip, so the measured rate can be below
  ``rate``.
* ``instance`` (instance-dependent): Xia et al. 2020, "Part-dependent label noise:
  towards instance-dependent label noise" (NeurIPS), Algorithm 2: per-sample flip rates
  q_i ~ N(rate, 0.1^2) truncated to [0, 1] (here rescaled so their mean is exactly
  ``rate``); per class y a Gaussian matrix W_y maps the (standardised, L2-normalised)
  features to K scores; the true class's score is masked, the flip mass q_i is shared
  by softmax over the other classes and 1 - q_i stays on y. Deviation, for memory with
  many classes: features are first reduced to at most ``INSTANCE_DIM`` dimensions by a
  seeded Gaussian random projection (Johnson-Lindenstrauss), W_y is drawn per class.

Given (the dataset's own noisy labels, no rate):

* ``given``: the training labels become the noisy labels that came with the data
  (``register_dataset(..., y_noisy=...)``, an npz ``y_noisy`` array or a table's
  ``--noisy-column``), e.g. the labels an official implementation generated; the clean
  labels stay for the clean-label training accuracy. Nothing is drawn, so every seed gets
  the same labels. It does not compose with an imbalance (the given labels belong to
  every training row).

Imbalance (labels unchanged, samples subsampled; ``rate`` is the imbalance ratio
rho = max/min class count, >= 1; n is the smallest class count of the input, class 0
is the head):

* ``long_tail``: n_k = floor(n rho^(-k / (K - 1))) (exponential profile of Cui et al. 2019
  "Class-balanced loss" and Cao et al. 2019 "LDAM", CIFAR-LT);
* ``step``: the last floor(K / 2) classes keep floor(n / rho) samples, the others n
  (Buda et al. 2018; Cao et al. 2019, mu = 0.5).

Composition (``IMBALANCE+NOISE``, e.g. ``long_tail:100+uniform:0.3``): the imbalance
subsamples by the clean labels, then the noise corrupts the kept labels, in that order
(the label noise of a long-tailed training set). At most one of each; the imbalance comes
first.

Every result records the kept indices, the corrupted labels, the measured noise rate
and the empirical clean -> noisy transition matrix. Test labels are never corrupted;
corrupt the training labels first, then split off validation (which then carries the
same corruption).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from .split import check_labels

NOISE_KINDS = ("uniform", "uniform_redraw", "class_dependent", "instance")
IMBALANCE_KINDS = ("long_tail", "step")
KINDS = ("none", "given", *NOISE_KINDS, *IMBALANCE_KINDS)
#: kinds without a rate
_RATELESS = ("none", "given")
INSTANCE_DIM = 64
INSTANCE_STD = 0.1

_LETTER_PAIRS = ("BD", "CG", "EF", "HN", "IL", "KX", "MW", "OQ", "PR", "UV")
_VOWEL_PAIRS = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))

_ALIASES = {
    "clean": "none",
    "symmetric": "uniform",
    "sym": "uniform",
    "redraw": "uniform_redraw",
    "ldr_uniform": "uniform_redraw",
    "pair": "class_dependent",
    "pairflip": "class_dependent",
    "asymmetric": "class_dependent",
    "asym": "class_dependent",
    "instance_dependent": "instance",
    "idn": "instance",
    "longtail": "long_tail",
    "lt": "long_tail",
    "exp": "long_tail",
}


def _pairs_to_map(pairs: tuple[tuple[int, int], ...], k: int) -> tuple[int, ...]:
    m = list(range(k))
    for a, b in pairs:
        m[a], m[b] = b, a
    return tuple(m)


#: The LDR code's pair maps (``utils.classDep_letter`` / ``classDep_vowel``), 0-based.
LDR_PAIR_MAPS: dict[str, tuple[int, ...]] = {
    "letter": _pairs_to_map(tuple((ord(p[0]) - 65, ord(p[1]) - 65) for p in _LETTER_PAIRS), 26),
    "vowel": _pairs_to_map(_VOWEL_PAIRS, 11),
}


@dataclass(frozen=True)
class CorruptionSpec:
    """What to corrupt: ``kind`` (see :data:`KINDS`), a ``rate`` and an optional pair map.

    ``rate`` is the noise rate for noise kinds and the imbalance ratio (>= 1) for
    ``long_tail`` / ``step``; ``mapping`` (class -> class) only for ``class_dependent``;
    ``then``: a noise spec applied to the labels an imbalance kind keeps.
    """

    kind: str
    rate: float = 0.0
    mapping: tuple[int, ...] | None = None
    then: CorruptionSpec | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or self.kind not in KINDS:
            raise ValueError(
                f"CorruptionSpec: kind expected one of {list(KINDS)}, got {self.kind!r}"
            )
        if isinstance(self.rate, bool) or not isinstance(self.rate, (int, float, np.number)):
            raise TypeError(f"CorruptionSpec: rate expected a float, got {self.rate!r}")
        rate = float(self.rate)
        object.__setattr__(self, "rate", rate)
        if not math.isfinite(rate):
            raise ValueError(f"CorruptionSpec: rate expected a finite float, got {self.rate!r}")
        if self.kind in _RATELESS and rate != 0.0:
            raise ValueError(
                f"CorruptionSpec: rate expected 0 for kind {self.kind!r}, got {rate!r}"
            )
        if self.kind in NOISE_KINDS and not 0.0 <= rate <= 1.0:
            raise ValueError(
                f"CorruptionSpec: rate expected a noise rate in [0, 1] for kind {self.kind!r}, "
                f"got {rate!r}"
            )
        if self.kind in IMBALANCE_KINDS and rate < 1.0:
            raise ValueError(
                "CorruptionSpec: rate expected an imbalance ratio >= 1 (max/min class count) "
                "for kind "
                f"{self.kind!r}, got {rate!r}"
            )
        if self.mapping is not None:
            if self.kind != "class_dependent":
                raise ValueError(
                    f"CorruptionSpec: mapping expected None for kind {self.kind!r} (only "
                    "'class_dependent' "
                    f"takes a map), got {self.mapping!r}"
                )
            try:
                mapping = tuple(int(v) for v in self.mapping)
            except (TypeError, ValueError) as e:
                raise TypeError(
                    "CorruptionSpec: mapping expected a sequence of class indices, got "
                    f"{self.mapping!r}"
                ) from e
            if any(isinstance(v, bool) or v < 0 for v in mapping) or not mapping:
                raise ValueError(
                    "CorruptionSpec: mapping expected non-negative class indices, got "
                    f"{self.mapping!r}"
                )
            object.__setattr__(self, "mapping", mapping)
        if self.then is not None:
            if self.kind not in IMBALANCE_KINDS:
                raise ValueError(
                    f"CorruptionSpec: then expected None for kind {self.kind!r} (only an "
                    f"imbalance kind {list(IMBALANCE_KINDS)} is followed by noise), got "
                    f"{self.then!r}"
                )
            if (
                not isinstance(self.then, CorruptionSpec)
                or self.then.kind not in NOISE_KINDS
                or self.then.then is not None
            ):
                raise ValueError(
                    f"CorruptionSpec: then expected a noise spec of a kind in "
                    f"{list(NOISE_KINDS)}, got {self.then!r}"
                )

    def map_kinds(self, fn: Callable[[str], str]) -> CorruptionSpec:
        """This spec with ``fn`` applied to the kind of each part (e.g. a protocol's
        reading of ``uniform``)."""
        then = None if self.then is None else self.then.map_kinds(fn)
        return replace(self, kind=fn(self.kind), then=then)

    @property
    def noise(self) -> CorruptionSpec | None:
        """The label-noise part: the spec itself for a noise kind, ``then`` for an
        imbalance kind, ``None`` without noise."""
        return self if self.kind in NOISE_KINDS else self.then

    def key(self) -> str:
        """Stable short string: ``clean``, ``uniform-0.4``, ``long_tail-100``,
        ``class_dependent-0.3-map<8 hex>`` for a user map."""
        if self.kind == "none":
            return "clean"
        if self.kind == "given":
            return "given"
        out = f"{self.kind}-{self.rate:g}"
        if self.mapping is not None:
            digest = hashlib.sha1(",".join(map(str, self.mapping)).encode()).hexdigest()
            out += f"-map{digest[:8]}"
        return out if self.then is None else f"{out}+{self.then.key()}"

    def __str__(self) -> str:
        if self.kind in _RATELESS:
            return "clean" if self.kind == "none" else "given"
        text = f"{self.kind}:{self.rate:g}"
        if self.mapping is not None:
            text += ":" + ",".join(map(str, self.mapping))
        return text if self.then is None else f"{text}+{self.then}"


def parse_corruption(text: str) -> CorruptionSpec:
    """Parse ``clean``, ``given``, ``KIND:RATE`` or ``class_dependent:RATE:M0,M1,...`` (user map),
    or an imbalance followed by noise, ``IMBALANCE:RATIO+NOISE:RATE``.

    Also accepted: ``KIND:RATE,M0,M1,...``, the key form ``KIND-RATE``, case and ``-``/``_``
    variants of the kind, and aliases (``symmetric``, ``pair``, ``asymmetric``, ``idn``,
    ``longtail``, ...). ``str(spec)`` parses back to an equal spec.

    Example:
        >>> str(parse_corruption("LongTail-100 + symmetric:0.30"))
        'long_tail:100+uniform:0.3'
    """
    if not isinstance(text, str):
        raise TypeError(
            f"parse_corruption: corruption expected a string like 'uniform:0.4', got {text!r}"
        )
    if "+" in text:
        parts = [_parse_one(p, text) for p in text.split("+")]
        if (
            len(parts) != 2
            or parts[0].kind not in IMBALANCE_KINDS
            or parts[1].kind not in NOISE_KINDS
        ):
            raise ValueError(
                "parse_corruption: corruption expected one imbalance then one noise, "
                f"'IMBALANCE:RATIO+NOISE:RATE' with IMBALANCE in {list(IMBALANCE_KINDS)} and "
                f"NOISE in {list(NOISE_KINDS)} (e.g. 'long_tail:100+uniform:0.3'), got {text!r}"
            )
        return replace(parts[0], then=parts[1])
    return _parse_one(text, text)


def _parse_one(part: str, text: str) -> CorruptionSpec:
    s = part.strip().lower()
    usage = (
        "parse_corruption: corruption expected 'clean' or 'KIND:RATE' with KIND in "
        f"{list(KINDS[1:])} "
        f"(e.g. 'uniform:0.4', 'class_dependent:0.3', 'long_tail:100'), got {text!r}"
    )
    head, sep, rest = s.partition(":")
    if not sep:  # key form KIND-RATE (kind names contain no '-')
        head, sep, rest = s.partition("-")
    head = head.strip().replace("-", "_")
    kind = _ALIASES.get(head, head)
    if kind not in KINDS:
        raise ValueError(usage)
    if kind in _RATELESS:
        if rest.strip() not in ("", "0", "0.0"):
            raise ValueError(usage)
        return CorruptionSpec(kind)
    if not sep or not rest.strip():
        raise ValueError(usage.replace(", got", f" (RATE after {kind!r}), got"))
    rate_text, _, map_text = rest.partition(":")
    parts = [p.strip() for p in rate_text.split(",") if p.strip()]
    if map_text:
        parts += [p.strip() for p in map_text.split(",") if p.strip()]
    try:
        rate = float(parts[0])
        mapping = tuple(int(p) for p in parts[1:]) or None
    except (ValueError, IndexError) as e:
        raise ValueError(usage) from e
    return CorruptionSpec(kind, rate, mapping)


@dataclass(frozen=True)
class CorruptionResult:
    """Outcome of :func:`corrupt`.

    ``indices``: kept samples (imbalance subsamples, noise keeps all), sorted;
    ``labels``: their corrupted labels (int64); ``actual_noise_rate``: fraction of kept
    labels that differ from the clean ones; ``transition``: (K, K) empirical clean ->
    noisy matrix, rows normalised (all-zero rows for classes with no kept sample).
    """

    indices: np.ndarray
    labels: np.ndarray
    actual_noise_rate: float
    transition: np.ndarray


def pair_map(
    num_classes: int, *, dataset: str | None = None, mapping: tuple[int, ...] | None = None
) -> np.ndarray:
    """Class map of ``class_dependent`` noise (user map > LDR map of ``dataset`` > y+1)."""
    if mapping is not None:
        m = np.asarray(mapping, np.int64)
        if len(m) != num_classes or m.max() >= num_classes:
            raise ValueError(
                f"pair_map: mapping expected {num_classes} class indices in [0, {num_classes}), "
                f"got {tuple(mapping)!r}"
            )
        return m
    if dataset in LDR_PAIR_MAPS:
        m = np.asarray(LDR_PAIR_MAPS[dataset], np.int64)
        if len(m) != num_classes:
            raise ValueError(
                f"pair_map: num_classes expected {len(m)} for the LDR pair map of dataset "
                f"{dataset!r}, got {num_classes}"
            )
        return m
    return (np.arange(num_classes) + 1) % num_classes


def expected_transition(
    spec: CorruptionSpec, num_classes: int, *, dataset: str | None = None
) -> np.ndarray:
    """The (K, K) transition matrix the noise model specifies (identity without noise;
    an imbalance followed by noise has the noise's matrix).

    Not defined for ``instance`` noise (it depends on the features) or ``given`` labels
    (they come with the data): ValueError.
    """
    k = _check_k(num_classes)
    eye = np.eye(k)
    if spec.kind == "given":
        raise ValueError(
            "expected_transition: spec.kind expected a kind with a fixed transition matrix "
            "(not 'instance' or 'given'), got 'given'"
        )
    if spec.noise is None:
        return eye
    spec = spec.noise
    r = spec.rate
    if spec.kind == "uniform":
        return (1 - r) * eye + r / (k - 1) * (1 - eye)
    if spec.kind == "uniform_redraw":
        return (1 - r) * eye + r / k
    if spec.kind == "class_dependent":
        m = pair_map(k, dataset=dataset, mapping=spec.mapping)
        t = (1 - r) * eye
        t[np.arange(k), m] += r
        return t
    raise ValueError(
        "expected_transition: spec.kind expected a kind with a fixed transition matrix, got "
        f"{spec.kind!r}"
    )


def corrupt(
    y: np.ndarray,
    spec: CorruptionSpec,
    *,
    num_classes: int,
    seed: int,
    dataset: str | None = None,
    X: np.ndarray | None = None,
    noisy_labels: np.ndarray | None = None,
) -> CorruptionResult:
    """Apply ``spec`` to clean training labels ``y`` (deterministic given ``seed``).

    ``noisy_labels``: the dataset's given noisy labels of the same rows (kind ``given``
    only; :attr:`losslab.data.Dataset.y_train_noisy`).
    """
    if not isinstance(spec, CorruptionSpec):
        raise TypeError(
            f"corrupt: spec expected a CorruptionSpec (see parse_corruption), got {spec!r}"
        )
    labels = check_labels(y, where="corrupt")
    k = _check_k(num_classes)
    if labels.size and labels.max() >= k:
        raise ValueError(
            f"corrupt: y expected labels in [0, {k}) for num_classes={k}, got max {labels.max()}"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"corrupt: seed expected an int, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    keep = np.arange(len(labels), dtype=np.int64)
    if spec.kind in IMBALANCE_KINDS:
        keep = _imbalance_indices(labels, spec, k, rng)
    noise = spec.noise
    if spec.kind == "given":
        noisy = _given_labels(noisy_labels, len(labels), k)
    elif noise is None:
        noisy = labels[keep]
    else:
        # features follow the kept rows (instance noise reads them)
        Xk = X if X is None or keep.size == labels.size else np.asarray(X)[keep]
        noisy = _noisy_labels(labels[keep], noise, k, rng, dataset, Xk)
    clean = labels[keep]
    noisy = noisy.astype(np.int64)
    return CorruptionResult(
        indices=keep,
        labels=noisy,
        actual_noise_rate=float((noisy != clean).mean()) if len(clean) else 0.0,
        transition=empirical_transition(clean, noisy, k),
    )


def _given_labels(noisy_labels: np.ndarray | None, n: int, k: int) -> np.ndarray:
    if noisy_labels is None:
        raise ValueError(
            "corrupt: noisy_labels expected the dataset's given noisy labels for corruption "
            "'given', got None (the dataset has none: register it with y_noisy=..., an npz "
            "'y_noisy' array or --noisy-column)"
        )
    given = check_labels(noisy_labels, name="noisy_labels", where="corrupt")
    if len(given) != n:
        raise ValueError(
            f"corrupt: noisy_labels expected {n} labels (one per row), got {len(given)}"
        )
    if n and given.max() >= k:
        raise ValueError(
            f"corrupt: noisy_labels expected labels in [0, {k}), got max {given.max()}"
        )
    return given.copy()


def _noisy_labels(
    labels: np.ndarray,
    spec: CorruptionSpec,
    k: int,
    rng: np.random.Generator,
    dataset: str | None,
    X: np.ndarray | None,
) -> np.ndarray:
    """``labels`` corrupted by the noise kind of ``spec``."""
    n = len(labels)
    r = spec.rate
    if spec.kind == "uniform":
        flip = rng.random(n) < r
        offset = rng.integers(1, k, size=n)
        noisy = np.where(flip, (labels + offset) % k, labels)
    elif spec.kind == "uniform_redraw":
        redraw = rng.random(n) < r
        noisy = np.where(redraw, rng.integers(0, k, size=n), labels)
    elif spec.kind == "class_dependent":
        m = pair_map(k, dataset=dataset, mapping=spec.mapping)
        flip = rng.random(n) < r
        noisy = np.where(flip, m[labels], labels)
    else:  # instance
        noisy = _instance_noise(labels, X, r, k, rng)
    return noisy


def empirical_transition(clean: np.ndarray, noisy: np.ndarray, num_classes: int) -> np.ndarray:
    """Row-normalised counts of clean -> noisy label pairs (zero rows for absent classes)."""
    counts = np.zeros((num_classes, num_classes))
    np.add.at(counts, (clean, noisy), 1.0)
    totals = counts.sum(1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def _check_k(num_classes: int) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise TypeError(f"corrupt: num_classes expected an int >= 2, got {num_classes!r}")
    if num_classes < 2:
        raise ValueError(f"corrupt: num_classes expected an int >= 2, got {num_classes!r}")
    return int(num_classes)


def _instance_noise(
    y: np.ndarray, X: np.ndarray | None, rate: float, k: int, rng: np.random.Generator
) -> np.ndarray:
    if X is None:
        raise ValueError(
            "corrupt: X expected the (n, d) training features for kind 'instance', got None"
        )
    feats = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    if len(feats) != len(y):
        raise ValueError(f"corrupt: X expected {len(y)} rows (one per label), got {len(feats)}")
    n = len(y)
    if rate == 0.0 or n == 0:
        return y.copy()
    # flip rates: truncated normal around `rate`, rescaled to mean exactly `rate`
    q = rng.normal(rate, INSTANCE_STD, size=n)
    bad = (q < 0) | (q > 1)
    while bad.any():
        q[bad] = rng.normal(rate, INSTANCE_STD, size=int(bad.sum()))
        bad = (q < 0) | (q > 1)
    for _ in range(10):
        q = np.clip(q * (rate / q.mean()), 0.0, 1.0)
    # standardise, random projection to <= INSTANCE_DIM dims, L2-normalise rows
    sd = feats.std(0)
    feats = (feats - feats.mean(0)) / np.where(sd > 0, sd, 1.0)
    d = feats.shape[1]
    if d > INSTANCE_DIM:
        feats = feats @ rng.normal(0.0, 1.0 / math.sqrt(INSTANCE_DIM), size=(d, INSTANCE_DIM))
    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    feats = feats / np.where(norms > 0, norms, 1.0)
    noisy = y.copy()
    u = rng.random(n)
    for c in range(k):
        rows = np.flatnonzero(y == c)
        w = rng.normal(0.0, 1.0, size=(feats.shape[1], k))
        if len(rows) == 0:
            continue
        scores = feats[rows] @ w
        scores[:, c] = -np.inf
        scores -= scores.max(1, keepdims=True)
        p = np.exp(scores)
        p *= (q[rows] / p.sum(1))[:, None]
        p[:, c] = 1.0 - q[rows]
        cdf = np.cumsum(p, axis=1)
        noisy[rows] = np.minimum((cdf < (u[rows] * cdf[:, -1])[:, None]).sum(1), k - 1)
    return noisy


def _imbalance_indices(
    y: np.ndarray, spec: CorruptionSpec, k: int, rng: np.random.Generator
) -> np.ndarray:
    counts = np.bincount(y, minlength=k)
    present = counts[counts > 0]
    if len(present) == 0:
        return np.zeros(0, np.int64)
    n_ref = int(present.min())
    rho = spec.rate
    if spec.kind == "long_tail":
        target = [math.floor(n_ref * rho ** (-c / (k - 1))) for c in range(k)]
    else:  # step
        n_minor = k // 2
        target = [n_ref if c < k - n_minor else math.floor(n_ref / rho) for c in range(k)]
    target = [max(t, 1) for t in target]
    kept = []
    for c in range(k):
        idx = np.flatnonzero(y == c)
        if len(idx):
            kept.append(rng.permutation(idx)[: target[c]])
    return np.sort(np.concatenate(kept)).astype(np.int64)
