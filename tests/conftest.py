"""Shared test fixtures: a tiny folder suite of generated PNGs and a real throwaway plugin.

`make_plugin(root)` writes an installed-looking distribution (`mini_plugin` package plus
`mini_plugin-0.0.1.dist-info/` with METADATA and entry_points.txt) into `root`. It declares:
- bench.detectors: `mydet = mini_plugin:make_detector` (a plain callable), a broken
  `broken = mini_plugin:does_not_exist`, and `heavy` (a registered DetectorSpec whose
  "official" weights are never on disk);
- bench.suites: `tinyfolder = mini_plugin:TINY_FOLDER` (real/*.png + fake/<set>/*.png);
- bench.chains: `tinyshift = mini_plugin:TinyShift` (a seeded brightness shift).
The `plugin` fixture puts it on sys.path for one test and rescans the registry; subprocess tests
pass the same folder in PYTHONPATH.
"""
from __future__ import annotations

import importlib
import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

PLUGIN_SOURCE = r'''
"""A third-party-style plugin for the tests: a tiny deterministic detector, suite and chain."""
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.api import Detector, DetectorInfo, ImageRecord, ImageSet, InputPolicy, MissingDataError, Suite, WeightSpec
from bench.registry import register


class ToTensor:
    """PIL RGB -> CHW float in [0, 1]; resized only when the detector asks for a fixed size."""

    def __init__(self, size=None):
        self.size = size

    def __call__(self, image):
        if self.size is not None:
            image = image.resize((self.size[1], self.size[0]))
        arr = np.asarray(image, dtype=np.float32) / 255.0
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


class TinyDetector(Detector):
    """logit = 8 * (red mean - blue mean) + bias, per image. Records every batch shape, can
    sleep per batch, append batch sizes to a log file (counts forwards across processes),
    and fail after some batches."""

    def __init__(self, name="tiny", weights="tiny.test", fingerprint="tiny-fp-1", size=None,
                 sleep=0.0, log_path=None, fail_after=None, bias=0.0, calibrated=True):
        self.info = DetectorInfo(name, name.capitalize(), "CNN", calibrated, InputPolicy(size))
        self.weights, self.fingerprint = weights, fingerprint
        self.sleep, self.log_path, self.fail_after, self.bias = sleep, log_path, fail_after, bias
        self.batch_shapes = []

    def preprocess(self):
        return ToTensor(self.info.input.size)

    def forward(self, batch):
        # one stacked tensor of RGB images (a list of mixed sizes would fail here, not in the mean)
        assert isinstance(batch, torch.Tensor) and batch.dim() == 4 and batch.shape[1] == 3, \
            f"expected a (B, 3, H, W) tensor, got {type(batch).__name__} {tuple(getattr(batch, 'shape', ()))}"
        self.batch_shapes.append(tuple(batch.shape))
        if self.fail_after is not None and len(self.batch_shapes) > self.fail_after:
            raise RuntimeError("simulated detector failure")
        if self.sleep:
            time.sleep(self.sleep)
        if self.log_path:
            with open(self.log_path, "a") as fh:
                fh.write(f"{batch.shape[0]}\n")
        means = batch.float().mean(dim=(2, 3))
        return 8.0 * (means[:, 0] - means[:, 2]) + self.bias


HEAVY_WEIGHTS = WeightSpec("official", "heavy.pth", where="It is published nowhere: this is a test.")


@register("heavy", "Heavy", "CNN", weights=(HEAVY_WEIGHTS,))
def heavy(weights, **kwargs):
    """A registered detector whose weights are never on disk: building it fails cleanly."""
    from bench.weights import resolve

    resolve("heavy", HEAVY_WEIGHTS)
    raise AssertionError("unreachable: the weights do not exist")


def make_detector(weights=None):
    """Entry point of a plain-callable plugin."""
    return TinyDetector(name="mydet", weights="mydet", fingerprint="mydet-fp-" + str(weights or "default"))


@dataclass(frozen=True)
class TinyShift:
    """Brightness shift by an offset drawn uniformly in [0, amount] (a seeded test chain)."""

    amount: int = 40

    @property
    def name(self):
        return f"tinyshift:amount={self.amount}"

    def __call__(self, image, rng):
        offset = rng.randint(0, self.amount)
        arr = np.clip(np.asarray(image, dtype=np.int16) + offset, 0, 255).astype(np.uint8)
        from PIL import Image
        return Image.fromarray(arr, "RGB"), {"offset": offset}


def load_folder(root, name="tinyfolder", max_per_set=None):
    """real/*.png -> set 'real'; fake/<set>/*.png -> generator sets scored against 'real'."""
    root = Path(root)
    if not (root / "real").is_dir():
        raise MissingDataError(f"{root}: expected real/ and fake/<set>/ folders")

    def recs(folder, label, set_name):
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".webp"))
        return tuple(ImageRecord(str(p), label, set_name) for p in files[:max_per_set])

    sets = [ImageSet("real", "Real", "real", recs(root / "real", 0, "real"))]
    for sub in sorted(p for p in (root / "fake").iterdir() if p.is_dir()):
        sets.append(ImageSet(sub.name, sub.name.upper(), "generator", recs(sub, 1, sub.name), real_set="real"))
    return Suite(name, tuple(sets), "tiny test folder", str(root))


class TinyFolderSource:
    name = "tinyfolder"
    description = "a folder with real/ and fake/<set>/ (tests)"
    weights_tag = "mydet"

    def availability(self, data_root=None):
        if data_root is None or not (Path(data_root) / "real").is_dir():
            return f"no real/ folder under {data_root!r}; pass --data-root"
        return None

    def load(self, data_root=None, max_per_set=None):
        return load_folder(data_root, self.name, max_per_set)


TINY_FOLDER = TinyFolderSource()
'''

