"""Trust (issue 15): inputs stay confined, nothing hangs, run folders are atomic and locked, labels
are honest, numbers reproduce. One test (or more) per defect the outside probe found, in its order."""
from __future__ import annotations

import importlib
import io
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import bench_cli as cli
from bench import registry
from bench.api import BenchError
from conftest import make_folder_suite, plugin_env

REPO = Path(__file__).resolve().parents[1]


def _png(path: Path, size=(24, 20), seed=0, **save) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, **save)
    return path


def _run(*args: str) -> int:
    return cli.main(["run", "--workers", "0", *args])


# --------------------------------------------------------------------------- 1-2: inputs stay where they belong


def test_1_dataset_cells_with_paths_outside_the_dataset_are_refused(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    from suites.hub import from_hf_dataset

    monkeypatch.setenv("AIGI_BENCH_HOME", str(tmp_path / "home"))
    secret = tmp_path / "secret.png"
    _png(secret, seed=9)
    png = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(png, "PNG")
    saved = tmp_path / "saved"
    inside = _png(saved / "files" / "inside.png", seed=3)  # a path cell inside the dataset's own folder
    cells = [{"bytes": None, "path": str(secret)}, {"bytes": None, "path": "../secret.png"},
             {"bytes": None, "path": str(inside)}, {"bytes": png.getvalue(), "path": None}, {"bytes": None, "path": "/etc/passwd"}]
    # stored as a plain struct, the way a crafted dataset holds path-only cells (datasets' own
    # Image feature would embed the bytes on saving); the loader casts it to Image(decode=False)
    struct = datasets.Features({"image": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
                                "label": datasets.Value("int64")})
    datasets.Dataset.from_dict({"image": cells, "label": [1, 1, 1, 0, 1]}, features=struct).save_to_disk(str(saved))
    suite = from_hf_dataset(str(saved), cache_dir=tmp_path / "cache")
    assert sorted(len(s) for s in suite.sets) == [1, 1]  # the bytes cell and the inside path
    refused = sorted(s.reason.split(": ", 1)[1] for s in suite.skipped)
    assert len(refused) == 3 and all("outside the dataset's own files" in r for r in refused), refused
    copies = {p.read_bytes() for p in (tmp_path / "cache").iterdir()}
    assert secret.read_bytes() not in copies and Path("/etc/passwd").read_bytes() not in copies  # nothing copied out


def test_2_a_manifest_stays_in_its_folder_unless_allowed(env, tmp_path, capsys):
    root = tmp_path / "m"
    for i in range(3):
        _png(root / "real" / f"r{i}.png", seed=i)
        _png(root / "fake" / f"f{i}.png", seed=10 + i)
    outside = _png(tmp_path / "elsewhere" / "x.png", seed=20)
    (root / "link.png").symlink_to(outside)  # inside by name, outside once resolved
    rows = [f"real/r{i}.png,0" for i in range(3)] + [f"fake/f{i}.png,1" for i in range(3)]
    rows += [f"{outside},1", "../elsewhere/x.png,1", "link.png,1", "../../../../etc/passwd,1"]
    (root / "m.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    assert _run("--suite", "folder", "--data-root", str(root / "m.csv"), "--detectors", "mydet", "--out", "o") == 0
    err = capsys.readouterr().err
    assert "4 file(s) of the suite were skipped" in err
    failures = pd.read_csv(tmp_path / "o" / "folder" / "failures.csv")
    assert (failures["reason"].str.contains("outside the manifest's folder")).sum() == 4
    assert len(pd.read_parquet(tmp_path / "o" / "folder" / "scores.parquet")) == 6
    assert _run("--suite", "folder", "--data-root", str(root / "m.csv"), "--detectors", "mydet", "--out", "o",
                "--allow-outside-root") == 0  # a shared data disk, on purpose
    scores = pd.read_parquet(tmp_path / "o" / "folder" / "scores.parquet")
    assert len(scores) == 9 and str(outside) in set(scores["path"])  # passwd is still no image: skipped as such
    assert "not an image file" in " ".join(pd.read_csv(tmp_path / "o" / "folder" / "failures.csv")["reason"])


# --------------------------------------------------------------------------- 3, 6, 7: plugins


def _dist(root: Path, name: str, entry_points: str, source: str) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "__init__.py").write_text(textwrap.dedent(source))
    info = root / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


@pytest.fixture
def rival_plugins(tmp_path, monkeypatch):
    """Two third-party distributions: both claim 'twin', one also claims the built-in 'npr'; a
    third calls sys.exit() when imported."""
    detector = """
    from bench.registry import register
    def make(weights=None):
        raise RuntimeError('never built in these tests')
    """
    _dist(tmp_path / "p", "rival_a", "[bench.detectors]\ntwin = rival_a:make\nnpr = rival_a:make\n", detector)
    _dist(tmp_path / "p", "rival_b", "[bench.detectors]\ntwin = rival_b:make\n", detector)
    _dist(tmp_path / "p", "quitter", "[bench.detectors]\nquitter = quitter:make\n", "import sys\nsys.exit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path / "p"))
    importlib.invalidate_caches()
    for kind in registry.GROUPS:
        registry.scan(kind, refresh=True)
    yield tmp_path / "p"
    for kind in registry.GROUPS:
        registry.scan(kind, refresh=True)


def test_3_a_name_claimed_twice_is_refused_naming_both(rival_plugins, capsys):
    refused = registry.refused("detectors")
    assert "rival-a" in refused["twin"] and "rival-b" in refused["twin"] and "neither is used" in refused["twin"]
    assert "aigi-bench" in refused["npr"] and "rival-a" in refused["npr"]
    assert registry.detector_spec("npr").info.display_name == "NPR"  # the built-in keeps its name
    with pytest.raises(registry.PluginLoadError, match="claimed by rival-a and rival-b"):
        registry.detector_spec("twin")
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "claimed by aigi-bench and by rival-a" in out and "claimed by rival-a and rival-b" in out


def test_7_a_plugin_calling_sys_exit_does_not_end_bench_list(rival_plugins, capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "quitter" in out and "SystemExit: 3" in out and "corvi" in out  # the others are still listed


def test_6_a_broken_plugin_named_in_detectors_stops_only_itself(env, tmp_path, folder_suite_dir, capsys):
    rc = _run("--suite", "folder", "--data-root", str(folder_suite_dir), "--detectors", "broken,mydet", "--out", "o")
    err = capsys.readouterr().err
    assert rc == 1 and "'broken' is installed but failed to load: AttributeError" in err
    assert set(pd.read_parquet(tmp_path / "o" / "folder" / "scores.parquet")["detector"]) == {"mydet"}
    assert _run("--suite", "folder", "--data-root", str(folder_suite_dir), "--detectors", "brokn,mydet") == 2  # a typo
    assert "did you mean 'broken'" in capsys.readouterr().err


# --------------------------------------------------------------------------- 4-5: nothing hangs, one image rule


def test_4_fifos_and_devices_are_failures_not_hangs(tmp_path, plugin_root):
    root = make_folder_suite(tmp_path / "data")
    os.mkfifo(root / "real" / "pipe.png")
    (root / "fake" / "gan" / "zero.png").symlink_to("/dev/zero")
    code = ("import sys; from bench_cli import main; sys.exit(main(['run', '--suite', 'folder', '--data-root', %r, "
            "'--detectors', 'mydet', '--out', %r, '--workers', '0']))") % (str(root), str(tmp_path / "o"))
    proc = subprocess.run([sys.executable, "-c", code], env=plugin_env(plugin_root), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    reasons = pd.read_csv(tmp_path / "o" / "folder" / "failures.csv").set_index("path")["reason"]
    assert "a FIFO (named pipe), not an image file" in reasons[str(root / "real" / "pipe.png")]
    assert "a character device, not an image file" in reasons[str(root / "fake" / "gan" / "zero.png")]


def test_4_a_file_that_grows_while_read_is_an_error(tmp_path, monkeypatch):
    from bench import files

    path = _png(tmp_path / "a.png")
    real_fstat = os.fstat
    monkeypatch.setattr(files.os, "fstat", lambda fd: os.stat_result((*real_fstat(fd)[:6], 10, *real_fstat(fd)[7:])))
    with pytest.raises(files.IrregularFileError, match="grew while it was read"):
        files.read_bytes(path)


def test_5_gif_and_avif_are_scored_and_what_is_skipped_is_named(env, tmp_path, capsys):
    from PIL import features

    root = make_folder_suite(tmp_path / "data")
    _png(root / "fake" / "gan" / "anim.gif", seed=1, format="GIF")
    if features.check("avif"):
        _png(root / "fake" / "gan" / "photo.avif", seed=2, format="AVIF")
    (root / "fake" / "gan" / "notes.txt").write_text("captions")
    (root / "real" / "._x.png").write_bytes(b"resource fork")
    assert _run("--suite", "folder", "--data-root", str(root), "--detectors", "mydet", "--out", "o") == 0
    scored = set(pd.read_parquet(tmp_path / "o" / "folder" / "scores.parquet")["path"])
    assert str(root / "fake" / "gan" / "anim.gif") in scored
    assert not features.check("avif") or str(root / "fake" / "gan" / "photo.avif") in scored
    failures = pd.read_csv(tmp_path / "o" / "folder" / "failures.csv")
    skipped = dict(zip(failures["path"].map(lambda p: Path(p).name), failures["reason"]))
    assert skipped["notes.txt"].startswith("skipped: not an image file (extension .txt)")
    assert skipped["._x.png"].startswith("skipped: hidden file")
    assert "2 file(s) of the suite were skipped" in capsys.readouterr().err


# --------------------------------------------------------------------------- 8: a detector that scores nothing


@pytest.mark.parametrize("how", ["preprocess", "nan"])
def test_8_a_detector_that_scores_nothing_says_so(env, tmp_path, folder_suite_dir, how):
    from bench.runner import RunConfig, run

    det = env.TinyDetector(name="silent", weights="silent.test", fingerprint=f"silent-{how}")
    if how == "preprocess":
        det.preprocess = lambda: _refuse
    else:
        det.forward = lambda batch: batch.new_full((batch.shape[0],), float("nan"))
    good = env.TinyDetector()
    res = run(RunConfig(suite="tinyfolder", out=tmp_path / "o", workers=0), detectors=[det, good],
              suite=env.load_folder(folder_suite_dir), progress=False)
    assert "silent.test" in res.errors and res.errors["silent.test"].startswith("produced no score: all 14 of its images failed")
    assert set(res.scores["weights"]) == {"tiny.test"}


def _refuse(image):
    raise ValueError("this detector takes no image")


# --------------------------------------------------------------------------- 9-12: run folders


def test_9_a_run_folder_is_replaced_whole_or_not_at_all(env, tmp_path, folder_suite_dir, monkeypatch):
    from bench.rundir import load_run
    from bench.runner import RunConfig, run

    suite = env.load_folder(folder_suite_dir)
    cfg = RunConfig(suite="tinyfolder", out=tmp_path / "o", workers=0)
    first = run(cfg, detectors=[env.TinyDetector()], suite=suite, progress=False)
    before = {p.name: p.read_bytes() for p in first.run_dir.iterdir()}

    def killed(*a, **k):
        raise KeyboardInterrupt  # a kill after scores.csv, before the rest

    monkeypatch.setattr(pd.DataFrame, "to_parquet", killed)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, detectors=[env.TinyDetector(bias=3.0, fingerprint="moved")], suite=suite, progress=False)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in first.run_dir.iterdir()} == before  # the old run, whole
    assert not [p for p in (tmp_path / "o").iterdir() if p.name.startswith(".staging-")]  # its staging went too
    other = run(RunConfig(suite="tinyfolder", out=tmp_path / "p", workers=0),
                detectors=[env.TinyDetector(bias=3.0, fingerprint="moved")], suite=suite, progress=False)
    (first.run_dir / "scores.parquet").write_bytes((other.run_dir / "scores.parquet").read_bytes())  # a mixed folder
    with pytest.raises(BenchError, match="not the file this run wrote"):
        load_run(first.run_dir)


def test_10_two_writers_of_one_run_folder(env, tmp_path, folder_suite_dir):
    from bench.files import FolderLock
    from bench.runner import RunConfig, run

    cfg = RunConfig(suite="tinyfolder", out=tmp_path / "o", workers=0)
    with FolderLock(tmp_path / "o" / "tinyfolder"):
        with pytest.raises(BenchError, match=rf"being written by another bench process \(pid {os.getpid()}, since"):
            run(cfg, detectors=[env.TinyDetector()], suite=env.load_folder(folder_suite_dir), progress=False)
    run(cfg, detectors=[env.TinyDetector()], suite=env.load_folder(folder_suite_dir), progress=False)  # released: fine
    other = RunConfig(suite="tinyfolder", out=tmp_path / "o", run_name="other", workers=0)
    with FolderLock(tmp_path / "o" / "tinyfolder"):  # another run name in the same --out is not blocked
        run(other, detectors=[env.TinyDetector()], suite=env.load_folder(folder_suite_dir), progress=False)


def test_11_a_run_that_scores_nothing_keeps_the_old_folder(env, tmp_path, folder_suite_dir, capsys):
    args = ["--suite", "folder", "--data-root", str(folder_suite_dir), "--out", "o"]
    assert _run(*args, "--detectors", "mydet") == 0
    manifest = (tmp_path / "o" / "folder" / "manifest.json").read_bytes()
    capsys.readouterr()
    assert _run(*args, "--detectors", "heavy") == 2  # heavy's weights are nowhere
    err = capsys.readouterr().err
    assert "no image was scored in this run" in err and "was left as it was" in err
    assert (tmp_path / "o" / "folder" / "manifest.json").read_bytes() == manifest


def test_12_staging_left_by_a_killed_writer_is_cleaned(env, tmp_path, folder_suite_dir):
    from bench.runner import RunConfig, run

    out = tmp_path / "o"
    dead = out / ".writing-999999999-x"  # no such pid
    alive = out / f".staging-{os.getpid()}-tinyfolder-y"  # this process: a writer in progress
    for p in (dead, alive):
        (p / "half").mkdir(parents=True)
        old = time.time() - 3600
        os.utime(p, (old, old))
    run(RunConfig(suite="tinyfolder", out=out, workers=0), detectors=[env.TinyDetector()],
        suite=env.load_folder(folder_suite_dir), progress=False)
    assert not dead.exists() and alive.exists()


# --------------------------------------------------------------------------- 13-15: honest labels, reproducible tables


def test_13_toy_weights_are_labelled_and_warned_about(env, tmp_path, folder_suite_dir, capsys, caplog):
    with caplog.at_level("WARNING"):
        assert _run("--suite", "folder", "--data-root", str(folder_suite_dir), "--detectors", "npr.mini", "--out", "o") == 0
    scores = pd.read_parquet(tmp_path / "o" / "folder" / "scores.parquet")
    assert set(scores["display_name"]) == {"NPR (mini)"}
    assert "NPR (mini)" in capsys.readouterr().out
    assert "trained on AIGI-mini, a synthetic miniature" in caplog.text
    from bench.selection import row_label

    class Official:
        info, weights = registry.detector_spec("npr").info, "npr.official"

    assert row_label(Official()) == "NPR" and row_label(Official(), {"resize": False}) == "NPR (resize=False)"


def test_14_post_processing_seeds_come_from_the_pixels_not_the_file_bytes(env, tmp_path):
    """The same pixels saved by another PNG encoder setting (another zlib, another machine) are
    other bytes, other hashes; they must draw the same post-processing."""
    from bench.runner import RunConfig, run

    a = _png(tmp_path / "a" / "real" / "x.png", size=(40, 32), seed=5, compress_level=1)
    b = tmp_path / "b" / "real" / "x.png"
    b.parent.mkdir(parents=True)
    Image.open(a).save(b, compress_level=9)
    assert a.read_bytes() != b.read_bytes() and np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
    params = []
    for root in (tmp_path / "a", tmp_path / "b"):
        _png(root / "fake" / "gan" / "f.png", size=(40, 32), seed=6)
        res = run(RunConfig(suite="tinyfolder", out=root / "o", workers=0, post_process=True), detectors=[env.TinyDetector()],
                  suite=env.load_folder(root), progress=False)
        post = res.scores[(res.scores["condition"] == "Post-processed") & (res.scores["label"] == 0)]
        params.append(json.loads(post["params"].iloc[0]))
    assert params[0] == params[1] and params[0]


def test_14_worlds_record_what_makes_pixels_differ_and_generate_the_same_on_other_kernels(tmp_path):
    """The world's generators run in float64: under ATen's DEFAULT (no vector units) and AVX2
    kernels the outputs are the same bytes (in float32 they were not)."""
    code = ("import hashlib, random, torch\nfrom suites.mini import generators as g, photos\ntorch.set_num_threads(1)\n"
            "m = g.load_generator('ldm')\nim = photos.sample_crop('test', 'content', random.Random(0)).image()\n"
            "print(torch.backends.cpu.get_cpu_capability(), hashlib.sha256(g.generate(m, im).tobytes()).hexdigest())")
    digests = {}
    for cap in ("default", "avx2"):
        proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "ATEN_CPU_CAPABILITY": cap},
                              capture_output=True, text=True, timeout=120, cwd=REPO)
        assert proc.returncode == 0, proc.stderr
        kernels, digest = proc.stdout.split()
        digests[kernels] = digest
    assert len(set(digests.values())) == 1, digests
    from bench.images import pixel_environment

    env = pixel_environment()
    assert {"pillow", "libjpeg", "libwebp", "zlib", "torch_cpu_capability"} <= set(env)


