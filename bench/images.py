"""Decode image files safely into RGB PIL images, or say clearly why one cannot be used.

Every image the runner scores goes through `decode_image`, so one bad file becomes a
`BadImageError` (recorded, run goes on) instead of a crash or, worse, silently wrong pixels:

- pixels are fully loaded here, so a truncated file fails at decode time, not later in a
  worker (this relies on PIL's default `ImageFile.LOAD_TRUNCATED_IMAGES = False`; if some
  other code sets it True, PIL pads truncated files and they cannot be detected);
- EXIF orientation is applied (a lossless pixel permutation), so a photo is scored upright;
  a deliberate deviation, since the official loaders below ignore the tag (it matters only
  for photos whose tag is not 1; generated images have none);
- every mode becomes 8-bit RGB the way the official test loaders do it
  (`Image.open(p).convert('RGB')` in dahyedahye/dear scripts/processed_data_gen/process_test_data.py
  and the Corvi/AlignedForensics test code): an alpha channel is dropped, not composited,
  so the stored colour samples -- and the generator's traces in them -- are what gets
  scored. The exception is 16-bit data, which PIL's `convert` clips at 255; it is rescaled
  to 8 bits here instead;
- images with more than `MAX_IMAGE_PIXELS` pixels are refused before their pixels are
  decoded (decompression-bomb guard); the refusal gives the image's W x H and how to raise the
  limit (`AIGI_BENCH_MAX_PIXELS`, `bench run --max-pixels`) for a genuine large photo.
"""
from __future__ import annotations

import contextlib
import csv
import io
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from bench.api import BadImageError
from bench.files import atomic_path

#: Largest image accepted, in pixels (16384 x 16384). Also installed as PIL's own limit so
#: PIL's checks fire at the same size; a test may lower this module constant.
MAX_PIXELS_ENV = "AIGI_BENCH_MAX_PIXELS"
MAX_IMAGE_PIXELS: int = int(os.environ.get(MAX_PIXELS_ENV) or 2**28)
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


@contextlib.contextmanager
def pixel_limit(limit: int | None) -> Iterator[None]:
    """Within the block, the decompression-bomb limit is `limit` pixels (None: unchanged), for
    this process and the DataLoader workers it starts (they read the environment when spawned,
    inherit it when forked); restored afterwards."""
    global MAX_IMAGE_PIXELS
    if limit is None:
        yield
        return
    saved = MAX_IMAGE_PIXELS, Image.MAX_IMAGE_PIXELS, os.environ.get(MAX_PIXELS_ENV)
    MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS = int(limit)
    os.environ[MAX_PIXELS_ENV] = str(int(limit))
    try:
        yield
    finally:
        MAX_IMAGE_PIXELS, Image.MAX_IMAGE_PIXELS = saved[0], saved[1]
        if saved[2] is None:
            os.environ.pop(MAX_PIXELS_ENV, None)
        else:
            os.environ[MAX_PIXELS_ENV] = saved[2]

_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


# The one rule of what is an image, for every source (folders, CSV manifests, datasets): a file
# whose extension belongs to a raster format this Pillow can open. GIF and AVIF count (Pillow
# decodes them; a GIF is scored on its first frame); SVG, PDF, PSD and the like do not.
RASTER_FORMATS = frozenset({"PNG", "JPEG", "MPO", "WEBP", "BMP", "TIFF", "GIF", "AVIF", "JPEG2000", "PPM"})
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    ext for ext, fmt in Image.registered_extensions().items() if fmt in RASTER_FORMATS and fmt in Image.OPEN
)


