"""Seeded post-processing transforms: the Rajan/DEAR test chain and single-operation sweeps.

Each transform is a small frozen dataclass implementing `bench.api.Transform`: it draws what
it needs from the `random.Random` it is given and returns the parameters it actually used.
The runner (bench/runner.py) seeds that generator per image with `derive_seed(run seed,
transform.name, pixel digest)` (`bench.images.pixel_digest`), so processed bytes depend neither
on file order, subsets or worker counts nor on how the file was encoded.

`name` is canonical and includes every parameter (e.g. "jpeg:quality=75",
"downscale:factor=0.5"): it keys the seed and the condition, and
`bench.registry.create_chain(t.name)` rebuilds an equal transform.
"""
from __future__ import annotations

import io
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance

from bench.api import BenchError
from bench.images import decode_image


class TransformParamError(BenchError, ValueError):
    """A post-processing parameter out of range (a ValueError the CLI prints cleanly)."""


# --------------------------------------------------------------------------- helpers


def _rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


def encode_decode(image: Image.Image, fmt: str, quality: int) -> Image.Image:
    """Compress in memory with PIL's defaults for `fmt` (e.g. "JPEG", "WEBP") and decode back to
    RGB: the lossy round trip of the transforms here and of the AIGI-mini world's WEBP cue."""
    buf = io.BytesIO()
    _rgb(image).save(buf, format=fmt, quality=quality)
    return decode_image(buf.getvalue(), f"<{fmt.lower()} q={quality}>")


def _fmt(x: float) -> str:
    return repr(float(x))


def _quality(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise TransformParamError(f"{what} must be an integer 1..100, got {value!r}")
    if not 1 <= int(value) <= 100:
        raise TransformParamError(f"{what} must be in 1..100, got {value}")
    return int(value)


def _quality_range(value: Any, what: str) -> tuple[int, int]:
    """(lo, hi) from a tuple/list or the CLI form "lo-hi"."""
    if isinstance(value, str):
        lo, sep, hi = value.partition("-")
        if not (sep and lo.strip().isdigit() and hi.strip().isdigit()):
            raise TransformParamError(f"{what} must look like 30-100, got {value!r}")
        value = (int(lo), int(hi))
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TransformParamError(f"{what} must be two integers (lo, hi), got {value!r}")
    lo, hi = _quality(value[0], what), _quality(value[1], what)
    if lo > hi:
        raise TransformParamError(f"{what} must have lo <= hi, got {lo}-{hi}")
    return lo, hi


def _nonneg(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
        raise TransformParamError(f"{what} must be a finite number >= 0, got {value!r}")
    return float(value)


# --------------------------------------------------------------------------- the test chain


@dataclass(frozen=True)
class RajanChain:
    """The Stay-Positive / DEAR post-processed test protocol, drawn per image.

    Order and ranges follow the Stay-Positive authors' script posted in
    AniSundar18/AlignedForensics issue #9, reused by dahyedahye/dear
    scripts/processed_data_gen/process_test_data.py: JPEG quality randint(50, 95); up- or
    down-scaling by a uniform factor (up: 1..min(1024/W, 1024/H); down:
    max(256/W, 256/H)..1), each new side int(side*scale) clamped to [256, 1024] on its own;
    a resize with PIL's default filter (bicubic, named explicitly here); then Brightness,
    Contrast, Sharpness, Color enhancements with factors uniform(0.8, 1.2); then JPEG.
    The draws consume the generator in that same order.

    Difference from the official script: it calls random.seed(42) once per folder and walks
    files in filesystem order, so an image's parameters depend on its position; here each
    image gets its own generator, seeded from the image's hash (see the module docstring).
    """

    @property
    def name(self) -> str:
        return "rajan"

    def __call__(self, image: Image.Image, rng: random.Random) -> tuple[Image.Image, dict[str, Any]]:
        image = _rgb(image)
        quality = rng.randint(50, 95)
        up = rng.choice([True, False])
        w, h = image.size
        if up:
            scale = rng.uniform(1.0, min(1024 / w, 1024 / h))
        else:
            scale = rng.uniform(max(256 / w, 256 / h), 1.0)
        new_w = max(256, min(1024, int(w * scale)))
        new_h = max(256, min(1024, int(h * scale)))
        image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
        factors = {}
        for key, enhancer in (
            ("brightness", ImageEnhance.Brightness),
            ("contrast", ImageEnhance.Contrast),
            ("sharpness", ImageEnhance.Sharpness),
            ("color", ImageEnhance.Color),
        ):
            factors[key] = rng.uniform(0.8, 1.2)
            image = enhancer(image).enhance(factors[key])
        image = encode_decode(image, "JPEG", quality)
        params = {"quality": quality, "up": up, "scale": scale, "width": new_w, "height": new_h, **factors}
        return image, params


# --------------------------------------------------------------------------- single operations


@dataclass(frozen=True)
class _Compression:
    """JPEG/WEBP at a fixed quality, or at a quality drawn uniformly from `quality_range`
    (default 30-100). Giving both is refused: one of them would be silently ignored."""

    quality: int | None = None
    quality_range: tuple[int, int] | str | None = None

    _format = ""  # PIL format name, set by subclasses
    _key = ""  # registry name

    def __post_init__(self) -> None:
        if self.quality is not None:
            if self.quality_range is not None:
                raise TransformParamError(f"{self._key}: give quality or quality_range, not both")
            object.__setattr__(self, "quality", _quality(self.quality, f"{self._key} quality"))
        drawn_from = (30, 100) if self.quality_range is None else self.quality_range
        object.__setattr__(self, "quality_range", _quality_range(drawn_from, f"{self._key} quality_range"))

    @property
    def name(self) -> str:
        if self.quality is not None:
            return f"{self._key}:quality={self.quality}"
        lo, hi = self.quality_range
        return f"{self._key}:quality_range={lo}-{hi}"

    def __call__(self, image: Image.Image, rng: random.Random) -> tuple[Image.Image, dict[str, Any]]:
        quality = self.quality if self.quality is not None else rng.randint(*self.quality_range)
        return encode_decode(image, self._format, quality), {"quality": quality}


@dataclass(frozen=True)
class Jpeg(_Compression):
    """JPEG at `quality`, or at one drawn per image from `quality_range` (default 30-100), with
    PIL's default settings (4:2:0 chroma subsampling, as in the official chain)."""

    _format = "JPEG"
    _key = "jpeg"


@dataclass(frozen=True)
class Webp(_Compression):
    """Lossy WEBP at `quality`, or at one drawn per image from `quality_range` (default 30-100);
    quality 100 is still lossy; PIL's default method 4."""

    _format = "WEBP"
    _key = "webp"


@dataclass(frozen=True)
class Downscale:
    """Bicubic downscaling by `factor` in (0, 1]; each side round(side*factor), at least 1 px."""

    factor: float

    def __post_init__(self) -> None:
        f = self.factor
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1:
            raise TransformParamError(f"downscale factor must be in (0, 1], got {f!r}")
        object.__setattr__(self, "factor", float(f))

    @property
    def name(self) -> str:
        return f"downscale:factor={_fmt(self.factor)}"

    def __call__(self, image: Image.Image, rng: random.Random) -> tuple[Image.Image, dict[str, Any]]:
        image = _rgb(image)
        w = max(1, round(image.width * self.factor))
        h = max(1, round(image.height * self.factor))
        out = image.resize((w, h), Image.Resampling.BICUBIC)
        return out, {"factor": self.factor, "width": w, "height": h}


@dataclass(frozen=True)
class GaussianBlur:
    """Per-channel Gaussian blur with standard deviation `sigma` px (0 = unchanged).

    An exact Gaussian (scipy.ndimage.gaussian_filter, reflect borders), as in the blur
    augmentation of the CNNDetection lineage (PeterWang512/CNNDetection data/datasets.py),
    rather than PIL's box-blur approximation.
    """

    sigma: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", _nonneg(self.sigma, "blur sigma"))

    @property
    def name(self) -> str:
        return f"blur:sigma={_fmt(self.sigma)}"

    def __call__(self, image: Image.Image, rng: random.Random) -> tuple[Image.Image, dict[str, Any]]:
        image = _rgb(image)
        if self.sigma == 0:
            return image.copy(), {"sigma": 0.0}
        from scipy.ndimage import gaussian_filter

        arr = np.asarray(image, dtype=np.float32)
        out = gaussian_filter(arr, sigma=(self.sigma, self.sigma, 0))
        return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), "RGB"), {"sigma": self.sigma}