def test_15_official_whole_image_and_native_size_are_run_options(env, tmp_path, folder_suite_dir, capsys):
    args = ["--suite", "folder", "--data-root", str(folder_suite_dir), "--out", "o"]
    assert _run(*args, "--detectors", "npr.mini,corvi.mini", "--detector-option", "resize=false",
                "--detector-option", "tile=false") == 0
    manifest = json.loads((tmp_path / "o" / "folder" / "manifest.json").read_text())
    by = {d["weights"]: d for d in manifest["detectors"]}
    assert by["npr.mini"]["options"] == {"resize": False} and by["npr.mini"]["input"] == "native resolution"
    assert by["npr.mini"]["fingerprint"].endswith("+native") and by["corvi.mini"]["fingerprint"].endswith("+whole")
    assert set(pd.read_parquet(tmp_path / "o" / "folder" / "scores.parquet")["display_name"]) == {
        "NPR (mini, resize=False)", "Corvi (mini, tile=False)"}
    capsys.readouterr()
    assert _run(*args, "--detectors", "npr.mini", "--detector-option", "tiles=false") == 2
    assert "no selected detector takes the option(s) tiles (options they take: npr.mini: resize)" in capsys.readouterr().err


# --------------------------------------------------------------------------- 16: messages


def test_16_a_large_photo_is_named_with_its_size_and_the_way_in(env, tmp_path, capsys):
    root = tmp_path / "d"
    for i in range(2):
        _png(root / "real" / f"r{i}.png", size=(50, 40), seed=i)
        _png(root / "fake" / "g" / f"f{i}.png", size=(50, 40), seed=5 + i)
    args = ["--suite", "folder", "--data-root", str(root), "--detectors", "mydet", "--out", "o"]
    assert _run(*args, "--max-pixels", "1999") == 2  # every image refused: nothing scored, nothing written
    err = capsys.readouterr().err
    assert "4 file(s) could not be scored" in err and "50 x 40 = 2,000 pixels is above the limit of 1,999 pixels" in err
    assert "--max-pixels 2000" in err  # the way in for a genuine photo
    assert _run(*args, "--max-pixels", "2000") == 0


