"""Numerics of the forward pass: which precision really runs, TF32 flags set and restored, and
scores of another precision cached under their own key (never mixed with fp32 scores)."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from bench import runner
from bench.api import BenchError
from bench.devices import cache_suffix, compute_precision, effective_precision, offload, resolve_device, tf32_enabled
from bench.runner import RunConfig, run


def _tf32_state() -> tuple:
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        return conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision
    return torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32


def test_effective_precision_is_fp32_off_cuda():
    assert effective_precision("bf16", "cuda") == "bf16" and effective_precision("tf32", "cuda:1") == "tf32"
    assert effective_precision("bf16", "cpu") == effective_precision("tf32", "cpu") == "fp32"
    with pytest.raises(BenchError, match="unknown precision 'fp16'"):
        effective_precision("fp16", "cuda")
    assert [cache_suffix(p) for p in ("fp32", "tf32", "bf16")] == ["", "+tf32", "+bf16"]


@pytest.mark.parametrize("enabled", [False, True])
def test_tf32_flags_are_set_inside_and_restored_after(enabled):
    before = _tf32_state()
    with tf32_enabled(enabled):
        inside = _tf32_state()
        assert inside in ((("tf32", "tf32") if enabled else ("ieee", "ieee")), (enabled, enabled))
    assert _tf32_state() == before
    with pytest.raises(RuntimeError), tf32_enabled(enabled):
        raise RuntimeError("a failing forward still restores the flags")
    assert _tf32_state() == before


def test_compute_precision_on_cpu_changes_nothing():
    before = _tf32_state()
    with compute_precision("bf16", "cpu") as eff:
        assert eff == "fp32" and _tf32_state() == before and not torch.is_autocast_enabled()
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_unknown_precision_fails_before_any_work(tmp_path):
    with pytest.raises(BenchError, match="unknown precision"):
        RunConfig(suite="tinyfolder", out=tmp_path, precision="half")


def test_scores_of_another_precision_are_cached_apart(tmp_path, plugin, folder_suite_dir, monkeypatch):
    """A bf16 run must not reuse fp32 scores (nor the reverse), and each reads back its own."""
    from test_runner import _cfg, _forwards

    suite = plugin.load_folder(folder_suite_dir)
    log = tmp_path / "fw.log"
    fp32 = run(_cfg(tmp_path, run_name="fp32"), detectors=[plugin.TinyDetector(log_path=log)], suite=suite, progress=False)
    assert _forwards(log) == 14 and fp32.manifest["precision"] == "fp32"
    # On CPU a bf16 request runs as fp32, so it is the same computation and reuses every score.
    cpu_bf16 = run(_cfg(tmp_path, run_name="cpu-bf16", precision="bf16"), detectors=[plugin.TinyDetector(log_path=log)],
                   suite=suite, progress=False)  # fmt: skip
    assert _forwards(log) == 14 and cpu_bf16.manifest["precision"] == "fp32"
    # Where bf16 really applies (as on CUDA), it is computed and stored apart, and both stay readable.
    monkeypatch.setattr(runner, "effective_precision", lambda precision, device: precision)
    bf16 = run(_cfg(tmp_path, run_name="bf16", precision="bf16"), detectors=[plugin.TinyDetector(log_path=log, bias=0.25)],
               suite=suite, progress=False)  # fmt: skip
    assert _forwards(log) == 28 and bf16.manifest["precision"] == "bf16"
    shift = bf16.scores["logit"].to_numpy() - fp32.scores["logit"].to_numpy()
    assert shift == pytest.approx([0.25] * 14)  # the bf16 run's own scores, not the cached fp32 ones
    again = run(_cfg(tmp_path, run_name="fp32-again", precision="fp32"), detectors=[plugin.TinyDetector(log_path=log)],
                suite=suite, progress=False)  # fmt: skip
    assert _forwards(log) == 28
    pd.testing.assert_frame_equal(again.scores, fp32.scores)


def test_cli_precision_flags():
    from bench_cli import build_parser

    parse = build_parser().parse_args
    assert parse(["run", "--suite", "mini"]).precision == "fp32"
    assert parse(["run", "--suite", "mini", "--amp"]).precision == "bf16"
    assert parse(["sweep", "--suite", "mini", "--chain", "webp", "--param", "q", "--values", "1", "--precision", "tf32"]).precision == "tf32"
    with pytest.raises(SystemExit):
        parse(["run", "--suite", "mini", "--precision", "fp16"])


def test_devices_are_checked_before_any_work(tmp_path, monkeypatch):
    assert resolve_device("cpu") == "cpu"
    assert resolve_device(None) == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(BenchError, match="unknown device 'gpu'"):
        resolve_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BenchError, match="no usable CUDA GPU here"):
        resolve_device("cuda:0")
    # the run refuses before it loads a suite (this one does not even exist)
    with pytest.raises(BenchError, match="no usable CUDA GPU here"):
        run(RunConfig(suite="no-such-suite", out=tmp_path, device="cuda"), progress=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == "cuda:0"
    with pytest.raises(BenchError, match="has 1 CUDA device"):
        resolve_device("cuda:3")


def test_offload_moves_a_finished_detector_off_the_gpu():
    class Moves:
        def __init__(self, fail: bool = False):
            self.moved_to, self.fail = [], fail

        def to(self, device: str):
            self.moved_to.append(device)
            if self.fail:
                raise RuntimeError("cannot move")

    on_cpu, on_gpu, stuck = Moves(), Moves(), Moves(fail=True)
    offload(on_cpu, "cpu")
    offload(on_gpu, "cuda:0")  # empty_cache is a no-op where CUDA was never initialised
    offload(stuck, "cuda")  # a plugin that cannot move does not stop the run
    offload(None, "cuda")  # a detector that failed to build: only the cache is emptied
    assert on_cpu.moved_to == [] and on_gpu.moved_to == ["cpu"] and stuck.moved_to == ["cpu"]
