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


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `target`, on failure `target`
    is untouched. The private folder is unique per call, so concurrent writers never collide."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".writing-"))
    try:
        tmp = staging / target.name
        yield tmp
        os.replace(tmp, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
