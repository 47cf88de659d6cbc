"""How data comes in, described as data: folder layouts, CSV manifests, Hugging Face datasets.

Everything ends as a `bench.api.Suite` of plain file records; decoding happens later, in the
runner (bench/images.py), so a bad file is recorded as a failure instead of stopping a load.

Conventions shared by every source here:
- image files: `IMAGE_EXTENSIONS`, case-insensitive, found recursively, hidden files and
  folders (".*", e.g. macOS "._x.png") skipped, sorted by path relative to the set folder;
- `max_per_set=N` keeps the first N of that sorted list, as the official tooling does
  (AniSundar18/AlignedForensics test_code/create_csv.py keeps sorted(files)[:3000] per
  folder); a set holding both labels keeps the first N of each label;
- a set that holds both labels is kind "wild" with `real_set=None`; a fake set is scored
  against its `real_set`.
"""
from __future__ import annotations

import csv
import functools
import hashlib
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator, Sequence

from bench.api import FAKE, REAL, BenchError, ImageRecord, ImageSet, MissingDataError, SetKind, Suite, did_you_mean
from bench.files import atomic_path
from bench.images import IMAGE_EXTENSIONS, is_image_file

DATA_ROOT_ENV = "AIGI_BENCH_DATA"
HF_PREFIX = "hf:"  # a data root on the Hugging Face Hub
DEFAULT_DATA_ROOT = "data"  # DEAR's configs use data_root: ./data
REAL_DIRS = ("real", "0_real")  # folder names that mean label 0 (0_real: CNNDetection/Chameleon style)
FAKE_DIRS = ("fake", "1_fake")
_ROOT_HINT = f"point --data-root (or ${DATA_ROOT_ENV}) at the folder that holds it"


# --------------------------------------------------------------------------- files


def iter_images(folder: Path) -> Iterator[Path]:
    """Image files under `folder`, recursively, in no particular order.

    Symlinked folders are followed (datasets are often linked in), but each real folder is
    walked once and a link back to `folder` or one of its parents (`real/loop -> ..`) is
    skipped: otherwise a loop multiplies images and pulls fake/ into real/.
    """
    top = Path(folder).resolve()
    if not top.is_dir():
        return
    ancestors = {_dir_id(p) for p in (top, *top.parents)}
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and _first_visit(Path(dirpath, d), ancestors, seen)]
        for f in filenames:
            p = Path(dirpath, f)
            if is_image_file(p):
                yield p


