"""The contracts between the parts of aigi-bench.

Everything that crosses a folder boundary is defined here: a detector, an image record and
image set, a suite, a post-processing transform, a frozen backbone under a linear head, and the
folders a detector is trained on. The core (`bench/`) only knows these types; `detectors/`,
`suites/` and `dear/` implement them and come in through entry points.

Conventions shared by the whole field and kept here:
- a detector returns one float *logit* per image, positive = fake, logit 0 = probability 0.5
  (the convention of the Corvi, Rajan and DEAR official code);
- label 0 = real, 1 = fake.
"""
from __future__ import annotations

import abc
import difflib
import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Protocol, runtime_checkable

import numpy as np

REAL, FAKE = 0, 1
# The condition blocks of the scores table and of DEAR's Table 1 (a sweep adds its own labels).
ORIGINAL, POST_PROCESSED = "Original", "Post-processed"
AVG = "avg"  # the set name of the mean over generator sets (DEAR's "Avg" column)
FAKES_ONLY = " (fakes only)"  # ends the label of a condition that post-processed the fakes alone

FAMILIES: tuple[str, ...] = ("CNN", "CLIP", "ViT", "training-free")


class BenchError(Exception):
    """An error a user can act on; the CLI prints its message without a traceback."""


def did_you_mean(name: str, candidates: Iterable[str], n: int = 3) -> str:
    """"; did you mean 'corvi'?" for the candidates close to a mistyped `name` (compared
    case-insensitively: 'CORVI' is close to 'corvi'), else ""."""
    by_lower = {c.lower(): c for c in candidates}
    close = [by_lower[c] for c in difflib.get_close_matches(name.lower(), list(by_lower), n=n, cutoff=0.5)]
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


class MissingWeightsError(BenchError):
    """Weights for a tag are not on this machine and cannot be downloaded."""


class MissingDataError(BenchError):
    """A suite's data is not at the expected place."""


class MissingDependencyError(BenchError):
    """An optional library a detector needs is not installed; the message names the pip extra."""


class BadImageError(BenchError):
    """One image cannot be used; the run records it and goes on."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


# --------------------------------------------------------------------------- detectors


@dataclass(frozen=True)
class InputPolicy:
    """How a detector's own preprocessing treats pixel sizes, as `bench list` and the run
    manifest report it.

    `size=None` means native resolution: the image is scored at its own size. A fixed `size`
    (H, W) means the preprocessing resizes or crops to it, as the official test code does. The
    runner needs no policy to batch: it groups images by the shape of their preprocessed tensors,
    so a native-resolution detector's images share a batch only when their sizes are equal.

    `steps` says in a few words how the pixels get there ("center-crop 224, no resize; CLIP
    mean/std"), for detectors whose official pipelines differ in exactly that; the run manifest
    records it with the size.
    """

    size: tuple[int, int] | None = None
    steps: str = ""

    @property
    def native(self) -> bool:
        return self.size is None

    def describe(self) -> str:
        base = "native resolution" if self.native else f"fixed {self.size[0]}x{self.size[1]}"
        return f"{base}: {self.steps}" if self.steps else base


@dataclass(frozen=True)
class DetectorInfo:
    """What tables and the runner need to know about a detector, without running it."""

    name: str  # registry name, lowercase ASCII: "corvi", "dear-c"
    display_name: str  # as printed in the papers' tables: "Corvi+", "DEAR-c"
    family: str  # one of FAMILIES: the row groups of DEAR's Table 1
    calibrated: bool = True  # False: no meaningful threshold at 0, accuracies print as "-"
    input: InputPolicy = field(default_factory=InputPolicy)
    description: str = ""


class Detector(abc.ABC):
    """A detector: preprocessing it owns plus a batched forward that returns logits.

    Subclasses set `info`, `weights` (the tag they were built with, e.g. "corvi.mini") and
    `fingerprint` (a digest of the weights: scores are cached under it), and implement
    `preprocess` and `forward`.
    """

    info: DetectorInfo
    weights: str = ""
    fingerprint: str = ""
    device: str = "cpu"

    @abc.abstractmethod
    def preprocess(self) -> Callable[[Any], Any]:
        """A small picklable callable: PIL RGB image -> CHW tensor.

        It runs in DataLoader workers, so it must not hold the model. It may stop at 8-bit
        pixels (a uint8 tensor, after any resize or crop): they cross processes and reach the
        GPU in a quarter of the bytes, and `prepare` converts them on the device.
        """

    def prepare(self, batch: Any) -> Any:
        """The input of `forward` from a batch of `preprocess` outputs already on `self.device`
        (e.g. uint8 pixels -> normalised float). Default: the batch as it is."""
        return batch

    @abc.abstractmethod
    def forward(self, batch: Any) -> Any:
        """(B, C, H, W) tensor on `self.device`, as `prepare` gives it -> (B,) tensor of logits."""

    def to(self, device: str) -> "Detector":
        self.device = str(device)
        return self

    def score(self, images: Iterable[Any], batch_size: int = 16) -> np.ndarray:
        """Logits for PIL images, in input order, through the runner's batching
        (`bench.batching`): the one place that groups tensors of equal shape."""
        from bench.batching import score_images

        return score_images(self, images, batch_size)


class Embedder(Detector):
    """A Detector whose `forward` returns (B, D) feature vectors instead of (B,) logits: a frozen
    encoder's features for probes (Gaintseva et al., arXiv 2406.15035: linear probes on cached
    embeddings). It has the Detector contract's `preprocess`, `prepare`, `to` and `fingerprint`
    (which must name the feature tap too), so the runner feeds it exactly as it feeds detectors
    (`bench.scoring.compute_missing`: same decoding, conditions, seeds, devices and failures) and
    stores its vectors in the score store's `vectors` table, keyed like scores. `dim` is D."""

    dim: int

    @abc.abstractmethod
    def forward(self, batch: Any) -> Any:
        """(B, C, H, W) tensor on `self.device`, as `prepare` gives it -> (B, D) float tensor."""


