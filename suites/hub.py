"""The Hugging Face Hub as a data root: one `hf:` grammar, two readers.

    hf:<owner>/<name>[/<folder inside it>][?key=value&key=value...]
    hf:<folder written by datasets' save_to_disk>[?key=value...]

A folder layout suite (synthetic, wild, ...) reads the repository's files (`hub_snapshot`);
the folder suite reads it as a `datasets` dataset (`from_hf_dataset`: the folder becomes its
`data_dir`, the options its columns and split, `parse_hf_spec`).

A dataset's image cell may hold only a path instead of bytes. That path is read only when it
lies inside the dataset's own files (its saved folder, its local folder, its Hub cache): a
crafted dataset naming `/etc/passwd` must not get that file copied into the image cache. A cell
that breaks this, or has neither bytes nor a readable path, is skipped, counted and named.
"""
from __future__ import annotations

import functools
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from bench.api import FAKE, REAL, BenchError, MissingDataError, Sampled, Skipped, Suite, did_you_mean
from bench.files import atomic_path
from bench.images import IMAGE_EXTENSIONS
from bench.sampling import check_cap, subsample
from suites.manifests import Row, inside, parse_label, suite_from_rows

HF_PREFIX = "hf:"  # a data root on the Hugging Face Hub


@dataclass(frozen=True)
class HubLocation:
    """What an `hf:` data root names (see the module docstring)."""

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
    from bench.weights import home, hub_offline

    local = home() / "hf-datasets" / repo
    try:
        offline = hub_offline()
        if offline:
            raise OSError(offline)
        from huggingface_hub import snapshot_download  # installed with `datasets`

        snapshot_download(repo, repo_type="dataset", local_dir=str(local))
    except Exception as exc:  # offline, unknown repo, gated: one message naming the way out
        raise MissingDataError(
            f"Hugging Face dataset repository {repo!r} could not be downloaded: {type(exc).__name__}: {exc}. "
            f"Download it where there is a network (`huggingface-cli download {repo} --repo-type dataset --local-dir DIR`) "
            f"and pass --data-root DIR{'/' + sub if sub else ''}"
        ) from exc
    return local / sub if sub else local


_HF_OPTIONS = {"split": "split", "image": "image_column", "label": "label_column", "set": "set_column", "real": "real_sets"}


def parse_hf_spec(spec: str) -> dict[str, object]:
    """`hf:<hub id or saved folder>[/<folder>][?split=test&image=image&label=label&set=gen&real=0_real,redcaps]`
    -> keyword arguments of `from_hf_dataset`. How the CLI's --data-root names a dataset for the
    folder suite."""
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


