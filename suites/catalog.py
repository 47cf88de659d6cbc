"""The registered suites (entry points in pyproject.toml, group `bench.suites`).

Real-data suites read folders under a data root given by --data-root or $AIGI_BENCH_DATA
(default ./data, DEAR's `data_root`). The test/ and test_processed/ folders are DEAR's layout
(dahyedahye/dear docs/DATASET.md):

    <root>/test/real/redcaps/                               Redcaps reals
    <root>/test/fake/{sd,Midjourney,kandinsky,playground,    the 9 generators of DEAR Table 1
                      pixelart,lcm,flux,wuerstchen,amused}/
    <root>/test/fake/{Chameleon,WildRF,loki}/               in-the-wild sets
    <root>/test_processed/...                               same layout, post-processed copies

The inpainted/ folder is this harness's own convention: the experiment (reals partially
inpainted, scored per inpainted-area bin) is the Stay-Positive paper's, but neither DEAR's
DATASET.md nor the Stay-Positive repositories (AniSundar18/Stay-Positive, a project page;
AniSundar18/AlignedForensics) publish a folder layout for it:

    <root>/inpainted/<lo>-<hi>/                             partially inpainted reals, per area bin

The AIGI-mini suites read the world built by suites.mini.world.ensure_world.
"""
from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

from bench.api import MissingDataError, SetKind, Suite
from suites.mini.layout import WorldLayout
from suites.folder import FolderSource
from suites.layouts import BinnedLayout, FolderLayout, SetSpec

_LDM_FAKE_DETECT = (
    "The Redcaps reals and the 9 generators are the Hugging Face dataset AniSundar18/LDMFakeDetect: "
    "`huggingface-cli download AniSundar18/LDMFakeDetect --repo-type dataset --local-dir <dir>`, then place "
    "the real subset under <root>/test/real/redcaps/ and each generator under <root>/test/fake/<name>/ "
    "(dahyedahye/dear docs/DATASET.md)."
)
_REDCAPS = SetSpec("redcaps", "Redcaps", "real", "test/real/redcaps")

#: (folder under test/fake, display name as in DEAR Table 1), in table order.
SYNTHETIC_GENERATORS: tuple[tuple[str, str], ...] = (
    ("sd", "SD"),
    ("Midjourney", "MJ"),
    ("kandinsky", "KD"),
    ("playground", "PG"),
    ("pixelart", "PixArt"),
    ("lcm", "LCM"),
    ("flux", "FLUX"),
    ("wuerstchen", "Wuerst."),
    ("amused", "aMUSEd"),
)

synthetic = FolderLayout(
    name="synthetic",
    description="Redcaps reals vs 9 text-to-image generators (Stay-Positive / DEAR Table 1).",
    sets=(_REDCAPS,)
    + tuple(SetSpec(d.lower(), disp, "generator", f"test/fake/{d}", "redcaps") for d, disp in SYNTHETIC_GENERATORS),
    how_to_get=_LDM_FAKE_DETECT,
    hf_dataset="AniSundar18/LDMFakeDetect",
    processed_dir="test_processed",
)

wild = FolderLayout(
    name="wild",
    description=(
        "In-the-wild sets (DEAR Sec. 4.3): Chameleon, WildRF, LOKI. A set folder holding real/ (or 0_real/) and "
        "fake/ (or 1_fake/) is scored on its own reals; a flat folder of fakes is scored against Redcaps."
    ),
    sets=(
        _REDCAPS,
        SetSpec("chameleon", "Chameleon", "wild", "test/fake/Chameleon", "redcaps"),
        SetSpec("wildrf", "WildRF", "wild", "test/fake/WildRF", "redcaps"),
        SetSpec("loki", "LOKI", "wild", "test/fake/loki", "redcaps"),
    ),
    how_to_get=(
        "Chameleon: https://github.com/shilinyan99/AIDE/issues/7 ; WildRF: "
        "https://github.com/barcavia/RealTime-DeepfakeDetection-in-the-RealWorld#wildrf ; LOKI: the image/ subset of "
        "loki_media_aggregate/ in the Hugging Face dataset bczhou/LOKI (dahyedahye/dear docs/DATASET.md). "
        "LOKI's reals are Redcaps: " + _LDM_FAKE_DETECT
    ),
    processed_dir="test_processed",
)

