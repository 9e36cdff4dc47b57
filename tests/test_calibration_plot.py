"""losslab.plot: the figures the CLI writes and the benchmark report reuses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")

from losslab.diagnostics import simplex_etf
from losslab.metrics import ReliabilityBins, reliability
from losslab.plot import (
    collapse_figure,
    confidence_histogram,
    reliability_diagram,
    reliability_figure,
)


def _bins(seed=0, n=300):
    g = torch.Generator().manual_seed(seed)
    return reliability(torch.randn(n, 4, generator=g) * 3, torch.randint(4, (n,), generator=g))


def test_reliability_diagram_draws_the_non_empty_bins(tmp_path):
    bins = _bins()
    fig = reliability_diagram(bins, title="split")
    ax = fig.axes[0]
    full = int((bins.count > 0).sum())
    heights = [p.get_height() for p in ax.patches[:full]]
    np.testing.assert_allclose(heights, bins.accuracy[bins.count > 0])
    assert f"ECE {bins.ece:.3f}" in ax.get_title() and "split" in ax.get_title()
    fig.savefig(tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 1000


def test_histogram_fractions_and_lines():
    bins = _bins(1)
    ax = confidence_histogram(bins).axes[0]
    np.testing.assert_allclose([p.get_height() for p in ax.patches], bins.count / bins.total)
    labels = [line.get_label() for line in ax.get_lines()]
    assert any(lab.startswith("accuracy") for lab in labels)
    assert any(lab.startswith("mean confidence") for lab in labels)


def test_pooled_and_side_by_side_and_into_given_axes():
    pooled = _bins(2) + _bins(3)
    fig = reliability_figure({"a": _bins(2), "pooled": pooled}, title="two")
    assert len(fig.axes) == 4 and fig.axes[2].get_title() == "pooled"
    single = reliability_figure(pooled)
    assert len(single.axes) == 2
    from matplotlib.figure import Figure

    host = Figure()
    ax = host.add_subplot()
    assert reliability_diagram(pooled, ax=ax) is host


def test_empty_bins_and_bad_input():
    empty = ReliabilityBins.from_dict(
        {"count": [0] * 5, "sum_confidence": [0] * 5, "sum_correct": [0] * 5}
    )
    assert reliability_diagram(empty).axes[0].get_title() == "no samples"
    confidence_histogram(empty)
    with pytest.raises(TypeError, match=r"^reliability_diagram: bins expected ReliabilityBins"):
        reliability_diagram({"count": [1]})
    with pytest.raises(ValueError, match=r"^reliability_figure: bins expected at least one"):
        reliability_figure({})


def test_no_pyplot_state_is_left_behind():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    reliability_figure(_bins())
    assert plt.get_fignums() == before


def test_collapse_figure():
    means = simplex_etf(3).T
    labels = torch.arange(3).repeat(4)
    fig = collapse_figure(means[labels].numpy(), labels.numpy())
    assert [ax.get_title() for ax in fig.axes[:2]] == ["class means", "simplex ETF"]
    image = fig.axes[0].get_images()[0].get_array()
    np.testing.assert_allclose(image, fig.axes[1].get_images()[0].get_array(), atol=1e-12)
    with pytest.raises(ValueError, match=r"^neural_collapse: labels expected every class"):
        collapse_figure(
            means[labels], torch.zeros(12, dtype=torch.long).index_fill_(0, torch.tensor([0]), 2)
        )
