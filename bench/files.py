"""Files and folders that a crash, a kill, a full disk or a second process never leave half done.

- `atomic_path`: a file is written under its own name in a private folder beside the target
  and then moved over it (`os.replace`, atomic within one filesystem): readers see the old file
  or the new one, never a mix. Keeping the name matters for `torch.save`, which names the
  archive inside the file after it, so the bytes equal those of a direct save.
- `replace_folder`: a whole folder (a run) is written aside and swapped in by renames, so a
  reader finds the old folder or the new one, never old files beside new ones.
- `FolderLock`: one writer per run folder at a time, the holder named in the refusal.
- `clean_stale`: staging folders of processes that were killed are removed on the next run.
- `read_regular`: only regular files are read, with a size bound: a FIFO or /dev/zero named
  x.png would otherwise hang a run forever.

Staging names carry the writer's pid (".writing-<pid>-...", ".staging-<pid>-...",
".replaced-<pid>-..."), which is how `clean_stale` tells a dead writer's leftovers from a live one's.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Iterator

from bench.api import BadImageError, BenchError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once, at import, before any thread could race on it
PLAIN_FILE_MODE = 0o666 & ~_UMASK  # what `open(path, "w")` gives a new file
PLAIN_FOLDER_MODE = 0o777 & ~_UMASK  # what `mkdir` gives a new folder
STAGING_PREFIXES = (".writing-", ".staging-", ".replaced-")


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `target`, on failure `target`
    is untouched. The private folder is unique per call, so concurrent writers never collide.

    The file gets the mode a plain `open` would give it: some writers (safetensors) create
    owner-only files, which others sharing a results folder or an install could not read."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".writing-{os.getpid()}-"))
    try:
        tmp = staging / target.name
        yield tmp
        if tmp.is_file():
            os.chmod(tmp, PLAIN_FILE_MODE)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def replace_folder(target: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty staging folder beside `target`; on success it becomes `target` (the old
    `target`, if any, is moved aside first and then deleted), on failure `target` is untouched.

    Two renames, not one (POSIX cannot rename a folder over a non-empty one): between them the
    target is briefly absent, which a reader reports as "no run here", never as a mix."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".staging-{os.getpid()}-{target.name}-"))
    os.chmod(staging, PLAIN_FOLDER_MODE)  # mkdtemp's 0700 would become the target's: others sharing results could not read it
    try:
        yield staging
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".replaced-{os.getpid()}-{target.name}-"))
            os.rmdir(old)
            os.rename(target, old)
        os.rename(staging, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _pid_of(name: str) -> int | None:
    found = re.match(r"\.(?:writing|staging|replaced)-(\d+)-", name)
    return int(found.group(1)) if found else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def clean_stale(folder: str | os.PathLike, older_than_s: float = 60.0) -> list[Path]:
    """Remove the staging folders in `folder` whose writer is gone (killed mid-write), and return
    them. A folder whose pid is alive, or that is younger than `older_than_s` (a writer that
    just started, or an unrecognised name), is left alone."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    now = time.time()
    for path in folder.iterdir():
        if not path.name.startswith(STAGING_PREFIXES) or not path.is_dir():
            continue
        pid = _pid_of(path.name)
        try:
            young = now - path.stat().st_mtime < older_than_s
        except OSError:
            continue
        if pid is None or young or _alive(pid):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


class FolderBusyError(BenchError):
    """Another bench process holds the lock of the folder this one wants to write."""


class FolderLock:
    """An exclusive lock on writing one folder, held by this process until `release` (or exit).

    An advisory `flock` on `<parent>/.<name>.lock`, which holds the holder's pid and start time:
    a second writer is refused at once with both named, instead of racing and silently replacing
    the first one's results. The kernel releases the lock when the holder dies, so a killed run
    never leaves a folder locked."""

    def __init__(self, folder: str | os.PathLike):
        folder = Path(folder)
        self.folder, self.path = folder, folder.parent / f".{folder.name}.lock"
        self._fh = None

    def acquire(self) -> "FolderLock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise FolderBusyError(f"{self.folder} is being written by another bench process ({holder}); wait for it to "
                             "finish or write elsewhere (--run-name or --out)") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            import fcntl

            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))


def not_regular(st: os.stat_result) -> str | None:
    """What a file is when it is not a regular file ("a FIFO (named pipe)", ...), else None."""
    if stat.S_ISREG(st.st_mode):
        return None
    return next((what for test, what in _KINDS if test(st.st_mode)), "not a regular file")


class IrregularFileError(BadImageError):
    """A path that is not a regular file, or one that changed size while being read."""


def read_regular(path: str | os.PathLike, chunk: int = 1 << 20) -> Iterator[bytes]:
    """The bytes of a regular file in chunks; refuses anything else (FIFO, device, socket) before
    reading, and a file that grows past the size it had when opened (/proc files, a writer still
    appending): both would otherwise make a read hang or never end."""
    # O_NONBLOCK: opening a FIFO would otherwise wait for a writer before anything can be checked
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb", buffering=0) as fh:
        st = os.fstat(fh.fileno())
        what = not_regular(st)
        if what is not None:
            raise IrregularFileError(str(path), f"{what}, not an image file")
        left = st.st_size
        while True:
            block = fh.read(min(chunk, left + 1))
            if not block:
                break
            left -= len(block)
            if left < 0:
                raise IrregularFileError(str(path), "the file grew while it was read (still being written?)")
            yield block
    if left > 0:
        raise IrregularFileError(str(path), "the file shrank while it was read (still being written?)")


def read_bytes(path: str | os.PathLike) -> bytes:
    """`read_regular` joined: the whole file."""
    return b"".join(read_regular(path))
