"""Scale (issue 21): one decode for all detectors, sharded runs merged into the run of one process."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bench.compare import compare_runs
from bench.runner import RunConfig, merge, run
from conftest import make_folder_suite, plugin_env

REPO = Path(__file__).resolve().parents[1]


def _cfg(out: Path, **kw) -> RunConfig:
    return RunConfig(**{"suite": "tinyfolder", "out": out, "batch_size": 4, "workers": 0, "post_process": True,
                        "chain": "tinyshift", **kw})


def test_each_image_is_decoded_once_for_all_detectors(tmp_path, plugin, folder_suite_dir, monkeypatch):
    """Two detectors, two conditions: every (image, condition) is read once, not once per
    detector, and both detectors get every score."""
    import bench.feed

    reads = []
    real = bench.feed.FeedDataset._image
    monkeypatch.setattr(bench.feed.FeedDataset, "_image", lambda self, item: reads.append(item.path) or real(self, item))
    a, b = plugin.TinyDetector(), plugin.TinyDetector(name="other", weights="other.test", fingerprint="o", size=(16, 16))
    res = run(_cfg(tmp_path / "o"), detectors=[a, b], suite=plugin.load_folder(folder_suite_dir), progress=False)
    assert len(res.scores) == 2 * 2 * 14 and res.ok
    assert len(reads) == 2 * 14  # images x conditions: the second detector read nothing
    assert {n: s["computed"] for n, s in ((s["detector"], s) for s in res.manifest["counts"]["per_detector"])} == {
        "tiny.test": 28, "other.test": 28}


def test_a_failing_detector_stops_alone_in_a_shared_pass(tmp_path, plugin, folder_suite_dir):
    good, bad = plugin.TinyDetector(), plugin.TinyDetector(name="bad", weights="bad.test", fingerprint="b", fail_after=1)
    res = run(_cfg(tmp_path / "o"), detectors=[good, bad], suite=plugin.load_folder(folder_suite_dir), progress=False)
    assert set(res.errors) == {"bad.test"} and "simulated detector failure" in res.errors["bad.test"]
    assert (res.scores["weights"] == "tiny.test").sum() == 28  # the other went on to the end


def _single_and_shards(tmp_path: Path, plugin, suite_dir: Path):
    suite = plugin.load_folder(suite_dir)
    single = run(_cfg(tmp_path / "single"), detectors=[plugin.TinyDetector()], suite=suite, progress=False)
    return single, suite


def test_two_shards_merge_into_the_single_process_run(tmp_path, plugin, folder_suite_dir):
    single, suite = _single_and_shards(tmp_path, plugin, folder_suite_dir)
    out = tmp_path / "sharded"
    first = run(_cfg(out, shard="0/2", data_root=str(folder_suite_dir)), detectors=[plugin.TinyDetector()], suite=suite,
                progress=False)
    assert not first.written and first.manifest["shards_done"] == [0]
    computed = first.manifest["counts"]["per_detector"][0]["computed"]
    assert 0 < computed < 28  # its share only
    second = run(_cfg(out, shard="1/2", data_root=str(folder_suite_dir)), detectors=[plugin.TinyDetector()], suite=suite,
                 progress=False)
    assert second.written and len(second.scores) == 28  # the last shard merged
    cmp = compare_runs(single.run_dir, second.run_dir)
    assert cmp.matched == 28 and cmp.max_abs_diff == 0.0 and cmp.same_table
    again = merge(out, "tinyfolder", detectors=[plugin.TinyDetector()], progress=False)  # idempotent
    assert compare_runs(single.run_dir, again.run_dir).max_abs_diff == 0.0
    # another split reuses every score: nothing is computed again
    third = run(_cfg(out, shard="0/3", data_root=str(folder_suite_dir)), detectors=[plugin.TinyDetector()], suite=suite,
                progress=False)
    assert third.manifest["counts"]["per_detector"][0]["computed"] == 0


def test_merge_refuses_a_split_with_a_shard_missing(tmp_path, plugin, folder_suite_dir):
    from bench.api import BenchError

    suite = plugin.load_folder(folder_suite_dir)
    run(_cfg(tmp_path / "o", shard="1/3"), detectors=[plugin.TinyDetector()], suite=suite, progress=False)
    with pytest.raises(BenchError, match="shard\\(s\\) 0/3, 2/3 have not finished"):
        merge(tmp_path / "o", "tinyfolder", progress=False)


def test_shards_from_the_launchers_environment():
    from bench.sharding import from_environment, parse_shard

    assert from_environment({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}).tag == "1-of-4"
    assert from_environment({"SLURM_PROCID": "3", "SLURM_NTASKS": "8", "SLURM_LOCALID": "0"}).local_rank == 0
    assert from_environment({"RANK": "0", "WORLD_SIZE": "1"}) is None and from_environment({}) is None
    assert parse_shard("2/5").tag == "2-of-5"
    for bad in ("5/5", "x/2", "1"):
        with pytest.raises(Exception, match="K/N"):
            parse_shard(bad)


@pytest.mark.slow
def test_torchrun_two_processes_then_merge_equals_one(tmp_path, plugin_root):
    """`torchrun --nproc-per-node 2 -m bench run ...` on CPU: no process group is made (nothing
    is communicated); each process scores its shard and the last one merges."""
    root = make_folder_suite(tmp_path / "data")
    common = ["run", "--suite", "tinyfolder", "--data-root", str(root), "--detectors", "mydet", "--workers", "0",
              "--post-process", "--chain", "tinyshift"]
    env = plugin_env(plugin_root)
    one = subprocess.run([sys.executable, "-m", "bench", *common, "--out", str(tmp_path / "one")], env=env, capture_output=True,
                         text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29731",
                          "-m", "bench", *common, "--out", str(tmp_path / "two")], env=env, capture_output=True, text=True,
                         timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "two" / "shards" / "tinyfolder").glob("*.json")) == ["0-of-2.json", "1-of-2.json"]
    cmp = compare_runs(tmp_path / "one" / "tinyfolder", tmp_path / "two" / "tinyfolder")
    assert cmp.matched == 28 and cmp.max_abs_diff == 0.0 and cmp.same_table


KILLABLE = '''
import sys
sys.path.insert(0, {plugin_root!r})
import mini_plugin
from bench.runner import RunConfig, run

det = mini_plugin.TinyDetector(sleep={sleep}, log_path={log!r})
run(RunConfig(suite="tinyfolder", out={out!r}, batch_size=2, workers=0, shard="0/2", data_root={data!r}),
    detectors=[det], suite=mini_plugin.load_folder({data!r}), progress=False)
'''


@pytest.mark.slow
def test_a_killed_shard_loses_nothing_when_rerun(tmp_path, plugin, plugin_root):
    root = make_folder_suite(tmp_path / "data")
    out, log = tmp_path / "o", tmp_path / "forwards.log"
    script = tmp_path / "shard.py"
    script.write_text(textwrap.dedent(KILLABLE).format(plugin_root=str(plugin_root), sleep=2.0, log=str(log), out=str(out),
                                                      data=str(root)))
    proc = subprocess.Popen([sys.executable, str(script)], env=plugin_env(plugin_root), cwd=tmp_path)
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or len(log.read_text().split()) < 1):
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = sum(int(x) for x in log.read_text().split())
    assert not (out / "shards" / "tinyfolder" / "0-of-2.json").exists()  # it never finished
    script.write_text(textwrap.dedent(KILLABLE).format(plugin_root=str(plugin_root), sleep=0.0, log=str(log), out=str(out),
                                                      data=str(root)))
    subprocess.run([sys.executable, str(script)], env=plugin_env(plugin_root), cwd=tmp_path, check=True, timeout=120)
    shard0 = json.loads((out / "shards" / "tinyfolder" / "0-of-2.json").read_text())["stats"][0]
    after = sum(int(x) for x in log.read_text().split())
    assert shard0["computed"] == shard0["to_compute"] and after - before == shard0["computed"]  # resumed, not redone
    assert before >= 1  # the killed shard's finished batches were kept
    suite = plugin.load_folder(root)
    run(_cfg(out, shard="1/2", batch_size=2, post_process=False, data_root=str(root)), detectors=[plugin.TinyDetector()],
        suite=suite, progress=False)
    single = run(RunConfig(suite="tinyfolder", out=tmp_path / "single", batch_size=2, workers=0), detectors=[plugin.TinyDetector()],
                 suite=suite, progress=False)
    cmp = compare_runs(single.run_dir, out / "tinyfolder")
    assert cmp.matched == 14 and cmp.max_abs_diff == 0.0


def test_default_workers_follow_the_machine(monkeypatch):
    from bench import devices

    monkeypatch.setattr(devices, "available_cpus", lambda: 2)
    assert devices.default_workers() == 2
    monkeypatch.setattr(devices, "available_cpus", lambda: 64)
    assert devices.default_workers() == 8


def test_the_allocator_is_tuned_only_when_asked_and_once(monkeypatch):
    import platform

    from bench import devices

    monkeypatch.setattr(devices, "_TUNED", False)
    monkeypatch.delenv(devices.MALLOC_VARIABLE, raising=False)
    assert devices.tune_allocator() is False  # the default: glibc's own policy, no higher peak
    monkeypatch.setenv(devices.MALLOC_VARIABLE, "keep")
    applied = devices.tune_allocator()
    assert applied == (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
    assert devices.tune_allocator() == applied  # idempotent
