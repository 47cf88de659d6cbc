"""Crash-safe score store: one SQLite file shared by every run under an output folder.

A score is keyed by (detector fingerprint, image sha256, condition key), so it is reused by any
later run that scores the same bytes with the same weights under the same condition, whatever
the file is called or which suite it belongs to. The database runs in WAL mode with
synchronous=NORMAL and each batch is one transaction: after a `kill -9` at most the batch in
flight is lost, and a rerun computes only what is missing.

File hashes are cached by path and a stamp of (size, mtime, ctime, inode), so an unchanged file
is read once. ctime and the inode are in the stamp because copying tools (`cp -p`, `rsync -a`,
`tar x`) restore a replaced file's mtime, and an equal-size replacement would otherwise keep the
old hash; nothing but the kernel sets ctime.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from bench.api import BadImageError, BenchError

# `hashes` was the file-hash table of caches written before ee7cef8, whose stamps lacked ctime
# and inode (a file replaced within one second kept its old hash); it is dropped, not trusted.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS scores (
    detector_fp TEXT NOT NULL, image_sha TEXT NOT NULL, condition_key TEXT NOT NULL,
    logit REAL NOT NULL, params TEXT NOT NULL DEFAULT '{}', created REAL NOT NULL,
    PRIMARY KEY (detector_fp, image_sha, condition_key));
DROP TABLE IF EXISTS hashes;
CREATE TABLE IF NOT EXISTS file_hashes (path TEXT PRIMARY KEY, stamp TEXT NOT NULL, sha TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS image_sizes (sha TEXT PRIMARY KEY, width INTEGER NOT NULL, height INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS vectors (
    encoder_fp TEXT NOT NULL, image_sha TEXT NOT NULL, condition_key TEXT NOT NULL,
    dim INTEGER NOT NULL, data BLOB NOT NULL, params TEXT NOT NULL DEFAULT '{}', created REAL NOT NULL,
    PRIMARY KEY (encoder_fp, image_sha, condition_key));
CREATE TABLE IF NOT EXISTS failures (
    path TEXT NOT NULL, detector_fp TEXT NOT NULL, condition_key TEXT NOT NULL, reason TEXT NOT NULL,
    PRIMARY KEY (path, condition_key, detector_fp));
"""

_CHUNK = 500  # rows per `IN (...)` query, well under SQLite's variable limit


@dataclass(frozen=True)
class VectorRow:
    """One stored feature vector of an `bench.api.Embedder` (float32, little-endian in the blob)."""

    encoder_fp: str
    image_sha: str
    condition_key: str
    vector: Any  # 1-D numpy array
    params: str = "{}"


@dataclass(frozen=True)
class ScoreRow:
    """One stored score. `params` are the post-processing values drawn for this image."""

    detector_fp: str
    image_sha: str
    condition_key: str
    logit: float
    params: str = "{}"  # JSON object

    @staticmethod
    def make(detector_fp: str, image_sha: str, condition_key: str, logit: float, params: dict[str, Any] | str | None = None) -> "ScoreRow":
        text = params if isinstance(params, str) else params_json(params)
        return ScoreRow(detector_fp, image_sha, condition_key, float(logit), text)


def params_json(params: dict[str, Any] | None) -> str:
    """The drawn post-processing values as the stored JSON text: keys sorted, numpy scalars as
    plain numbers, sets as sorted lists, anything else as its text."""
    return json.dumps(params or {}, sort_keys=True, default=_json_default)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)


