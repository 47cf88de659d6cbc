"""DEAR's diagnostic inpainting masks: one random rectangle, blurred, composited.

Follows the official generator (dahyedahye/dear, scripts/inpaint_data_gen/gen_mask.py and
gen_inpaint_data.py):
- one rectangle per image, area fraction uniform in [0.02, 0.2] of the image, aspect ratio
  (width / height) uniform in [0.5, 2], side lengths rounded, clipped to the image, position
  uniform;
- the binary mask is blurred with PIL's GaussianBlur (diffusers `VaeImageProcessor.blur` with
  `blur_factor=33`, applied at 512x512 there);
- the generated image is pasted through the blurred mask by hand, x = M*x_gen + (1-M)*x_real,
  in float and cast back to uint8 (truncation, as the official `astype(np.uint8)`).
The official script works at 512x512 and resizes back bicubic (so does
`dear.inpaint.StableDiffusionInpainter`); AIGI-mini's generators work at native size, so its
diag/ set composites there with the blur radius scaled to the image (`dear_blur_radius`).
"""
from __future__ import annotations

import math
import random

import numpy as np
from PIL import Image, ImageFilter

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1), x1/y1 exclusive

DEAR_BLUR_FACTOR = 33.0  # diffusers blur radius used by DEAR at 512 px
DEAR_SIZE = 512


def sample_box(
    width: int,
    height: int,
    rng: random.Random,
    area: tuple[float, float] = (0.02, 0.2),
    aspect: tuple[float, float] = (0.5, 2.0),
) -> Box:
    """One rectangle as DEAR draws it, inside a `width` x `height` image.

    After rounding to whole pixels the area may miss the range by a pixel row; then the side
    that keeps the aspect closest to the drawn one is grown or shrunk by one pixel until the
    area fraction lies inside `area` (the official code does not correct this; at 256 px the
    difference is under 1% of the box).
    """
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    total = width * height
    lo, hi = area[0] * total, area[1] * total
    target = rng.uniform(*area) * total
    ratio = rng.uniform(*aspect)
    h = min(max(1, round(math.sqrt(target / ratio))), height)
    w = min(max(1, round(math.sqrt(target * ratio))), width)
    for _ in range(width + height):
        if w * h < lo:
            grow_w = w < width and (h >= height or w / h <= ratio)
            w, h = (w + 1, h) if grow_w else (w, min(h + 1, height))
        elif w * h > hi:
            shrink_w = w > 1 and (h <= 1 or w / h >= ratio)
            w, h = (w - 1, h) if shrink_w else (w, max(h - 1, 1))
        else:
            break
    y0 = rng.randint(0, height - h)
    x0 = rng.randint(0, width - w)
    return (x0, y0, x0 + w, y0 + h)


def box_mask(size: tuple[int, int], box: Box) -> Image.Image:
    """Binary 'L' mask of PIL `size` (width, height): 255 inside `box`, 0 elsewhere."""
    a = np.zeros((size[1], size[0]), dtype=np.uint8)
    x0, y0, x1, y1 = box
    a[y0:y1, x0:x1] = 255
    return Image.fromarray(a, "L")


def dear_blur_radius(width: int, height: int) -> float:
    """DEAR's blur (radius 33 at 512x512) expressed in pixels of a width x height image.

    The official script resizes every image to 512x512 before blurring, so one radius-33 blur
    there spans 33 * side / 512 original pixels; we use the geometric mean of both sides.
    """
    return DEAR_BLUR_FACTOR * math.sqrt(width * height) / DEAR_SIZE


def soft_mask(mask: Image.Image, blur_radius: float) -> np.ndarray:
    """Blurred mask as float32 (H, W) in [0, 1] (PIL GaussianBlur, as diffusers does)."""
    m = mask.convert("L")
    if blur_radius > 0:
        m = m.filter(ImageFilter.GaussianBlur(blur_radius))
    return np.asarray(m, dtype=np.float32) / 255.0


def composite(real: Image.Image, generated: Image.Image, soft: np.ndarray) -> Image.Image:
    """x = M * x_gen + (1 - M) * x_real, per pixel, cast to uint8 like the official script."""
    if real.size != generated.size:
        raise ValueError(f"real {real.size} and generated {generated.size} differ in size")
    if soft.shape != (real.height, real.width):
        raise ValueError(f"mask shape {soft.shape} does not match image {real.height}x{real.width}")
    xr = np.asarray(real.convert("RGB"), dtype=np.float32)
    xg = np.asarray(generated.convert("RGB"), dtype=np.float32)
    m = soft.astype(np.float32)[..., None]
    out = xg * m + xr * (1.0 - m)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), "RGB")
