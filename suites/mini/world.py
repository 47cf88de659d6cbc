"""Build AIGI-mini: the papers' setting in miniature, offline, reproducible from a seed.

Layout of a world folder (`suites.mini.layout.WorldLayout`; every image a PNG named 0000.png,
0001.png, ... within its folder):
- manifest.json: name, version, seed, config, generators (name, display_name, training,
  architecture, params, psnr, weights_sha256, ...), splits (photos per split), wild_photos
  (the split wild/ crops from), counts (images per folder), sources (each file's provenance)
  and files (relative path -> sha256).
- train/real, val/real: photo crops WEBP-compressed (quality drawn per image) and stored as
  lossless PNG. LSUN's real images are WEBP files, so "WEBP traces mean real" is a shortcut a
  detector trained on them can take (the Stay-Positive paper's finding); we plant the same cue.
- train/fake, val/fake: Corvi-style fakes, the training generator applied to OTHER content
  (the photos' content halves, see photos.py), never WEBP-compressed.
- train/recon, val/recon: Rajan-style aligned fakes, the training generator's reconstruction
  of train/real/<same name> (Rajan et al. pair each real with its autoencoder reconstruction).
- diag/images + diag/masks (same names; masks binary 0/255, mode L): DEAR's diagnostic set,
  training reals whose one rectangle (suites.masks.sample_box) is replaced through the blurred
  mask by the generator's output.
- test/real, test/fake/<generator>: unseen test photos, plain PNG; every generator (the
  training one included) re-synthesises the same content crops (distinct from the real crops),
  so sets differ only by generator.
- wild/real, wild/fake/<generator>: unseen generators only, each image (real or fake alike)
  passed through one "unknown" post-processing drawn per image (resize, JPEG, WEBP or blur).

Every random draw comes from `derive_seed(seed, ...)` of the image's identity, generators run
single-threaded in float64 (`generators.load_generator` says why), and PIL's PNG encoder is
deterministic, so a rebuild with the same seed gives byte-identical files (the manifest lists
their sha256, and under "environment" the codec libraries and CPU kernels of the machine that
built it: PNG bytes can differ with another zlib even where the pixels are equal).
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageFilter

from bench.api import BenchError, derive_seed
from bench.devices import single_thread
from bench.images import pixel_environment
from bench.weights import home, sha256_file
from suites import masks
from suites.mini import generators as gens
from suites.mini import photos
from suites.mini.layout import WorldLayout
from suites.postprocess import encode_decode

VERSION = 2  # 2: generators run in float64, so every CPU writes the same bytes (v1: float32)
NAME = "AIGI-mini"


@dataclass(frozen=True)
class WorldConfig:
    """How many images of each kind; the defaults are the world every table is built on."""

    train: int = 160  # train/real, train/fake and train/recon each
    val: int = 48  # val/real, val/fake and val/recon each
    diag: int = 128  # DEAR diagnostic images (<= train)
    test_real: int = 24  # 24 per set keeps the README main job (6 native-resolution CNNs on
    test_fake: int = 24  # originals + post-processed copies up to 1024 px) near 5 CPU minutes
    wild_real: int = 24
    wild_fake: int = 24  # per unseen generator
    webp_quality: tuple[int, int] = (70, 95)  # drawn per train/val real

    @classmethod
    def reduced(cls) -> "WorldConfig":
        """A tiny world for tests: every folder present, a few images each."""
        return cls(train=6, val=3, diag=4, test_real=3, test_fake=2, wild_real=2, wild_fake=2)

    def __post_init__(self) -> None:
        if self.diag > self.train:
            raise ValueError(f"diag ({self.diag}) cannot exceed train ({self.train}): it reuses training reals")
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, int) and v < 1:
                raise ValueError(f"WorldConfig.{f.name} must be >= 1, got {v}")

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def default_root(seed: int = 0) -> Path:
    return home() / "worlds" / f"mini-v{VERSION}-seed{seed}"


# --------------------------------------------------------------------------- post-processing


def unknown_postprocess(image: Image.Image, rng: random.Random) -> tuple[Image.Image, dict[str, Any]]:
    """One post-processing of the kind images meet online, drawn per image (wild sets)."""
    op = rng.choice(("resize", "jpeg", "webp", "blur"))
    if op == "resize":
        scale = round(rng.uniform(0.5, 1.5), 3)
        size = (max(8, round(image.width * scale)), max(8, round(image.height * scale)))
        return image.resize(size, Image.Resampling.BICUBIC), {"op": op, "scale": scale, "size": list(size)}
    if op in ("jpeg", "webp"):
        q = rng.randint(60, 95)
        return encode_decode(image, op.upper(), q), {"op": op, "quality": q}
    sigma = round(rng.uniform(0.5, 1.2), 3)
    return image.filter(ImageFilter.GaussianBlur(sigma)), {"op": op, "sigma": sigma}


# --------------------------------------------------------------------------- build


class _Writer:
    """Writes PNGs under the build folder and records their hashes and provenance."""

    def __init__(self, layout: WorldLayout, bar: Any):
        self.layout, self.bar = layout, bar
        self.files: dict[str, str] = {}
        self.sources: dict[str, dict[str, Any]] = {}

    def put(self, path: Path, image: Image.Image, source: dict[str, Any]) -> None:
        rel = self.layout.rel(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        data = buf.getvalue()
        path.write_bytes(data)
        self.files[rel] = hashlib.sha256(data).hexdigest()
        self.sources[rel] = source
        self.bar.update()


def _name(i: int) -> str:
    return f"{i:04d}.png"


def _total(cfg: WorldConfig, n_gens: int, n_unseen: int) -> int:
    return (3 * cfg.train + 3 * cfg.val + 2 * cfg.diag + cfg.test_real + n_gens * cfg.test_fake
            + cfg.wild_real + n_unseen * cfg.wild_fake)


def _build_into(tmp: Path, seed: int, cfg: WorldConfig, models: dict[str, gens.ConvAutoencoder],
                weight_hashes: dict[str, str], progress: bool) -> None:
    from tqdm.auto import tqdm

    photos.check_splits()
    train_gen = gens.training_generator().name
    unseen = [g.name for g in gens.GENERATORS if not g.training]
    bar = tqdm(total=_total(cfg, len(models), len(unseen)), desc=f"build {NAME} seed {seed}", unit="img",
               disable=not progress)
    w = WorldLayout(tmp)
    out = _Writer(w, bar)

    def G(generator: str, image: Image.Image) -> Image.Image:
        return gens.generate(models[generator], image)

    def rng(*key: object) -> random.Random:
        return random.Random(derive_seed(seed, NAME, *key))

    lo, hi = cfg.webp_quality
    train_reals: list[tuple[str, Image.Image, Image.Image]] = []  # (name, real, recon)
    for split, n in (("train", cfg.train), ("val", cfg.val)):
        for i in range(n):
            r = rng(split, "real", i)
            crop = photos.sample_crop(split, "real", r)
            q = r.randint(lo, hi)
            real = encode_decode(crop.image(), "WEBP", q)
            out.put(w.real(split) / _name(i), real, {**crop.to_json(), "webp_quality": q})
            recon = G(train_gen, real)
            out.put(w.recon(split) / _name(i), recon, {"from": w.rel(w.real(split) / _name(i)), "generator": train_gen})
            if split == "train":
                train_reals.append((_name(i), real, recon))
        for i in range(n):
            crop = photos.sample_crop(split, "content", rng(split, "fake", i))
            out.put(w.fakes(split) / _name(i), G(train_gen, crop.image()), {**crop.to_json(), "generator": train_gen})

    for name, real, recon in train_reals[: cfg.diag]:
        box = masks.sample_box(real.width, real.height, rng("diag", name))
        mask = masks.box_mask(real.size, box)
        radius = masks.dear_blur_radius(real.width, real.height)
        image = masks.composite(real, recon, masks.soft_mask(mask, radius))
        src = {"from": w.rel(w.real("train") / name), "generator": train_gen, "box": list(box), "blur_radius": round(radius, 4)}
        out.put(w.diag_images / name, image, src)
        out.put(w.diag_masks / name, mask, src)

    for i in range(cfg.test_real):
        crop = photos.sample_crop("test", "real", rng("test", "real", i))
        out.put(w.real("test") / _name(i), crop.image(), crop.to_json())
    content = [photos.sample_crop("test", "content", rng("test", "content", i)) for i in range(cfg.test_fake)]
    for g in models:
        for i, crop in enumerate(content):
            out.put(w.generator("test", g) / _name(i), G(g, crop.image()), {**crop.to_json(), "generator": g})

    for i in range(cfg.wild_real):
        r = rng("wild", "real", i)
        crop = photos.sample_crop("test", "real", r)
        image, post = unknown_postprocess(crop.image(), r)
        out.put(w.real("wild") / _name(i), image, {**crop.to_json(), "post": post})
    content = [photos.sample_crop("test", "content", rng("wild", "content", i)) for i in range(cfg.wild_fake)]
    for g in unseen:
        for i, crop in enumerate(content):
            image, post = unknown_postprocess(G(g, crop.image()), rng("wild", "post", g, i))
            out.put(w.generator("wild", g) / _name(i), image, {**crop.to_json(), "generator": g, "post": post})
    bar.close()

    vals = gens.val_crops()
    generators = []
    for c in gens.GENERATORS:
        generators.append({
            "name": c.name, "display_name": c.display_name, "training": c.training,
            "latent_channels": c.latent_channels, "factor": c.factor, "upsampling": c.upsampling,
            "codebook": c.codebook, "params": gens.num_params(models[c.name]),
            "psnr": round(gens.mean_psnr(models[c.name], vals), 2), "weights_sha256": weight_hashes[c.name],
            "description": c.description,
        })
    counts: dict[str, int] = {}
    for rel in out.files:
        folder = rel.rsplit("/", 1)[0]
        counts[folder] = counts.get(folder, 0) + 1
    manifest = {
        "name": NAME, "version": VERSION, "seed": seed, "config": cfg.to_json(),
        "generators": generators,
        "splits": {k: list(v) for k, v in photos.SPLITS.items()},
        "wild_photos": "test",
        "counts": counts,
        "environment": pixel_environment(),
        "sources": out.sources,
        "files": out.files,
    }
    w.manifest.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def build_world(
    root: Path | str,
    seed: int = 0,
    config: WorldConfig | None = None,
    progress: bool = True,
    generators_dir: str | Path | None = None,
) -> Path:
    """Build the world at `root` (replacing what is there) and return `root`.

    It is built in a sibling temporary folder and renamed into place at the end, so an
    interrupted build never leaves a half world. `generators_dir` reads generator weights from
    elsewhere than the committed ones (tests, retrained generators).
    """
    root = Path(root).expanduser()
    _check_replaceable(root)
    cfg = config or WorldConfig()
    models = {g.name: gens.load_generator(g.name, generators_dir) for g in gens.GENERATORS}
    hashes = {g.name: sha256_file(gens.weights_path(g.name, generators_dir)) for g in gens.GENERATORS}
    root.parent.mkdir(parents=True, exist_ok=True)
    # One private staging folder per build (two builds of one root never share it): the world
    # is written into staging/world, and a replaced world is moved to staging/old before removal.
    staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.building-"))
    tmp = staging / "world"
    t0 = time.perf_counter()
    try:
        with single_thread():
            _build_into(tmp, seed, cfg, models, hashes, progress)
        if root.exists():
            root.rename(staging / "old")
        try:
            tmp.rename(root)
        except OSError:  # another process finished the same build first: keep its copy
            if not WorldLayout(root).manifest.is_file():
                if (staging / "old").exists() and not root.exists():
                    (staging / "old").rename(root)  # give the earlier world back
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if progress:
        print(f"{NAME} seed {seed} built at {root} in {time.perf_counter() - t0:.1f} s")
    return root


def _check_replaceable(root: Path) -> None:
    """Building replaces `root`, so it must be nothing yet, an empty folder, or an earlier world:
    a --root pointed at a folder of one's own (or at a run folder) must never be deleted."""
    if not root.exists():
        return
    if not root.is_dir():
        raise BenchError(f"{root} is a file, not a world folder; choose a new or empty folder for the world")
    if not any(root.iterdir()):
        return
    try:
        is_world = read_manifest(root).get("name") == NAME
    except (BenchError, AttributeError):  # no or unreadable manifest, or one that is not an object
        is_world = False
    if not is_world:
        why = (f"its manifest.json is not an {NAME} one, or is damaged" if WorldLayout(root).manifest.exists()
               else f"no {NAME} manifest.json")
        raise BenchError(f"{root} holds files but is not an {NAME} world ({why}); a build would replace it, so "
                         "choose a new or empty folder (or, if it is a world whose manifest was damaged, delete the "
                         "folder yourself and build again)")


