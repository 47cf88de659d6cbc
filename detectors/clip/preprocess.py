"""Test-time preprocessing of the CLIP/ViT detectors: each official pipeline, and one shared
"harmonized" pipeline, as small picklable callables (PIL RGB -> normalised 3x224x224 tensor).

The official test transforms:
- center-crop 224 with no resize: UFD (WisconsinAIVision/UniversalFakeDetect @ 76a0e3e6
  validate.py RealFakeDataset), RINE (mever-team/rine @ 9b7fd585 src/utils.py get_transforms, the
  single-crop test transform) and CoDE (aimagelab/CoDE @ f1c0566c src/inference/validate_d3.py).
  torchvision's CenterCrop zero-pads an image smaller than 224 on a side before cropping, so small
  images are scored padded, not resized;
- shorter side to 224 then center-crop 224: bicubic for ClipDet (grip-unina/ClipBased-
  SyntheticImageDetection @ c76ef7f5 main.py, patch_size 'Clip224'), torchvision's default
  bilinear for C2P-CLIP (chuangchuangtan/C2P-CLIP-DeepfakeDetection @ 27b52325 data.py,
  Resize(loadSize=224));
- then ToTensor and the encoder's mean/std: CLIP's for the CLIP models, ImageNet's for CoDE.

Resize-versus-crop is the field's first reproduction complaint: a 1024x1024 image shows the
centre 224 pixels to a crop-only detector but the whole scene to a resize-then-crop one.
`policy="harmonized"` gives every detector the same pixels (shorter side to 224 bicubic, then
center-crop 224, each model's own mean/std), named in `info.input` and the run manifest.

The geometry is torchvision's functional API on PIL images, i.e. the official transforms
themselves (PIL resampling, which always antialiases). In a run the workers stop at the cropped
8-bit pixels (`CropNormalize.pixels()`, a quarter of the bytes) and the detector normalises them on the
device (`CropNormalize.normalize_pixels`), with the same arithmetic as ToTensor + Normalize, so
the numbers are identical; `CropNormalize` itself stays the float pipeline for direct use.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from detectors.preprocess import CLIP, IMAGENET, PixelsOf, normalize, normalize_pixels, pixels, to_tensor
POLICIES = ("native", "harmonized")


@dataclass(frozen=True)
class CropNormalize:
    """Optionally resize the shorter side to `size` (`resize` = "bicubic" / "bilinear"), then
    center-crop `size` x `size` (padding with zeros first when a side is shorter), then ToTensor
    and normalise with (`mean`, `std`)."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str | None = None
    size: int = 224

    def crop(self, image: Image.Image) -> Image.Image:
        """The geometry: the `size` x `size` RGB image the model sees."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        image = image.convert("RGB")
        if self.resize is not None:
            image = TF.resize(image, self.size, interpolation=InterpolationMode(self.resize))
        return TF.center_crop(image, [self.size, self.size])

    def pixels_of(self, image: Image.Image) -> torch.Tensor:
        """The crop as uint8 CHW pixels."""
        return pixels(self.crop(image))

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return normalize(to_tensor(self.crop(image)), self.mean, self.std)

    def pixels(self) -> PixelsOf:
        """The runner's half: the cropped 8-bit pixels (`normalize_pixels` does the rest)."""
        return PixelsOf(self)

    def normalize_pixels(self, batch: torch.Tensor) -> torch.Tensor:
        """A batch of `pixels()` outputs (uint8, on any device) -> what `__call__` gives; a float
        batch (already normalised) is returned as it is."""
        return normalize_pixels(batch, self.mean, self.std)

    def describe(self) -> str:
        norm = "CLIP" if (self.mean, self.std) == CLIP else "ImageNet" if (self.mean, self.std) == IMAGENET else "custom"
        geometry = (f"shorter side to {self.size} ({self.resize}), center-crop {self.size}" if self.resize else
                    f"center-crop {self.size}, no resize")
        return f"{geometry}; {norm} mean/std"


def pipeline(native: CropNormalize, policy: str) -> CropNormalize:
    """The detector's own pipeline (`policy="native"`) or the harmonized one with its mean/std."""
    if policy == "native":
        return native
    if policy == "harmonized":
        return CropNormalize(native.mean, native.std, resize="bicubic", size=native.size)
    raise ValueError(f"unknown input policy {policy!r}; known: {', '.join(POLICIES)}")
