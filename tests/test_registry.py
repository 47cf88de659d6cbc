"""Entry-point plugins through a real throwaway distribution (see conftest.make_plugin).

The CLI end to end runs in subprocesses with the plugin folder on PYTHONPATH, so
importlib.metadata discovers the distribution exactly as it would an installed one.
"""
from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from bench import registry
from bench.api import BenchError, Detector, MissingWeightsError
from conftest import plugin_env


def _bench(args, plugin_root, tmp_path, timeout=120):
    env = plugin_env(plugin_root)
    env["AIGI_BENCH_HOME"] = str(tmp_path / "home")  # nothing of the user's cache is read or written
    env["AIGI_BENCH_WEIGHTS"] = str(tmp_path / "weights")
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=tmp_path)


def test_scan_finds_plugin_and_reports_broken_entry_point(plugin):
    det = registry.scan("detectors")
    assert det.loaded["mydet"] is plugin.make_detector and det.origin["mydet"] == "mini_plugin"
    assert "broken" not in det.loaded and "AttributeError" in det.errors["broken"] and "does_not_exist" in det.errors["broken"]
    assert isinstance(det.loaded["heavy"], registry.DetectorSpec)
    assert "tinyfolder" in registry.scan("suites").loaded and "tinyshift" in registry.scan("chains").loaded
    d = registry.create_detector("mydet")
    assert isinstance(d, Detector) and d.info.name == "mydet" and d.fingerprint == "mydet-fp-default"
    assert registry.create_detector("mydet.v2").fingerprint == "mydet-fp-v2"  # the tag reaches a plain callable
    assert registry.detector_info("mydet").display_name == "Mydet"
    with pytest.raises(BenchError, match="'broken' is installed but failed to load"):
        registry.create_detector("broken")
    with pytest.raises(MissingWeightsError, match="heavy.official not found"):
        registry.create_detector("heavy")


def test_plugin_is_gone_after_the_fixture(plugin_root):
    """A rescan follows what is installed: the plugin appears when its folder joins sys.path and
    is gone again once it leaves, as the `plugin` fixture relies on to clean up after a test."""

    def rescan() -> set[str]:
        importlib.invalidate_caches()
        return set(registry.scan("detectors", refresh=True).loaded)

    assert str(plugin_root) not in sys.path and "mydet" not in rescan()
    sys.path.insert(0, str(plugin_root))
    try:
        assert {"mydet", "heavy"} <= rescan()
        sys.path.remove(str(plugin_root))
        sys.modules.pop("mini_plugin", None)
        assert not {"mydet", "heavy"} & rescan()
    finally:  # whatever failed, leave every group as installed for the tests that follow
        if str(plugin_root) in sys.path:
            sys.path.remove(str(plugin_root))
        sys.modules.pop("mini_plugin", None)
        importlib.invalidate_caches()
        for kind in registry.GROUPS:
            registry.scan(kind, refresh=True)


@pytest.mark.slow  # two fresh interpreters that import torch and every plugin: ~10 s
def test_cli_list_and_run_with_plugin(plugin_root, tmp_path, folder_suite_dir):
    listed = _bench(["list"], plugin_root, tmp_path)
    assert listed.returncode == 0, listed.stderr
    out = listed.stdout
    det_block = out.split("Suites:")[0]
    assert "mydet" in det_block and "Mydet" in det_block and "plugin (no tags)" in det_block
    assert "heavy" in det_block and "official* (missing)" in det_block
    failed_block = out.split("Plugins that failed to load:")[1]
    assert "broken" in failed_block and "does_not_exist" in failed_block
    assert "tinyfolder" in out.split("Suites:")[1] and "tinyshift" in out.split("Post-processing chains")[1]

    ran = _bench(["run", "--suite", "tinyfolder", "--data-root", str(folder_suite_dir), "--detectors", "mydet",
                  "--post-process", "--chain", "tinyshift", "--out", str(tmp_path / "res"), "--workers", "0"],
                 plugin_root, tmp_path)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    rows = [line for line in ran.stdout.splitlines() if line.startswith("Mydet")]
    assert len(rows) == 2  # one row per condition block (Original, Post-processed)
    assert f"run: {tmp_path / 'res' / 'tinyfolder'}" in ran.stdout
    assert (tmp_path / "res" / "tinyfolder" / "scores.parquet").is_file()
    assert "Traceback" not in ran.stderr


def test_unknown_names_suggest_case_insensitively():
    """'CORVI' has no letter in common with 'corvi' for difflib; the suggestion must still come."""
    with pytest.raises(registry.UnknownNameError, match="did you mean 'corvi'"):
        registry.create_detector("CORVI")
    with pytest.raises(registry.UnknownNameError, match="did you mean 'jpeg'"):
        registry._lookup("chains", "JPG")