def read_manifest(root: Path | str) -> dict[str, Any]:
    path = WorldLayout(root).manifest
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BenchError(f"{path}: no manifest; build the world with `bench world build`") from None
    except (OSError, ValueError) as exc:  # not JSON, not text, a folder, unreadable
        raise BenchError(f"{path}: unreadable manifest ({exc})") from None


def _current(root: Path, seed: int, cfg: WorldConfig, generators_dir: str | Path | None) -> bool:
    """Is the world at `root` complete and built from this seed, config and generator weights?

    A damaged manifest (not an object, no file list, generator entries without names) means
    "not current": the caller rebuilds, and `_check_replaceable` still guards what it replaces.
    """
    if not WorldLayout(root).manifest.is_file():
        return False
    try:
        m = read_manifest(root)
    except BenchError:
        return False
    if not isinstance(m, dict) or not isinstance(m.get("files"), dict):
        return False
    if m.get("version") != VERSION or m.get("seed") != seed or m.get("config") != cfg.to_json():
        return False
    recorded = m.get("generators")
    if not isinstance(recorded, list) or not all(isinstance(g, dict) for g in recorded):
        return False
    by_name = {g.get("name"): g for g in recorded}
    if set(by_name) != {c.name for c in gens.GENERATORS}:  # a damaged list, or one from other code
        return False
    for c in gens.GENERATORS:  # weights retrained since: rebuild (if the weights are here)
        path = gens.weights_path(c.name, generators_dir)
        if path.is_file() and sha256_file(path) != by_name[c.name].get("weights_sha256"):
            return False
    return True


