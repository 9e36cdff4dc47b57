"""The examples in the docstrings of the calibration metrics, calibrators, diagnostics
and figures run and give the values they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "losslab.metrics.calibration",
    "losslab.metrics.classification",
    "losslab.metrics.stateful",
    "losslab.calibration.scaling",
    "losslab.calibration.ca",
    "losslab.calibration.evaluate",
    "losslab.diagnostics",
    "losslab.plot",
    "losslab.bench.cell_metrics",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    if name == "losslab.plot":
        pytest.importorskip("matplotlib")
    module = importlib.import_module(name)
    tests = doctest.DocTestFinder(exclude_empty=True).find(module, name)
    examples = [t for t in tests if t.examples]
    assert examples, f"{name} has no runnable example"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for t in examples:
        runner.run(t)
    assert runner.failures == 0, f"{name}: {runner.failures} docstring example(s) failed"
