"""The README's plugin example, exactly as printed: installed as a distribution (package plus
dist-info with its entry points), it is listed, scores the same on every build, and prints in a
table. If the README's code drifts from the API, this fails."""
from __future__ import annotations

import importlib
import re
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import bench_cli as cli
from bench import registry
from conftest import REPO, _rescan, make_folder_suite


def _readme_blocks() -> tuple[str, str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Writing a detector plugin", 1)[1].split("\n## ", 1)[0]
    toml = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    python = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    return toml, python


@pytest.fixture
def readme_plugin(tmp_path):
    toml, python = _readme_blocks()
    name = re.search(r'^name = "([^"]+)"', toml, re.M).group(1)
    group = toml.split('[project.entry-points."bench.detectors"]', 1)[1]
    entry_points = re.findall(r'^(\S+) = "([^"]+)"', group, re.M)
    root = tmp_path / "site"
    (root / name).mkdir(parents=True)
    (root / name / "__init__.py").write_text(python)
    info = root / f"{name}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[bench.detectors]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points))
    sys.path.insert(0, str(root))
    _rescan()
    try:
        yield name
    finally:
        sys.path.remove(str(root))
        sys.modules.pop(name, None)
        importlib.invalidate_caches()
        _rescan()


def test_readme_plugin_is_listed_scores_reproducibly_and_prints(readme_plugin, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AIGI_BENCH_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["list"]) == 0
    assert re.search(r"^\s*mydet\b", capsys.readouterr().out, re.M)

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)) for _ in range(3)]
    first = registry.create_detector("mydet").score(images)
    with torch.random.fork_rng(devices=[]):  # a new build in another run, where other code drew random numbers
        torch.manual_seed(1234)
        state = torch.get_rng_state()
        again = registry.create_detector("mydet").score(images)
        assert torch.equal(torch.get_rng_state(), state)  # building it leaves the caller's RNG alone
    assert first.shape == (3,) and np.array_equal(first, again)

    data = make_folder_suite(tmp_path / "data", n_real=3, n_fake=2, sets=("gan",))
    rc = cli.main(["run", "--suite", "folder", "--data-root", str(data), "--detectors", "mydet",
                   "--run-name", "mydet", "--workers", "0"])  # fmt: skip
    assert rc == 0
    assert re.search(r"^\|?\s*MyDet\b", capsys.readouterr().out, re.M)
    assert (tmp_path / "results" / "mydet" / "scores.parquet").is_file()