@dataclass(frozen=True)
class GaussianNoise:
    """Additive white Gaussian noise, `sigma` in 0-255 pixel units, rounded and clipped.

    The noise comes from a numpy Generator seeded with 64 bits drawn from `rng`; that seed
    is returned so the exact noise can be regenerated.
    """

    sigma: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", _nonneg(self.sigma, "noise sigma"))

    @property
    def name(self) -> str:
        return f"noise:sigma={_fmt(self.sigma)}"

    def __call__(self, image: Image.Image, rng: random.Random) -> tuple[Image.Image, dict[str, Any]]:
        image = _rgb(image)
        seed = rng.getrandbits(64)
        arr = np.asarray(image, dtype=np.float64)
        noisy = arr + np.random.default_rng(seed).normal(0.0, self.sigma, size=arr.shape)
        out = Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8), "RGB")
        return out, {"sigma": self.sigma, "seed": seed}


@dataclass(frozen=True)
class Resize:
    """Bicubic resize. `size` int: shorter side to `size`, aspect kept (torchvision's rule,
    longer side int(size*long/short)); "HxW" (or (H, W)): exactly that size."""

    size: int | str | tuple[int, int]

    def __post_init__(self) -> None:
        size = self.size
        if isinstance(size, str):
            parts = size.lower().split("x")
            try:
                size = tuple(int(p) for p in parts) if len(parts) == 2 else int(size)
            except ValueError:
                raise TransformParamError(f"resize size must be an integer or HxW, got {self.size!r}") from None
        if isinstance(size, list):
            size = tuple(size)
        ok_int = isinstance(size, int) and not isinstance(size, bool) and size >= 1
        ok_pair = isinstance(size, tuple) and len(size) == 2 and all(isinstance(s, int) and s >= 1 for s in size)
        if not (ok_int or ok_pair):
            raise TransformParamError(f"resize size must be a positive integer or HxW, got {self.size!r}")
        object.__setattr__(self, "size", size)

    @property
    def name(self) -> str:
        s = self.size
        return f"resize:size={s}" if isinstance(s, int) else f"resize:size={s[0]}x{s[1]}"

    def __call__(self, image: Image.Image, rng: random.Random) -> tuple[Image.Image, dict[str, Any]]:
        image = _rgb(image)
        w, h = image.size
        if isinstance(self.size, int):
            if w <= h:
                new_w, new_h = self.size, int(self.size * h / w)
            else:
                new_w, new_h = int(self.size * w / h), self.size
        else:
            new_h, new_w = self.size
        out = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
        return out, {"width": new_w, "height": new_h}