class ScoreStore:
    """SQLite-backed cache of logits, file hashes and per-image failures.

    Only the process that opened it should use it (DataLoader workers never touch it).
    """

    FILENAME = "cache.sqlite"

    def __init__(self, path: str | os.PathLike):
        """Open (or create) the store at `path`, a file; see `in_dir` for `<out>/cache.sqlite`."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        db = None
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, one transaction per batch.
            db = sqlite3.connect(str(path), timeout=60.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            if db is not None:
                db.close()
            raise BenchError(f"{path}: cannot open the score store ({exc}); move the file away to start a new one") from exc
        self._db = db
        self._others: list[sqlite3.Connection] = []

    @classmethod
    def in_dir(cls, out: str | os.PathLike) -> "ScoreStore":
        return cls(Path(out) / cls.FILENAME)

    def read_also(self, paths: Sequence[str | os.PathLike]) -> "ScoreStore":
        """Look scores up in these other stores too (read-only), after this one: a shard finds
        what the main store and the other shards already hold. Returns self."""
        self._others = [sqlite3.connect(f"file:{Path(p).absolute()}?mode=ro", uri=True, timeout=60.0)
                        for p in paths if Path(p).is_file() and Path(p).absolute() != self.path.absolute()]
        return self

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        for other in getattr(self, "_others", []):
            other.close()
        self._others = []
        if self._db is not None:
            self._db.close()
            self._db = None  # type: ignore[assignment]

    def __enter__(self) -> "ScoreStore":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        self.close()
        if isinstance(exc, sqlite3.OperationalError):  # locked, disk full, I/O error
            raise BenchError(f"{self.path}: score store error ({exc})") from exc
        if type(exc) is sqlite3.DatabaseError:  # "malformed": damage inside the file shows only when a page is read
            raise BenchError(f"{self.path}: the score store is damaged ({exc}); move the file away and rerun "
                             "(it is a cache: run folders keep their exported scores)") from exc

    def _write(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """executemany inside one transaction: all rows land or none do."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(sql, rows)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ------------------------------------------------------------------ scores

    def get_many(self, detector_fp: str, condition_key: str, shas: Iterable[str]) -> dict[str, tuple[float, str]]:
        """Stored (logit, params JSON) for those of `shas` already scored."""
        rows = self._lookup("SELECT image_sha, logit, params FROM scores WHERE detector_fp=? AND condition_key=? "
                            "AND image_sha IN ({marks})", (detector_fp, condition_key), shas)
        return {sha: (logit, params) for sha, logit, params in rows}

    def _lookup(self, sql: str, args: tuple[Any, ...], shas: Iterable[str]) -> Iterator[tuple[Any, ...]]:
        """The rows of `sql` (first column the image sha; `{marks}` its IN list) for `shas`, from
        this store and then the others it reads: a sha found in one store is not looked up in the
        next. A store without the table yet (still being created, or older) holds nothing."""
        wanted = list(dict.fromkeys(shas))
        seen: set[str] = set()
        for db in [self._db, *self._others]:
            for chunk in _chunks([s for s in wanted if s not in seen]):
                try:
                    cur = db.execute(sql.format(marks=",".join("?" * len(chunk))), (*args, *chunk))
                except sqlite3.OperationalError:
                    continue
                for row in cur:
                    seen.add(row[0])
                    yield row

    def put_many(self, rows: Iterable[ScoreRow]) -> int:
        """Store one batch of scores in a single transaction (replacing older values)."""
        now = time.time()
        data = [(r.detector_fp, r.image_sha, r.condition_key, r.logit, r.params, now) for r in rows]
        if data:
            self._write("INSERT OR REPLACE INTO scores VALUES (?,?,?,?,?,?)", data)
        return len(data)

    def count(self, detector_fp: str | None = None, condition_key: str | None = None) -> int:
        sql, args = "SELECT COUNT(*) FROM scores WHERE 1=1", []
        if detector_fp is not None:
            sql, args = sql + " AND detector_fp=?", [*args, detector_fp]
        if condition_key is not None:
            sql, args = sql + " AND condition_key=?", [*args, condition_key]
        return self._db.execute(sql, args).fetchone()[0]

    # ------------------------------------------------------------------ vectors (probes)

    def get_vectors(self, encoder_fp: str, condition_key: str, shas: Iterable[str]) -> dict[str, tuple[Any, str]]:
        """Stored (float32 vector, params JSON) for those of `shas` already embedded. Vectors sit
        beside the scores, keyed the same way, so an embedding run resumes and is shared exactly
        as a scoring run is (the `vectors` table; one row per image, condition and encoder tap)."""
        import numpy as np

        found: dict[str, tuple[Any, str]] = {}
        for sha, dim, data, params in self._lookup("SELECT image_sha, dim, data, params FROM vectors WHERE encoder_fp=? "
                                                   "AND condition_key=? AND image_sha IN ({marks})", (encoder_fp, condition_key), shas):
            vec = np.frombuffer(data, dtype="<f4")
            if vec.size != dim:
                raise BenchError(f"{self.path}: a stored vector of {encoder_fp} has {vec.size} values, not {dim}; "
                                 "the store is damaged: move it away and rerun")
            found[sha] = (vec, params)
        return found

    def put_vectors(self, rows: Iterable[VectorRow]) -> int:
        """Store one batch of vectors in a single transaction (replacing older values)."""
        import numpy as np

        now = time.time()
        data = []
        for r in rows:
            vec = np.ascontiguousarray(r.vector, dtype="<f4").reshape(-1)
            data.append((r.encoder_fp, r.image_sha, r.condition_key, int(vec.size), vec.tobytes(), r.params, now))
        if data:
            self._write("INSERT OR REPLACE INTO vectors VALUES (?,?,?,?,?,?,?)", data)
        return len(data)

    # ------------------------------------------------------------------ failures

    def record_failure(self, path: str, detector_fp: str, condition_key: str, reason: str) -> None:
        self.record_failures([(path, detector_fp, condition_key, reason)])

    def record_failures(self, rows: Iterable[tuple[str, str, str, str]]) -> None:
        data = [(str(p), fp, key, reason) for p, fp, key, reason in rows]
        if data:
            self._write("INSERT OR REPLACE INTO failures VALUES (?,?,?,?)", data)

    def failures(self, detector_fp: str, condition_key: str) -> dict[str, str]:
        """path -> reason of the failures recorded for one detector and condition."""
        cur = self._db.execute(
            "SELECT path, reason FROM failures WHERE detector_fp=? AND condition_key=?", (detector_fp, condition_key)
        )
        return dict(cur.fetchall())

    # ------------------------------------------------------------------ image sizes

    def image_sizes(self, shas: Sequence[str], path_of: dict[str, str]) -> dict[str, tuple[int, int]]:
        """(height, width) of each image, read once from its header (no pixels decoded) and kept
        by content hash; the runner orders its work by it so equal shapes travel together.
        An image whose header cannot be read is left out (it fails, named, when decoded)."""
        found: dict[str, tuple[int, int]] = {}
        for chunk in _chunks(list(shas)):
            marks = ",".join("?" * len(chunk))
            cur = self._db.execute(f"SELECT sha, height, width FROM image_sizes WHERE sha IN ({marks})", chunk)
            found.update((sha, (h, w)) for sha, h, w in cur)
        fresh = []
        for sha in shas:
            if sha in found:
                continue
            size = _header_size(path_of.get(sha))
            if size is not None:
                found[sha] = size
                fresh.append((sha, size[1], size[0]))
        if fresh:
            self._write("INSERT OR REPLACE INTO image_sizes VALUES (?,?,?)", fresh)
        return found

    # ------------------------------------------------------------------ file hashes

    def file_sha(self, path: str | os.PathLike) -> str:
        """sha256 of a file's bytes, read again only when its stamp (`_stamp`) changed."""
        return self.file_shas([path])[0]  # type: ignore[return-value]

    def file_shas(self, paths: Sequence[str | os.PathLike], errors: dict[str, str] | None = None) -> list[str | None]:
        """`file_sha` for many files, new hashes written in one transaction.

        An unreadable file raises BenchError, or, when an `errors` dict is given, gets None and
        its reason lands in `errors[path]` (so one bad file does not stop a run).
        """
        keys = [str(Path(p).resolve()) for p in paths]
        known: dict[str, tuple[str, str]] = {}
        for chunk in _chunks(list(dict.fromkeys(keys))):
            marks = ",".join("?" * len(chunk))
            cur = self._db.execute(f"SELECT path, stamp, sha FROM file_hashes WHERE path IN ({marks})", chunk)
            known.update((p, (stamp, sha)) for p, stamp, sha in cur)
        out: list[str | None] = []
        fresh: dict[str, tuple[str, str, str]] = {}
        for original, key in zip(paths, keys):
            try:
                stamp = _stamp(os.stat(key))
                hit = known.get(key)
                if hit is not None and hit[0] == stamp:
                    out.append(hit[1])
                    continue
                if key not in fresh:
                    fresh[key] = (key, stamp, _sha256_regular(key))
                out.append(fresh[key][2])
            except BadImageError as exc:  # a FIFO, a device, a file still being written
                if errors is None:
                    raise
                errors[str(original)] = exc.reason
                out.append(None)
            except OSError as exc:
                reason = f"cannot read the file ({exc.strerror or exc})"
                if errors is None:
                    raise BenchError(f"{original}: {reason}") from exc
                errors[str(original)] = reason
                out.append(None)
        if fresh:
            self._write("INSERT OR REPLACE INTO file_hashes VALUES (?,?,?)", list(fresh.values()))
        return out


def _sha256_regular(path: str) -> str:
    """sha256 of a regular file's bytes; a FIFO or device is refused rather than read forever."""
    from bench.files import read_regular

    digest = hashlib.sha256()
    for block in read_regular(path):
        digest.update(block)
    return digest.hexdigest()


def _header_size(path: str | None) -> tuple[int, int] | None:
    """(height, width) from an image file's header, or None."""
    if not path:
        return None
    try:
        from bench.files import not_regular

        if not_regular(os.stat(path)):  # never open a FIFO or a device to read a header
            return None
        from PIL import Image

        with Image.open(path) as im:
            return im.height, im.width
    except Exception:  # anything unreadable is named later, when it is decoded
        return None


def _stamp(st: os.stat_result) -> str:
    """What must be unchanged for a cached file hash to stand (see the module docstring)."""
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"  # no st_dev: it changes across remounts


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _chunks(items: list[Any], size: int = _CHUNK) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
