"""suites.postprocess: the Rajan/DEAR chain draws in the official ranges and order, every
transform is reproducible per image whatever the order or worker count, bad parameters fail."""
from __future__ import annotations

import io
import multiprocessing
import random

import numpy as np
import pytest
from PIL import Image

from bench.api import BenchError, Transform, derive_seed
from bench.registry import create_chain
from suites.postprocess import (
    Downscale,
    GaussianBlur,
    GaussianNoise,
    Jpeg,
    RajanChain,
    Resize,
    TransformParamError,
    Webp,
)


def _noise(w=64, h=48, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def _smooth(w=96, h=80, seed=0) -> Image.Image:
    """A photo-like image: smooth gradients plus mild texture."""
    y, x = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (w + h)], -1)
    arr = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------- Rajan chain


@pytest.mark.parametrize("size", [(200, 150), (512, 384), (1200, 900)])
def test_rajan_parameters_stay_in_the_official_ranges(size):
    chain, image = RajanChain(), _smooth(*size)
    ups = set()
    for i in range(25):
        out, p = chain(image, random.Random(derive_seed(0, "rajan", size, i)))
        assert 50 <= p["quality"] <= 95
        assert 256 <= p["width"] <= 1024 and 256 <= p["height"] <= 1024
        for k in ("brightness", "contrast", "sharpness", "color"):
            assert 0.8 <= p[k] <= 1.2
        w, h = size
        lo, hi = (1.0, min(1024 / w, 1024 / h)) if p["up"] else (max(256 / w, 256 / h), 1.0)
        assert min(lo, hi) <= p["scale"] <= max(lo, hi)
        assert p["width"] == max(256, min(1024, int(w * p["scale"])))
        assert p["height"] == max(256, min(1024, int(h * p["scale"])))
        assert out.mode == "RGB" and out.size == (p["width"], p["height"])
        ups.add(p["up"])
    assert ups == {True, False}


def test_rajan_draws_in_the_official_order():
    """quality, up/down, scale, then the four enhancement factors, from the same generator:
    seeded like the official script, the first image gets the official script's draws."""
    seed = 42
    _, p = RajanChain()(_smooth(300, 200), random.Random(seed))
    r = random.Random(seed)
    assert p["quality"] == r.randint(50, 95)
    assert p["up"] == r.choice([True, False])
    assert p["scale"] == (r.uniform(1.0, min(1024 / 300, 1024 / 200)) if p["up"] else r.uniform(max(256 / 300, 256 / 200), 1.0))
    assert [p[k] for k in ("brightness", "contrast", "sharpness", "color")] == [r.uniform(0.8, 1.2) for _ in range(4)]


def test_rajan_output_is_a_decoded_jpeg_of_the_enhanced_resize():
    image = _smooth(300, 260)
    out, p = RajanChain()(image, random.Random(7))
    # Redo the steps by hand and compare: equal up to nothing (same PIL calls, same bytes).
    from PIL import ImageEnhance

    x = image.resize((p["width"], p["height"]), Image.Resampling.BICUBIC)
    for k, enh in (("brightness", ImageEnhance.Brightness), ("contrast", ImageEnhance.Contrast),
                   ("sharpness", ImageEnhance.Sharpness), ("color", ImageEnhance.Color)):
        x = enh(x).enhance(p[k])
    buf = io.BytesIO()
    x.save(buf, "JPEG", quality=p["quality"])
    ref = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    assert np.array_equal(np.asarray(out), np.asarray(ref))


# --------------------------------------------------------------------------- determinism

IDS = [f"sha{i:02d}" for i in range(6)]
IMAGES = {k: _smooth(90 + 7 * i, 70 + 5 * i, seed=i) for i, k in enumerate(IDS)}
CHAIN = "rajan"


def _process(image_id: str, chain: str = CHAIN, run_seed: int = 0) -> tuple[bytes, dict]:
    """Seeded as bench/runner.py seeds each image: derive_seed(run seed, chain name, image sha)."""
    transform = create_chain(chain)
    out, params = transform(IMAGES[image_id], random.Random(derive_seed(run_seed, transform.name, image_id)))
    return _png(out), params


@pytest.mark.parametrize("chain", [CHAIN, "jpeg+noise:sigma=3", "webp:quality_range=40-90+downscale:factor=0.5"])
def test_same_image_same_bytes_in_any_order_subset_or_pool(chain):
    forward = {k: _process(k, chain) for k in IDS}
    backward = {k: _process(k, chain) for k in reversed(IDS)}
    subset = {k: _process(k, chain) for k in IDS[3:5]}
    ctx = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None
    with (ctx or multiprocessing).Pool(2) as pool:
        pooled = dict(zip(IDS, pool.starmap(_process, [(k, chain) for k in IDS])))
    assert forward == backward == pooled
    assert all(subset[k] == forward[k] for k in subset)
    assert len({str(p) for _, p in forward.values()}) == len(IDS)  # images draw different parameters