def _dir_id(path: Path) -> tuple[int, int]:
    """(device, inode) of the folder a path resolves to: equal for every link to it."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _first_visit(path: Path, ancestors: set[tuple[int, int]], seen: set[tuple[int, int]]) -> bool:
    """True the first time the walk meets this folder, False for a loop or a repeat."""
    try:
        key = _dir_id(path)
    except OSError:  # a dangling link or a folder removed meanwhile: os.walk skips it anyway
        return False
    if key in ancestors or key in seen:
        return False
    seen.add(key)
    return True


def has_images(folder: Path) -> bool:
    return folder.is_dir() and next(iter_images(folder), None) is not None


def list_images(folder: Path) -> list[Path]:
    """Image files under `folder`, sorted by their path relative to it."""
    folder = Path(folder)
    return sorted(iter_images(folder), key=lambda p: p.relative_to(folder).as_posix())


def first_n(items: Sequence, max_per_set: int | None) -> list:
    """The deterministic cap: the first `max_per_set` items (all when None)."""
    if max_per_set is None:
        return list(items)
    if isinstance(max_per_set, bool) or not isinstance(max_per_set, int) or max_per_set < 1:
        raise BenchError(f"max_per_set must be a positive integer, got {max_per_set!r}")
    return list(items[:max_per_set])


def resolve_data_root(data_root: str | os.PathLike | None) -> Path:
    """--data-root, else $AIGI_BENCH_DATA, else ./data; returned absolute. `hf:<owner>/<name>[/<sub>]`
    names a Hugging Face dataset repository of image folders: it is downloaded once (see
    `hub_snapshot`) and the root is its folder `<sub>`."""
    chosen = data_root if data_root is not None else os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT
    if str(chosen).startswith(HF_PREFIX):
        return hub_snapshot(str(chosen))
    return Path(chosen).expanduser().absolute()


@dataclass(frozen=True)
class HubLocation:
    """What an `hf:` data root names, in the one grammar every source reads:

        hf:<owner>/<name>[/<folder inside it>][?key=value&key=value...]
        hf:<folder written by datasets' save_to_disk>[?key=value...]

    A folder layout suite (synthetic, wild, ...) reads the repository's files (`hub_snapshot`);
    the folder suite reads it as a `datasets` dataset (`from_hf_dataset`, the folder as its
    `data_dir`, the options as its columns and split, see `parse_hf_spec`)."""

    source: str  # "owner/name", or a local saved folder
    subdir: str | None  # a folder inside the repository
    options: tuple[tuple[str, str], ...]
    spec: str

    @classmethod
    def parse(cls, spec: str) -> "HubLocation":
        if not spec.startswith(HF_PREFIX):
            raise BenchError(f"{spec!r} is not a Hugging Face location (hf:<owner>/<name>[/<folder>][?key=value&...])")
        location, _, query = spec[len(HF_PREFIX):].partition("?")
        if not location:
            raise BenchError(f"{spec!r}: no dataset after 'hf:'")
        options = []
        for part in filter(None, query.split("&")):
            key, eq, value = part.partition("=")
            if not key or not eq or not value:
                raise BenchError(f"{spec!r}: bad option {part!r}; options are key=value pairs joined by '&'")
            options.append((key, value))
        if Path(location).expanduser().is_dir():  # a dataset saved with save_to_disk
            return cls(str(Path(location).expanduser()), None, tuple(options), spec)
        parts = [p for p in location.split("/") if p]
        if len(parts) < 2:
            raise BenchError(f"{spec!r}: expected hf:<owner>/<name>[/<folder inside it>], or a folder saved with "
                             "datasets' save_to_disk")
        return cls("/".join(parts[:2]), "/".join(parts[2:]) or None, tuple(options), spec)


@functools.lru_cache(maxsize=None)
def hub_snapshot(spec: str) -> Path:
    """`hf:<owner>/<name>[/<sub>]` -> the local copy of that dataset repository's files (under
    $AIGI_BENCH_HOME/hf-datasets/<owner>/<name>, fetched with huggingface_hub.snapshot_download,
    which skips files already there) joined with `<sub>`. Once per process."""
    where = HubLocation.parse(spec)
    if where.options:
        raise BenchError(f"{spec!r}: options ({', '.join(k for k, _ in where.options)}) describe a dataset's columns, which "
                         "only the folder suite reads; a folder layout takes hf:<owner>/<name>[/<folder>]")
    if Path(where.source).is_dir():
        raise BenchError(f"{spec!r}: a local folder needs no hf: prefix here; pass --data-root {where.source}")
    repo, sub = where.source, where.subdir
    from bench.weights import home

    local = home() / "hf-datasets" / repo
    try:
        from huggingface_hub import snapshot_download  # installed with `datasets`

        snapshot_download(repo, repo_type="dataset", local_dir=str(local))
    except Exception as exc:  # offline, unknown repo, gated: one message naming the way out
        raise MissingDataError(
            f"Hugging Face dataset repository {repo!r} could not be downloaded: {type(exc).__name__}: {exc}. "
            f"Download it where there is a network (`huggingface-cli download {repo} --repo-type dataset --local-dir DIR`) "
            f"and pass --data-root DIR{'/' + sub if sub else ''}"
        ) from exc
    return local / sub if sub else local


def _label_subdirs(folder: Path) -> tuple[list[Path], list[Path]]:
    """Top-level real/0_real and fake/1_fake folders of `folder` (names case-insensitive)."""
    if not folder.is_dir():
        return [], []
    subdirs = sorted(d for d in folder.iterdir() if d.is_dir())
    reals = [d for d in subdirs if d.name.lower() in REAL_DIRS]
    fakes = [d for d in subdirs if d.name.lower() in FAKE_DIRS]
    return reals, fakes


def _records(paths: Sequence[Path], label: int, set_name: str) -> list[ImageRecord]:
    return [ImageRecord(str(p), label, set_name) for p in paths]


def _sorted_images(folders: Sequence[Path]) -> list[Path]:
    return sorted({p for f in folders for p in iter_images(f)}, key=lambda p: p.as_posix())


# --------------------------------------------------------------------------- folder layouts


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

    def load(
        self, data_root: str | os.PathLike | None = None, max_per_set: int | None = None, processed: bool = False
    ) -> Suite:
        """Load the present sets; `processed=True` reads the pre-processed copies instead."""
        root = resolve_data_root(data_root)
        plan, missing = self._plan(root, processed)
        sets = []
        for spec, folder, shape in plan:
            sets.append(self._build(spec, folder, shape, max_per_set))
        description = self.description
        if processed:
            description += f" Pre-processed copies from {root / self.processed_dir}."
        if missing:
            description += " Missing: " + "; ".join(missing) + "."
        return Suite(self.name, tuple(sets), description, str(root))

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

    def _build(self, spec: SetSpec, folder: Path, shape: str, max_per_set: int | None) -> ImageSet:
        if shape == "real":
            recs = _records(first_n(list_images(folder), max_per_set), REAL, spec.name)
            return ImageSet(spec.name, spec.display_name, spec.kind, tuple(recs), None)
        reals, fakes = _label_subdirs(folder) if spec.kind == "wild" else ([], [])
        if shape == "mixed":
            recs = _records(first_n(_sorted_images(reals), max_per_set), REAL, spec.name)
            recs += _records(first_n(_sorted_images(fakes), max_per_set), FAKE, spec.name)
            return ImageSet(spec.name, spec.display_name, spec.kind, tuple(recs), None)
        paths = _sorted_images(fakes) if fakes else list_images(folder)
        recs = _records(first_n(paths, max_per_set), FAKE, spec.name)
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
        reals, fakes = _label_subdirs(folder)
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


# --------------------------------------------------------------------------- rows: CSV and datasets


@dataclass(frozen=True)
class Row:
    """One image named by a manifest: its file, label and set; `where` names its origin."""

    path: str
    label: int
    set: str
    where: str = ""


_LABELS = {"0": REAL, "real": REAL, "0_real": REAL, "1": FAKE, "fake": FAKE, "1_fake": FAKE}


def parse_label(value: object, where: str) -> int:
    """0/1, real/fake or 0_real/1_fake (any case) -> REAL/FAKE."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    label = _LABELS.get(str(value).strip().lower())
    if label is None:
        raise BenchError(f"{where}: label must be 0/1 or real/fake, got {value!r}")
    return label


