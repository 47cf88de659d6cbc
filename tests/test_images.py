"""bench.images: every bad file becomes a BadImageError with a short reason; every mode becomes RGB."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import bench.images as images
from bench.api import BadImageError
from bench.images import decode_image, load_image


def _noise(h=48, w=64, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def _encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def _reason(data: bytes, path: str = "x/img.png") -> str:
    with pytest.raises(BadImageError) as info:
        decode_image(data, path)
    assert info.value.path == path and path in str(info.value)
    return info.value.reason


# --------------------------------------------------------------------------- bad files


def test_empty_file():
    assert _reason(b"") == "empty file"


def test_random_bytes_are_not_an_image():
    data = np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    assert _reason(data) == "not an image (cannot identify)"
    assert _reason(b"hello, I am a text file\n" * 10) == "not an image (cannot identify)"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "TIFF", "WEBP"])
def test_truncated_files(fmt):
    data = _encode(_noise(), fmt)
    assert decode_image(data, "ok").size == (64, 48)  # the whole file is fine
    assert _reason(data[: len(data) // 2]) == "truncated image data"


def test_truncated_jpeg_near_the_end():
    data = _encode(_noise(), "JPEG", quality=90)
    assert _reason(data[:-200]) == "truncated image data"


def test_decompression_bomb_is_refused_before_decoding(monkeypatch):
    data = _encode(_noise(40, 50), "PNG")
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 1999)
    reason = _reason(data)
    assert reason.startswith("50 x 40 = 2,000 pixels is above the limit of 1,999 pixels") and "decompression bombs" in reason
    assert "--max-pixels 2000" in reason and "AIGI_BENCH_MAX_PIXELS=2000" in reason  # says how to let a genuine photo in
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 2000)
    assert decode_image(data, "ok").size == (50, 40)


def test_pil_bomb_check_is_reported_the_same_way(monkeypatch):
    """PIL's own limit (installed from the module constant) raises inside Image.open."""
    data = _encode(_noise(40, 50), "PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 1000)
    assert _reason(data).startswith("50 x 40 = 2,000 pixels is above the limit of 1,000 pixels")


def test_pil_limit_is_installed_from_the_module_constant():
    assert Image.MAX_IMAGE_PIXELS == images.MAX_IMAGE_PIXELS == 2**28


def test_load_image_missing_and_directory(tmp_path):
    with pytest.raises(BadImageError, match="file not found"):
        load_image(str(tmp_path / "nope.png"))
    with pytest.raises(BadImageError, match="directory"):
        load_image(str(tmp_path))
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(BadImageError, match="empty file"):
        load_image(str(tmp_path / "empty.png"))


def test_load_image_reads_a_good_file(tmp_path):
    src = _noise()
    src.save(tmp_path / "a.png")
    out = load_image(str(tmp_path / "a.png"))
    assert out.mode == "RGB" and np.array_equal(np.asarray(out), np.asarray(src))


# --------------------------------------------------------------------------- modes


def _roundtrip(image: Image.Image, fmt: str = "PNG", **kw) -> Image.Image:
    out = decode_image(_encode(image, fmt, **kw), f"test.{fmt.lower()}")
    assert out.mode == "RGB" and out.size == image.size
    return out


def test_rgb_png_is_bit_exact():
    src = _noise()
    assert np.array_equal(np.asarray(_roundtrip(src)), np.asarray(src))


def test_gray_and_bilevel():
    gray = _noise().convert("L")
    out = np.asarray(_roundtrip(gray))
    assert all(np.array_equal(out[..., c], np.asarray(gray)) for c in range(3))
    bilevel = gray.convert("1")
    out = np.asarray(_roundtrip(bilevel))
    on = np.asarray(bilevel)  # bool: which pixels are set
    assert on.any() and not on.all()
    assert all(np.array_equal(out[..., c], np.where(on, 255, 0)) for c in range(3))


def test_sixteen_bit_is_rescaled_not_clipped():
    ramp = np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)
    src = Image.fromarray(ramp)
    assert src.mode == "I;16"
    out = np.asarray(_roundtrip(src))[..., 0].astype(int)
    expected = np.rint(ramp / 257.0).astype(int)
    assert np.abs(out - expected).max() <= 1
    assert out.min() == 0 and out.max() == 255 and len(np.unique(out)) > 200  # not saturated at 255


