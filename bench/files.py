"""Write files so that a crash, a kill or a full disk never leaves half of one.

The new file is written under its own name in a private folder beside the target and then
moved over it (`os.replace`, atomic within one filesystem): readers see the old file or the
new one, never a mix. Keeping the name matters for `torch.save`, which names the archive
inside the file after it, so the bytes equal those of a direct save.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def _plain_file_mode() -> int:
    """The mode `open(path, "w")` gives a new file under this process's umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


PLAIN_FILE_MODE = _plain_file_mode()  # read once, at import, before any thread could race on the umask


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `target`, on failure `target`
    is untouched. The private folder is unique per call, so concurrent writers never collide.

    The file gets the mode a plain `open` would give it: some writers (safetensors) create
    owner-only files, which others sharing a results folder or an install could not read."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".writing-"))
    try:
        tmp = staging / target.name
        yield tmp
        if tmp.is_file():
            os.chmod(tmp, PLAIN_FILE_MODE)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
