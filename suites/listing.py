"""Finding image files in folders, the way every folder-based source does it.

- what is an image: `bench.images.is_image_file`, the one rule for every source; everything
  else met in a set folder (a caption .txt, a hidden ._x.png) is counted and named as skipped
  (`bench.api.Skipped`), never dropped in silence;
- found recursively; symlinked folders are followed (datasets are often linked in), each real
  folder walked once, and a link back to the folder or one of its parents is not followed;
- sorted by path relative to the set folder; the stratum of a file (for `--max-per-set`
  samples) is the first folder below the set folder, "" for a file directly in it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

from bench.api import ImageRecord, Skipped
from bench.images import not_an_image

REAL_DIRS = ("real", "0_real")  # folder names that mean label 0 (0_real: CNNDetection/Chameleon style)
FAKE_DIRS = ("fake", "1_fake")


def walk_files(folder: Path) -> Iterator[Path]:
    """Every non-folder entry under `folder` (hidden folders are not entered), in no order."""
    top = Path(folder).resolve()
    if not top.is_dir():
        return
    ancestors = {_dir_id(p) for p in (top, *top.parents)}
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and _first_visit(Path(dirpath, d), ancestors, seen)]
        for f in filenames:
            yield Path(dirpath, f)


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


def iter_images(folder: Path, skipped: list[Skipped] | None = None, set_name: str = "") -> Iterator[Path]:
    """Image files under `folder`, in no order; the other files go to `skipped` when given."""
    for path in walk_files(folder):
        why = not_an_image(path)
        if why is None:
            yield path
        elif skipped is not None:
            skipped.append(Skipped(str(path), why, set_name))


def has_images(folder: Path) -> bool:
    return folder.is_dir() and next(iter_images(folder), None) is not None


def list_images(folder: Path, skipped: list[Skipped] | None = None, set_name: str = "") -> list[Path]:
    """Image files under `folder`, sorted by their path relative to it."""
    folder = Path(folder)
    return sorted(iter_images(folder, skipped, set_name), key=lambda p: p.relative_to(folder).as_posix())


def images_in(folders: Sequence[Path], skipped: list[Skipped] | None = None, set_name: str = "") -> list[Path]:
    """The images of several folders (e.g. real/ and 0_real/), each once, sorted by path."""
    return sorted({p for f in folders for p in iter_images(f, skipped, set_name)}, key=lambda p: p.as_posix())


def label_subdirs(folder: Path) -> tuple[list[Path], list[Path]]:
    """Top-level real/0_real and fake/1_fake folders of `folder` (names case-insensitive)."""
    if not folder.is_dir():
        return [], []
    subdirs = sorted(d for d in folder.iterdir() if d.is_dir())
    reals = [d for d in subdirs if d.name.lower() in REAL_DIRS]
    fakes = [d for d in subdirs if d.name.lower() in FAKE_DIRS]
    return reals, fakes


def stratum_of(path: str | Path, roots: Sequence[Path]) -> str:
    """The first folder of `path` below whichever of `roots` holds it ("" directly in it)."""
    p = Path(path)
    for root in roots:
        try:
            parts = p.relative_to(root).parts
        except ValueError:
            continue
        return parts[0] if len(parts) > 1 else ""
    return str(p.parent)


def records(paths: Sequence[Path | str], label: int, set_name: str) -> list[ImageRecord]:
    return [ImageRecord(str(p), label, set_name) for p in paths]