def dataset_roots(dataset: str, ds: Any) -> list[Path]:
    """The folders a dataset's own files live in: where a path-only image cell may point."""
    roots = []
    local = Path(dataset).expanduser()
    if local.is_dir():
        roots.append(local)
    for entry in getattr(ds, "cache_files", None) or []:
        roots.append(Path(entry["filename"]).parent)
    if "/" in dataset and not local.is_dir():
        try:
            from huggingface_hub import constants

            roots.append(Path(constants.HF_HUB_CACHE) / f"datasets--{dataset.replace('/', '--')}")
        except Exception:  # noqa: BLE001 - an older huggingface_hub: the other roots still hold
            pass
        try:
            import datasets

            roots.append(Path(datasets.config.HF_DATASETS_CACHE) / "downloads")  # archives the dataset extracted
        except Exception:  # noqa: BLE001
            pass
    return roots


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
    sample_seed: int = 0,
) -> Suite:
    """A Hugging Face dataset as a suite of plain files.

    `dataset` is a Hub id (read with `datasets.load_dataset`, `data_dir` a folder inside it) or
    a folder written by `save_to_disk` (read with `datasets.load_from_disk`). The image column
    is cast to `Image(decode=False)` so the original encoded bytes are kept; each image is
    written once to `cache_dir` (default <bench home>/hf-images) under its SHA-256 name,
    atomically. Labels: 0/1, real/fake, or a ClassLabel whose names say real/fake. Without
    `set_column` reals form set "real" and fakes set "fake". With `real_sets`, the label comes
    from the set instead: rows of those sets are real, every other row fake (for an
    imagefolder-style dataset whose only column is the ClassLabel of the folder, e.g. 0_real,
    sd, flux; then `set_column` is that column and `label_column` is not read). `max_per_set`
    keeps a seeded sample of each set (and label), and only those are written.
    """
    check_cap(max_per_set)  # validate before any download
    import datasets  # heavy; only needed here

    local = Path(dataset).expanduser()
    if local.is_dir() and ((local / "state.json").is_file() or (local / "dataset_dict.json").is_file()):
        ds = datasets.load_from_disk(str(local))
    else:
        from bench.weights import hub_offline

        try:
            if hub_offline() and not local.is_dir():
                raise OSError(hub_offline())
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
    groups: dict[tuple[str, int], list[int]] = {}
    for i, key in enumerate(zip(sets, labels)):
        groups.setdefault(key, []).append(i)
    sampled = []
    kept: list[int] = []
    for (s, label), idx in groups.items():
        chosen = subsample(idx, max_per_set, sample_seed, key=f"{s}/{label}")
        if len(chosen) < len(idx):
            sampled.append(Sampled(s, len(chosen), len(idx), 1, label if len({lb for (t, lb) in groups if t == s}) > 1 else None))
        kept += chosen
    kept.sort()
    if cache_dir is None:
        from bench.weights import home

        cache_dir = home() / "hf-images"
    out = Path(cache_dir).expanduser().absolute()
    out.mkdir(parents=True, exist_ok=True)
    roots = dataset_roots(dataset, ds)
    images = ds.select(kept).cast_column(image_column, datasets.Image(decode=False))[image_column]
    rows, skipped = [], []
    for i, cell in zip(kept, images):
        where = f"dataset {dataset} split {split} row {i}"
        try:
            rows.append(Row(str(_materialise(cell, out, where, roots, local if local.is_dir() else None)), labels[i], sets[i], where))
        except _CellRefused as exc:
            skipped.append(Skipped(exc.path, f"{where}: {exc.reason}", sets[i]))
    if not rows:
        raise MissingDataError(f"dataset {dataset} split {split}: no usable image cell"
                               + (f" ({len(skipped)} refused, e.g. {skipped[0].reason})" if skipped else ""))
    suite = suite_from_rows(name, rows, source=f"{dataset}:{split}", description=f"{dataset} ({split})", skipped=skipped)
    return Suite(suite.name, suite.sets, suite.description, suite.source, suite.skipped, tuple(sampled))


class _CellRefused(Exception):
    def __init__(self, path: str, reason: str):
        super().__init__(reason)
        self.path, self.reason = path, reason


def _materialise(cell: dict | None, out: Path, where: str, roots: Sequence[Path], base: Path | None) -> Path:
    """Write one undecoded image cell ({"bytes", "path"}) as <sha256><ext>; skip if present.

    A cell with only a path is read when the path (relative ones against the dataset's own
    folder `base`, never the working directory) lies inside `roots`, else refused."""
    data = (cell or {}).get("bytes")
    src = (cell or {}).get("path")
    if data is None:
        if not src:
            raise _CellRefused(str(src), "the image cell has neither bytes nor a path")
        path = Path(src).expanduser()
        if not path.is_absolute():
            if base is None:
                raise _CellRefused(str(src), "the image cell holds only a relative path and the dataset has no local folder")
            path = base / path
        if not inside(path, roots):
            raise _CellRefused(str(path), "the image cell's path lies outside the dataset's own files, so it is not read")
        try:
            from bench.files import read_bytes

            data = read_bytes(path)
        except (OSError, BenchError) as exc:
            raise _CellRefused(str(path), f"the image cell's path cannot be read ({exc})") from None
    ext = Path(src).suffix.lower() if src and Path(src).suffix.lower() in IMAGE_EXTENSIONS else _sniff_ext(data)
    target = out / f"{hashlib.sha256(data).hexdigest()}{ext}"
    if not target.is_file():
        with atomic_path(target) as tmp:
            tmp.write_bytes(data)
    return target


_FORMAT_EXT = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tiff", "GIF": ".gif", "AVIF": ".avif"}


def _sniff_ext(data: bytes) -> str:
    """Extension from the file header; unknown or broken data keeps a neutral '.img' (the
    runner then records the image as bad when it decodes it)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return _FORMAT_EXT.get(im.format or "", f".{(im.format or 'img').lower()}")
    except Exception:
        return ".img"