@runtime_checkable
class LinearHeadModel(Protocol):
    """A frozen backbone under a linear head: what `detectors.head.refit_head` refits
    (Stay-Positive's clamp, DEAR's gated refit, the probes' linear heads).

    - `pooled(x)`: (B, D) features the head reads, after the feature gate;
    - `head`: the `torch.nn.Linear(D, 1)` to replace;
    - `gate`: a `detectors.head.FeatureGate` over the D features (all ones: no gate);
    - `normalization`: the (mean, std) its inputs are normalised with, so training
      augmentations end the way the detector's own preprocessing does;
    - calling the model on (B, 3, H, W) returns `head(pooled(x))` as (B,) logits in eval mode.
    """

    num_features: int
    normalization: tuple[tuple[float, float, float], tuple[float, float, float]]

    def pooled(self, x: Any) -> Any: ...

    @property
    def head(self) -> Any: ...

    @property
    def gate(self) -> Any: ...


@dataclass(frozen=True)
class WeightSpec:
    """Where one weight tag lives. Resolution order: explicit file, local weights folder,
    files bundled with the package, torch's hub cache (when `url` is set), Hugging Face Hub,
    `url`; see `bench.weights.resolve`."""

    tag: str  # "official", "mini"
    filename: str  # the file name looked for locally
    hf_repo: str | None = None  # Hugging Face repo id holding the file
    hf_filename: str | None = None  # path inside that repo (defaults to filename)
    bundled: str | None = None  # "package:relative/path" of a file shipped with aigi-bench
    where: str = ""  # a sentence telling a user where the official file is published
    # A direct download (torchvision / torch.hub style). The file is then also looked for in
    # torch's hub cache, `$TORCH_HOME/hub/checkpoints/<filename>`, where torchvision and
    # torch.hub keep what they download, so a file fetched once by either is found offline.
    url: str | None = None


@runtime_checkable
class Autoencoder(Protocol):
    """An image autoencoder, as reconstruction-based detectors use it (AEROBLADE measures how
    well the autoencoder of a latent generator reconstructs an image).

    Registered under the entry-point group `bench.autoencoders`: an entry point `family` names
    a factory `make(name, path=None) -> Autoencoder`, and `bench.registry.get_autoencoder
    ("family:name")` builds one (AIGI-mini's generators are `mini:ldm`, `mini:vq`, ...), so a
    detector can use a generator of a suite without importing the suite.

    - `name`: the reference it was built from ("mini:ldm");
    - `fingerprint`: a digest of its weights (detector scores are cached under it);
    - `reconstruct(x, seed)`: (B, 3, H, W) float in [0, 1] on its device -> the decoded images,
      same shape, float in [0, 1], any size (padding is the autoencoder's business). A sampled
      latent draws its noise per image from `torch.Generator().manual_seed(seed)`, so an image's
      reconstruction does not depend on the batch it is in;
    - `to(device)`: moves it, returns it.
    """

    name: str
    fingerprint: str

    def reconstruct(self, x: Any, seed: int = 1) -> Any: ...

    def to(self, device: Any) -> "Autoencoder": ...


