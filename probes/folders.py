"""Run folders of the probe steps: written whole and locked (`bench.files`), with a manifest that
names the step, the inputs and the sha256 of every file, checked when a later step reads it."""
from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterator

from bench.files import PLAIN_FILE_MODE, FolderLock, clean_stale, replace_folder
from bench.weights import sha256_file
from probes.spec import ProbeError

log = logging.getLogger("bench")
MANIFEST = "manifest.json"


@contextlib.contextmanager
def locked(run_dir: Path) -> Iterator[Path]:
    """Hold the folder's lock (a second writer is refused, named) and clear leftovers of killed writers."""
    run_dir = Path(run_dir)
    with FolderLock(run_dir):
        for gone in clean_stale(run_dir.parent):
            log.warning("removed %s, left by a bench process that was killed while writing", gone)
        yield run_dir


def write_folder(run_dir: Path, step: str, manifest: dict[str, Any], files: dict[str, Callable[[Path], None]]) -> Path:
    """Write `files` (name -> writer of that path) and the manifest into a staging folder that
    then replaces `run_dir` (a kill leaves the old folder or the new one, never a mix)."""
    with replace_folder(run_dir) as staging:
        for name, write in files.items():
            write(staging / name)
        digests = {name: sha256_file(staging / name) for name in files}
        body = {"step": step, **manifest, "digests": digests}
        (staging / MANIFEST).write_text(json.dumps(body, indent=2, default=_plain) + "\n")
        for name in (*files, MANIFEST):
            os.chmod(staging / name, PLAIN_FILE_MODE)
    return Path(run_dir)


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def read_folder(folder: str | os.PathLike, step: str | tuple[str, ...]) -> dict[str, Any]:
    """The manifest of a probe folder of `step`, every file's digest checked."""
    folder = Path(folder)
    steps = (step,) if isinstance(step, str) else step
    path = folder / MANIFEST
    if not path.is_file():
        raise ProbeError(f"{folder}: not a probe folder (no {MANIFEST}); expected the output of `bench probe {steps[0]}`")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ProbeError(f"{path}: unreadable manifest ({exc})") from None
    if manifest.get("step") not in steps:
        raise ProbeError(f"{folder}: written by `bench probe {manifest.get('step')}`, expected the output of "
                         f"`bench probe {' or '.join(steps)}`")
    for name, digest in (manifest.get("digests") or {}).items():
        file = folder / name
        if not file.is_file():
            raise ProbeError(f"{file}: missing; rerun the step that wrote {folder}")
        if sha256_file(file) != digest:
            raise ProbeError(f"{file}: not the file the step wrote (its sha256 differs from the manifest's): cut or edited; "
                             "rerun the step")
    return manifest