def test_16_20_failures_are_counted_in_files_per_condition_and_detector(env, tmp_path, folder_suite_dir, capsys):
    for name in ("bad1.png", "bad2.png"):
        (folder_suite_dir / "fake" / "gan" / name).write_bytes(b"not a png")
    assert _run("--suite", "folder", "--data-root", str(folder_suite_dir), "--detectors", "mydet,npr.mini", "--post-process",
                "--chain", "tinyshift", "--out", "o") == 0
    err = capsys.readouterr().err
    assert ("2 file(s) could not be scored (by condition: Original: 2; Post-processed: 2; by detector: mydet: 2; "
            "npr.mini: 2)") in err


# --------------------------------------------------------------------------- 18-24: what a newcomer meets


def test_18_no_detector_with_official_weights_says_what_can_run_and_leaves_nothing(tmp_path, folder_suite_dir, capsys, monkeypatch):
    monkeypatch.setenv("AIGI_BENCH_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setattr("bench.weights.hub_offline", lambda: "offline in this test")
    monkeypatch.chdir(tmp_path)
    assert _run("--suite", "folder", "--data-root", str(folder_suite_dir)) == 2
    err = capsys.readouterr().err
    assert "no detector has its official weights on this machine" in err
    assert f"corvi.official: put the file at {tmp_path / 'weights' / 'corvi' / 'model_epoch_best.pth'}" in err
    assert "name dear-r.official in --detectors to fetch it" in err  # 21: the exact tag
    assert "toys" in err and "--detectors " in err and "npr.mini" in err
    assert not (tmp_path / "results" / "folder").exists()  # nothing left behind


def test_19_max_per_set_is_a_seeded_stratified_sample(env, tmp_path, capsys):
    root = tmp_path / "d"
    for src, n in (("a", 12), ("b", 6), ("c", 2)):
        for i in range(n):
            _png(root / "real" / src / f"{i:02d}.png", seed=hash((src, i)) % 1000)
    for i in range(4):
        _png(root / "fake" / "g" / f"{i}.png", seed=100 + i)
    assert _run("--suite", "folder", "--data-root", str(root), "--detectors", "mydet", "--max-per-set", "10", "--out", "o") == 0
    err = capsys.readouterr().err
    assert "--max-per-set 10: kept 10 of 20 images in 1 set(s), a sample drawn with seed 0, stratified by source folder" in err
    real = pd.read_parquet(tmp_path / "o" / "folder" / "scores.parquet").query("label == 0")["path"]
    counts = real.map(lambda p: Path(p).parent.name).value_counts().to_dict()
    assert counts == {"a": 6, "b": 3, "c": 1}  # proportional, not the first 10 names (all from a/)


def test_23_md_is_markdown(env, tmp_path, folder_suite_dir, capsys):
    assert _run("--suite", "folder", "--data-root", str(folder_suite_dir), "--detectors", "mydet", "--out", "o") == 0
    capsys.readouterr()
    assert cli.main(["table", "--run", "o/folder", "--format", "md"]) == 0
    assert capsys.readouterr().out.startswith("| Detector |")


def test_24_the_terminal_table_wraps_and_flags_small_sets():
    from bench.metrics import evaluate
    from bench.tables import render

    golden = Path(__file__).parent / "golden" / "scores_fixture.csv"
    text = render(evaluate(pd.read_csv(golden)), "text", width=60)
    pages = text.split("\n\n")
    assert len(pages) >= 3 and all(p.splitlines()[0].startswith("Detector") for p in pages[:-1])
    assert all(len(line) <= 60 for p in pages[:-1] for line in p.splitlines())
    assert "† fewer than 10 real or fake images" in text and "SD 4/2 †" in text
