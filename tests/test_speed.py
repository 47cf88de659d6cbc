"""`bench speed`: what is measured (shapes, batch counts, precision, memory fields), failures
reported by name, and the CLI's outputs. Timings themselves are never asserted."""
from __future__ import annotations

import pandas as pd
import pytest

from bench.api import BenchError
from bench_cli import main
from bench.registry import UnknownNameError
from bench.speed import SpeedResult, measure, measure_many, noise_images


def test_noise_images_are_seeded_and_sized():
    a, b = noise_images((20, 30), 2, seed=1), noise_images((20, 30), 2, seed=1)
    assert [im.size for im in a] == [(30, 20)] * 2 and a[0].mode == "RGB"
    assert a[0].tobytes() == b[0].tobytes() and a[0].tobytes() != a[1].tobytes()


def test_measure_times_warmup_plus_batches_at_the_detectors_own_shape(plugin):
    native = plugin.TinyDetector()
    r = measure(native, size=(20, 30), batch_size=3, batches=2, warmup=1)
    assert native.batch_shapes == [(3, 3, 20, 30)] * 3  # one warm-up, two timed, one batch shape
    assert isinstance(r, SpeedResult) and (r.detector, r.device, r.precision) == ("tiny.test", "cpu", "fp32")
    assert r.hardware.startswith("cpu, ") and r.hardware.endswith(" threads")
    assert (r.image_size, r.tensor_shape, r.batch_size, r.batches) == ("20x30", "3x20x30", 3, 2)
    assert r.preprocess_img_s > 0 and r.forward_img_s > 0 and r.forward_ms_per_batch > 0
    assert r.forward_img_s == pytest.approx(3000 / r.forward_ms_per_batch)
    assert r.peak_cuda_mib is None and r.peak_rss_mib > 10
    # a fixed-input detector's own preprocessing decides what the forward sees
    fixed = plugin.TinyDetector(size=(16, 16))
    assert measure(fixed, size=(40, 50), batch_size=2, batches=1, warmup=0, precision="bf16").tensor_shape == "3x16x16"
    assert fixed.batch_shapes == [(2, 3, 16, 16)]
    with pytest.raises(BenchError, match="batch size >= 1"):
        measure(native, batch_size=0)


def test_measure_many_reports_failures_by_name_and_goes_on(plugin):
    results, errors = measure_many(["heavy", "mydet"], size=(8, 8), batch_size=2, batches=1, warmup=0)
    assert [r.detector for r in results] == ["mydet"]
    assert list(errors) == ["heavy.official"] and "heavy.pth" in errors["heavy.official"]
    with pytest.raises(UnknownNameError, match="myddet"):
        measure_many(["myddet"])
    with pytest.raises(BenchError, match="unknown precision"):
        measure_many(["mydet"], precision="int8")


def test_cli_speed_writes_csv_and_json_and_exits_1_on_a_failed_detector(plugin, tmp_path, capsys):
    out = tmp_path / "speed.csv"
    assert main(["speed", "--detectors", "mydet", "--size", "24x32", "--batch-size", "2", "--batches", "1", "--output", str(out)]) == 0
    table = pd.read_csv(out)
    assert table["detector"].tolist() == ["mydet"] and table["tensor_shape"].tolist() == ["3x24x32"]
    assert "forward_img_s" in capsys.readouterr().out
    js = tmp_path / "speed.json"
    assert main(["speed", "--detectors", "mydet,heavy", "--size", "8", "--batch-size", "1", "--batches", "1", "--output", str(js)]) == 1
    assert pd.read_json(js)["image_size"].tolist() == ["8x8"]
    assert "heavy.official was not measured" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["speed", "--size", "big"])
