"""Suites described as folders under a data root: DEAR's test/ layout and its relatives.

`FolderLayout` lists, per set, the folder that holds it (relative to the data root, given by
--data-root, $AIGI_BENCH_DATA or ./data, DEAR's `data_root`); `BinnedLayout` discovers its fake
sets as numbered bins. A set holding both labels (real/ + fake/ subfolders) is kind "wild" with
`real_set=None`; a fake set is scored against its `real_set`.
"""
from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Sequence

from bench.api import FAKE, REAL, BenchError, ImageRecord, ImageSet, MissingDataError, Sampled, SetKind, Skipped, Suite
from bench.sampling import check_cap, subsample
from suites.listing import has_images, images_in, label_subdirs, list_images, records, stratum_of

DATA_ROOT_ENV = "AIGI_BENCH_DATA"
DEFAULT_DATA_ROOT = "data"  # DEAR's configs use data_root: ./data
_ROOT_HINT = f"point --data-root (or ${DATA_ROOT_ENV}) at the folder that holds it"


def resolve_data_root(data_root: str | os.PathLike | None) -> Path:
    """--data-root, else $AIGI_BENCH_DATA, else ./data; returned absolute. `hf:<owner>/<name>[/<sub>]`
    names a Hugging Face dataset repository of image folders: it is downloaded once (see
    `suites.hub.hub_snapshot`) and the root is its folder `<sub>`."""
    from suites.hub import HF_PREFIX, hub_snapshot

    chosen = data_root if data_root is not None else os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT
    if str(chosen).startswith(HF_PREFIX):
        return hub_snapshot(str(chosen))
    return Path(chosen).expanduser().absolute()


class Draw:
    """What one load keeps of its sets: a seeded `max_per_set` sample per set and label,
    stratified by source folder (`bench.sampling`), and the files it skipped."""

    def __init__(self, max_per_set: int | None, seed: int = 0):
        self.cap, self.seed = check_cap(max_per_set), seed
        self.skipped: list[Skipped] = []
        self.sampled: list[Sampled] = []

    def records(self, paths: Sequence[Path | str], label: int, set_name: str, roots: Sequence[Path] = (),
                labelled: bool = False) -> list[ImageRecord]:
        """`paths` as records, sampled to the cap; `roots` are the folders strata are read below
        (none: a file's parent folder is its stratum); `labelled` marks a set of both labels."""

        stratum = functools.partial(stratum_of, roots=roots)  # without roots: the file's parent folder
        kept = subsample(list(paths), self.cap, self.seed, stratum=stratum, key=f"{set_name}/{label}")
        if len(kept) < len(paths):
            self.sampled.append(Sampled(set_name, len(kept), len(paths), len({stratum(p) for p in paths}),
                                        label if labelled else None))
        return records(kept, label, set_name)

    def suite(self, name: str, sets: Sequence[ImageSet], description: str, source: str) -> Suite:
        return Suite(name, tuple(sets), description, source, tuple(self.skipped), tuple(self.sampled))


@dataclass(frozen=True)
class SetSpec:
    """One image set of a layout: where its folder is, relative to the data root.

    A "wild" folder that holds real/ (or 0_real/) and fake/ (or 1_fake/) subfolders is
    scored on its own reals (`real_set` ignored); a flat one holds fakes scored against
    `real_set`.
    """

    name: str
    display_name: str
    kind: SetKind
    dir: str  # POSIX path relative to the data root
    real_set: str | None = None


