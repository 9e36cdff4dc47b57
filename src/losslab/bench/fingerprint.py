"""Code fingerprints: a hash of the source text that decides a cell's result.

A cell's key hashes its configuration *and* the fingerprint of the code that trains it,
so a stored result is reused only while that code is unchanged; after a change the cell
has a new key, trains again, and the old row stays in the store unused (*stale*).

The fingerprint has four parts, each the SHA-256 of source text (never of object ids,
paths or timestamps, so it is the same in every process and on every machine that has
the same code):

* ``loss``: the file(s) that define the registered loss: its kernel and, for stateful
  losses, the functions that update or refresh its state, plus their qualified names,
  and every module of ``losslab.functional`` and ``losslab.kinds`` those files use,
  followed through the names they import (a fused ``autograd.Function`` in
  ``functional/_fused.py`` decides the value as much as the kernel that calls it);
* ``trainer``: ``losslab/bench/trainer.py``, with what it measures once on the reported
  weights (``cell_metrics.py``) and how a cell fills loss configs from its training
  labels (``loss_config.py``); for cells of a retrieval protocol also
  ``losslab/bench/embedding.py`` (their split, batches, heads and trainer) and
  ``losslab/metrics/retrieval.py``;
* ``model``: ``losslab/bench/models.py``;
* ``data``: the dataset's catalogue entry (source, split, checksum of the arrays), the
  corruption and split code, and the functions of the bench that build a cell's split.

Example:
    >>> from losslab.bench.fingerprint import code_parts, fingerprint
    >>> sorted(code_parts("ce", "digits"))
    ['data', 'loss', 'model', 'trainer']
    >>> len(fingerprint("ce", "digits"))
    16
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import losslab
from losslab.bench.protocol import DEFAULT_PROTOCOL, PROTOCOLS

__all__ = ["PARTS", "changed_parts", "code_parts", "fingerprint"]

#: the parts of a fingerprint, in the order they are hashed together
PARTS = ("loss", "trainer", "model", "data")

#: (loss name, kernel and state functions, dataset) -> parts; a loss registered again
#: under the same name has new function objects and so gets a new entry
_CACHE: dict[tuple[Any, ...], dict[str, str]] = {}


def _digest(*texts: str) -> str:
    h = hashlib.sha256()
    for t in texts:
        # a checkout with CRLF line endings holds the same code
        h.update(t.replace("\r\n", "\n").encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _module_text(module: str) -> str:
    path = inspect.getsourcefile(importlib.import_module(module))
    return Path(path).read_text() if path else ""


def _function_text(fn: Callable[..., Any]) -> str:
    """The text of the file that defines ``fn`` (read now, so an edited file counts)
    and its qualified name; code without a file (``exec``) by its bytecode."""
    name = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', '')}"
    try:
        path = inspect.getsourcefile(fn)
    except TypeError:
        path = None
    if path and Path(path).is_file():
        return name + "\n" + Path(path).read_text()
    code = getattr(fn, "__code__", None)
    if code is None:
        return name
    return name + "\n" + code.co_code.hex() + repr(code.co_consts)


#: packages whose modules decide a loss's value; the package ``__init__`` files only
#: re-export, so they are not followed (they would pull in every loss)
_LOSS_CODE = ("losslab.functional.", "losslab.kinds.")


def _helper_modules(fns: tuple[Callable[..., Any], ...]) -> list[str]:
    """The ``losslab.functional``/``losslab.kinds`` modules reachable from the modules
    defining ``fns`` through their global names, in a stable order (the defining modules
    themselves excluded: :func:`_function_text` reads their files)."""
    own = {getattr(f, "__module__", "") for f in fns}
    seen: set[str] = set()
    todo = [m for m in own if m in sys.modules]
    while todo:
        for value in vars(sys.modules[todo.pop()]).values():
            name = value.__name__ if inspect.ismodule(value) else getattr(value, "__module__", None)
            if (
                isinstance(name, str)
                and name.startswith(_LOSS_CODE)
                and name not in seen
                and name in sys.modules
            ):
                seen.add(name)
                todo.append(name)
    return sorted(seen - own)


def _loss_text(fns: tuple[Callable[..., Any], ...]) -> str:
    texts = sorted({_function_text(f) for f in fns})
    texts += [f"{m}\n{_module_text(m)}" for m in _helper_modules(fns)]
    return _digest(*texts)


def _loss_functions(loss: str) -> tuple[Callable[..., Any], ...]:
    from losslab.bench.embedding import HEAD_METHODS

    if loss in HEAD_METHODS:  # a retrieval method that is a head, not a registered loss
        return (HEAD_METHODS[loss].forward,)
    spec = losslab.loss_info(loss)
    state = spec.state
    extra = () if state is None else (state.init, state.update, state.refresh, state.refresh_due)
    return (spec.kernel, *(f for f in extra if f is not None))


def _data_text(dataset: str) -> str:
    from losslab.bench.cell import build_split
    from losslab.bench.protocol import Protocol
    from losslab.data import get_info

    info = get_info(dataset)
    entry = {
        "name": info.name,
        "num_classes": info.num_classes,
        "source": info.source,
        "split": info.split,
        "checksum": getattr(info, "expected_sha256", None),
    }
    return "\n".join(
        [
            json.dumps(entry, sort_keys=True, default=str),
            _module_text("losslab.data.corrupt"),
            _module_text("losslab.data.split"),
            inspect.getsource(build_split),
            inspect.getsource(Protocol.feature_scaling),
            inspect.getsource(Protocol.noise_kind),
            inspect.getsource(Protocol.noise_seed),
            inspect.getsource(Protocol.split),
        ]
    )


def _trainer_modules(protocol: str) -> tuple[str, ...]:
    common = ("losslab.bench.trainer", "losslab.bench.cell_metrics", "losslab.bench.loss_config")
    proto = PROTOCOLS.get(protocol)
    if proto is not None and proto.task == "retrieval":
        return (*common, "losslab.bench.embedding", "losslab.metrics.retrieval")
    return common


def code_parts(loss: str, dataset: str, protocol: str = DEFAULT_PROTOCOL) -> dict[str, str]:
    """The fingerprint of each part (``PARTS``) for a cell of ``loss`` on ``dataset``
    under ``protocol``.

    Computed once per process for each registered loss and dataset; a loss registered
    again (new kernel) is hashed again.
    """
    fns = _loss_functions(loss)
    modules = _trainer_modules(protocol)
    cache_key = (loss, fns, dataset, modules)
    if cache_key not in _CACHE:
        _CACHE[cache_key] = {
            "loss": _loss_text(fns),
            "trainer": _digest(*(_module_text(m) for m in modules)),
            "model": _digest(_module_text("losslab.bench.models")),
            "data": _digest(_data_text(dataset)),
        }
    return dict(_CACHE[cache_key])


def fingerprint(loss: str, dataset: str, protocol: str = DEFAULT_PROTOCOL) -> str:
    """One hash of :func:`code_parts` (16 hex digits)."""
    parts = code_parts(loss, dataset, protocol)
    return _digest(*(f"{p}={parts[p]}" for p in PARTS))


def changed_parts(
    stored: Mapping[str, str] | None, loss: str, dataset: str, protocol: str = DEFAULT_PROTOCOL
) -> list[str]:
    """The parts whose code differs from ``stored`` (a row's ``code``); every part when
    the row predates fingerprints (``None``)."""
    now = code_parts(loss, dataset, protocol)
    if not stored:
        return list(PARTS)
    return [p for p in PARTS if stored.get(p) != now[p]]