ENTRY_POINTS = """\
[bench.detectors]
mydet = mini_plugin:make_detector
broken = mini_plugin:does_not_exist
heavy = mini_plugin:heavy

[bench.suites]
tinyfolder = mini_plugin:TINY_FOLDER

[bench.chains]
tinyshift = mini_plugin:TinyShift
"""


def make_plugin(root: Path) -> Path:
    """Write the throwaway distribution into `root` (a sys.path entry) and return `root`."""
    pkg = root / "mini_plugin"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text(textwrap.dedent(PLUGIN_SOURCE))
    info = root / "mini_plugin-0.0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mini_plugin\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return root


def _rescan() -> None:
    from bench import registry

    importlib.invalidate_caches()
    for kind in registry.GROUPS:
        registry.scan(kind, refresh=True)


@pytest.fixture(scope="session")
def plugin_root(tmp_path_factory) -> Path:
    return make_plugin(tmp_path_factory.mktemp("plugin"))


@pytest.fixture
def plugin(plugin_root):
    """The plugin module, importable and registered for the duration of one test."""
    sys.path.insert(0, str(plugin_root))
    _rescan()
    module = importlib.import_module("mini_plugin")
    try:
        yield module
    finally:
        sys.path.remove(str(plugin_root))
        sys.modules.pop("mini_plugin", None)
        _rescan()


@pytest.fixture
def env(plugin, tmp_path, monkeypatch):
    """The plugin registered, with a fresh AIGI_BENCH_HOME and weights folder, run from tmp_path
    (what the CLI tests need: nothing of the developer's own home is read)."""
    monkeypatch.setenv("AIGI_BENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AIGI_BENCH_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.chdir(tmp_path)
    return plugin


def plugin_env(plugin_root: Path) -> dict[str, str]:
    """Environment for a subprocess that should see the plugin (and this checkout)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(plugin_root), str(REPO), env.get("PYTHONPATH", "")]))
    return env


def write_png(path: Path, size: tuple[int, int], red: float, blue: float, seed: int) -> None:
    """A noisy RGB PNG whose red/blue balance sets TinyDetector's logit sign."""
    rng = np.random.default_rng(seed)
    h, w = size
    arr = rng.integers(0, 60, size=(h, w, 3)).astype(np.int16)
    arr[..., 0] += int(red)
    arr[..., 2] += int(blue)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB").save(path)


def make_folder_suite(root: Path, n_real: int = 6, n_fake: int = 4, sets: tuple[str, ...] = ("gan", "diff"),
                      sizes: tuple[tuple[int, int], ...] = ((32, 32), (40, 48))) -> Path:  # fmt: skip
    """real/*.png (blue-ish, negative logits) and fake/<set>/*.png (red-ish, mostly positive),
    alternating between `sizes` (H, W) so native-resolution batching is exercised."""
    k = 0
    for i in range(n_real):
        write_png(root / "real" / f"r{i:02d}.png", sizes[i % len(sizes)], red=40, blue=100 + 10 * (i % 3), seed=k)
        k += 1
    for s in sets:
        for i in range(n_fake):
            # one fake per set looks real, so accuracies are not trivially 100%
            red = 60 if i == 0 else 120 + 10 * i
            write_png(root / "fake" / s / f"{s}{i:02d}.png", sizes[(i + 1) % len(sizes)], red=red, blue=80, seed=k)
            k += 1
    return root


@pytest.fixture
def folder_suite_dir(tmp_path) -> Path:
    return make_folder_suite(tmp_path / "data")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: with 2 OpenMP threads on a shared 2-core machine every op pays for
    barrier waits (100x slower here); one thread is faster and leaves the core to others.
    Modules opt in with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def hist_panels(fig) -> list[dict]:
    """What each axis of a `bench.plots.score_distributions` figure shows: its title, legend
    texts, bin edges, the filled (reals) histogram's heights and each outlined (one per fake set,
    in legend order) histogram's heights. Read back from the drawn artists, so a test checks the
    data that was plotted, not the code that plotted it."""
    from matplotlib.patches import Polygon

    panels = []
    for ax in fig.axes:
        bars = ax.containers[0] if ax.containers else None
        edges = None
        if bars is not None:
            edges = np.array([r.get_x() for r in bars] + [bars[-1].get_x() + bars[-1].get_width()])
        steps = [p for p in ax.patches if isinstance(p, Polygon)]
        if edges is None and steps:  # no reals drawn: the outline's corners are the bin edges
            edges = steps[0].get_xy()[::2, 0]
        panels.append({
            "title": ax.get_title(),
            "legend": [t.get_text() for t in ax.get_legend().get_texts()],
            "edges": edges,
            "real": None if bars is None else np.array([r.get_height() for r in bars]),
            "fakes": [p.get_xy()[1:-1:2, 1] for p in steps],  # step outline: (edge, height) pairs per bin
        })  # fmt: skip
    return panels


def density(logits, edges) -> np.ndarray:
    """The density histogram `score_distributions` should draw for these logits on these bins
    (logits outside the range are clipped onto its ends)."""
    x = np.clip(np.asarray(logits, dtype=float), edges[0], edges[-1])
    return np.histogram(x, bins=edges, density=True)[0]


@pytest.fixture
def offline_weights(tmp_path, monkeypatch) -> Path:
    """Empty weights folder and torch hub cache (under `tmp_path`), and no network: what a
    fresh offline machine looks like to `bench.weights.resolve`. Returns the TORCH_HOME."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("AIGI_BENCH_WEIGHTS", str(tmp_path / "weights"))

    def offline(url, dest):
        raise OSError(f"offline: {url}")

    monkeypatch.setattr("bench.weights._download", offline)
    return tmp_path / "torch"
