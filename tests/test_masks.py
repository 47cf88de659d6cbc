"""DEAR diagnostic masks: the box distribution, the mask files and the compositing formula."""
from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

from suites import masks


@pytest.mark.parametrize("size", [(256, 256), (128, 192), (64, 64), (37, 53)])
def test_box_area_and_aspect_in_range(size):
    w, h = size
    rng = random.Random(0)
    fracs, aspects = [], []
    for _ in range(2000):
        x0, y0, x1, y1 = masks.sample_box(w, h, rng)
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        bw, bh = x1 - x0, y1 - y0
        fracs.append(bw * bh / (w * h))
        aspects.append(bw / bh)
        # rounding to whole pixels may move the aspect by at most one pixel on either side
        assert (bw + 1) / bh >= 0.5 and (bw - 1) / bh <= 2.0
    assert min(fracs) >= 0.02 and max(fracs) <= 0.2
    if w * h >= 128 * 128:  # uniform draws span the whole range
        assert min(fracs) < 0.025 and max(fracs) > 0.195
        assert min(aspects) < 0.55 and max(aspects) > 1.9
        assert 0.9 <= float(np.median(aspects)) <= 1.4  # median of U(0.5, 2) is 1.25
        assert abs(float(np.mean(fracs)) - 0.11) < 0.01


def test_box_is_seeded():
    a = [masks.sample_box(200, 100, random.Random(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    assert masks.sample_box(200, 100, random.Random(8)) != a[0] or masks.sample_box(200, 100, random.Random(9)) != a[0]


def test_box_mask_binary():
    m = masks.box_mask((40, 30), (5, 6, 15, 26))
    a = np.asarray(m)
    assert m.mode == "L" and m.size == (40, 30)
    assert set(np.unique(a)) == {0, 255}
    assert (a == 255).sum() == 10 * 20
    assert a[6:26, 5:15].min() == 255


def test_blur_radius_matches_dear_at_512():
    assert masks.dear_blur_radius(512, 512) == pytest.approx(33.0)
    assert masks.dear_blur_radius(256, 256) == pytest.approx(16.5)


def test_soft_mask_range_and_blur():
    m = masks.box_mask((128, 128), (32, 32, 96, 96))
    hard = masks.soft_mask(m, 0)
    assert hard.dtype == np.float32 and set(np.unique(hard)) == {0.0, 1.0}
    soft = masks.soft_mask(m, 4.0)
    assert soft.min() >= 0.0 and soft.max() <= 1.0
    assert soft[64, 64] > 0.99 and soft[0, 0] < 0.01
    assert 0.2 < soft[64, 32] < 0.8  # the edge is blended


def test_composite_formula():
    rng = np.random.default_rng(0)
    real = Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), "RGB")
    gen = Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), "RGB")
    soft = rng.random((20, 30)).astype(np.float32)
    out = np.asarray(masks.composite(real, gen, soft)).astype(np.float64)
    xr, xg = np.asarray(real, dtype=np.float64), np.asarray(gen, dtype=np.float64)
    expected = soft[..., None] * xg + (1 - soft[..., None]) * xr
    assert np.all(np.abs(out - expected) < 1.0 + 1e-4)  # truncation to uint8
    assert np.array_equal(np.asarray(masks.composite(real, gen, np.ones((20, 30), np.float32))), np.asarray(gen))
    assert np.array_equal(np.asarray(masks.composite(real, gen, np.zeros((20, 30), np.float32))), np.asarray(real))
    with pytest.raises(ValueError, match=r"mask shape \(10, 10\) does not match image 20x30"):
        masks.composite(real, gen, np.zeros((10, 10), np.float32))
    with pytest.raises(ValueError, match=r"mask shape \(1, 30\) does not match"):  # numpy would broadcast it
        masks.composite(real, gen, np.zeros((1, 30), np.float32))
    with pytest.raises(ValueError, match="differ in size"):
        masks.composite(real, gen.resize((30, 30)), soft)