@dataclass(frozen=True)
class FolderLayout:
    """A suite described as folders under a data root; implements bench.api.SuiteSource.

    Sets whose folder is absent or empty are left out of the loaded suite and named in its
    description (and by `missing`); a fake set whose real set is absent is left out too.
    Loading fails only when no scorable set remains.
    """

    name: str
    description: str
    sets: tuple[SetSpec, ...]
    how_to_get: str = ""  # sentence(s) telling a user where the data is published
    hf_dataset: str | None = None  # Hugging Face dataset id the data comes from, if any
    processed_dir: str | None = None  # replaces the first component of each set dir (test -> test_processed)
    weights_tag: str = "official"  # weights the runner picks by default for this suite

    # -- layout

    def specs(self, root: Path) -> tuple[SetSpec, ...]:
        """The sets to look for under `root` (subclasses may discover them)."""
        return self.sets

    def processed_root(self, data_root: str | os.PathLike | None = None) -> Path | None:
        """Folder of the pre-processed copies (e.g. <root>/test_processed), if this layout has one."""
        return resolve_data_root(data_root) / self.processed_dir if self.processed_dir else None

    def set_dir(self, root: Path, spec: SetSpec, processed: bool = False) -> Path:
        rel = PurePosixPath(spec.dir)
        if processed:
            if not self.processed_dir:
                raise BenchError(f"suite {self.name!r} has no pre-processed copy")
            rel = PurePosixPath(self.processed_dir, *rel.parts[1:])
        return root.joinpath(*rel.parts)

    # -- SuiteSource

    def availability(self, data_root: str | os.PathLike | None = None) -> str | None:
        try:
            self._plan(resolve_data_root(data_root), processed=False)
        except MissingDataError as exc:
            return str(exc)
        return None

    def missing(self, data_root: str | os.PathLike | None = None, processed: bool = False) -> list[str]:
        """One line per expected set that is absent or unusable (empty when complete)."""
        root = resolve_data_root(data_root)
        try:
            return self._plan(root, processed)[1]
        except MissingDataError:
            return [f"{s.display_name}: {self.set_dir(root, s, processed)}" for s in self.specs(root)]

    def load(self, data_root: str | os.PathLike | None = None, max_per_set: int | None = None, processed: bool = False,
             *, sample_seed: int = 0) -> Suite:
        """Load the present sets; `processed=True` reads the pre-processed copies instead;
        `max_per_set` keeps a seeded sample (`sample_seed`) of each set."""
        draw = Draw(max_per_set, sample_seed)
        root = resolve_data_root(data_root)
        plan, missing = self._plan(root, processed)
        sets = [self._build(spec, folder, shape, draw) for spec, folder, shape in plan]
        description = self.description
        if processed:
            description += f" Pre-processed copies from {root / self.processed_dir}."
        if missing:
            description += " Missing: " + "; ".join(missing) + "."
        return draw.suite(self.name, sets, description, str(root))

    # -- internals

    def _plan(self, root: Path, processed: bool) -> tuple[list[tuple[SetSpec, Path, str]], list[str]]:
        """Which sets are usable: [(spec, folder, shape)] and lines for the missing ones."""
        specs = self.specs(root)
        shapes: dict[str, tuple[SetSpec, Path, str | None]] = {}
        for spec in specs:
            folder = self.set_dir(root, spec, processed)
            shapes[spec.name] = (spec, folder, _shape(spec, folder))
        missing, scored = [], []
        for spec, folder, shape in shapes.values():
            if shape is None:
                missing.append(f"{spec.display_name}: no images at {folder}")
            elif shape == "fake-only":
                ref = shapes.get(spec.real_set) if spec.real_set else None
                if ref is None or ref[2] is None:
                    missing.append(f"{spec.display_name}: its real set {spec.real_set!r} is missing")
                else:
                    scored.append(spec)
            elif shape == "mixed":
                scored.append(spec)
        if not scored:
            raise MissingDataError(self._missing_message(root, specs, processed))
        needed = {s.real_set for s in scored if shapes[s.name][2] == "fake-only"}
        plan = [
            shapes[s.name]
            for s in specs
            if (s.kind == "real" and s.name in needed) or (s.kind != "real" and s in scored)
        ]
        return plan, missing

    def _build(self, spec: SetSpec, folder: Path, shape: str, draw: Draw) -> ImageSet:
        skipped = draw.skipped
        if shape == "real":
            recs = draw.records(list_images(folder, skipped, spec.name), REAL, spec.name, [folder])
            return ImageSet(spec.name, spec.display_name, spec.kind, tuple(recs), None)
        reals, fakes = label_subdirs(folder) if spec.kind == "wild" else ([], [])
        if shape == "mixed":
            recs = draw.records(images_in(reals, skipped, spec.name), REAL, spec.name, reals, labelled=True)
            recs += draw.records(images_in(fakes, skipped, spec.name), FAKE, spec.name, fakes, labelled=True)
            return ImageSet(spec.name, spec.display_name, spec.kind, tuple(recs), None)
        paths = images_in(fakes, skipped, spec.name) if fakes else list_images(folder, skipped, spec.name)
        recs = draw.records(paths, FAKE, spec.name, fakes or [folder])
        return ImageSet(spec.name, spec.display_name, spec.kind, tuple(recs), spec.real_set)

    def _missing_message(self, root: Path, specs: Sequence[SetSpec], processed: bool) -> str:
        expected = "\n".join(f"  {s.display_name:<10} {self.set_dir(root, s, processed)}" for s in specs)
        get = "\n" + self.how_to_get.replace("<root>", str(root)) if self.how_to_get else ""
        return (
            f"suite {self.name!r}: no usable data under {root}. Expected folders:\n{expected}{get}\n"
            f"Data root: {_ROOT_HINT} (now {root})."
        )


def _shape(spec: SetSpec, folder: Path) -> str | None:
    """'real' | 'fake-only' | 'mixed' for a usable set folder, None when absent or empty."""
    if spec.kind == "real":
        return "real" if has_images(folder) else None
    if spec.kind == "wild":
        reals, fakes = label_subdirs(folder)
        if reals or fakes:
            has_fake = any(has_images(d) for d in fakes)
            if has_fake and any(has_images(d) for d in reals):
                return "mixed"
            return "fake-only" if has_fake else None
    return "fake-only" if has_images(folder) else None


def _bin_key(name: str) -> tuple:
    found = re.match(r"\d+(?:\.\d+)?", name)
    return (0, float(found.group()), name) if found else (1, 0.0, name)


@dataclass(frozen=True)
class BinnedLayout(FolderLayout):
    """A layout whose fake sets are the subfolders of `bins_dir`, ordered by their leading
    number ("0-10" < "10-20" < "90-100"), each scored against `bins_real_set`."""

    bins_dir: str = ""
    bins_real_set: str = ""

    def specs(self, root: Path) -> tuple[SetSpec, ...]:
        folder = root.joinpath(*PurePosixPath(self.bins_dir).parts)
        names = sorted((d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")), key=_bin_key) if folder.is_dir() else []
        if not names:  # nothing to discover: say where bins are expected
            names = ["<bin>"]
        bins = tuple(
            SetSpec(n, f"{n}%", "generator", f"{self.bins_dir}/{n}", self.bins_real_set) for n in names
        )
        return self.sets + bins
