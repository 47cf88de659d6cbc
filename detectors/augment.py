"""Training augmentations, as torchvision.transforms.v2 transforms.

The Corvi / Rajan recipe is AlignedForensics' (AniSundar18/AlignedForensics training_code:
utils/processing.py, utils/dataset.py, utils/cap_dset.py; flags of script_train.sh), which also
trains res50nodown the Corvi way (the ICASSP 2023 flag set in processing.py): on the full image,
in this order: RandomResizedCrop(256, scale (0.08, 1), ratio (0.75, 4/3)) p 0.2; ColorJitter(0.4,
0.4, 0.4, 0.1) p 0.8; RandomGrayscale p 0.2; one 48x48 cutout filled with 128 p 0.2; Gaussian
noise of variance U(10, 50) on the 0-255 scale p 0.2; Gaussian blur sigma U(0, 3) p 0.5; JPEG
quality U{30..100} p 0.5; rotation by k*90 degrees; horizontal flip; then a 96x96 random crop
(symmetric padding if needed); then the model's normalisation (ImageNet mean/std for them).

Rajan's "batched syncing" gives each real and its reconstruction the same augmentation (the
official code reseeds every RNG identically before each). Here the pair (or an image and a
tv_tensors.Mask, for DEAR) passes through one call, so all drawn parameters are shared; the
custom noise transform draws one seed per call, so a pair of equal size also gets identical noise,
as the reseeded official code does.

JPEG goes through PIL only, where the official flags (`--cmp_method cv2,pil`) pick OpenCV or PIL
per image: both encode with libjpeg's standard tables and 4:2:0 chroma at a given quality, and
OpenCV is not worth a dependency for that coin.

NPR (chuangchuangtan/NPR-DeepfakeDetection data/datasets.py): Resize(256) -> RandomCrop(224) ->
flip, ImageNet normalisation.

FerretNet (xigua7105/FerretNet configs/cfgs/FerretNet-*-Median-3.yaml, src/data/transforms.py):
RandomCrop(224, zero padding if needed) -> flip, CLIP normalisation.
"""
from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from detectors.preprocess import IMAGENET


def _is_image(inpt: Any) -> bool:
    return isinstance(inpt, (Image.Image, tv_tensors.Image))


def _to_array(inpt: Any) -> np.ndarray:
    """HWC uint8 array of a PIL image or a CHW uint8 tv_tensors.Image."""
    if isinstance(inpt, Image.Image):
        return np.array(inpt.convert("RGB"))
    return inpt.permute(1, 2, 0).contiguous().numpy().copy()


def _from_array(arr: np.ndarray, like: Any) -> Any:
    if isinstance(like, Image.Image):
        return Image.fromarray(arr)
    return tv_tensors.wrap(torch.from_numpy(arr).permute(2, 0, 1).contiguous(), like=like)


class RandomRot90(v2.Transform):
    """Rotate counter-clockwise by k * 90 degrees, k uniform in {0..3}, with probability p
    (PIL's rotate(90 k, expand=True) as in the official code); geometric, so masks too."""

    def __init__(self, p: float = 1.0):
        super().__init__()
        self.p = p

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        k = int(torch.randint(0, 4, ()).item()) if float(torch.rand(())) < self.p else 0
        return {"k": k}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        k = params["k"]
        if k == 0:
            return inpt
        if isinstance(inpt, Image.Image):
            return inpt.rotate(90 * k, expand=True)
        if isinstance(inpt, (tv_tensors.Image, tv_tensors.Mask)):
            return tv_tensors.wrap(torch.rot90(inpt, k, dims=(-2, -1)), like=inpt)
        return inpt