# --------------------------------------------------------------------------- images and suites


@dataclass(frozen=True)
class ImageRecord:
    """One image of a suite: a file and its ground truth."""

    path: str
    label: int  # REAL or FAKE
    set: str  # the image set it belongs to


SetKind = Literal["real", "generator", "wild"]


@dataclass(frozen=True)
class ImageSet:
    """A named group of images. A fake set is scored against its `real_set`.

    `kind` separates generator sets (averaged into Avg) from in-the-wild sets (kept apart, as
    DEAR does). A wild set may hold both labels (e.g. Chameleon); then `real_set` is None.
    """

    name: str
    display_name: str
    kind: SetKind
    records: tuple[ImageRecord, ...]
    real_set: str | None = None

    def __len__(self) -> int:
        return len(self.records)


@dataclass(frozen=True)
class Skipped:
    """A file a source left out of its suite, and why: not an image, outside the data root, not
    a regular file... Runs count and list these beside the images that failed to score."""

    path: str
    reason: str
    set: str = ""


@dataclass(frozen=True)
class Sampled:
    """How many images of a set a `max_per_set` sample kept (`bench.sampling.subsample`)."""

    set: str
    kept: int
    total: int
    strata: int  # source folders the sample was stratified by
    label: int | None = None  # the label sampled, in a set holding both


@dataclass(frozen=True)
class Suite:
    """A loaded suite: its image sets, where they came from, what was left out and sampled."""

    name: str
    sets: tuple[ImageSet, ...]
    description: str = ""
    source: str = ""  # root folder or dataset id the data came from
    skipped: tuple[Skipped, ...] = ()
    sampled: tuple[Sampled, ...] = ()

    def set(self, name: str) -> ImageSet:
        for s in self.sets:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def records(self) -> list[ImageRecord]:
        return [r for s in self.sets for r in s.records]


@dataclass(frozen=True)
class TrainingData:
    """The folders a detector is trained (or its head refit) on: the contract between whoever
    lays data out (the AIGI-mini world, a user's folder) and the trainers (detectors, dear).

    `paired`: `train_fake` holds a same-name reconstruction of each `train_real` image, batched
    together (Rajan's synced batches); otherwise the fakes are unpaired (Corvi). `diag` is DEAR's
    diagnostic set (inpainted composites and their masks), when there is one."""

    train_real: Path
    train_fake: Path
    val_real: Path
    val_fake: Path
    paired: bool = False
    diag: Path | None = None


@runtime_checkable
class SuiteSource(Protocol):
    """A suite described as data: it can say whether it is available and load itself.

    Optional members the runner reads when present (with `getattr`):
    - `weights_tag: str | None`: the weights its detectors default to ("mini" for AIGI-mini);
    - `processed_dir`: set when the suite stores post-processed copies of its images; `load`
      then also takes `processed=True` and returns the copies (`bench run --processed-copies`).
    """

    name: str
    description: str

    def availability(self, data_root: str | None = None) -> str | None:
        """None if the data is here, else a sentence saying what is missing and how to get it."""

    def load(self, data_root: str | None = None, max_per_set: int | None = None) -> Suite:
        """Load the suite or raise MissingDataError naming the expected path. `max_per_set`
        keeps a seeded sample of each set (`bench.sampling.subsample`); a source whose `load`
        also takes `sample_seed` gets the run's seed for it, and `options` (a dict) when it
        declares that keyword (e.g. {"allow_outside_root": True} for manifests)."""


# --------------------------------------------------------------------------- post-processing


@runtime_checkable
class Transform(Protocol):
    """A seeded image operation. It draws what it needs from `rng` and reports the values
    it actually used, so they can be stored beside each score.

    `name` must be the canonical spec with every parameter that changes the output,
    "jpeg:quality=75" not "jpeg": it keys the cached scores and each image's seed, so two
    settings under one name would share (and overwrite) their scores.
    """

    name: str

    def __call__(self, image: Any, rng: random.Random) -> tuple[Any, dict[str, Any]]: ...


def derive_seed(*parts: object) -> int:
    """A 64-bit seed from (run seed, chain name, image identity, ...).

    Seeding each image from its own identity makes processed bytes independent of file order,
    subsets and worker counts (the official script seeds once per folder instead)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")
