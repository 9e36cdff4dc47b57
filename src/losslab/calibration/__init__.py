"""Post-hoc calibration: temperature, vector, matrix and Dirichlet scaling, the
correctness-aware (CA) calibrator and its loss, and the before/after evaluation the
benchmark records."""

from losslab.calibration._base import Calibrator
from losslab.calibration.ca import (
    CALossComponents,
    CorrectnessAwareCalibrator,
    ca_features,
    ca_loss,
)
from losslab.calibration.evaluate import (
    TemperatureScalingResult,
    evaluate_temperature_scaling,
)
from losslab.calibration.scaling import (
    DirichletScaling,
    MatrixScaling,
    TemperatureScaling,
    VectorScaling,
)

__all__ = [
    "CALossComponents",
    "Calibrator",
    "CorrectnessAwareCalibrator",
    "DirichletScaling",
    "MatrixScaling",
    "TemperatureScaling",
    "TemperatureScalingResult",
    "VectorScaling",
    "ca_features",
    "ca_loss",
    "evaluate_temperature_scaling",
]