def test_seed_depends_on_run_seed_chain_and_image():
    a = _process(IDS[0], run_seed=0)
    assert _process(IDS[0], run_seed=1)[1] != a[1]
    assert _process(IDS[0], chain="jpeg")[1] != _process(IDS[0], chain="webp")[1]  # same draw, other name


# --------------------------------------------------------------------------- single operations


def test_jpeg_and_webp_fixed_and_drawn_quality():
    image = _smooth()
    for cls, fmt in ((Jpeg, "JPEG"), (Webp, "WEBP")):
        out, p = cls(quality=75)(image, random.Random(0))
        assert p == {"quality": 75} and out.mode == "RGB" and out.size == image.size
        buf = io.BytesIO()
        image.save(buf, fmt, quality=75)
        assert np.array_equal(np.asarray(out), np.asarray(Image.open(buf).convert("RGB")))
        qs = {cls(quality_range=(40, 45))(image, random.Random(s))[1]["quality"] for s in range(40)}
        assert qs <= set(range(40, 46)) and len(qs) > 1
    assert Jpeg().quality_range == (30, 100)


def test_downscale():
    out, p = Downscale(0.5)(_noise(65, 47), random.Random(0))
    assert out.size == (32, 24) == (p["width"], p["height"]) and p["factor"] == 0.5
    assert Downscale(0.001)(_noise(65, 47), random.Random(0))[0].size == (1, 1)
    same = Downscale(1)(_noise(), random.Random(0))[0]
    assert np.array_equal(np.asarray(same), np.asarray(_noise()))


def test_blur():
    image = _noise()
    assert np.array_equal(np.asarray(GaussianBlur(0)(image, random.Random(0))[0]), np.asarray(image))
    out, p = GaussianBlur(1.5)(image, random.Random(0))
    assert p == {"sigma": 1.5} and out.size == image.size
    arr, src = np.asarray(out, float), np.asarray(image, float)
    assert arr.std() < 0.5 * src.std()  # white noise loses most of its variance
    assert abs(arr.mean() - src.mean()) < 2  # a normalised kernel keeps the mean
    # channels are blurred separately: a pure-red image stays pure red
    red = Image.new("RGB", (20, 20), (200, 0, 0))
    assert set(map(tuple, np.asarray(GaussianBlur(2)(red, random.Random(0))[0]).reshape(-1, 3))) == {(200, 0, 0)}


def test_noise_is_seeded_from_rng_and_has_the_right_strength():
    image = Image.new("RGB", (128, 128), (128, 128, 128))
    out, p = GaussianNoise(5)(image, random.Random(3))
    diff = np.asarray(out, float) - 128
    assert abs(diff.std() - 5) < 0.3 and abs(diff.mean()) < 0.2
    again, q = GaussianNoise(5)(image, random.Random(3))
    assert p == q and np.array_equal(np.asarray(out), np.asarray(again))
    assert p["seed"] == random.Random(3).getrandbits(64)
    assert GaussianNoise(5)(image, random.Random(4))[1]["seed"] != p["seed"]


def test_resize():
    out, p = Resize(32)(_noise(64, 48), random.Random(0))
    assert out.size == (42, 32) and p == {"width": 42, "height": 32}  # shorter side 32, int(32*64/48)
    assert Resize(32)(_noise(48, 64), random.Random(0))[0].size == (32, 42)
    assert Resize("20x30")(_noise(), random.Random(0))[0].size == (30, 20)


