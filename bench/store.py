"""Crash-safe score store: one SQLite file shared by every run under an output folder.

A score is keyed by (detector fingerprint, image sha256, condition key), so it is reused by any
later run that scores the same bytes with the same weights under the same condition, whatever
the file is called or which suite it belongs to. The database runs in WAL mode with
synchronous=NORMAL and each batch is one transaction: after a `kill -9` at most the batch in
flight is lost, and a rerun computes only what is missing.

File hashes are cached by (path, size, mtime_ns) so an unchanged file is read once.
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

from bench.api import BenchError
from bench.weights import sha256_file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scores (
    detector_fp TEXT NOT NULL, image_sha TEXT NOT NULL, condition_key TEXT NOT NULL,
    logit REAL NOT NULL, params TEXT NOT NULL DEFAULT '{}', created REAL NOT NULL,
    PRIMARY KEY (detector_fp, image_sha, condition_key));
CREATE TABLE IF NOT EXISTS hashes (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS failures (
    path TEXT NOT NULL, detector_fp TEXT NOT NULL, condition_key TEXT NOT NULL, reason TEXT NOT NULL,
    PRIMARY KEY (path, condition_key, detector_fp));
"""

_CHUNK = 500  # rows per `IN (...)` query, well under SQLite's variable limit


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
        text = params if isinstance(params, str) else json.dumps(params or {}, sort_keys=True, default=_json_default)
        return ScoreRow(detector_fp, image_sha, condition_key, float(logit), text)


def _json_default(value: Any) -> Any:
    """numpy scalars and tuples drawn by transforms become plain JSON values."""
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
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, one transaction per batch.
            self._db = sqlite3.connect(str(path), timeout=60.0, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise BenchError(f"{path}: cannot open the score store ({exc}); move the file away to start a new one") from exc

    @classmethod
    def in_dir(cls, out: str | os.PathLike) -> "ScoreStore":
        return cls(Path(out) / cls.FILENAME)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None  # type: ignore[assignment]

    def __enter__(self) -> "ScoreStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        wanted = list(dict.fromkeys(shas))
        found: dict[str, tuple[float, str]] = {}
        for chunk in _chunks(wanted):
            marks = ",".join("?" * len(chunk))
            cur = self._db.execute(
                f"SELECT image_sha, logit, params FROM scores WHERE detector_fp=? AND condition_key=? AND image_sha IN ({marks})",
                (detector_fp, condition_key, *chunk),
            )
            found.update((sha, (logit, params)) for sha, logit, params in cur)
        return found

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

    # ------------------------------------------------------------------ file hashes

    def file_sha(self, path: str | os.PathLike) -> str:
        """sha256 of a file's bytes, read only when its size or mtime changed since last time."""
        return self.file_shas([path])[0]  # type: ignore[return-value]

    def file_shas(self, paths: Sequence[str | os.PathLike], errors: dict[str, str] | None = None) -> list[str | None]:
        """`file_sha` for many files, new hashes written in one transaction.

        An unreadable file raises BenchError, or, when an `errors` dict is given, gets None and
        its reason lands in `errors[path]` (so one bad file does not stop a run).
        """
        keys = [str(Path(p).resolve()) for p in paths]
        known: dict[str, tuple[int, int, str]] = {}
        for chunk in _chunks(list(dict.fromkeys(keys))):
            marks = ",".join("?" * len(chunk))
            cur = self._db.execute(f"SELECT path, size, mtime_ns, sha FROM hashes WHERE path IN ({marks})", chunk)
            known.update((p, (size, mtime, sha)) for p, size, mtime, sha in cur)
        out: list[str | None] = []
        fresh: dict[str, tuple[str, int, int, str]] = {}
        for original, key in zip(paths, keys):
            try:
                st = os.stat(key)
                hit = known.get(key)
                if hit is not None and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
                    out.append(hit[2])
                    continue
                if key not in fresh:
                    fresh[key] = (key, st.st_size, st.st_mtime_ns, sha256_file(key))
                out.append(fresh[key][3])
            except OSError as exc:
                reason = f"cannot read the file ({exc.strerror or exc})"
                if errors is None:
                    raise BenchError(f"{original}: {reason}") from exc
                errors[str(original)] = reason
                out.append(None)
        if fresh:
            self._write("INSERT OR REPLACE INTO hashes VALUES (?,?,?,?)", list(fresh.values()))
        return out


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _chunks(items: list[Any], size: int = _CHUNK) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
