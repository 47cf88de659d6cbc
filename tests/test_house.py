"""The house rules: who imports whom, and what cheap commands must not load."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import import_graph  # noqa: E402


def test_packages_import_only_what_the_rules_allow():
    """The core imports no part; detectors and suites only the core; nothing imports the CLI."""
    edges = import_graph.graph()
    broken = {(a, b): sorted(m) for a, targets in edges.items() for b, m in targets.items() if b not in import_graph.ALLOWED[a]}
    assert not broken, broken
    assert "bench" not in edges, "the core imports none of detectors, dear, suites, bench_cli"


def test_rule_check_sees_a_lazy_import(tmp_path):
    """A function-level import counts: it is a dependency all the same."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from detectors.resnet import build\n    import suites.mini.world\n")
    assert {"detectors.resnet", "suites.mini.world"} <= import_graph.imports_of(module)


@pytest.mark.parametrize("argv", [["list"], ["dear", "prune", "--rad", "{rad}", "--out", "{out}"]])
def test_cheap_commands_import_no_torch(argv, tmp_path):
    """`bench list` (metadata) and `bench dear prune` (numpy on a RAD vector) need no model."""
    import json

    import numpy as np

    rad = tmp_path / "rad.npz"
    meta = {"n_samples": 1, "n_batches": 1, "layer": "backbone.layer4", "detector": "corvi.mini", "data": "", "extra": {}}
    np.savez(rad, scores=np.linspace(-1, 1, 256), metadata=np.array(json.dumps(meta)))
    args = [a.format(rad=rad, out=tmp_path / "out") for a in argv]
    code = ("import sys; from bench_cli import main; rc = main(%r); "
            "loaded = [m for m in ('torch', 'timm') if m in sys.modules]; "
            "print('LOADED', loaded); sys.exit(rc)") % (args,)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout, proc.stdout[-300:]
    if argv[0] == "dear":
        assert (tmp_path / "out" / "gate.npz").is_file()  # it did its work