class Cutout(v2.Transform):
    """One size x size hole filled with `fill`, centred uniformly and clipped at the border
    (albumentations' Cutout with num_holes=1 as used by AlignedForensics); images only."""

    def __init__(self, size: int = 48, fill: int = 128, p: float = 0.2):
        super().__init__()
        self.size, self.fill, self.p = size, fill, p

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        if float(torch.rand(())) >= self.p:
            return {"box": None}
        h, w = v2.query_size(flat_inputs)
        cy, cx = int(torch.randint(0, h, ())), int(torch.randint(0, w, ()))
        top, left = max(cy - self.size // 2, 0), max(cx - self.size // 2, 0)
        return {"box": (top, min(top + self.size, h), left, min(left + self.size, w))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if params["box"] is None or not _is_image(inpt):
            return inpt
        t, b, l, r = params["box"]
        arr = _to_array(inpt)
        arr[t:b, l:r] = self.fill
        return _from_array(arr, inpt)


class GaussianNoise(v2.Transform):
    """Additive N(0, var) noise per pixel and channel, var ~ U(var_range) on the 0-255 scale,
    clipped and truncated to uint8 (albumentations GaussNoise); images only. One seed is drawn
    per call, so equal-size inputs of one call get the same noise field."""

    def __init__(self, var_range: tuple[float, float] = (10.0, 50.0), p: float = 0.2):
        super().__init__()
        self.var_range, self.p = var_range, p

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        if float(torch.rand(())) >= self.p:
            return {"sigma": None}
        lo, hi = self.var_range
        var = lo + (hi - lo) * float(torch.rand(()))
        return {"sigma": math.sqrt(var), "seed": int(torch.randint(0, 2**62, ()))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if params["sigma"] is None or not _is_image(inpt):
            return inpt
        arr = _to_array(inpt)
        noise = np.random.default_rng(params["seed"]).normal(0.0, params["sigma"], arr.shape)
        return _from_array(np.clip(arr + noise, 0, 255).astype(np.uint8), inpt)


class RandomGaussianBlur(v2.Transform):
    """scipy.ndimage.gaussian_filter per channel with sigma ~ U(sigma_range), probability p,
    as the official data_augment_blur; images only."""

    def __init__(self, sigma_range: tuple[float, float] = (0.0, 3.0), p: float = 0.5):
        super().__init__()
        self.sigma_range, self.p = sigma_range, p

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        if float(torch.rand(())) >= self.p:
            return {"sigma": None}
        lo, hi = self.sigma_range
        return {"sigma": lo + (hi - lo) * float(torch.rand(()))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if params["sigma"] is None or not _is_image(inpt):
            return inpt
        from scipy.ndimage import gaussian_filter

        arr = _to_array(inpt)
        for c in range(arr.shape[2]):
            gaussian_filter(arr[:, :, c], output=arr[:, :, c], sigma=params["sigma"])
        return _from_array(arr, inpt)


class RandomJPEG(v2.Transform):
    """JPEG round trip through PIL at quality ~ U{lo..hi}, probability p; images only."""

    def __init__(self, quality: tuple[int, int] = (30, 100), p: float = 0.5):
        super().__init__()
        self.quality, self.p = quality, p

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        if float(torch.rand(())) >= self.p:
            return {"quality": None}
        return {"quality": int(torch.randint(self.quality[0], self.quality[1] + 1, ()))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if params["quality"] is None or not _is_image(inpt):
            return inpt
        buf = io.BytesIO()
        Image.fromarray(_to_array(inpt)).save(buf, format="JPEG", quality=params["quality"])
        buf.seek(0)
        with Image.open(buf) as im:
            return _from_array(np.array(im.convert("RGB")), inpt)


class SymmetricPadCrop(v2.RandomCrop):
    """`v2.RandomCrop(size, pad_if_needed=True, padding_mode="symmetric")` that also pads masks
    much smaller than the crop. torchvision pads a PIL image through `np.pad(mode="symmetric")`,
    which repeats the mirror as often as needed, but its tensor kernel (used for a
    `tv_tensors.Mask`) fails once the pad exceeds the side (a 40 px diagnostic pair at crop 96).
    Masks are padded here with the same `np.pad`, so they stay aligned with their image; the
    drawn parameters, and so every training run, are those of `v2.RandomCrop`."""

    def __init__(self, size: int):
        super().__init__(size, pad_if_needed=True, padding_mode="symmetric")

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Mask) and params["needs_pad"]:
            left, top, right, bottom = params["padding"]
            widths = [(0, 0)] * (inpt.ndim - 2) + [(top, bottom), (left, right)]
            inpt = tv_tensors.wrap(torch.from_numpy(np.pad(inpt.numpy(), widths, mode="symmetric")), like=inpt)
            params = {**params, "needs_pad": False}
        return super().transform(inpt, params)


Normalization = tuple[tuple[float, float, float], tuple[float, float, float]]  # (mean, std)


def _to_model_input(normalization: Normalization) -> list[v2.Transform]:
    mean, std = normalization
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]


def af_augmentation(crop: int = 96, resize: int = 256, normalization: Normalization = IMAGENET) -> v2.Compose:
    """The AlignedForensics / Corvi training processing (see the module docstring), ending
    with the model's own `normalization` (ImageNet's for the ResNets).

    It works on PIL images like the official one (torchvision's PIL kernels; tensor ColorJitter
    is ~50x slower); one call with several inputs shares every drawn parameter."""
    return v2.Compose(
        [
            v2.RandomApply(
                [v2.RandomResizedCrop(resize, scale=(0.08, 1.0), ratio=(0.75, 1.0 / 0.75), interpolation=v2.InterpolationMode.BILINEAR)],
                p=0.2,
            ),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            v2.RandomGrayscale(p=0.2),
            Cutout(48, 128, p=0.2),
            GaussianNoise((10.0, 50.0), p=0.2),
            RandomGaussianBlur((0.0, 3.0), p=0.5),
            RandomJPEG((30, 100), p=0.5),
            RandomRot90(p=1.0),
            v2.RandomHorizontalFlip(),
            SymmetricPadCrop(crop),
            *_to_model_input(normalization),
        ]
    )


def npr_augmentation(load: int = 256, crop: int = 224, normalization: Normalization = IMAGENET) -> v2.Compose:
    """NPR's training processing: Resize(load, load) (PIL bilinear) -> RandomCrop(crop) -> flip."""
    return v2.Compose([v2.Resize((load, load)), v2.RandomCrop(crop), v2.RandomHorizontalFlip(),
                       *_to_model_input(normalization)])


def crop_flip_augmentation(crop: int = 224, normalization: Normalization = IMAGENET) -> v2.Compose:
    """RandomCrop(crop, zero padding if needed) -> horizontal flip -> the model's normalisation
    (FerretNet's training processing, with CLIP's mean and std)."""
    return v2.Compose([v2.RandomCrop(crop, pad_if_needed=True), v2.RandomHorizontalFlip(), *_to_model_input(normalization)])