def test_transforms_satisfy_the_protocol_and_names_round_trip():
    ts = [RajanChain(), Jpeg(75), Jpeg(), Webp(quality_range="40-90"), Downscale(0.5), GaussianBlur(1),
          GaussianNoise(2.5), Resize(256), Resize("256x128")]
    for t in ts:
        assert isinstance(t, Transform)
        assert create_chain(t.name) == t
    assert [t.name for t in ts] == ["rajan", "jpeg:quality=75", "jpeg:quality_range=30-100", "webp:quality_range=40-90",
                                    "downscale:factor=0.5", "blur:sigma=1.0", "noise:sigma=2.5", "resize:size=256",
                                    "resize:size=256x128"]
    assert create_chain("downscale:factor=1").name == create_chain("downscale:factor=1.0").name


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Jpeg(quality=0), "1..100"),
        (lambda: Jpeg(quality=101), "1..100"),
        (lambda: Jpeg(quality=50.5), "integer"),
        (lambda: Webp(quality="high"), "integer"),
        (lambda: Jpeg(quality_range=(90, 30)), "lo <= hi"),
        (lambda: Jpeg(quality_range="abc"), "30-100"),
        (lambda: Webp(quality_range=(0, 50)), "1..100"),
        (lambda: Downscale(0), r"\(0, 1\]"),
        (lambda: Downscale(1.5), r"\(0, 1\]"),
        (lambda: GaussianBlur(-1), ">= 0"),
        (lambda: GaussianNoise(float("nan")), ">= 0"),
        (lambda: Resize("abc"), "HxW"),
        (lambda: Resize(0), "positive"),
        (lambda: Resize("0x5"), "positive"),
    ],
)
def test_bad_parameters(make, message):
    with pytest.raises(TransformParamError, match=message) as info:
        make()
    assert isinstance(info.value, ValueError) and isinstance(info.value, BenchError)


def test_bad_parameters_through_the_registry():
    with pytest.raises(BenchError, match="jpeg quality must be in 1..100, got 0"):
        create_chain("jpeg:quality=0")
    with pytest.raises(BenchError):
        create_chain("blur:radius=2")  # unknown keyword


@pytest.mark.parametrize(
    "spec, message",
    [
        ("+jpeg", "'\\+jpeg': empty step"),
        ("jpeg+", "'jpeg\\+': empty step"),
        ("jpeg++blur:sigma=1", "empty step"),
        (" + ", "empty step"),
        ("jpeg:quality=50,quality=60", "parameter 'quality' given twice"),
        ("jpeg:=50", "'=50' has no parameter name"),
        (":quality=50", "has no chain name"),
        ("jpeg:qualty=50", r"jpeg has no parameter 'qualty'; did you mean 'quality'\? \(parameters: quality, quality_range\)"),
        ("blur:radius=2", r"blur has no parameter 'radius' \(parameters: sigma\)"),
        ("rajan:quality=50", r"rajan has no parameter 'quality' \(it takes no parameters\)"),
        ("downscale", "downscale needs parameter\\(s\\) factor, e.g. downscale:factor=..."),
        ("jpeg:quality=50+resize", "resize needs parameter\\(s\\) size"),
    ],
)
def test_chain_spec_errors_name_the_spec_and_the_problem(spec, message):
    """A malformed spec fails with a BenchError naming it; nothing is dropped or guessed."""
    with pytest.raises(BenchError, match=message) as info:
        create_chain(spec)
    assert repr(spec) in str(info.value) and "__init__" not in str(info.value)


def test_chain_names_are_case_insensitive():
    assert create_chain("JPEG:quality=50") == Jpeg(50)
    assert create_chain("Blur:sigma=1+Rajan").name == "blur:sigma=1.0+rajan"


def test_sweeping_a_parameter_the_chain_lacks_names_it(tmp_path):
    """`bench sweep --chain rajan --param quality`: rajan takes no parameters; the error says so."""
    from bench.runner import RunConfig, sweep

    with pytest.raises(BenchError, match="rajan has no parameter 'quality'"):
        sweep(RunConfig(suite="mini", out=tmp_path), "rajan", "quality", [50, 60], progress=False)
    assert not any(tmp_path.iterdir())  # refused before anything is written


def test_jpeg_refuses_a_fixed_quality_and_a_range_together():
    with pytest.raises(BenchError, match="give quality or quality_range, not both"):
        create_chain("jpeg:quality=75,quality_range=30-100")  # the range used to be dropped silently
    assert create_chain("webp:quality_range=40-90").quality_range == (40, 90) and Jpeg().quality_range == (30, 100)


def test_a_chain_whose_name_leaves_out_its_parameters_is_refused(monkeypatch):
    """A plugin chain named "sloppy" whatever its strength would put every strength of a sweep
    under one cache key and one seed; the registry refuses it when the spec is read."""
    from dataclasses import dataclass

    from bench import registry

    @dataclass(frozen=True)
    class Sloppy:
        strength: int = 1
        name = "sloppy"

        def __call__(self, image, rng):
            return image, {}

    real_lookup = registry._lookup
    monkeypatch.setattr(registry, "_lookup", lambda kind, name: Sloppy if name == "sloppy" else real_lookup(kind, name))
    with pytest.raises(BenchError, match=r"names itself 'sloppy', which leaves out strength"):
        create_chain("sloppy:strength=3")
    assert create_chain("sloppy").name == "sloppy"  # no parameter given: nothing to spell
