"""`bench run --save-processed`: the post-processed images as files that score as the run scored them."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from bench.api import BenchError
from bench.export import MANIFEST, condition_folder
from bench.runner import RunConfig, run


def _cfg(tmp_path: Path, **kw) -> RunConfig:
    base = dict(suite="tinyfolder", out=tmp_path / "results", batch_size=4, workers=0, post_process=True,
                chain="tinyshift:amount=60", seed=3)
    base.update(kw)
    return RunConfig(**base)


def _rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / MANIFEST, newline="") as f:
        return list(csv.DictReader(f))


def test_saved_images_score_as_the_run_scored_them(tmp_path, plugin, folder_suite_dir):
    suite = plugin.load_folder(folder_suite_dir)
    saved = tmp_path / "processed"
    res = run(_cfg(tmp_path, save_processed=saved), detectors=[plugin.TinyDetector()], suite=suite, progress=False)
    folder = saved / condition_folder("tinyshift:amount=60@seed=3,px")
    assert [p.name for p in saved.iterdir()] == [folder.name]  # the originals are files already: only the chain's
    rows = _rows(folder)
    post = res.scores[res.scores["condition"] == "Post-processed"].set_index("path")
    assert sorted(r["source"] for r in rows) == sorted(post.index)
    for r in rows:
        assert (folder / r["path"]).is_file() and r["path"].endswith(".png")
        assert json.loads(r["params"]) == json.loads(post.loc[r["source"], "params"])
        assert int(r["label"]) == int(post.loc[r["source"], "label"]) and r["set"] == post.loc[r["source"], "set"]
    # the manifest is a folder suite: scored unprocessed, each file gives the logit the run stored
    again = run(RunConfig(suite="folder", data_root=str(folder / MANIFEST), out=tmp_path / "again", batch_size=4, workers=0),
                detectors=[plugin.TinyDetector()], progress=False)
    by_file = again.scores.set_index("path")["logit"]
    source_of = {str(folder / r["path"]): r["source"] for r in rows}
    assert len(by_file) == len(rows)
    for path, logit in by_file.items():
        assert logit == pytest.approx(post.loc[source_of[path], "logit"], abs=1e-6), path
    # and the chain really changed the pixels: the originals score otherwise
    orig = res.scores[res.scores["condition"] == "Original"].set_index("path")["logit"]
    assert not np.allclose([by_file[p] for p in source_of], [orig[source_of[p]] for p in source_of])


def test_fakes_only_saves_reals_as_they_are(tmp_path, plugin, folder_suite_dir):
    from PIL import Image

    saved = tmp_path / "processed"
    run(_cfg(tmp_path, fakes_only=True, save_processed=saved), detectors=[plugin.TinyDetector()],
        suite=plugin.load_folder(folder_suite_dir), progress=False)
    (folder,) = saved.iterdir()
    assert folder.name.endswith("fakes-only")
    rows = _rows(folder)
    reals = [r for r in rows if r["label"] == "0"]
    fakes = [r for r in rows if r["label"] == "1"]
    assert reals and fakes and all(r["params"] == "{}" for r in reals) and all(r["params"] != "{}" for r in fakes)
    for r in reals:
        assert np.array_equal(np.asarray(Image.open(folder / r["path"]).convert("RGB")),
                              np.asarray(Image.open(r["source"]).convert("RGB")))


def test_save_processed_needs_a_chain_and_no_shard(tmp_path, plugin, folder_suite_dir):
    suite = plugin.load_folder(folder_suite_dir)
    with pytest.raises(BenchError, match="add --post-process"):
        run(_cfg(tmp_path, post_process=False, chain="rajan", save_processed=tmp_path / "p"),
            detectors=[plugin.TinyDetector()], suite=suite, progress=False)
    with pytest.raises(BenchError, match="unsharded"):
        run(_cfg(tmp_path, shard="0/2", save_processed=tmp_path / "p"), detectors=[plugin.TinyDetector()], suite=suite,
            progress=False)
    assert not (tmp_path / "p").exists() and not (tmp_path / "results" / "tinyfolder").exists()


def test_an_unreadable_file_is_left_out_and_named(tmp_path, plugin, folder_suite_dir, caplog):
    (folder_suite_dir / "fake" / "gan" / "gan01.png").write_bytes(b"not a png")
    saved = tmp_path / "processed"
    res = run(_cfg(tmp_path, save_processed=saved), detectors=[plugin.TinyDetector()],
              suite=plugin.load_folder(folder_suite_dir), progress=False)
    assert res.run_dir.is_dir()  # the run folder is written whatever the export meets
    (folder,) = saved.iterdir()
    assert "gan01" not in {Path(r["source"]).stem for r in _rows(folder)}
    assert any("could not be saved" in m and "gan01.png" in m for m in caplog.messages)


def test_the_cli_passes_the_folder(tmp_path):
    from bench_cli import build_parser
    from bench_cli.harness import _config

    args = build_parser().parse_args(["run", "--suite", "mini", "--post-process", "--save-processed", str(tmp_path / "p")])
    assert _config(args).save_processed == tmp_path / "p"