inpainted = BinnedLayout(
    name="inpainted",
    description=(
        "Real images partially inpainted, one set per inpainted-area bin (folder names like 0-10, 10-20, in "
        "percent of the image), scored against Redcaps (Stay-Positive Table 3)."
    ),
    sets=(_REDCAPS,),
    how_to_get=(
        "Put each bin's images under <root>/inpainted/<lo>-<hi>/ (e.g. inpainted/0-10/, inpainted/10-20/); "
        "bins are ordered by their leading number. Redcaps reals: " + _LDM_FAKE_DETECT
    ),
    bins_dir="inpainted",
    bins_real_set="redcaps",
)

folder = FolderSource()


@dataclass(frozen=True)
class MiniSource:
    """A split of the AIGI-mini world: <world>/<split>/real vs each <world>/<split>/fake/<gen>.

    The world is built on first use by suites.mini.world.ensure_world (seed 0); an explicit
    `data_root` names an already built world folder instead. Generators are ordered and
    named as in the world's manifest.json; a generator folder the manifest does not list is
    still loaded (after the others, under its folder name).
    """

    name: str
    description: str
    split: str  # "test" or "wild"
    kind: SetKind  # kind of the fake sets
    expect_all: bool  # every manifest generator must have a folder in this split
    seed: int = 0
    weights_tag: str = "mini"

    def world(self, data_root: str | os.PathLike | None = None) -> Path:
        if data_root is not None:
            return Path(data_root).expanduser().absolute()
        from suites.mini.world import ensure_world

        return Path(ensure_world(seed=self.seed))

    def availability(self, data_root: str | os.PathLike | None = None) -> str | None:
        if data_root is not None:
            manifest = WorldLayout(Path(data_root).expanduser()).manifest
            return None if manifest.is_file() else f"no AIGI-mini world at {Path(data_root).expanduser()} ({manifest} missing)"
        # The world is built on first use: only the builder must be installed. It is found, not
        # imported: importing it loads torch, and `bench list` asks every suite.
        try:
            found = importlib.util.find_spec("suites.mini.world") is not None
        except (ImportError, ValueError) as exc:
            return f"the AIGI-mini world builder cannot be found: {type(exc).__name__}: {exc}"
        return None if found else "the AIGI-mini world builder (suites.mini.world) is not installed"

    def layout(self, world: Path) -> FolderLayout:
        """The split as a folder layout, generators in manifest order."""
        layout = WorldLayout(world)
        manifest_path = layout.manifest
        try:
            manifest = json.loads(manifest_path.read_text())
            generators = [(g["name"], g.get("display_name") or g["name"]) for g in manifest["generators"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise MissingDataError(f"AIGI-mini world at {world}: unreadable {manifest_path} ({type(exc).__name__}: {exc})") from None
        fake_root = layout.fakes(self.split)
        present = sorted(d.name for d in fake_root.iterdir() if d.is_dir()) if fake_root.is_dir() else []
        listed = [n for n, _ in generators]
        wanted = [(n, d) for n, d in generators if self.expect_all or n in present]
        wanted += [(n, n) for n in present if n not in listed]
        specs = (SetSpec("real", "Real", "real", layout.rel(layout.real(self.split))),) + tuple(
            SetSpec(n, d, self.kind, layout.rel(layout.generator(self.split, n)), "real") for n, d in wanted
        )
        return FolderLayout(
            self.name,
            self.description,
            specs,
            how_to_get="Rebuild the world: delete its folder and run again (suites.mini.world.ensure_world).",
            weights_tag=self.weights_tag,
        )

    def load(self, data_root: str | os.PathLike | None = None, max_per_set: int | None = None, *, sample_seed: int = 0) -> Suite:
        world = self.world(data_root)
        return self.layout(world).load(world, max_per_set, sample_seed=sample_seed)


mini = MiniSource(
    name="mini",
    description="AIGI-mini test split: reals vs every generator of the world, the training one included.",
    split="test",
    kind="generator",
    expect_all=True,
)

mini_wild = MiniSource(
    name="mini-wild",
    description="AIGI-mini in-the-wild split: reals vs unseen generators under unknown post-processing.",
    split="wild",
    kind="wild",
    expect_all=False,
)


def mini_autoencoder(name: str, path: str | None = None, **kwargs):
    """AIGI-mini's generator `name` (ldm, flux16, tconv, shuffle, vq) as a
    `bench.api.Autoencoder` (entry point `mini` of group `bench.autoencoders`: "mini:ldm").
    Imports the generators (torch) only when called, so this catalog stays torch-free."""
    from suites.mini.generators import world_autoencoder

    return world_autoencoder(name, path, **kwargs)