def read_csv_manifest(csv_path: str | os.PathLike) -> list[Row]:
    """Rows of a CSV with columns path,label[,set] (header required, any column order).

    Relative paths are resolved against the CSV's folder. A missing `set` column puts every
    real in set "real" and every fake in set "fake".
    """
    csv_path = Path(csv_path).expanduser().absolute()
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise MissingDataError(f"cannot read CSV manifest {csv_path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:  # e.g. saved as Latin-1 by a spreadsheet: say so, not a codec trace
        raise BenchError(f"{csv_path}: CSV manifest is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    reader = csv.DictReader(io.StringIO(text))
    columns = {(c or "").strip().lower(): c for c in reader.fieldnames or []}
    lacking = [c for c in ("path", "label") if c not in columns]
    if lacking:
        raise BenchError(f"{csv_path}: CSV manifest needs columns path,label[,set]; missing {', '.join(lacking)}")
    rows = []
    for raw in reader:
        where = f"{csv_path} line {reader.line_num}"
        path = (raw.get(columns["path"]) or "").strip()
        if not path:
            raise BenchError(f"{where}: empty path")
        label = parse_label(raw.get(columns["label"]), where)
        set_name = (raw.get(columns["set"]) or "").strip() if "set" in columns else ""
        p = Path(path).expanduser()
        rows.append(Row(str(p if p.is_absolute() else csv_path.parent / p), label, set_name or ("real", "fake")[label], where))
    if not rows:
        raise MissingDataError(f"{csv_path}: CSV manifest has no rows")
    return rows


def suite_from_rows(
    name: str, rows: Sequence[Row], *, source: str, description: str = "", max_per_set: int | None = None
) -> Suite:
    """Group rows into sets. A set with only label 0 is a real set, only label 1 a generator
    set scored against the one real set, both labels a wild set scored on its own.

    Records are sorted by path within a set; sets are ordered reals first, then by first
    appearance. Files are not checked here: a missing one is recorded as a failure by the
    runner. Fake-only sets need exactly one real-only set to be scored against.
    """
    by_set: dict[str, list[Row]] = {}
    for r in rows:
        by_set.setdefault(r.set, []).append(r)
    labels = {s: {r.label for r in rs} for s, rs in by_set.items()}
    real_sets = [s for s, ls in labels.items() if ls == {REAL}]
    fake_sets = [s for s, ls in labels.items() if ls == {FAKE}]
    if fake_sets and len(real_sets) != 1:
        found = f"several ({', '.join(real_sets)})" if real_sets else "none"
        raise BenchError(
            f"{source}: fake-only sets ({', '.join(fake_sets)}) are scored against one real-only set, found {found}; "
            "give all reals one set name, or put reals and fakes in the same set to score it on its own"
        )
    if by_set and not (fake_sets or len(real_sets) < len(by_set)):
        raise BenchError(f"{source}: only real images (sets {', '.join(real_sets)}); add fakes to score against them")
    for s in by_set:
        _check_set_name(s, source, real_name=None)  # the real set may be called anything, even 'real'
    sets = []
    for s in real_sets + [s for s in by_set if s not in real_sets]:
        recs = []
        for label in sorted(labels[s]):
            paths = sorted(r.path for r in by_set[s] if r.label == label)
            recs += _records(first_n(paths, max_per_set), label, s)
        kind: SetKind = "real" if s in real_sets else "generator" if s in fake_sets else "wild"
        sets.append(ImageSet(s, s, kind, tuple(recs), real_sets[0] if kind == "generator" else None))
    return Suite(name, tuple(sets), description, source)


def from_hf_dataset(
    dataset: str,
    split: str = "test",
    image_column: str = "image",
    label_column: str = "label",
    set_column: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    *,
    max_per_set: int | None = None,
    name: str = "hf",
    real_sets: Sequence[str] | None = None,
    data_dir: str | None = None,
) -> Suite:
    """A Hugging Face dataset as a suite of plain files.

    `dataset` is a Hub id (read with `datasets.load_dataset`) or a folder written by
    `save_to_disk` (read with `datasets.load_from_disk`). The image column is cast to
    `Image(decode=False)` so the original encoded bytes are kept; each image is written once
    to `cache_dir` (default <bench home>/hf-images) under its SHA-256 name, atomically.
    Labels: 0/1, real/fake, or a ClassLabel whose names say real/fake. Without `set_column`
    reals form set "real" and fakes set "fake". With `real_sets`, the label comes from the set
    instead: rows of those sets are real, every other row fake (for an imagefolder-style
    dataset whose only column is the ClassLabel of the folder, e.g. 0_real, sd, flux; then
    `set_column` is that column and `label_column` is not read). `max_per_set` keeps the
    first N rows of each set (and label) in dataset order, and only those are written.
    """
    first_n([], max_per_set)  # validate before any download
    import datasets  # heavy; only needed here

    local = Path(dataset).expanduser()
    if local.is_dir() and ((local / "state.json").is_file() or (local / "dataset_dict.json").is_file()):
        ds = datasets.load_from_disk(str(local))
    else:
        try:
            ds = datasets.load_dataset(dataset, split=split, **({"data_dir": data_dir} if data_dir else {}))
        except Exception as exc:  # offline, unknown id, no such split: one message naming the way out
            raise MissingDataError(
                f"Hugging Face dataset {dataset!r} (split {split!r}) could not be loaded: {type(exc).__name__}: {exc}. "
                f"Without a network, save it on a machine with one (datasets.load_dataset({dataset!r}).save_to_disk(DIR)) "
                f"and pass hf:DIR, or download its files and use a folder"
            ) from exc
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise BenchError(f"dataset {dataset}: no split {split!r}; has {', '.join(ds)}")
        ds = ds[split]
    if real_sets is not None and not set_column:
        raise BenchError(f"dataset {dataset}: real_sets names sets, so a set column is needed")
    wanted = [image_column] + ([label_column] if real_sets is None else []) + ([set_column] if set_column else [])
    absent = [c for c in dict.fromkeys(wanted) if c not in ds.column_names]
    if absent:
        raise BenchError(f"dataset {dataset}: no column {', '.join(map(repr, absent))}; has {', '.join(ds.column_names)}")

    def values(column: str) -> list:
        """The column, with ClassLabel indices replaced by their names."""
        feature = ds.features[column]
        raw = ds[column]
        return [feature.names[v] if isinstance(v, int) else v for v in raw] if isinstance(feature, datasets.ClassLabel) else raw

    sets = [str(v) for v in values(set_column)] if set_column else None
    if real_sets is not None:
        unknown = sorted(set(real_sets) - set(sets or []))
        if unknown:
            raise BenchError(f"dataset {dataset} split {split}: no set named {', '.join(unknown)} in column {set_column!r}; "
                             f"has {', '.join(sorted(set(sets or [])))}")
        labels = [REAL if s in real_sets else FAKE for s in sets or []]
    else:
        labels = [parse_label(v, f"dataset {dataset} split {split} row {i}") for i, v in enumerate(values(label_column))]
    sets = sets or [("real", "fake")[lab] for lab in labels]
    kept: list[int] = []
    count: dict[tuple[str, int], int] = {}
    for i, key in enumerate(zip(sets, labels)):
        if max_per_set is None or count.get(key, 0) < max_per_set:
            count[key] = count.get(key, 0) + 1
            kept.append(i)
    if cache_dir is None:
        from bench.weights import home

        cache_dir = home() / "hf-images"
    out = Path(cache_dir).expanduser().absolute()
    out.mkdir(parents=True, exist_ok=True)
    images = ds.select(kept).cast_column(image_column, datasets.Image(decode=False))[image_column]
    rows = []
    for i, cell in zip(kept, images):
        where = f"dataset {dataset} split {split} row {i}"
        rows.append(Row(str(_materialise(cell, out, where)), labels[i], sets[i], where))
    return suite_from_rows(name, rows, source=f"{dataset}:{split}", description=f"{dataset} ({split})")


_HF_OPTIONS = {"split": "split", "image": "image_column", "label": "label_column", "set": "set_column", "real": "real_sets"}


def parse_hf_spec(spec: str) -> dict[str, object]:
    """`hf:<hub id or saved folder>[/<folder>][?split=test&image=image&label=label&set=gen&real=0_real,redcaps]`
    -> keyword arguments of `from_hf_dataset` (the `HubLocation` grammar). How the CLI's
    --data-root names a dataset for the folder suite."""
    where = HubLocation.parse(spec)
    kwargs: dict[str, object] = {"dataset": where.source}
    if where.subdir:
        kwargs["data_dir"] = where.subdir
    for key, value in where.options:
        if key not in _HF_OPTIONS:
            raise BenchError(f"{spec!r}: bad option {key!r}{did_you_mean(key, _HF_OPTIONS, n=1)}; options are "
                             f"{', '.join(k + '=...' for k in _HF_OPTIONS)}")
        kwargs[_HF_OPTIONS[key]] = [v for v in value.split(",") if v] if key == "real" else value
    return kwargs


def _materialise(cell: dict | None, out: Path, where: str) -> Path:
    """Write one undecoded image cell ({"bytes", "path"}) as <sha256><ext>; skip if present."""
    data = (cell or {}).get("bytes")
    src = (cell or {}).get("path")
    if data is None:
        if not src or not Path(src).is_file():
            raise BenchError(f"{where}: image has neither bytes nor a readable path ({src!r})")
        data = Path(src).read_bytes()
    ext = Path(src).suffix.lower() if src and Path(src).suffix.lower() in IMAGE_EXTENSIONS else _sniff_ext(data)
    target = out / f"{hashlib.sha256(data).hexdigest()}{ext}"
    if not target.is_file():
        with atomic_path(target) as tmp:
            tmp.write_bytes(data)
    return target


_FORMAT_EXT = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tiff"}


def _sniff_ext(data: bytes) -> str:
    """Extension from the file header; unknown or broken data keeps a neutral '.img' (the
    runner then records the image as bad when it decodes it)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return _FORMAT_EXT.get(im.format or "", f".{(im.format or 'img').lower()}")
    except Exception:
        return ".img"


# --------------------------------------------------------------------------- any folder or CSV


def _check_set_name(name: str, where: str, *, real_name: str | None = "real") -> None:
    """Refuse a generator set named like the real set or the tables' average column: tables
    and metrics key on set names, so such a set would be mistaken for, or merged with, those."""
    # bench.metrics pulls in pandas: imported only when a suite is loaded
    from bench.metrics import AVG

    reserved = {AVG: "the tables' average column"}
    if real_name is not None:
        reserved[real_name.lower()] = "the real set"
    clash = reserved.get(name.lower())
    if clash:
        raise BenchError(f"{where}: a set may not be named {name!r}, the name of {clash}; rename it")


def _tree_problem(root: Path) -> str | None:
    """Why a real/ + fake/ tree cannot be scored (None when it can): both classes must have images."""
    reals, fakes = _label_subdirs(root)
    if not reals and not fakes:
        return f"{root} has neither real/ nor fake/ subfolders"
    has_real = any(has_images(d) for d in reals)
    has_fake = any(has_images(d) for d in fakes)
    if not has_real and not has_fake:
        return f"{root}: no images under real/ or fake/"
    if not has_real:
        return f"{root}: fake images found but no real ones; put reals under {root / 'real'}"
    if not has_fake:
        return (
            f"{root}: real images found but no fake ones to score against them; no fake/<generator>/ folders "
            f"(put each generator's images under {root / 'fake'}/<generator>/)"
        )
    return None


@dataclass(frozen=True)
class FolderSource:
    """Your own data: a folder with real/ and fake/<set>/, a CSV manifest (path,label,set), or a
    Hugging Face dataset named `hf:<id or saved folder>?...` (see `parse_hf_spec`).

    Folder: real/ (or 0_real/) is the real set "real"; each subfolder of fake/ (or 1_fake/)
    is a fake set scored against it, and images directly in fake/ form the set "fake".
    CSV: see `read_csv_manifest` and `suite_from_rows`. A CSV row whose file does not exist
    is kept, so the runner records it as a failure with the others and the run goes on;
    a CSV none of whose files exist is refused (usually a wrong base folder).
    """

    name: str = "folder"
    description: str = ("Your own images: a folder with real/ and fake/<set>/, a CSV manifest (path,label,set), "
                        "or hf:<dataset id or saved folder>?split=..&image=..&label=..&set=..&real=..")
    weights_tag: str = "official"

    def availability(self, data_root: str | os.PathLike | None = None) -> str | None:
        if data_root is None:
            return "the folder suite reads the folder, CSV or hf:<dataset> given with --data-root"
        if str(data_root).startswith(HF_PREFIX):
            try:
                parse_hf_spec(str(data_root))
            except BenchError as exc:
                return str(exc)
            return None  # the Hub is only asked when loading
        root = Path(data_root).expanduser()
        if root.is_file():
            return None if root.suffix.lower() == ".csv" else f"{root} is not a .csv manifest"
        if not root.is_dir():
            return f"no folder or CSV at {root}"
        return _tree_problem(root)

    def load(self, data_root: str | os.PathLike | None = None, max_per_set: int | None = None) -> Suite:
        problem = self.availability(data_root)
        if problem:
            raise MissingDataError(f"suite 'folder': {problem}. {self.description}")
        if str(data_root).startswith(HF_PREFIX):
            return from_hf_dataset(**parse_hf_spec(str(data_root)), max_per_set=max_per_set, name=self.name)  # type: ignore[arg-type]
        root = Path(data_root).expanduser().absolute()
        if root.is_file():
            rows = read_csv_manifest(root)
            if not any(Path(r.path).exists() for r in rows):
                raise MissingDataError(
                    f"{root}: none of its {len(rows)} files exist (first: {rows[0].path}); "
                    "relative paths are resolved against the CSV's folder"
                )
            return suite_from_rows(self.name, rows, source=str(root), description=f"CSV manifest {root}", max_per_set=max_per_set)
        return self._load_tree(root, max_per_set)

    def _load_tree(self, root: Path, max_per_set: int | None) -> Suite:
        reals, fakes = _label_subdirs(root)
        real_paths = _sorted_images(reals)
        sets = [ImageSet("real", "Real", "real", tuple(_records(first_n(real_paths, max_per_set), REAL, "real")))]
        groups: dict[str, list[Path]] = {}
        for fake_dir in fakes:
            loose = sorted(p for p in fake_dir.iterdir() if p.is_file() and is_image_file(p))
            if loose:
                groups.setdefault("fake", []).extend(loose)
            for sub in sorted(d for d in fake_dir.iterdir() if d.is_dir() and not d.name.startswith(".")):
                _check_set_name(sub.name, str(sub))
                if loose and sub.name.lower() == "fake":
                    raise BenchError(
                        f"{sub}: the images directly in {fake_dir} already form the set 'fake'; "
                        "move them into a named subfolder or rename this one"
                    )
                groups.setdefault(sub.name, []).extend(list_images(sub))
        groups = {k: v for k, v in groups.items() if v}
        for set_name in sorted(groups):
            paths = sorted(groups[set_name], key=lambda p: p.as_posix())
            recs = _records(first_n(paths, max_per_set), FAKE, set_name)
            sets.append(ImageSet(set_name, set_name, "generator", tuple(recs), "real"))
        return Suite(self.name, tuple(sets), f"Folder {root}", str(root))
