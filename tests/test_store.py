"""ScoreStore: keys, batches as transactions, hash caching, failures, crash durability."""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from bench.api import BenchError
from bench.store import ScoreRow, ScoreStore


def test_put_get_roundtrip_and_keys(tmp_path):
    with ScoreStore.in_dir(tmp_path) as store:
        assert store.path == tmp_path / "cache.sqlite"
        store.put_many([
            ScoreRow.make("fpA", "sha1", "original", 1.5),
            ScoreRow.make("fpA", "sha2", "original", -2.0),
            ScoreRow.make("fpA", "sha1", "rajan@seed=0", 0.25, {"quality": 70, "up": True}),
            ScoreRow.make("fpB", "sha1", "original", 9.0),
        ])  # fmt: skip
        assert store.get_many("fpA", "original", ["sha1", "sha2", "sha3"]) == {"sha1": (1.5, "{}"), "sha2": (-2.0, "{}")}
        logit, params = store.get_many("fpA", "rajan@seed=0", ["sha1"])["sha1"]
        assert logit == 0.25 and json.loads(params) == {"quality": 70, "up": True}
        assert store.get_many("fpB", "original", ["sha1", "sha2"]) == {"sha1": (9.0, "{}")}
        assert store.count() == 4 and store.count("fpA") == 3 and store.count("fpA", "original") == 2
        # replacing a score keeps one row per key
        store.put_many([ScoreRow.make("fpA", "sha1", "original", 3.0)])
        assert store.get_many("fpA", "original", ["sha1"])["sha1"][0] == 3.0
        assert store.count("fpA", "original") == 2
    # persisted, WAL mode
    db = sqlite3.connect(tmp_path / "cache.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT COUNT(*) FROM scores").fetchone()[0] == 4


def test_get_many_handles_more_shas_than_sqlite_variables(tmp_path):
    shas = [f"{i:064x}" for i in range(1200)]
    with ScoreStore(tmp_path / "s.sqlite") as store:
        store.put_many(ScoreRow.make("fp", s, "original", float(i)) for i, s in enumerate(shas))
        got = store.get_many("fp", "original", shas + ["missing"])
    assert len(got) == 1200 and got[shas[1100]][0] == 1100.0


def test_batch_is_atomic(tmp_path):
    """A batch that fails half-way leaves nothing behind (one transaction per batch)."""
    with ScoreStore(tmp_path / "s.sqlite") as store:
        rows = [ScoreRow.make("fp", "a", "original", 1.0), ScoreRow("fp", "b", "original", None, "{}")]  # NOT NULL violation
        with pytest.raises(sqlite3.IntegrityError):
            store.put_many(rows)
        assert store.count() == 0
        store.put_many([ScoreRow.make("fp", "a", "original", 1.0)])  # the store is still usable
        assert store.count() == 1


def test_params_json_accepts_numpy_scalars(tmp_path):
    import numpy as np

    row = ScoreRow.make("fp", "a", "k", np.float32(0.5), {"q": np.int64(70), "s": np.float64(1.25)})
    assert json.loads(row.params) == {"q": 70, "s": 1.25} and isinstance(row.logit, float)


