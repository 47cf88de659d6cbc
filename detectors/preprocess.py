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
from typing import Any

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET = (IMAGENET_MEAN, IMAGENET_STD)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL image -> float CHW tensor in [0, 1] (what torchvision's ToTensor gives for RGB)."""
    return pixels(image).float().div_(255.0)


def normalize(x: torch.Tensor, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD) -> torch.Tensor:
    """Per-channel (x - mean) / std on a (..., 3, H, W) tensor in [0, 1] (ImageNet's by default)."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x - m) / s


def pixels(image: Image.Image) -> torch.Tensor:
    """PIL image -> uint8 CHW tensor of its RGB pixels."""
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)


def normalize_pixels(batch: torch.Tensor, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD) -> torch.Tensor:
    """uint8 (B, 3, H, W) on any device -> float32 normalised, as `to_tensor` + `normalize` would.
    A float batch is taken as already normalised and returned as it is, so every detector's
    `prepare` accepts both what the runner ships and what training and analyses build."""
    return normalize(to_unit(batch), mean, std) if batch.dtype == torch.uint8 else batch


def to_unit(batch: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float in [0, 1] (ToTensor's scaling); a float batch is returned as it is."""
    return batch.float().div_(255.0) if batch.dtype == torch.uint8 else batch


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
        return pixels(resized(image, self.size))


def resized(image: Image.Image, size: tuple[int, int], resample: int = Image.BILINEAR) -> Image.Image:
    """RGB at (H, W) = `size` (PIL's `resample`, bilinear by default; aspect ratio not kept)."""
    h, w = size
    image = image.convert("RGB")
    return image if image.size == (w, h) else image.resize((w, h), resample)


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
        return normalize(to_tensor(resized(image, self.size)))

    def pixels(self) -> "ResizePixels":
        """The runner's half: the resized 8-bit pixels (`normalize_pixels` does the rest)."""
        return ResizePixels(self.size)

    def normalize_pixels(self, batch: torch.Tensor) -> torch.Tensor:
        return normalize_pixels(batch)


CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's, also open_clip's OPENAI_DATASET_MEAN
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP = (CLIP_MEAN, CLIP_STD)
UNIT = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # no normalisation: ToTensor's [0, 1] as it is


def center_crop_box(size: int, crop: int, rounding: str) -> tuple[int, int, int]:
    """(pad_before, pad_after, offset) of a centre crop of `crop` from `size` pixels on one axis.

    Both torchvision's `CenterCrop` and albumentations' `PadIfNeeded` + `CenterCrop` pad a short
    side with zeros, floor((crop - size) / 2) before and the rest after. The offset of a longer
    side differs: torchvision rounds (size - crop) / 2 with Python's round (half to even),
    albumentations floors it (`get_center_crop_coords`); they disagree when size - crop is 3 mod 4."""
    if size < crop:
        return (crop - size) // 2, (crop - size + 1) // 2, 0
    diff = size - crop
    return 0, 0, (int(round(diff / 2.0)) if rounding == "round" else diff // 2)


@dataclass(frozen=True)
class CenterCropNormalize:
    """Zero-pad to at least `size`, centre-crop to `size` (H, W), then ToTensor + per-channel
    normalisation; no resize. `rounding="round"` is torchvision's CenterCrop (SAFE, FerretNet),
    "floor" albumentations' (DRCT). Padding happens on the 0-255 pixels, before normalisation,
    as in both libraries."""

    size: tuple[int, int]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    rounding: str = "round"

    def __post_init__(self) -> None:
        if self.rounding not in ("round", "floor"):
            raise ValueError(f"rounding must be 'round' (torchvision) or 'floor' (albumentations), not {self.rounding!r}")

    def pixels_of(self, image: Image.Image) -> torch.Tensor:
        """The padded, centre-cropped uint8 CHW pixels."""
        arr = np.asarray(image.convert("RGB"), dtype=np.uint8)
        (ph0, ph1, top), (pw0, pw1, left) = (center_crop_box(n, c, self.rounding) for n, c in zip(arr.shape[:2], self.size))
        if ph0 or ph1 or pw0 or pw1:
            arr = np.pad(arr, ((ph0, ph1), (pw0, pw1), (0, 0)))
        arr = arr[top : top + self.size[0], left : left + self.size[1]].copy()  # writable and contiguous
        return torch.from_numpy(arr).permute(2, 0, 1)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.normalize_pixels(self.pixels_of(image))

    def pixels(self) -> "PixelsOf":
        """The runner's half: the cropped 8-bit pixels (`normalize_pixels` does the rest)."""
        return PixelsOf(self)

    def normalize_pixels(self, batch: torch.Tensor) -> torch.Tensor:
        return normalize_pixels(batch, self.mean, self.std)


@dataclass(frozen=True)
class PixelsOf:
    """A normalising transform's geometry alone (`steps.pixels_of`), stopping at uint8 CHW pixels:
    what the runner's workers ship; `steps.normalize_pixels` finishes it on the device with the
    same arithmetic as `steps` itself."""

    steps: Any

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.steps.pixels_of(image)

    def describe(self) -> str:
        return getattr(self.steps, "describe", lambda: type(self.steps).__name__)()
