import numpy as np
import pytest

from losslab.metrics import expected_calibration_error, reliability_bins, top_label_confidence


def test_ece_oracle():
    assert expected_calibration_error([0.95, 0.95, 0.55, 0.55], [1, 0, 1, 1]) == pytest.approx(0.45)


def test_ece_edges_go_to_right_closed_bins():
    bins = reliability_bins([0.0, 1.0, 1 / 15, 2 / 15], [1, 1, 1, 1], n_bins=15)
    assert bins.count[0] == 2  # 0 and 1/15 both land in (0, 1/15] (0 joins the first bin)
    assert bins.count[1] == 1
    assert bins.count[-1] == 1  # c = 1 stays in the last bin, no hidden extra bin
    assert bins.count.sum() == 4


def test_perfectly_calibrated_is_near_zero():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0, 1, 200_000)
    acc = rng.uniform(0, 1, conf.size) < conf
    assert expected_calibration_error(conf, acc) < 0.01


def test_bins_add_and_roundtrip():
    a = reliability_bins([0.2, 0.9], [0, 1])
    b = reliability_bins([0.95], [0])
    s = a + b
    assert s.count.sum() == 3
    assert type(s).from_dict(s.to_dict()).ece == pytest.approx(s.ece)
    assert s.ece == pytest.approx(expected_calibration_error([0.2, 0.9, 0.95], [0, 1, 0]))


def test_from_logits():
    z = np.log(np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.45, 0.55]]))
    conf, correct = top_label_confidence(z, np.array([0, 1, 0, 1]))
    assert conf == pytest.approx([0.95, 0.95, 0.55, 0.55])
    assert expected_calibration_error(conf, correct) == pytest.approx(0.45)


def test_bad_confidence():
    with pytest.raises(ValueError, match="confidence"):
        reliability_bins([1.5], [1])
    with pytest.raises(ValueError, match="n_bins"):
        reliability_bins([0.5], [1], n_bins=0)