def test_file_sha_is_cached_until_the_file_changes(tmp_path, monkeypatch):
    f = tmp_path / "img.bin"
    f.write_bytes(b"hello")
    calls = []
    import bench.store as store_mod

    real = store_mod._sha256_regular
    monkeypatch.setattr(store_mod, "_sha256_regular", lambda p: calls.append(p) or real(p))
    with ScoreStore(tmp_path / "s.sqlite") as store:
        assert store.file_sha(f) == hashlib.sha256(b"hello").hexdigest()
        assert store.file_sha(f) == hashlib.sha256(b"hello").hexdigest()
        assert len(calls) == 1  # second call answered from the hashes table
    with ScoreStore(tmp_path / "s.sqlite") as store:  # and across sessions
        store.file_sha(f)
        assert len(calls) == 1
        f.write_bytes(b"hello, world")  # size changes -> re-hash
        os.utime(f, ns=(1, 1))
        assert store.file_sha(f) == hashlib.sha256(b"hello, world").hexdigest()
        assert len(calls) == 2
        # many at once, duplicates hashed once
        g = tmp_path / "other.bin"
        g.write_bytes(b"x")
        assert store.file_shas([f, g, g]) == [hashlib.sha256(b"hello, world").hexdigest()] + [hashlib.sha256(b"x").hexdigest()] * 2
        assert len(calls) == 3
        # replaced by equal-size bytes with the old mtime restored (cp -p, rsync -a): ctime still moves
        before = os.stat(g)
        deadline = time.monotonic() + 5
        while True:  # wait out a coarse ctime clock rather than assume 10 ms resolution
            time.sleep(0.01)
            g.write_bytes(b"y")
            os.utime(g, ns=(before.st_atime_ns, before.st_mtime_ns))
            if os.stat(g).st_ctime_ns != before.st_ctime_ns:
                break
            if time.monotonic() > deadline:
                pytest.skip("this filesystem's ctime did not move in 5 s")
        assert store.file_sha(g) == hashlib.sha256(b"y").hexdigest()
        assert len(calls) == 4


def test_unreadable_file(tmp_path):
    with ScoreStore(tmp_path / "s.sqlite") as store:
        with pytest.raises(BenchError, match="nope.png"):
            store.file_sha(tmp_path / "nope.png")
        errors: dict[str, str] = {}
        (tmp_path / "ok.png").write_bytes(b"1")
        out = store.file_shas([tmp_path / "nope.png", tmp_path / "ok.png"], errors=errors)
        assert out[0] is None and out[1] == hashlib.sha256(b"1").hexdigest()
        assert list(errors) == [str(tmp_path / "nope.png")] and "cannot read" in errors[str(tmp_path / "nope.png")]


def test_failures_recorded_per_detector_and_condition(tmp_path):
    with ScoreStore(tmp_path / "s.sqlite") as store:
        store.record_failure("/x/a.png", "fp", "original", "truncated image data")
        store.record_failure("/x/a.png", "fp", "original", "corrupt image data")  # replaces
        store.record_failure("/x/a.png", "fp2", "original", "other")
        assert store.failures("fp", "original") == {"/x/a.png": "corrupt image data"}
        assert store.failures("fp", "rajan@seed=0") == {}


def test_corrupt_database_is_a_clear_error(tmp_path):
    bad = tmp_path / "cache.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(BenchError, match="cache.sqlite"):
        ScoreStore(bad)


def test_damaged_pages_are_a_clear_error(tmp_path):
    """Damage inside the file passes the open and shows on the first read of a bad page."""
    path = tmp_path / "cache.sqlite"
    shas = [f"{i:064x}" for i in range(3000)]
    with ScoreStore(path) as store:
        store.put_many(ScoreRow.make("fp", s, "original", float(i)) for i, s in enumerate(shas))
    data = bytearray(path.read_bytes())
    assert len(data) > 65536
    data[8192:65536] = os.urandom(65536 - 8192)
    path.write_bytes(bytes(data))
    with pytest.raises(BenchError, match="cache.sqlite: the score store is damaged"):
        with ScoreStore(path) as store:
            store.get_many("fp", "original", shas)


def test_committed_batches_survive_kill_9(tmp_path):
    """A process killed with SIGKILL right after committing keeps every committed batch."""
    script = textwrap.dedent(f"""
        import os, signal
        from bench.store import ScoreRow, ScoreStore
        store = ScoreStore({str(tmp_path / 'c.sqlite')!r})
        for b in range(5):
            store.put_many(ScoreRow.make("fp", f"{{b}}-{{i}}", "original", float(i)) for i in range(10))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr.decode()
    with ScoreStore(tmp_path / "c.sqlite") as store:
        assert store.count("fp", "original") == 50
