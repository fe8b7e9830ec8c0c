"""Models: an MLP and a small CNN, each behind a standardisation layer so that
preprocessing travels inside the exported graph."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

Architecture = Literal["mlp", "cnn"]


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the network (saved in the checkpoint)."""

    architecture: Architecture
    n_features: int
    n_outputs: int
    width: int = 128
    depth: int = 2
    dropout: float = 0.1
    image_shape: tuple[int, int, int] | None = None  # [C, H, W] for the CNN

    def to_dict(self) -> dict:
        return asdict(self)


class Standardize(nn.Module):
    """(x - mean) / std with constants from the training split, stored as buffers."""

    def __init__(self, mean: np.ndarray, std: np.ndarray):
        super().__init__()
        std = np.where(std < 1e-8, 1.0, std)  # constant features (blank pixels) pass through centred
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class MLP(nn.Module):
    def __init__(self, n_features: int, n_outputs: int, width: int, depth: int, dropout: float):
        super().__init__()
        layers: list[nn.Module] = []
        size = n_features
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.ReLU(), nn.Dropout(dropout)]
            size = width
        layers.append(nn.Linear(size, n_outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, F] -> [N, K]
        return self.net(x)


class SmallCNN(nn.Module):
    """Two 3x3 conv blocks and global average pooling over flattened images."""

    def __init__(self, image_shape: tuple[int, int, int], n_outputs: int, width: int, dropout: float):
        super().__init__()
        c = image_shape[0]
        self.image_shape = tuple(image_shape)
        self.features = nn.Sequential(
            nn.Conv2d(c, width // 2, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width // 2, width, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, n_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, C*H*W] -> [N, K]
        return self.head(self.features(x.reshape(-1, *self.image_shape)))


def build_model(spec: ModelSpec, mean: np.ndarray, std: np.ndarray) -> nn.Sequential:
    if spec.width < 2 or spec.depth < 0 or not 0 <= spec.dropout < 1:
        raise ValueError("--width must be >= 2, --depth >= 0 and --dropout in [0, 1)")
    if spec.architecture == "mlp":
        net: nn.Module = MLP(spec.n_features, spec.n_outputs, spec.width, spec.depth, spec.dropout)
    elif spec.architecture == "cnn":
        if spec.image_shape is None:
            raise ValueError("the cnn model needs image-shaped data (e.g. digits); use --architecture mlp for tabular data")
        net = SmallCNN(spec.image_shape, spec.n_outputs, spec.width, spec.dropout)
    else:
        raise ValueError(f"model must be mlp or cnn, got {spec.architecture!r}")
    return nn.Sequential(Standardize(mean, std), net)
