"""Post-processed images as files, so that others can score exactly the pixels a run scored.

`bench run --post-process --save-processed DIR` writes, for every chain condition of the run,
one folder `DIR/<condition>/` holding a PNG per image (`<set>/<real|fake>/<name>.png`) and a
`manifest.csv` with the columns `path,label,set` that the `folder` suite reads
(`bench run --suite folder --data-root DIR/<condition>/manifest.csv`), plus `source` (the
original file) and `params` (the values the chain drew for it, as the run stored them). This
is the role of DEAR's released `test_processed/` set.

The images are drawn again from the same seeds (`bench.feed.show`: run seed, chain name,
decoded pixels), not captured from the workers, so saving costs one decode per image and
nothing in the scoring path changes. PNG is lossless, so scoring a saved file gives the logit
the run stored under the post-processed condition. A condition's folder is written whole or
not at all (`bench.files.replace_folder`); the run folder is written before, so a failed export
never loses scores.
"""
from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Sequence
from pathlib import Path

from bench.api import FAKE, REAL, BadImageError, ImageRecord, Transform

log = logging.getLogger(__name__)

MANIFEST = "manifest.csv"
COLUMNS = ("path", "label", "set", "source", "params")


def condition_folder(key: str) -> str:
    """A condition key (or a set name) as a folder name: 'rajan@seed=0,px' -> 'rajan-seed-0-px'."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", key).strip("-") or "condition"


def save_processed(
    out: Path, key: str, transform: Transform, records: Sequence[ImageRecord], seed: int, *, fakes_only: bool = False,
    progress: bool = False,
) -> Path:
    """Write the images of one chain condition under `out/<condition>/` with its manifest; return
    the folder. With `fakes_only`, reals are saved as they are (they were scored unprocessed).
    A file that cannot be read or decoded is left out, counted and named in a warning."""
    from tqdm.auto import tqdm

    from bench.feed import show
    from bench.files import read_bytes, replace_folder
    from bench.images import decode_image
    from bench.store import sha256_bytes

    target = Path(out) / condition_folder(key)
    rows: list[dict[str, str | int]] = []
    saved: dict[str, dict[str, str | int]] = {}  # sha256 of a source -> its row: a file listed twice is written once
    taken: set[str] = set()
    failed: list[str] = []
    with replace_folder(target) as stage:
        for r in tqdm(records, desc=f"save {target.name}", unit="img", disable=not progress):
            try:
                data = read_bytes(r.path)
                sha = sha256_bytes(data)
                if sha not in saved:
                    image = decode_image(data, r.path)
                    processed, params = show(image, None if fakes_only and r.label == REAL else transform, seed)
                    rel = _free_name(f"{condition_folder(r.set)}/{('real', 'fake')[r.label == FAKE]}/{Path(r.path).stem}", taken)
                    (stage / rel).parent.mkdir(parents=True, exist_ok=True)
                    processed.save(stage / rel, format="PNG")
                    saved[sha] = {"path": rel, "label": r.label, "set": r.set, "source": r.path, "params": params}
                    rows.append(saved[sha])
                else:
                    rows.append({**saved[sha], "label": r.label, "set": r.set, "source": r.path})
            except (BadImageError, OSError) as exc:
                failed.append(f"{r.path}: {exc}")
        text = io.StringIO()
        writer = csv.DictWriter(text, COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        (stage / MANIFEST).write_text(text.getvalue(), encoding="utf-8")
    if failed:
        log.warning("%d image(s) of %s could not be saved (first: %s)", len(failed), key, failed[0])
    return target


def _free_name(stem: str, taken: set[str]) -> str:
    """`stem.png`, or `stem-2.png`, ... when two sources of one set share a name (a.jpg, a.png)."""
    name, n = f"{stem}.png", 1
    while name.lower() in taken:
        n += 1
        name = f"{stem}-{n}.png"
    taken.add(name.lower())
    return name
