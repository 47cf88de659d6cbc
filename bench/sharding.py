"""Sharded runs: one suite split over processes, GPUs and machines, with no communication.

A shard is (K, N): `--shard K/N`, or what the launcher sets, torchrun (`RANK`, `WORLD_SIZE`,
`LOCAL_RANK`) or SLURM (`SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`). An image belongs to
the shard of a stable hash of its path relative to the suite's source, so every shard agrees on
the split without talking, and the shards are disjoint. Scores are keyed by content, not by
shard: a rerun with another N reuses every finished score.

Each shard writes its own SQLite store (`<out>/cache.shard-K-of-N.sqlite`: one SQLite file must
not be written from several machines on a network filesystem) and reads the others' and the
main store for scores already done. When it finishes it leaves a marker
`<out>/shards/<run>/K-of-N.json`; the shard that finds all N markers there merges (or
`bench merge` does): every shard store is imported into the main store, deduplicated by key,
and the run folder is assembled from it, computing nothing. Merging is idempotent.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.api import BenchError

LAUNCHERS = (("RANK", "WORLD_SIZE", "LOCAL_RANK", "torchrun"), ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM"))


@dataclass(frozen=True)
class Shard:
    index: int
    count: int
    local_rank: int | None = None  # which GPU of the node, from the launcher
    source: str = "--shard"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def tag(self) -> str:
        return f"{self.index}-of-{self.count}"


def parse_shard(text: str) -> Shard:
    """'K/N' with 0 <= K < N."""
    k, sep, n = text.partition("/")
    try:
        index, count = int(k), int(n)
    except ValueError:
        raise BenchError(f"--shard takes K/N (e.g. 0/4), got {text!r}") from None
    if not sep or count < 1 or not 0 <= index < count:
        raise BenchError(f"--shard K/N needs 0 <= K < N, got {text!r}")
    return Shard(index, count)


def from_environment(env: dict[str, str] | None = None) -> Shard | None:
    """The shard a launcher assigned (torchrun, then SLURM), or None outside one. A single
    process (WORLD_SIZE=1) is no shard."""
    env = os.environ if env is None else env
    for rank, size, local, name in LAUNCHERS:
        if rank in env and size in env:
            count = int(env[size])
            if count <= 1:
                return None
            local_rank = int(env[local]) if env.get(local, "").isdigit() else None
            return Shard(int(env[rank]), count, local_rank, name)
    return None


ALL = "all"  # --shard all: every image in this process, whatever a launcher says


def resolve(explicit: str | Shard | None) -> Shard | None:
    """The shard of a run: `explicit` ("K/N", or "all" for none), else the launcher's."""
    if isinstance(explicit, Shard):
        return explicit
    if explicit == ALL:
        return None
    return parse_shard(explicit) if explicit else from_environment()


def owner(key: str, count: int) -> int:
    """The shard of an image: a stable hash of its key (its path relative to the suite's source)."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:16], 16) % count


def image_key(path: str, source: str) -> str:
    """A path as every shard sees it, relative to the suite's source when it lies inside it."""
    try:
        return Path(path).relative_to(source).as_posix() if source else path
    except ValueError:
        return path


def store_path(out: Path, shard: Shard) -> Path:
    return Path(out) / f"cache.shard-{shard.tag}.sqlite"


def owned(records: list[Any], source: str, shard: Shard | None) -> list[Any]:
    """The records (anything with a `path`) that `shard` owns; all of them without a shard."""
    if shard is None:
        return list(records)
    return [r for r in records if owner(image_key(r.path, source), shard.count) == shard.index]


def open_store(out: Path, shard: Shard | None, *, read_shards: bool = False) -> Any:
    """The store a process writes: a shard's own file, which also reads the main store and every
    other shard's (so nothing another shard or an earlier split stored is computed again); else
    the main store, which reads the shard stores too with `read_shards` (gathering after a split)."""
    from bench.store import ScoreStore

    if shard is not None:
        return ScoreStore(store_path(out, shard)).read_also([Path(out) / ScoreStore.FILENAME, *shard_stores(out)])
    store = ScoreStore.in_dir(out)
    return store.read_also(shard_stores(out)) if read_shards else store


def marker_dir(out: Path, run_name: str) -> Path:
    return Path(out) / "shards" / run_name


def write_marker(out: Path, run_name: str, shard: Shard, record: dict[str, Any]) -> Path:
    from bench.files import atomic_path

    path = marker_dir(out, run_name) / f"{shard.tag}.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({**record, "shard": shard.tag}, indent=1, default=str))
    return path


def markers(out: Path, run_name: str, count: int) -> dict[int, dict[str, Any]]:
    """The shards of a run split `count` ways that have finished, by index."""
    found = {}
    for k in range(count):
        path = marker_dir(out, run_name) / f"{k}-of-{count}.json"
        if path.is_file():
            found[k] = json.loads(path.read_text())
    return found


def split_counts(out: Path, run_name: str) -> list[int]:
    """The N of every split of this run that left markers."""
    folder = marker_dir(out, run_name)
    counts = {int(p.stem.split("-of-")[1]) for p in folder.glob("*-of-*.json")} if folder.is_dir() else set()
    return sorted(counts)


def shard_stores(out: Path) -> list[Path]:
    return sorted(Path(out).glob("cache.shard-*-of-*.sqlite"))


TABLES = {"scores": "INSERT OR REPLACE", "vectors": "INSERT OR REPLACE", "failures": "INSERT OR REPLACE",
          "file_hashes": "INSERT OR IGNORE", "image_sizes": "INSERT OR IGNORE"}


def import_stores(main: Path, stores: list[Path]) -> dict[str, int]:
    """Copy every row of the shard stores into the main store, one transaction per store; a
    key present twice keeps one row (scores are keyed by detector, content and condition, so
    two shards never disagree on one). Returns rows read per table. Safe to run again."""
    from bench.store import ScoreStore

    ScoreStore(main).close()  # the main store exists, with its schema
    db = sqlite3.connect(str(main), timeout=60.0, isolation_level=None)
    counts = dict.fromkeys(TABLES, 0)
    try:
        for i, path in enumerate(stores):
            db.execute(f"ATTACH DATABASE ? AS s{i}", (str(path),))
            try:
                db.execute("BEGIN IMMEDIATE")
                for table, verb in TABLES.items():
                    have = {r[1] for r in db.execute(f"PRAGMA s{i}.table_info({table})")}
                    if not have:
                        continue
                    counts[table] += db.execute(f"SELECT COUNT(*) FROM s{i}.{table}").fetchone()[0]
                    db.execute(f"{verb} INTO main.{table} SELECT * FROM s{i}.{table}")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            finally:
                db.execute(f"DETACH DATABASE s{i}")
    finally:
        db.close()
    return counts
