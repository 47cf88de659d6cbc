"""`bench reproduce --reduced`: the one command that rebuilds every bundled weight from scratch
(generators -> world -> detectors -> Stay-Positive -> DEAR), run end to end on a reduced budget."""
from __future__ import annotations

import json

import pytest

from bench_cli import main
from bench.registry import create_detector


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*never beat the zero head:UserWarning")  # 2 steps: expected
def test_reproduce_reduced_writes_every_weight_and_they_load(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGI_BENCH_HOME", str(tmp_path / "home"))
    out = tmp_path / "repro"
    assert main(["reproduce", "--reduced", "--out", str(out)]) == 0

    gens = sorted(p.stem for p in (out / "generators").glob("*.safetensors"))
    assert gens == ["flux16", "ldm", "shuffle", "tconv", "vq"]
    dets = out / "detectors"
    for name in ("corvi", "rajan", "npr", "ferretnet", "ladeda", "corvi-plus", "rajan-plus"):
        assert (dets / f"{name}.mini.safetensors").stat().st_size > 0
    for name in ("dear-c", "dear-r"):
        assert (dets / f"{name}.mini.pth").stat().st_size > 0
    times = json.loads((out / "times.json").read_text())
    assert set(times) >= {"generators", "world", "corvi", "rajan", "npr", "ferretnet", "ladeda", "corvi-plus", "rajan-plus", "dear-c", "dear-r"}

    # The reproduced files load through the registry exactly like the bundled ones.
    for name in ("corvi-plus", "dear-r", "npr"):
        suffix = "pth" if name.startswith("dear") else "safetensors"
        det = create_detector(f"{name}.mini", path=dets / f"{name}.mini.{suffix}")
        assert det.fingerprint and det.weights == f"{name}.mini"
    plus = create_detector("corvi-plus.mini", path=dets / "corvi-plus.mini.safetensors")
    assert (plus.model.backbone.fc.weight >= 0).all(), "Stay-Positive head must be non-negative"
