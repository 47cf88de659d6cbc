"""Suites from rows: a CSV manifest (path,label[,set]) or a dataset's rows, grouped into sets.

A manifest names files, so it can name any file: one listing `../../etc/passwd` would have it
read, hashed and cached. By default a row must stay inside the manifest's folder once symlinks
in the path it names are resolved; `allow_outside_root` (`bench run --allow-outside-root`)
lets a manifest point at a shared data disk on purpose. Rows refused for that, or because they
do not name an image (`bench.images.is_image_file`), are skipped one by one, counted and named
(`bench.api.Skipped`), never silently.
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from bench.api import FAKE, REAL, BenchError, ImageSet, MissingDataError, SetKind, Skipped, Suite
from bench.images import not_an_image
from suites.layouts import Draw


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


def inside(path: Path, roots: Sequence[Path]) -> bool:
    """Whether `path`, its symlinks resolved, lies in one of `roots` (resolved too)."""
    real = Path(os.path.realpath(path))
    return any(real == r or r in real.parents for r in (Path(os.path.realpath(root)) for root in roots))


def read_csv_manifest(csv_path: str | os.PathLike, *, allow_outside_root: bool = False) -> tuple[list[Row], list[Skipped]]:
    """(rows, skipped) of a CSV with columns path,label[,set] (header required, any column order).

    Relative paths are resolved against the CSV's folder. A missing `set` column puts every
    real in set "real" and every fake in set "fake". Rows outside the CSV's folder (unless
    `allow_outside_root`) or not naming an image are skipped with the reason.
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
    rows, skipped = [], []
    for raw in reader:
        where = f"{csv_path} line {reader.line_num}"
        path = (raw.get(columns["path"]) or "").strip()
        if not path:
            raise BenchError(f"{where}: empty path")
        label = parse_label(raw.get(columns["label"]), where)
        set_name = (raw.get(columns["set"]) or "").strip() if "set" in columns else ""
        set_name = set_name or ("real", "fake")[label]
        p = Path(path).expanduser()
        p = p if p.is_absolute() else csv_path.parent / p
        if not allow_outside_root and not inside(p, [csv_path.parent]):
            skipped.append(Skipped(str(p), f"outside the manifest's folder {csv_path.parent} (line {reader.line_num}); "
                                           "pass --allow-outside-root to read files elsewhere", set_name))
            continue
        why = not_an_image(p)
        if why is not None:
            skipped.append(Skipped(str(p), f"{why} (line {reader.line_num})", set_name))
            continue
        rows.append(Row(str(p), label, set_name, where))
    if not rows and not skipped:
        raise MissingDataError(f"{csv_path}: CSV manifest has no rows")
    if not rows:
        outside = sum("outside the manifest" in s.reason for s in skipped)
        hint = (f"; {outside} lie outside {csv_path.parent}: pass --allow-outside-root if they are meant to"
                if outside else "")
        raise MissingDataError(f"{csv_path}: none of its {len(skipped)} rows names a usable image{hint} "
                               f"(first: {skipped[0].path}: {skipped[0].reason})")
    return rows, skipped


def check_set_name(name: str, where: str, *, real_name: str | None = "real") -> None:
    """Refuse a generator set named like the real set or the tables' average column: tables
    and metrics key on set names, so such a set would be mistaken for, or merged with, those."""
    from bench.api import AVG

    reserved = {AVG: "the tables' average column"}
    if real_name is not None:
        reserved[real_name.lower()] = "the real set"
    clash = reserved.get(name.lower())
    if clash:
        raise BenchError(f"{where}: a set may not be named {name!r}, the name of {clash}; rename it")


def suite_from_rows(
    name: str, rows: Sequence[Row], *, source: str, description: str = "", max_per_set: int | None = None,
    sample_seed: int = 0, skipped: Sequence[Skipped] = (),
) -> Suite:
    """Group rows into sets. A set with only label 0 is a real set, only label 1 a generator
    set scored against the one real set, both labels a wild set scored on its own.

    Records are sorted by path within a set; sets are ordered reals first, then by first
    appearance. Files are not checked here: a missing one is recorded as a failure by the
    runner. Fake-only sets need exactly one real-only set to be scored against. `max_per_set`
    keeps a seeded sample per set and label, stratified by folder.
    """
    draw = Draw(max_per_set, sample_seed)
    draw.skipped.extend(skipped)
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
        check_set_name(s, source, real_name=None)  # the real set may be called anything, even 'real'
    sets = []
    for s in real_sets + [s for s in by_set if s not in real_sets]:
        recs = []
        for label in sorted(labels[s]):
            paths = sorted(r.path for r in by_set[s] if r.label == label)
            recs += draw.records(paths, label, s, labelled=len(labels[s]) > 1)
        kind: SetKind = "real" if s in real_sets else "generator" if s in fake_sets else "wild"
        sets.append(ImageSet(s, s, kind, tuple(recs), real_sets[0] if kind == "generator" else None))
    return draw.suite(name, sets, description, source)