def ensure_world(
    seed: int = 0,
    root: Path | str | None = None,
    progress: bool = True,
    config: WorldConfig | None = None,
    generators_dir: str | Path | None = None,
) -> Path:
    """The world for `seed`, built on first use (default root: <home>/worlds/mini-v<VERSION>-seed<seed>, now mini-v2-seed<seed>)."""
    path = Path(root).expanduser() if root is not None else default_root(seed)
    cfg = config or WorldConfig()
    if _current(path, seed, cfg, generators_dir):
        return path
    return build_world(path, seed, cfg, progress, generators_dir)


def verify_world(root: Path | str) -> list[str]:
    """Files whose bytes differ from the manifest's hashes (or are missing); empty when intact.

    A manifest without a `files` object of path -> sha256 cannot vouch for anything: that is a
    BenchError naming it, not an empty (all-clear) list.
    """
    root = Path(root)
    path = WorldLayout(root).manifest
    manifest = read_manifest(root)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        found = "a JSON object" if isinstance(manifest, dict) else f"a JSON {type(manifest).__name__}"
        raise BenchError(f"{path}: damaged manifest, {found} without a \"files\" object of path -> sha256; "
                         f"delete {root} and build it again with `bench world build`")
    bad = []
    for rel, digest in files.items():
        p = root / rel
        if not isinstance(digest, str) or not p.is_file() or sha256_file(p) != digest:
            bad.append(rel)
    return bad
