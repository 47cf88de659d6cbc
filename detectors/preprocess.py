"""Test-time preprocessing shared by the CNN detectors: PIL image -> normalised CHW tensor.

All three official test pipelines of the native-resolution detectors (grip-unina/DMimageDetection
main.py, grip-unina/ClipBased-SyntheticImageDetection main.py, AniSundar18/AlignedForensics
test_code/main.py) do ToTensor + ImageNet mean/std on the full image, no resize, no crop. NPR's
test (chuangchuangtan/NPR-DeepfakeDetection data/datasets.py) first resizes to 256x256 with
torchvision's default bilinear filter; on a PIL image torchvision hands the resize to
PIL, which always antialiases, so torchvision's `antialias` flag makes no difference there.

The callables are small frozen dataclasses so they pickle into DataLoader workers. The runner's
path stops at 8-bit pixels (`Pixels`, `ResizePixels`): uint8 CHW tensors, a quarter of the bytes
between worker processes and to the GPU, converted and normalised on the device by
`normalize_pixels` in the detector's `prepare`. That is the same arithmetic as `Normalize`
(x / 255, then (x - mean) / std, in float32), so both give identical numbers; `Normalize` and
`ResizeNormalize` remain for training, validation and analyses, which build float batches.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET = (IMAGENET_MEAN, IMAGENET_STD)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL image -> float CHW tensor in [0, 1] (what torchvision's ToTensor gives for RGB)."""
    arr = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def normalize(x: torch.Tensor, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD) -> torch.Tensor:
    """Per-channel (x - mean) / std on a (..., 3, H, W) tensor in [0, 1] (ImageNet's by default)."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x - m) / s


def pixels(image: Image.Image) -> torch.Tensor:
    """PIL image -> uint8 CHW tensor of its RGB pixels."""
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)


def normalize_pixels(batch: torch.Tensor, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD) -> torch.Tensor:
    """uint8 (B, 3, H, W) on any device -> float32 normalised, as `to_tensor` + `normalize` would."""
    return normalize(batch.float().div_(255.0), mean, std)


@dataclass(frozen=True)
class Pixels:
    """PIL -> uint8 CHW pixels at native resolution (the runner's half of `Normalize`)."""

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return pixels(image)


@dataclass(frozen=True)
class ResizePixels:
    """Resize to a fixed (H, W) with PIL bilinear, then uint8 CHW pixels (NPR's, unnormalised)."""

    size: tuple[int, int] = (256, 256)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return pixels(_resized(image, self.size))


def _resized(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    h, w = size
    image = image.convert("RGB")
    return image if image.size == (w, h) else image.resize((w, h), Image.BILINEAR)


@dataclass(frozen=True)
class Normalize:
    """ToTensor + per-channel normalisation at native resolution."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return normalize(to_tensor(image), self.mean, self.std)


@dataclass(frozen=True)
class ImageNetNormalize(Normalize):
    """ToTensor + ImageNet normalisation at native resolution (Corvi, Rajan and their + variants)."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


@dataclass(frozen=True)
class ResizeNormalize:
    """Resize to a fixed (H, W) with PIL bilinear, then ToTensor + ImageNet normalisation (NPR)."""

    size: tuple[int, int] = (256, 256)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return normalize(to_tensor(_resized(image, self.size)))
