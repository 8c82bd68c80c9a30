"""Attentional Alignment Network (AAN): direct regression with multi-scale spatial attention.

Yue, Miao, Wang, Zhang, Zhen, Cao, "Attentional Alignment Network", BMVC 2018 (text:
``../shared/papers``; no public implementation exists, the paper is the specification, see
``../shared/papers/NOTES.md``).

Layout (paper Sec. 3.1 and 4.2): a small stem (a stride-2 conv: our crops are 112 px), then four
building blocks, each a residual bottleneck block (He et al., "Deep Residual Learning for Image
Recognition", CVPR 2016) followed by an attention block -- a 1x1 conv with BN giving a
one-channel map ``M`` normalised by a sigmoid "into the range of [0, 1]"; block output
``(1 + M) * H`` (paper eq. 1) -- with a 2x2 max-pool after each block (four pooling layers).
The paper also lists a ReLU in the attention block; a ReLU before the sigmoid would confine
``M`` to [0.5, 1), against the stated range, so by default the ReLU is left out
(``AANConfig.attention="sigmoid"``); ``"relu-sigmoid"`` keeps it (the shipped ``aan`` models
of earlier versions, and any checkpoint whose config lacks the key). During training an
intermediate head predicts the landmarks from each attended map (intermediate supervision,
same ground truth); the heads are not used by :meth:`AAN.forward`, so they are absent from
the exported graph. The last map feeds the nonlinear embedding ``cos(W x + b)`` of 256 units
(paper eq. 4, learned random Fourier features, Sec. 3.3) and a linear layer to the 136
coordinates, its bias set to the template so training starts at the mean shape. A confidence
head (ours) reads the 256-d embedding.

Coordinates: landmarks ``(N, 68, 2)`` float32, (x, y) crop pixels, 0-based, in the crop made by
:mod:`facetrack.tracker.geometry` (``S`` = ``input_size``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from facetrack.tracker.geometry import template


@dataclass(frozen=True)
class AANConfig:
    """Architecture of an AAN model.

    ``stem_channels``: channels of the stride-2 3x3 stem conv; ``block_channels``: output
    channels of the four bottleneck blocks (inner width ``out // bottleneck_ratio``);
    ``embed_dim``: units of the cosine embedding (256 in the paper); ``head_pool``: side of
    the average-pooled map each intermediate head reads; ``attention``: ``"sigmoid"`` (M in
    (0, 1), the paper's stated range) or ``"relu-sigmoid"`` (M in [0.5, 1)); see the module
    docstring. The defaults give ~0.97 M inference weights (plus ~1.2 M in the training-only
    heads), ~1 ms in ONNX Runtime on 2 CPU threads.
    ``output_units``: ``"px"`` (the shipped model): the coordinate layers emit crop pixels and
    the trainer raises their learning rate (x8); ``"crop"``: they emit coordinates normalised to
    the crop (``px = S/2 * (1 + u)``) at the common learning rate; the initial function is the same.
    """

    arch: str = "aan"
    input_size: int = 112
    n_points: int = 68
    stem_channels: int = 32
    block_channels: tuple[int, int, int, int] = (64, 128, 160, 192)
    bottleneck_ratio: int = 4
    embed_dim: int = 256
    head_pool: int = 4
    attention: str = "sigmoid"
    output_units: str = "px"

    def __post_init__(self) -> None:
        if self.output_units not in ("px", "crop"):
            raise ValueError(f"AANConfig.output_units must be 'px' or 'crop', got {self.output_units!r}")
        if self.attention not in ("sigmoid", "relu-sigmoid"):
            raise ValueError(f"AANConfig.attention must be 'sigmoid' or 'relu-sigmoid', got {self.attention!r}")
        if len(self.block_channels) != 4:
            raise ValueError(f"AANConfig.block_channels needs 4 entries, got {self.block_channels}")
        if self.input_size < 32:
            raise ValueError(f"AANConfig.input_size={self.input_size} too small for a stem and four pools")

    @property
    def kind(self) -> str:
        """Model kind for metadata (``facetrack.engines.names.MODEL_IO``)."""
        return "aan"

    @property
    def final_side(self) -> int:
        """Side of the last pooled map (stem stride 2, then four ceil-mode 2x2 pools)."""
        side = (self.input_size + 1) // 2
        for _ in range(4):
            side = (side + 1) // 2
        return side


class Bottleneck(nn.Module):
    """Residual bottleneck block (He et al. 2016): 1x1 -> 3x3 -> 1x1 with BN, projection shortcut."""

    def __init__(self, c_in: int, c_out: int, ratio: int) -> None:
        super().__init__()
        mid = max(c_out // ratio, 8)
        self.conv1 = nn.Conv2d(c_in, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out)) if c_in != c_out else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + self.shortcut(x))


class Attention(nn.Module):
    """Spatial attention block: ``M = sigmoid(BN(conv1x1(H)))`` (``relu=True``:
    ``sigmoid(ReLU(BN(conv1x1(H))))``), one channel; returns ``(1 + M) * H`` (paper eq. 1)."""

    def __init__(self, channels: int, relu: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(1)
        self.relu = relu

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        a = self.bn(self.conv(h))
        m = torch.sigmoid(F.relu(a) if self.relu else a)
        return (1.0 + m) * h


class CropUnits(nn.Module):
    """Coordinates normalised to the crop -> crop px: ``S/2 * (1 + u)`` (``AANConfig.output_units``)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.half = size / 2.0

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return (u + 1.0) * self.half

    def to_units(self, px: torch.Tensor) -> torch.Tensor:
        return px / self.half - 1.0


class LandmarkHead(nn.Module):
    """Intermediate supervision head: avg-pool to ``pool x pool``, linear to 136 (bias = template;
    with ``units`` the linear layer emits crop-normalised coordinates, same initial function)."""

    def __init__(self, channels: int, pool: int, bias: torch.Tensor, units: CropUnits | None = None) -> None:
        super().__init__()
        self.pool = pool
        self.units = units
        self.fc = nn.Linear(channels * pool * pool, bias.numel())
        with torch.no_grad():
            self.fc.weight.mul_(0.1 / (units.half if units is not None else 1.0))
            self.fc.bias.copy_(units.to_units(bias) if units is not None else bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(F.adaptive_avg_pool2d(x, self.pool).flatten(1))
        if self.units is not None:
            y = self.units(y)
        return y.reshape(-1, self.fc.out_features // 2, 2)


class AAN(nn.Module):
    """Attentional Alignment Network (Yue et al., BMVC 2018); see the module docstring."""

    def __init__(self, cfg: AANConfig) -> None:
        super().__init__()
        self.config = cfg
        self.stem = nn.Sequential(
            nn.Conv2d(1, cfg.stem_channels, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(cfg.stem_channels),
            nn.ReLU(inplace=True),
        )
        bias = torch.from_numpy(template(cfg.input_size).copy()).reshape(-1)
        chans = (cfg.stem_channels, *cfg.block_channels)
        self.blocks = nn.ModuleList(Bottleneck(chans[i], chans[i + 1], cfg.bottleneck_ratio) for i in range(4))
        self.attention = nn.ModuleList(Attention(c, relu=cfg.attention == "relu-sigmoid") for c in cfg.block_channels)
        self.units = CropUnits(cfg.input_size) if cfg.output_units == "crop" else None
        self.heads = nn.ModuleList(LandmarkHead(c, cfg.head_pool, bias, self.units) for c in cfg.block_channels)
        n_flat = cfg.block_channels[-1] * cfg.final_side**2
        self.embed = nn.Linear(n_flat, cfg.embed_dim)
        self.out = nn.Linear(cfg.embed_dim, cfg.n_points * 2)
        self.confidence_head = nn.Linear(cfg.embed_dim, 1)
        with torch.no_grad():
            # Random-Fourier-feature style phases; small output weights: start at the mean shape.
            self.embed.bias.uniform_(0.0, 2.0 * math.pi)
            self.out.weight.mul_(0.1 / (self.units.half if self.units is not None else 1.0))
            self.out.bias.copy_(self.units.to_units(bias) if self.units is not None else bias)

    def _trunk(self, image: torch.Tensor, with_heads: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.stem(image)
        inter: list[torch.Tensor] = []
        for block, att, head in zip(self.blocks, self.attention, self.heads):
            x = att(block(x))
            if with_heads:
                inter.append(head(x))
            x = F.max_pool2d(x, 2, ceil_mode=True)
        return x, inter

    def _predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = torch.cos(self.embed(x.flatten(1)))
        out = self.out(e)
        if self.units is not None:
            out = self.units(out)
        landmarks = out.reshape(-1, self.config.n_points, 2)
        confidence = torch.sigmoid(self.confidence_head(e)).reshape(-1)
        return landmarks, confidence

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``image`` ``(N, 1, S, S)`` float32 in [0, 1] -> (landmarks ``(N, 68, 2)`` crop px,
        confidence ``(N,)`` in [0, 1])."""
        x, _ = self._trunk(image, with_heads=False)
        return self._predict(x)

    def forward_train(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """As :meth:`forward`, plus the four intermediate heads' landmarks (``(N, 68, 2)`` crop px
        each, shallow to deep) for intermediate supervision."""
        x, inter = self._trunk(image, with_heads=True)
        landmarks, confidence = self._predict(x)
        return landmarks, confidence, inter
