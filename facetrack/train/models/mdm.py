"""Mnemonic Descent Method (MDM): a recurrent process for face alignment.

Trigeorgis, Snape, Nicolaou, Antonakos, Zafeiriou, "Mnemonic Descent Method: A recurrent
process applied for end-to-end face alignment", CVPR 2016 (text: ``../shared/papers``;
reference-code facts: ``../shared/papers/NOTES.md``).

At each of ``T`` steps (weights shared across steps) a patch is sampled around every current
landmark, a small CNN turns each patch into features, the features of all 68 patches and the
previous hidden state feed a fully connected recurrent layer (``tanh``), and a linear layer
turns the hidden state into 136 numbers added to the current shape.

Two configurations of one class (:class:`MDMConfig`):

- ``mdm``: faithful. Patches sampled at 30x30, two ``3x3x32`` valid convs each followed by
  ReLU and a 2x2 max-pool, skip connection, 2,304 features per patch, 512 hidden units: about
  80.5 M weights, almost all in the recurrent layer. Patch scale: the reference code crops so
  that the mean shape's diagonal is 200 px and samples 30-px patches, i.e. a patch side of
  30/200 of the shape diagonal; ``patch_reference_diagonal=200`` (the default) keeps that
  fraction in our crop (the template's diagonal is about 87 px at ``S = 112``: 13-px patches).
  ``patch_reference_diagonal=0`` takes ``patch_px`` as crop pixels, which at 30 px covers 2.3
  times the reference's face fraction (the ``mdm`` of earlier versions).
- ``mdm-rt``: the same algorithm made fast: a 30x30-crop-px patch (its size chosen by
  measurement, ``patch_reference_diagonal=0``) sampled at 14x14 (ONNX Runtime's CPU GridSample
  costs ~15 ns per sample: 30x30 samples for 68 points is ~1.3 ms per step), 8- and 16-channel
  convs, a 1x1 conv reducing each patch to 2x2x8 = 32 features (68 x 32 = 2,176 inputs) and
  the paper's 512-unit recurrent layer: about 1.45 M weights in all.

Coordinates: shapes are ``(N, 68, 2)`` float32, (x, y) crop pixels, 0-based, pixel centres at
integers, in the crop made by :mod:`facetrack.tracker.geometry` (``S`` = ``input_size``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from facetrack.tracker.geometry import template


@dataclass(frozen=True)
class MDMConfig:
    """Architecture of an MDM model (``mdm`` and ``mdm-rt`` are two instances).

    ``skip_from``: which conv's activations give the skip connection (a central crop of them,
    cropped to the pooled size, concatenated channel-wise with the second pooled output).
    The paper says the first conv (``"conv1"``); the authors' reference code takes the second
    conv's activations before its pooling (``"conv2"``, the default here).
    ``patch_px``: side of the patch in crop pixels; ``patch_samples``: samples per side (the
    patch is resampled bilinearly, so ``patch_samples < patch_px`` shrinks it).
    ``reduce_channels``: if > 0, a 1x1 conv + ReLU maps the concatenated patch features to this
    many channels before the recurrent layer (``mdm-rt``); 0 keeps them (faithful ``mdm``).
    ``grad_through_sampling``: let gradients flow into the sampling positions; the reference
    sampler has none, so by default the shape is detached where the patches are sampled (the
    deltas still add up through the steps, so every step's loss reaches every earlier step).
    ``patch_reference_diagonal``: if > 0, ``patch_px`` is meant for a crop in which the mean
    shape's diagonal is this many px (the reference code: 30-px patches at 200 px) and is
    rescaled to our crop (:attr:`patch_crop_px`); 0 takes ``patch_px`` as crop px.
    ``output_units``: what the update layer emits. ``"px"`` (the shipped models): crop pixels,
    and the trainer raises that layer's learning rate (x S/2, :func:`facetrack.train.loops.trainer.default_output_lr_scale`)
    so that Adam, which moves each weight by about ``lr`` whatever its units, can move the points
    fast enough. ``"crop"``: offsets in half crop sides (the regression target normalised to the
    crop), multiplied by S/2 inside the model, at the common learning rate; the initial function
    is the same (the init std is divided by S/2).
    """

    arch: str = "mdm"
    input_size: int = 112
    n_points: int = 68
    patch_px: float = 30.0
    patch_samples: int = 30
    conv_channels: tuple[int, int] = (32, 32)
    skip_from: str = "conv2"
    reduce_channels: int = 0
    hidden_size: int = 512
    steps: int = 4
    update_init_std: float = 1e-3
    grad_through_sampling: bool = False
    patch_reference_diagonal: float = 200.0
    output_units: str = "px"

    def __post_init__(self) -> None:
        if self.output_units not in ("px", "crop"):
            raise ValueError(f"MDMConfig.output_units must be 'px' or 'crop', got {self.output_units!r}")
        if self.skip_from not in ("conv1", "conv2"):
            raise ValueError(f"MDMConfig.skip_from must be 'conv1' or 'conv2', got {self.skip_from!r}")
        if self.steps < 1 or self.hidden_size < 1:
            raise ValueError(f"MDMConfig: steps and hidden_size must be >= 1, got {self.steps}, {self.hidden_size}")
        if self.pooled_side < 1:
            raise ValueError(f"MDMConfig: patch_samples={self.patch_samples} too small for two valid 3x3 convs + pools")

    @property
    def kind(self) -> str:
        """Model kind for metadata (``facetrack.engines.names.MODEL_IO``)."""
        return "mdm"

    @property
    def patch_crop_px(self) -> float:
        """Side of the sampled patch in crop px (see ``patch_reference_diagonal``)."""
        if self.patch_reference_diagonal <= 0:
            return float(self.patch_px)
        t = template(self.input_size)
        diag = float(((t.max(0) - t.min(0)) ** 2).sum() ** 0.5)
        return float(self.patch_px) * diag / float(self.patch_reference_diagonal)

    @property
    def pooled_side(self) -> int:
        """Side of the second pooled map: ``((P - 2) // 2 - 2) // 2``."""
        return ((self.patch_samples - 2) // 2 - 2) // 2

    @property
    def features_per_patch(self) -> int:
        """Features of one patch fed to the recurrent layer."""
        channels = self.reduce_channels if self.reduce_channels > 0 else self.conv_channels[1] + self._skip_channels
        return channels * self.pooled_side**2

    @property
    def _skip_channels(self) -> int:
        return self.conv_channels[0] if self.skip_from == "conv1" else self.conv_channels[1]


def patch_grid(shape: torch.Tensor, size: int, patch_px: float, samples: int) -> torch.Tensor:
    """Sampling grid for ``grid_sample`` of a patch centred on every landmark.

    ``shape``: ``(N, L, 2)`` (x, y) crop px. Returns ``(N, L, samples * samples, 2)`` in
    ``grid_sample``'s normalised coordinates for ``align_corners=False`` (pixel ``i`` of a
    ``size``-px axis has its centre at normalised ``(2 i + 1) / size - 1``), last axis (x, y).
    Sample ``r * samples + c`` (row ``r``, column ``c``) of landmark ``l``'s patch is crop point
    ``shape[l] + (offset[c], offset[r])`` with ``offset[k] = (k - (samples - 1) / 2) * patch_px / samples``:
    the patch is centred on the landmark, ``patch_px`` crop pixels wide.
    """
    step = patch_px / samples
    offs = (torch.arange(samples, dtype=shape.dtype, device=shape.device) - (samples - 1) / 2.0) * (2.0 * step / size)
    # Built per coordinate with a long contiguous inner axis (P*P): ONNX Runtime broadcasts an
    # inner axis of 2 very slowly.
    off_x = offs.repeat(samples)  # (P*P,): column index fastest
    off_y = offs.repeat_interleave(samples)  # (P*P,): row index
    centre = (2.0 * shape + 1.0) / size - 1.0  # (N, L, 2) normalised
    gx = centre[:, :, 0:1] + off_x  # (N, L, P*P)
    gy = centre[:, :, 1:2] + off_y
    return torch.stack([gx, gy], dim=-1)


def extract_patches(
    image: torch.Tensor, shape: torch.Tensor, patch_px: float, samples: int, size: int | None = None
) -> torch.Tensor:
    """Bilinear patches (zeros outside the image) around each landmark, by ``F.grid_sample``.

    ``image``: ``(N, 1, S, S)`` grey; ``shape``: ``(N, L, 2)`` (x, y) crop px; ``size``: ``S``
    (given by the model so that the exported graph holds a constant, not a shape lookup).
    Returns ``(N * L, 1, samples, samples)``, patch ``n * L + l`` centred on ``shape[n, l]``.
    """
    size = image.shape[-1] if size is None else size
    grid = patch_grid(shape, size, patch_px, samples)
    out = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.reshape(-1, 1, samples, samples)  # (N, 1, L, P*P): one channel, so n-major, l-minor


class PatchNet(nn.Module):
    """Per-patch CNN: conv3x3 valid, ReLU, pool2; conv3x3 valid, ReLU, pool2; skip crop; [1x1 reduce].

    ``(B, 1, P, P)`` -> ``(B, features_per_patch)``.
    """

    def __init__(self, cfg: MDMConfig) -> None:
        super().__init__()
        c1, c2 = cfg.conv_channels
        self.skip_from = cfg.skip_from
        self.side = cfg.pooled_side
        # Top-left corner of the central side x side crop of the skip source (static, so the
        # exported graph slices with constants).
        a1_side = cfg.patch_samples - 2
        skip_side = a1_side if cfg.skip_from == "conv1" else a1_side // 2 - 2
        self.skip_lo = (skip_side - self.side) // 2
        self.conv1 = nn.Conv2d(1, c1, 3)
        self.conv2 = nn.Conv2d(c1, c2, 3)
        self.reduce = nn.Conv2d(c2 + cfg._skip_channels, cfg.reduce_channels, 1) if cfg.reduce_channels > 0 else None

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        a1 = F.relu(self.conv1(patches))
        p1 = F.max_pool2d(a1, 2)
        a2 = F.relu(self.conv2(p1))
        p2 = F.max_pool2d(a2, 2)
        lo, hi = self.skip_lo, self.skip_lo + self.side
        skip = (a1 if self.skip_from == "conv1" else a2)[:, :, lo:hi, lo:hi]
        feats = torch.cat([p2, skip], dim=1)
        if self.reduce is not None:
            feats = F.relu(self.reduce(feats))
        return feats.flatten(1)


class MDM(nn.Module):
    """Mnemonic Descent Method (Trigeorgis et al., CVPR 2016); see the module docstring.

    The hidden state is an explicit input and output (zeros for a new face), so a tracker can
    carry it from frame to frame. Confidence ``sigmoid(Linear(h_T))`` is a trained head: the
    probability that the crop holds a face and the fit is good.
    """

    def __init__(self, cfg: MDMConfig) -> None:
        super().__init__()
        self.config = cfg
        self.patch_net = PatchNet(cfg)
        self.n_features = cfg.n_points * cfg.features_per_patch
        self.recurrent = nn.Linear(self.n_features + cfg.hidden_size, cfg.hidden_size)
        self.update = nn.Linear(cfg.hidden_size, cfg.n_points * 2)
        self.confidence_head = nn.Linear(cfg.hidden_size, 1)
        # Start from init_shape: tiny updates, but not zero (zero would block all gradients).
        self.output_scale = cfg.input_size / 2.0 if cfg.output_units == "crop" else 1.0
        nn.init.normal_(self.update.weight, std=cfg.update_init_std / self.output_scale)
        nn.init.zeros_(self.update.bias)

    def zero_hidden(self, n: int, device: torch.device | None = None) -> torch.Tensor:
        """``(n, H)`` float32 zeros: the hidden state of a new face."""
        return torch.zeros(n, self.config.hidden_size, device=device)

    def forward_steps(
        self, image: torch.Tensor, init_shape: torch.Tensor, hidden: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Run ``T`` steps.

        ``image``: ``(N, 1, S, S)`` float32 in [0, 1]; ``init_shape``: ``(N, 68, 2)`` (x, y) crop
        px; ``hidden``: ``(N, H)``. Returns (list of ``T`` shapes ``(N, 68, 2)`` crop px, one
        after each step; confidence ``(N,)`` in [0, 1]; ``hidden_out`` ``(N, H)``).
        """
        cfg = self.config
        shape = init_shape
        h = hidden
        shapes: list[torch.Tensor] = []
        for _ in range(cfg.steps):
            where = shape if cfg.grad_through_sampling else shape.detach()
            patches = extract_patches(image, where, cfg.patch_crop_px, cfg.patch_samples, cfg.input_size)
            feats = self.patch_net(patches).reshape(-1, self.n_features)
            h = torch.tanh(self.recurrent(torch.cat([feats, h], dim=1)))
            delta = self.update(h).reshape(-1, cfg.n_points, 2)
            shape = shape + (delta * self.output_scale if cfg.output_units == "crop" else delta)
            shapes.append(shape)
        confidence = torch.sigmoid(self.confidence_head(h)).reshape(-1)
        return shapes, confidence, h

    def forward(
        self, image: torch.Tensor, init_shape: torch.Tensor, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(landmarks (N, 68, 2) crop px, confidence (N,), hidden_out (N, H))``; see :meth:`forward_steps`."""
        shapes, confidence, h = self.forward_steps(image, init_shape, hidden)
        return shapes[-1], confidence, h