def is_image_file(path: Path) -> bool:
    """An image by its extension (any case). Hidden files are not: macOS leaves '._x.png'
    resource forks beside copied images, and they do not decode."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def not_an_image(path: Path) -> str | None:
    """Why `path` is not taken as an image by `is_image_file` (for the skipped-files list), or None."""
    path = Path(path)
    if path.name.startswith("."):
        return "hidden file (e.g. a macOS ._ resource fork)"
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        return f"not an image file (extension {path.suffix.lower() or 'none'})"
    return None


def write_failures(folder: Path, failures: Iterable[tuple[str, str]]) -> Path | None:
    """List images that were skipped as `<folder>/failures.csv` (path, reason: the column
    names of a run's failures.csv) and return it.

    With no failures the file is removed, so a list left by an earlier run in the same folder
    is never mistaken for this run's (a run folder keeps an empty list instead: its exports are
    always the same set of files).
    """
    rows = list(failures)
    target = Path(folder) / "failures.csv"
    if not rows:
        target.unlink(missing_ok=True)
        return None
    with atomic_path(target) as tmp, open(tmp, "w", newline="") as f:
        csv.writer(f).writerows([("path", "reason"), *rows])
    return target


def load_image(path: str) -> Image.Image:
    """Read and decode one file; a missing or unreadable file is a BadImageError too."""
    from bench.files import read_bytes

    try:
        data = read_bytes(path)
    except FileNotFoundError:
        raise BadImageError(str(path), "file not found") from None
    except IsADirectoryError:
        raise BadImageError(str(path), "is a directory, not an image file") from None
    except OSError as exc:
        raise BadImageError(str(path), f"cannot read file ({exc.strerror or exc})") from None
    return decode_image(data, str(path))


def decode_image(data: bytes, path: str) -> Image.Image:
    """Bytes of an image file -> fully loaded, upright, 8-bit RGB image.

    `path` is only used in error messages. Raises BadImageError with a short reason.
    """
    if not data:
        raise BadImageError(path, "empty file")
    try:
        with warnings.catch_warnings():
            # PIL warns (not raises) between 1x and 2x its limit; both are refusals here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            _check_size(image, path)
            image.load()
    except BadImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadImageError(path, _too_large(*_header_size(data))) from None
    except UnidentifiedImageError:
        raise BadImageError(path, "not an image (cannot identify)") from None
    except Exception as exc:  # PIL decoders raise OSError, SyntaxError, ValueError, zlib.error...
        raise BadImageError(path, _decode_reason(data, exc)) from None
    try:
        image = ImageOps.exif_transpose(image)
    except Exception as exc:  # a malformed EXIF block must not lose an otherwise good image
        warnings.warn(f"{path}: EXIF orientation ignored ({type(exc).__name__}: {exc})", stacklevel=2)
    try:
        return to_rgb(image)
    except Exception as exc:
        raise BadImageError(path, f"unsupported image mode {image.mode!r} ({exc})") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB (alpha dropped, 16-bit data rescaled instead of clipped)."""
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT:
        # 16-bit gray (PNG/TIFF/PGM). Mode "I" is read as 16-bit data: that is what PIL
        # produces for 16-bit files; values outside 0..65535 are clipped.
        wide = np.clip(np.asarray(image, dtype=np.int64), 0, 65535)
        gray = ((wide * 255 + 32767) // 65535).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError:  # premultiplied "La" only converts to "LA"
        return image.convert("LA").convert("RGB")


def _check_size(image: Image.Image, path: str) -> None:
    if image.width * image.height > MAX_IMAGE_PIXELS:
        raise BadImageError(path, _too_large(image.width, image.height))


def _header_size(data: bytes) -> tuple[int, int] | tuple[()]:
    """(W, H) from the header of an image PIL refused to open as too large, or () if unknown."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # read the header only: nothing is decoded here
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                return im.size
    except Exception:
        return ()
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _too_large(*size: int) -> str:
    """The refusal of an image over the pixel limit, with its size and the way to raise it."""
    limit = f"the limit of {MAX_IMAGE_PIXELS:,} pixels ({int(MAX_IMAGE_PIXELS ** 0.5)} x {int(MAX_IMAGE_PIXELS ** 0.5)})"
    if len(size) == 2:
        w, h = size
        what = f"{w} x {h} = {w * h:,} pixels is above {limit}"
        needed = w * h
    else:
        what, needed = f"its pixel count is above {limit}", MAX_IMAGE_PIXELS * 2
    return (f"{what}, a guard against decompression bombs; if the image is genuine, raise the limit with "
            f"--max-pixels {needed} (or {MAX_PIXELS_ENV}={needed})")


def _decode_reason(data: bytes, exc: Exception) -> str:
    message = str(exc)
    if "truncated" in message.lower() or _riff_truncated(data):
        return "truncated image data"
    return f"corrupt image data ({type(exc).__name__}: {message})" if message else "corrupt image data"


def _riff_truncated(data: bytes) -> bool:
    """WebP (RIFF) declares its size up front; PIL only says 'could not create decoder'."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return False
    return int.from_bytes(data[4:8], "little") + 8 > len(data)


def pixel_environment() -> dict[str, str]:
    """What can make two machines produce different pixels or scores from the same inputs:
    the codec libraries Pillow was built with (JPEG/WEBP round trips, PNG bytes), and the CPU
    kernels torch dispatches to (float32 sums in another order on AVX-512 than on AVX2).
    Recorded in run and world manifests."""
    from PIL import __version__ as pillow
    from PIL import features

    env = {"pillow": pillow}
    for name, feature in (("libjpeg", "jpg"), ("libwebp", "webp"), ("zlib", "zlib"), ("libavif", "avif")):
        try:
            env[name] = str(features.version(feature) or "absent")
        except Exception:  # an older Pillow without this feature's version
            env[name] = "unknown"
    try:
        import torch

        env["torch"] = torch.__version__
        env["torch_cpu_capability"] = str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # noqa: BLE001 - torch absent or too old to say
        env["torch_cpu_capability"] = "unknown"
    return env


def pixel_digest(image: Image.Image) -> str:
    """sha256 of an RGB image's size and decoded pixels: its identity whatever file holds it.

    The runner seeds each image's post-processing from this, not from the file's bytes: the same
    pixels saved by another zlib (or PNG encoder setting) are other bytes, and would otherwise
    draw another JPEG quality or crop on another machine."""
    import hashlib

    rgb = to_rgb(image)
    return hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode() + rgb.tobytes()).hexdigest()