def test_mode_i_is_read_as_sixteen_bit():
    src = Image.fromarray(np.full((8, 8), 65535, dtype=np.int32), "I")
    assert images.to_rgb(src).getpixel((0, 0)) == (255, 255, 255)
    half = Image.fromarray(np.full((8, 8), 32768, dtype=np.int32), "I")
    assert images.to_rgb(half).getpixel((0, 0)) == (128, 128, 128)


def test_cmyk_jpeg_and_tiff():
    cmyk = _noise().convert("CMYK")
    for fmt in ("JPEG", "TIFF"):
        out = np.asarray(_roundtrip(cmyk, fmt)).astype(int)
        ref = np.asarray(cmyk.convert("RGB")).astype(int)
        assert np.abs(out - ref).mean() < (12 if fmt == "JPEG" else 0.01)


def test_palette_with_transparency_keeps_palette_colours():
    src = _noise().convert("P")
    src.info["transparency"] = 0
    out = _roundtrip(src)
    assert np.array_equal(np.asarray(out), np.asarray(src.convert("RGB")))


def test_alpha_is_dropped_not_composited():
    """Like the official loaders' .convert('RGB'): stored colours are scored, alpha ignored."""
    rgb = _noise()
    rgba = rgb.copy()
    rgba.putalpha(Image.new("L", rgb.size, 0))  # fully transparent
    assert np.array_equal(np.asarray(_roundtrip(rgba)), np.asarray(rgb))
    la = rgb.convert("L")
    la_img = Image.merge("LA", (la, Image.new("L", la.size, 7)))
    assert np.array_equal(np.asarray(_roundtrip(la_img))[..., 1], np.asarray(la))


def test_premultiplied_modes_convert():
    gray = _noise().convert("L")
    la = Image.merge("La", (gray, Image.new("L", (64, 48), 255)))
    out = images.to_rgb(la)
    assert out.mode == "RGB"
    assert all(np.array_equal(np.asarray(out)[..., c], np.asarray(gray)) for c in range(3))  # opaque: as stored
    # half transparent: the stored values are premultiplied by alpha/255, so they are divided back
    dark = np.random.default_rng(1).integers(0, 129, (48, 64), dtype=np.uint8)
    expected = np.clip(np.round(dark * 255.0 / 128), 0, 255)
    for mode, bands in (("La", 1), ("RGBa", 3)):
        half = Image.merge(mode, (Image.fromarray(dark),) * bands + (Image.new("L", (64, 48), 128),))
        out = np.asarray(images.to_rgb(half)).astype(float)
        assert out.shape == (48, 64, 3) and np.abs(out - expected[..., None]).max() <= 1, mode


def test_exif_orientation_is_applied():
    src = _noise(30, 50)  # landscape, 50 wide
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    out = _roundtrip_exif(src, exif)
    assert out.size == (30, 50)
    assert np.array_equal(np.asarray(out), np.asarray(src.transpose(Image.Transpose.ROTATE_270)))


def _roundtrip_exif(src: Image.Image, exif: Image.Exif) -> Image.Image:
    data = _encode(src, "PNG", exif=exif.tobytes())
    assert Image.open(io.BytesIO(data)).getexif().get(0x0112) == 6
    return decode_image(data, "rotated.png")


def test_first_frame_of_animation():
    frames = [_noise(seed=i).convert("P") for i in range(3)]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    out = decode_image(data, "anim.gif")
    assert np.array_equal(np.asarray(out), np.asarray(frames[0].convert("RGB")))


def test_write_failures_lists_skipped_images_and_clears_a_stale_list(tmp_path):
    import csv

    listed = images.write_failures(tmp_path, [("a, b.png", "truncated"), ("c.png", "not an image")])
    assert listed == tmp_path / "failures.csv"
    with open(listed, newline="") as f:
        assert list(csv.reader(f)) == [["path", "reason"], ["a, b.png", "truncated"], ["c.png", "not an image"]]
    assert images.write_failures(tmp_path, {}.items()) is None and not listed.exists()
