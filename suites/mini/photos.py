"""The real photographs of AIGI-mini: files that scikit-image and scikit-learn ship in their wheels.

Nothing is downloaded: scikit-image keeps a handful of photographs in `skimage/data/` and
scikit-learn two in `sklearn/datasets/images/`. They are read straight from those folders
(no `skimage.data.*` fetcher, which would try pooch for the others).

Splits are BY SOURCE PHOTO and fixed (`SPLITS` below): no photo appears in two splits. The
stereo pair motorcycle_left/right shows one scene, so both sit in the test split.

Real and fake content never overlap inside a split. Each photo is cut in two halves along its
longer side: the first half ("real" region) feeds real crops, the second ("content" region)
feeds the crops a generator turns into fakes (Corvi-style unpaired fakes, test/wild fakes).
The stereo pair is cut at the same place in both views, so their halves show the same part of
the scene. A fake therefore never reproduces the pixels of any real image of the world, while
real and fake content come from the same photographs (no content shortcut).

Grayscale photographs are converted to RGB (three equal channels), as detectors take RGB.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image

from bench.api import MissingDataError


@dataclass(frozen=True)
class Photo:
    """One source photograph: a file shipped by a declared dependency."""

    name: str  # stem used in manifests: "astronaut"
    package: str  # "skimage" or "sklearn"
    filename: str  # file inside the package's data folder
    gray: bool = False  # stored as grayscale; converted to RGB on load
    scene: str | None = None  # photos of one scene share it; they must share a split

    @property
    def path(self) -> Path:
        return _data_dir(self.package) / self.filename


PHOTOS: tuple[Photo, ...] = (
    # colour photographs
    Photo("astronaut", "skimage", "astronaut.png"),
    Photo("coffee", "skimage", "coffee.png"),
    Photo("chelsea", "skimage", "chelsea.png"),
    Photo("rocket", "skimage", "rocket.jpg"),
    Photo("hubble_deep_field", "skimage", "hubble_deep_field.jpg"),
    Photo("motorcycle_left", "skimage", "motorcycle_left.png", scene="motorcycle"),
    Photo("motorcycle_right", "skimage", "motorcycle_right.png", scene="motorcycle"),
    Photo("retina", "skimage", "retina.jpg"),
    Photo("ihc", "skimage", "ihc.png"),
    Photo("china", "sklearn", "china.jpg"),
    Photo("flower", "sklearn", "flower.jpg"),
    # grayscale photographs (camera photos of scenes, textures, objects and printed pages)
    Photo("camera", "skimage", "camera.png", gray=True),
    Photo("brick", "skimage", "brick.png", gray=True),
    Photo("grass", "skimage", "grass.png", gray=True),
    Photo("gravel", "skimage", "gravel.png", gray=True),
    Photo("moon", "skimage", "moon.png", gray=True),
    Photo("coins", "skimage", "coins.png", gray=True),
    Photo("page", "skimage", "page.png", gray=True),
    Photo("text", "skimage", "text.png", gray=True),
)
# Left out on purpose: synthetic drawings (chessboard, color, phantom, logo, horse), the
# synthetically motion-blurred clock, near-empty microscopy (cell) and tiny files.

# Fixed assignment. Train gets the most photos and both colour and gray content; val and test
# each get colour and gray photos none of the others has (the unseen-content test).
SPLITS: dict[str, tuple[str, ...]] = {
    "train": (
        "astronaut", "coffee", "china", "retina", "hubble_deep_field", "ihc",
        "camera", "brick", "gravel", "coins", "page",
    ),
    "val": ("rocket", "moon", "text"),
    "test": ("chelsea", "flower", "motorcycle_left", "motorcycle_right", "grass"),
}

# Crop shapes (height, width): a small discrete set so native-resolution batching of a
# detector sees repeated shapes. All are multiples of 32, hence of every generator's factor.
SHAPES: tuple[tuple[int, int], ...] = (
    (64, 64), (96, 128), (128, 128), (128, 192), (192, 128), (160, 160), (256, 256),
)
# Photos larger than a crop are also cropped after a downscale by one of these factors, so
# large photos contribute context at several scales (as dataset images are resized photos).
SCALES: tuple[float, ...] = (1.0, 0.75, 0.5)

REGIONS = ("real", "content")


def _data_dir(package: str) -> Path:
    if package == "skimage":
        import skimage

        return Path(skimage.__file__).parent / "data"
    if package == "sklearn":
        import sklearn.datasets

        return Path(sklearn.datasets.__file__).parent / "images"
    raise ValueError(f"unknown photo package {package!r}")


def photo(name: str) -> Photo:
    for p in PHOTOS:
        if p.name == name:
            return p
    raise KeyError(f"unknown photo {name!r}; known: {', '.join(p.name for p in PHOTOS)}")


@lru_cache(maxsize=None)
def load_photo(name: str) -> Image.Image:
    """The whole photograph as an RGB PIL image (cached; do not modify it in place)."""
    p = photo(name)
    if not p.path.is_file():
        raise MissingDataError(
            f"photo {name!r}: {p.path} is missing; reinstall {'scikit-image' if p.package == 'skimage' else 'scikit-learn'}"
        )
    with Image.open(p.path) as im:
        return im.convert("RGB")


def region_box(name: str, region: str) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the half of a photo reserved for `region` ("real" or "content")."""
    if region not in REGIONS:
        raise ValueError(f"region must be one of {REGIONS}, not {region!r}")
    w, h = load_photo(name).size
    first = region == "real"
    if w >= h:
        return (0, 0, w // 2, h) if first else (w // 2, 0, w, h)
    return (0, 0, w, h // 2) if first else (0, h // 2, w, h)


@lru_cache(maxsize=None)
def _region_image(name: str, region: str, scale: float) -> Image.Image:
    im = load_photo(name).crop(region_box(name, region))
    if scale != 1.0:
        size = (round(im.width * scale), round(im.height * scale))
        im = im.resize(size, Image.Resampling.LANCZOS)
    return im


@dataclass(frozen=True)
class Crop:
    """Where a crop came from: enough to redo it and to check split disjointness."""

    photo: str
    region: str
    scale: float
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1) in the scaled region

    def image(self) -> Image.Image:
        return _region_image(self.photo, self.region, self.scale).crop(self.box)

    def to_json(self) -> dict:
        return {"photo": self.photo, "region": self.region, "scale": self.scale, "box": list(self.box)}


def sample_crop(split: str, region: str, rng: random.Random) -> Crop:
    """One crop: a photo of `split` (uniform), a shape and a scale that fit, a uniform position."""
    names = SPLITS[split]
    name = names[rng.randrange(len(names))]
    options = []
    for scale in SCALES:
        rw, rh = _region_image(name, region, scale).size
        options += [(scale, hw) for hw in SHAPES if hw[0] <= rh and hw[1] <= rw]
    if not options:
        raise MissingDataError(f"photo {name!r} is smaller than every crop shape")
    scale, (ch, cw) = options[rng.randrange(len(options))]
    rw, rh = _region_image(name, region, scale).size
    x0, y0 = rng.randint(0, rw - cw), rng.randint(0, rh - ch)
    return Crop(name, region, scale, (x0, y0, x0 + cw, y0 + ch))


def check_splits() -> None:
    """The split table is sound: known photos, no photo or scene in two splits."""
    seen: dict[str, str] = {}
    for split, names in SPLITS.items():
        for n in names:
            p = photo(n)
            for key in (n, p.scene):
                if key is not None and seen.setdefault(key, split) != split:
                    raise ValueError(f"{key!r} is in splits {seen[key]!r} and {split!r}")
