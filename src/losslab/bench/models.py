"""Benchmark models: an MLP for feature vectors, a small CNN for 28x28 images, and the
LDR code's tanh MLP (the model of the protocol that reproduces that code)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from losslab.bench.protocol import MODEL_KINDS, problem

__all__ = ["LDRMLP", "MLP", "SmallCNN", "build_model", "resolve_model_kind"]


class MLP(nn.Module):
    """``Linear -> ReLU`` blocks with batch norm, then a linear classifier."""

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int] = (256, 256)):
        super().__init__()
        layers: list[nn.Module] = []
        d = in_features
        for h in hidden:
            layers += [nn.Linear(d, h), nn.BatchNorm1d(h), nn.ReLU()]
            d = h
        layers.append(nn.Linear(d, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class LDRMLP(nn.Module):
    """The LDR code's ``FFNN``: two tanh hidden layers of width ``min(d, K)``,
    Xavier-normal weights (biases keep PyTorch's default init, as there)."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        h = min(in_features, num_classes)
        self.net = nn.Sequential(
            nn.Linear(in_features, h),
            nn.Tanh(),
            nn.Linear(h, h),
            nn.Tanh(),
            nn.Linear(h, num_classes),
        )
        for m in self.net:
            if isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class SmallCNN(nn.Module):
    """Two conv blocks (32, 64 channels, 3x3, batch norm, ReLU, 2x2 max-pool) and a
    128-unit head; about 0.4 M parameters for 28x28 inputs."""

    def __init__(self, input_shape: Sequence[int], num_classes: int):
        super().__init__()
        if len(input_shape) == 2:
            c, h, w = 1, int(input_shape[0]), int(input_shape[1])
        elif len(input_shape) == 3:
            c, h, w = (int(v) for v in input_shape)
        else:
            raise ValueError(
                problem("SmallCNN", "input_shape", "(H, W) or (C, H, W)", tuple(input_shape))
            )
        self.input_shape = (c, h, w)
        self.features = nn.Sequential(
            nn.Conv2d(c, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        flat = 64 * (h // 4) * (w // 4)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, 128), nn.ReLU(), nn.Linear(128, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.reshape(x.shape[0], *self.input_shape)))


def resolve_model_kind(kind: str, modality: str, input_shape: Sequence[int]) -> str:
    """``auto`` picks the CNN for images of at least 16x16 pixels and the MLP otherwise
    (8x8 ``digits`` is too small for two pooling stages)."""
    if kind not in MODEL_KINDS:
        raise ValueError(problem("build_model", "kind", f"one of {list(MODEL_KINDS)}", repr(kind)))
    if kind != "auto":
        return kind
    spatial = [int(v) for v in input_shape][-2:]
    if modality == "image" and len(spatial) == 2 and min(spatial) >= 16:
        return "cnn"
    return "mlp"


def build_model(
    kind: str,
    input_shape: Sequence[int],
    num_classes: int,
    *,
    modality: str = "tabular",
) -> nn.Module:
    """Build a model for inputs of ``input_shape`` (without the batch axis). Seed torch
    before calling: the initialisation draws from the global generator."""
    kind = resolve_model_kind(kind, modality, input_shape)
    in_features = math.prod(int(v) for v in input_shape)
    if kind == "mlp":
        return MLP(in_features, num_classes)
    if kind == "ldr_mlp":
        return LDRMLP(in_features, num_classes)
    return SmallCNN(input_shape, num_classes)
