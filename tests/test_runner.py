"""Runner: scores table and exports, native-resolution batching, cache reuse, failures,
post-processing parameters, failing detectors, sweeps, and resume after kill -9."""
from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.api import BenchError, MissingDataError, derive_seed
from bench.images import pixel_digest
from bench.images import decode_image
from bench.registry import UnknownNameError, create_chain
from bench.rundir import FAILURE_COLUMNS, SCORE_COLUMNS, load_run
from bench.runner import RunConfig, run, sweep
from bench.selection import default_detector_names
from conftest import make_folder_suite, plugin_env


def _cfg(tmp_path, **kw) -> RunConfig:
    base = dict(suite="tinyfolder", out=tmp_path / "results", batch_size=4, workers=0)
    base.update(kw)
    return RunConfig(**base)


def _forwards(log: Path) -> int:
    """Images that went through forward, as logged by TinyDetector (across processes)."""
    return sum(int(x) for x in log.read_text().split()) if log.exists() else 0


def test_replacing_a_different_run_warns(tmp_path, plugin, folder_suite_dir, caplog):
    """A run into a folder that held more detectors or conditions says what it drops."""
    suite = plugin.load_folder(folder_suite_dir)
    a, b = plugin.TinyDetector(), plugin.TinyDetector(name="other", weights="other.test", fingerprint="o")
    run(_cfg(tmp_path, post_process=True), detectors=[a, b], suite=suite, progress=False)
    with caplog.at_level("WARNING", logger="bench.runner"):
        run(_cfg(tmp_path, post_process=True), detectors=[a, b], suite=suite, progress=False)  # same run: quiet
        assert "is replaced" not in caplog.text
        run(_cfg(tmp_path), detectors=[a], suite=suite, progress=False)
    assert "held a run with other.test, rajan@seed=0,px, which this run does not have" in caplog.text
    assert "--run-name" in caplog.text


def test_scores_table_exports_and_manifest(tmp_path, plugin, folder_suite_dir):
    suite = plugin.load_folder(folder_suite_dir)
    det = plugin.TinyDetector()
    res = run(_cfg(tmp_path, run_name="exp"), detectors=[det], suite=suite, progress=False)
    assert res.ok and res.run_dir == tmp_path / "results" / "exp"
    df = res.scores
    assert list(df.columns) == SCORE_COLUMNS
    assert len(df) == len(suite.records) == 14
    # one row per image, in suite set order, with the suite's set metadata
    assert df["path"].tolist() == [r.path for r in suite.records]
    assert df["set_order"].tolist() == [[s.name for s in suite.sets].index(x) for x in df["set"]]
    assert set(df["condition"]) == {"Original"} and set(df["condition_key"]) == {"original"}
    fake = df[df["set"] == "gan"].iloc[0]
    assert (fake["set_kind"], fake["real_set"], fake["set_display"], fake["label"]) == ("generator", "real", "GAN", 1)
    assert df.loc[df["set"] == "real", "real_set"].isna().all()
    assert (df["detector"] == "tiny").all() and (df["weights"] == "tiny.test").all() and (df["params"] == "{}").all()
    # logits are the detector's own, per image
    expect = det.score([__import__("PIL.Image", fromlist=["Image"]).open(p).convert("RGB") for p in df["path"]])
    np.testing.assert_allclose(df["logit"].to_numpy(), expect, rtol=1e-6)

    # exports
    for name in ("manifest.json", "scores.csv", "scores.parquet", "failures.csv"):
        assert (res.run_dir / name).is_file(), name
    csv = pd.read_csv(res.run_dir / "scores.csv")
    assert list(csv.columns) == SCORE_COLUMNS and len(csv) == 14
    parquet = pd.read_parquet(res.run_dir / "scores.parquet")
    pd.testing.assert_frame_equal(parquet, df)
    assert list(pd.read_csv(res.run_dir / "failures.csv").columns) == FAILURE_COLUMNS
    manifest, loaded = load_run(res.run_dir)
    pd.testing.assert_frame_equal(loaded, df)
    assert manifest["detectors"][0]["fingerprint"] == "tiny-fp-1" and manifest["detectors"][0]["weights"] == "tiny.test"
    assert manifest["suite"]["source"] == str(folder_suite_dir)
    assert [s["name"] for s in manifest["suite"]["sets"]] == ["real", "diff", "gan"]
    assert manifest["counts"]["images"] == 14 and manifest["counts"]["computed"] == 14
    assert {"python", "torch", "aigi-bench"} <= set(manifest["versions"]) and manifest["seed"] == 0
    assert manifest["config"]["batch_size"] == 4 and manifest["started"] <= manifest["finished"]


def test_load_run_errors(tmp_path, plugin, folder_suite_dir, caplog):
    with pytest.raises(MissingDataError, match="no run here"):
        load_run(tmp_path / "nothing")
    res = run(_cfg(tmp_path), detectors=[plugin.TinyDetector()], suite=plugin.load_folder(folder_suite_dir), progress=False)
    parquet, csv = res.run_dir / "scores.parquet", res.run_dir / "scores.csv"
    parquet.write_bytes(parquet.read_bytes()[:300])  # cut
    with pytest.raises(BenchError, match="scores.parquet: not the file this run wrote"):  # its digest says so
        load_run(res.run_dir)
    parquet.unlink()
    assert len(load_run(res.run_dir)[1]) == 14  # the CSV holds the same table
    csv.write_text("\n".join(csv.read_text().splitlines()[:-3]) + "\n")  # cut at a row boundary: parses, but short
    with pytest.raises(BenchError, match="scores.csv: not the file this run wrote"):
        load_run(res.run_dir)
    manifest = res.run_dir / "manifest.json"  # a run folder written before digests: the row count still speaks
    manifest.write_text(json.dumps({k: v for k, v in json.loads(manifest.read_text()).items() if k != "digests"}))
    assert len(load_run(res.run_dir)[1]) == 11
    assert "has 11 rows but the run exported 14" in caplog.text
    (res.run_dir / "scores.parquet").write_bytes(b"garbage")
    with pytest.raises(BenchError, match="scores.parquet: unreadable scores table"):
        load_run(res.run_dir)


def test_native_resolution_batches_by_shape(tmp_path, plugin, folder_suite_dir):
    """Native detectors: never resized, equal sizes share a batch; fixed-size: any mix."""
    suite = plugin.load_folder(folder_suite_dir)
    native = plugin.TinyDetector(name="native", fingerprint="n")
    fixed = plugin.TinyDetector(name="fixed", fingerprint="f", size=(16, 16))
    res = run(_cfg(tmp_path, batch_size=3), detectors=[native, fixed], suite=suite, progress=False)
    assert res.ok
    # 7 images of 32x32 and 7 of 40x48 (H, W): batches 3+3+1 per size, each batch one shape
    assert sorted(native.batch_shapes) == sorted([(3, 3, 32, 32)] * 2 + [(1, 3, 32, 32)] + [(3, 3, 40, 48)] * 2 + [(1, 3, 40, 48)])
    assert sorted(b[0] for b in fixed.batch_shapes) == [2, 3, 3, 3, 3]
    assert {b[1:] for b in fixed.batch_shapes} == {(3, 16, 16)}
    assert len(res.scores) == 28


def test_work_is_ordered_so_equal_shapes_meet(tmp_path, plugin):
    """n reals of n distinct heights and n fakes in reverse height order: the runner orders its
    work by decoded size, so each real meets the fake of its height and every batch is full,
    where arrival order would have left them waiting apart (see the next test)."""
    from conftest import write_png

    def batches(n: int) -> Counter:
        root = tmp_path / f"data{n}"
        for i in range(n):
            write_png(root / "real" / f"r{i}.png", (20 + i, 20), 40, 100, i)
            write_png(root / "fake" / "g" / f"f{i}.png", (20 + n - 1 - i, 20), 120, 80, 100 + i)
        det = plugin.TinyDetector(fingerprint=f"tiny-{n}")
        res = run(_cfg(tmp_path, batch_size=2, run_name=f"n{n}"), detectors=[det], suite=plugin.load_folder(root), progress=False)
        assert len(res.scores) == 2 * n and res.scores["logit"].notna().all()
        assert res.manifest["counts"]["per_detector"][0]["batch_sizes"] == {2: n}  # the histogram the manifest keeps
        return Counter(b[0] for b in det.batch_shapes)

    assert batches(8) == Counter({2: 8})
    assert batches(9) == Counter({2: 9})


def test_bucket_memory_bound_with_many_sizes():
    """Many distinct sizes arriving in the worst order: at most 4 * batch_size images wait; one
    more flushes the fullest bucket early (oldest first among equals), so memory stays bounded.
    n=9 with batch_size 2: the 9th height pushes the 1st out alone, heights 8..1 then pair up,
    and height 0 goes alone at the end."""
    import torch

    from bench.batching import batches_of

    n = 9
    items = [torch.zeros(3, 20 + i, 20) for i in range(n)] + [torch.zeros(3, 20 + n - 1 - i, 20) for i in range(n)]
    sizes = Counter(len(b) for b in batches_of(items, 2, tensor=lambda t: t))
    assert sizes == Counter({2: 8, 1: 2})


def test_a_pixel_budget_caps_batches_of_large_images():
    import torch

    from bench.batching import ShapeBatcher

    batcher = ShapeBatcher(32, pixel_budget=4 * 1024 * 1024, tensor=lambda t: t)
    assert batcher.size_for((3, 256, 256)) == 32 and batcher.size_for((3, 1024, 1024)) == 4
    assert batcher.size_for((3, 6000, 4000)) == 1  # always at least one
    ready = [b for t in [torch.zeros(3, 1024, 1024)] * 9 for b in batcher.add(t)]
    assert [len(b) for b in ready] == [4, 4] and [len(b) for b in batcher.drain()] == [1]


def test_bucket_byte_bound(tmp_path, plugin, folder_suite_dir, monkeypatch):
    """Held-back tensors are bounded by bytes too: with a budget below one image, every image
    goes alone (the default budget lets same-size images share batches of 4)."""
    import bench.batching

    suite = plugin.load_folder(folder_suite_dir)
    det = plugin.TinyDetector()
    run(_cfg(tmp_path, run_name="a"), detectors=[det], suite=suite, progress=False)
    assert max(b[0] for b in det.batch_shapes) == 4
    monkeypatch.setattr(bench.batching, "PENDING_BYTES", 1)
    det = plugin.TinyDetector(fingerprint="other")
    res = run(_cfg(tmp_path, run_name="b"), detectors=[det], suite=suite, progress=False)
    assert len(res.scores) == 14 and {b[0] for b in det.batch_shapes} == {1}


def test_cache_reuse_across_runs(tmp_path, plugin, folder_suite_dir):
    suite = plugin.load_folder(folder_suite_dir)
    log = tmp_path / "fw.log"
    first = run(_cfg(tmp_path, run_name="a"), detectors=[plugin.TinyDetector(log_path=log)], suite=suite, progress=False)
    assert _forwards(log) == 14
    # same weights fingerprint, same bytes, same condition: nothing recomputed, another run name
    second = run(_cfg(tmp_path, run_name="b"), detectors=[plugin.TinyDetector(log_path=log)], suite=suite, progress=False)
    assert _forwards(log) == 14
    pd.testing.assert_frame_equal(first.scores, second.scores)
    assert second.manifest["counts"]["computed"] == 0
    # the same bytes under another name are the same image
    copy = make_folder_suite(tmp_path / "copy")
    run(_cfg(tmp_path, run_name="c"), detectors=[plugin.TinyDetector(log_path=log)], suite=plugin.load_folder(copy), progress=False)
    assert _forwards(log) == 14
    # new weights (fingerprint): everything is computed again
    run(_cfg(tmp_path, run_name="d"), detectors=[plugin.TinyDetector(fingerprint="tiny-fp-2", log_path=log)], suite=suite, progress=False)
    assert _forwards(log) == 28
    # an edited file is re-hashed and rescored; the others are reused
    p = Path(suite.set("gan").records[1].path)
    from conftest import write_png

    write_png(p, (32, 32), red=200, blue=10, seed=999)
    run(_cfg(tmp_path, run_name="e"), detectors=[plugin.TinyDetector(log_path=log)], suite=suite, progress=False)
    assert _forwards(log) == 29


def test_bad_images_are_recorded_and_the_rest_completes(tmp_path, plugin, folder_suite_dir):
    (folder_suite_dir / "fake" / "gan" / "zz_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    good = (folder_suite_dir / "real" / "r00.png").read_bytes()
    (folder_suite_dir / "real" / "zz_truncated.png").write_bytes(good[: len(good) // 2])
    (folder_suite_dir / "real" / "zz_empty.png").write_bytes(b"")
    suite = plugin.load_folder(folder_suite_dir)
    res = run(_cfg(tmp_path), detectors=[plugin.TinyDetector()], suite=suite, progress=False)
    assert res.ok  # bad images are not a detector failure
    assert len(res.scores) == 14 and res.scores["logit"].notna().all()
    f = res.failures.set_index("path")
    assert sorted(Path(p).name for p in f.index) == ["zz_corrupt.png", "zz_empty.png", "zz_truncated.png"]
    assert "empty" in f.loc[str(folder_suite_dir / "real" / "zz_empty.png"), "reason"]
    assert f["reason"].str.len().gt(0).all() and (f["condition_key"] == "original").all()
    assert len(pd.read_csv(res.run_dir / "failures.csv")) == 3 and res.manifest["counts"]["failures"] == 3


def test_nan_logits_are_failures_not_scores(tmp_path, plugin, folder_suite_dir):
    suite = plugin.load_folder(folder_suite_dir, max_per_set=1)
    res = run(_cfg(tmp_path), detectors=[plugin.TinyDetector(bias=float("nan"))], suite=suite, progress=False)
    assert res.scores.empty and list(res.scores.columns) == SCORE_COLUMNS
    assert len(res.failures) == 3 and (res.failures["reason"] == "the detector returned NaN").all()


def test_post_processing_params_stored_and_seeded(tmp_path, plugin, folder_suite_dir):
    suite = plugin.load_folder(folder_suite_dir)
    cfg = _cfg(tmp_path, post_process=True, chain="tinyshift:amount=60", seed=3)
    res = run(cfg, detectors=[plugin.TinyDetector()], suite=suite, progress=False)
    df = res.scores
    assert len(df) == 28
    post = df[df["condition"] == "Post-processed"]
    assert set(post["condition_key"]) == {"tinyshift:amount=60@seed=3,px"}
    offsets = [json.loads(p)["offset"] for p in post["params"]]
    assert all(0 <= o <= 60 for o in offsets) and len(set(offsets)) > 3  # drawn per image
    assert (df.loc[df["condition"] == "Original", "params"] == "{}").all()
    # each image is seeded from (run seed, chain name, pixel digest): redo every draw independently,
    # then score the processed image directly; the stored logit is that image's, whatever was drawn
    chain, scorer = create_chain("tinyshift:amount=60"), plugin.TinyDetector()
    for row in post.itertuples():
        data = Path(row.path).read_bytes()
        decoded = decode_image(data, row.path)
        image, params = chain(decoded, random.Random(derive_seed(3, chain.name, pixel_digest(decoded))))
        assert json.loads(row.params) == params, row.path
        expected = scorer.forward(scorer.preprocess()(image).unsqueeze(0)).item()
        assert row.logit == pytest.approx(expected, rel=1e-5, abs=1e-5), row.path
    # a brightness shift moves TinyDetector's logit only through clipping; it does here, so the
    # check above tells a processed image from an unprocessed one
    orig = df[df["condition"] == "Original"].set_index("path")["logit"]
    assert not np.allclose(post.set_index("path")["logit"].loc[orig.index], orig)
    # per-image seeding: same draws with workers, another order, or a subset
    other = run(_cfg(tmp_path / "o", post_process=True, chain="tinyshift:amount=60", seed=3, workers=2, max_per_set=2),
                detectors=[plugin.TinyDetector()], suite=plugin.load_folder(folder_suite_dir, max_per_set=2), progress=False)  # fmt: skip
    both = other.scores[other.scores["condition"] == "Post-processed"].merge(post, on="path", suffixes=("_o", ""))
    assert len(both) == 6 and (both["params_o"] == both["params"]).all()
    np.testing.assert_allclose(both["logit_o"], both["logit"], rtol=1e-6)
    # another seed is another condition with other draws
    res2 = run(_cfg(tmp_path, post_process=True, chain="tinyshift:amount=60", seed=4), detectors=[plugin.TinyDetector()], suite=suite, progress=False)
    post2 = res2.scores[res2.scores["condition"] == "Post-processed"]
    assert set(post2["condition_key"]) == {"tinyshift:amount=60@seed=4,px"}
    assert [json.loads(p)["offset"] for p in post2["params"]] != offsets


def test_fakes_only_reuses_original_scores_for_reals(tmp_path, plugin, folder_suite_dir):
    suite = plugin.load_folder(folder_suite_dir)
    log = tmp_path / "fw.log"
    res = run(_cfg(tmp_path, post_process=True, chain="tinyshift", fakes_only=True),
              detectors=[plugin.TinyDetector(log_path=log)], suite=suite, progress=False)  # fmt: skip
    assert _forwards(log) == 14 + 8  # reals are not processed again
    df = res.scores
    assert set(df["condition"]) == {"Original", "Post-processed (fakes only)"}  # tables name the protocol
    post = df[df["condition"] == "Post-processed (fakes only)"]
    assert set(post["condition_key"]) == {"tinyshift:amount=40@seed=0,px,fakes-only"} and len(post) == 14
    reals = post[post["label"] == 0].set_index("path")
    orig = df[df["condition"] == "Original"].set_index("path")
    assert (reals["params"] == "{}").all()
    np.testing.assert_array_equal(reals["logit"], orig.loc[reals.index, "logit"])
    assert all("offset" in json.loads(p) for p in post.loc[post["label"] == 1, "params"])


def test_real_rajan_chain(tmp_path, plugin, folder_suite_dir):
    suite = plugin.load_folder(folder_suite_dir, max_per_set=1)
    res = run(_cfg(tmp_path, post_process=True), detectors=[plugin.TinyDetector()], suite=suite, progress=False)
    post = res.scores[res.scores["condition"] == "Post-processed"]
    assert set(post["condition_key"]) == {"rajan@seed=0,px"} and len(post) == 3
    params = [json.loads(p) for p in post["params"]]
    assert all(50 <= p["quality"] <= 95 and 256 <= p["width"] <= 1024 for p in params)


def test_failing_detector_does_not_stop_the_others(tmp_path, plugin, folder_suite_dir):
    suite = plugin.load_folder(folder_suite_dir)
    bad = plugin.TinyDetector(name="flaky", fingerprint="flaky", weights="flaky.test", fail_after=1)
    good = plugin.TinyDetector(name="good", fingerprint="good", weights="good.test")
    res = run(_cfg(tmp_path, batch_size=2), detectors=[bad, good], suite=suite, progress=False)
    assert not res.ok and list(res.errors) == ["flaky.test"] and "simulated detector failure" in res.errors["flaky.test"]
    assert (res.scores["detector"] == "good").sum() == 14
    assert (res.scores["detector"] == "flaky").sum() == 2  # its finished batch is kept and exported
    assert res.manifest["errors"] == res.errors
    assert len(pd.read_csv(res.run_dir / "scores.csv")) == 16


def test_detector_names_are_checked_before_loading_data(tmp_path, plugin):
    with pytest.raises(UnknownNameError, match="did you mean 'mydet'"):
        run(_cfg(tmp_path, detectors=["mydett"], data_root=str(tmp_path / "nowhere")), progress=False)
    with pytest.raises(UnknownNameError, match="unknown chain 'tinyshfit'.*tinyshift"):
        run(_cfg(tmp_path, post_process=True, chain="tinyshfit"), progress=False)
    with pytest.raises(MissingDataError, match="not available"):
        run(_cfg(tmp_path, detectors=["mydet"], data_root=str(tmp_path / "nowhere")), progress=False)


def test_registered_suite_and_default_detectors(tmp_path, plugin, folder_suite_dir):
    """No detectors named: every detector with the suite's weights tag (+ plain-callable plugins)."""
    assert "mydet" in default_detector_names("mydet")
    res = run(_cfg(tmp_path, data_root=str(folder_suite_dir), max_per_set=2), progress=False)
    assert res.ok and set(res.scores["detector"]) >= {"mydet"}
    assert res.run_dir.name == "tinyfolder" and len(res.scores[res.scores["detector"] == "mydet"]) == 6


def test_sweep_conditions_and_manifest(tmp_path, plugin, folder_suite_dir):
    suite = plugin.load_folder(folder_suite_dir, max_per_set=2)
    res = sweep(_cfg(tmp_path), "tinyshift", "amount", [0, 30], detectors=[plugin.TinyDetector()], suite=suite, progress=False)
    assert res.run_dir.name == "tinyfolder-sweep-tinyshift-amount"
    assert res.scores["condition"].drop_duplicates().tolist() == ["Original", "tinyshift:amount=0", "tinyshift:amount=30"]
    sw = res.manifest["sweep"]
    assert sw["param"] == "amount" and sw["values"] == [0, 30]
    assert [c["condition_key"] for c in sw["conditions"]] == ["tinyshift:amount=0@seed=0,px", "tinyshift:amount=30@seed=0,px"]
    by = res.scores.pivot_table(index="path", columns="condition", values="logit")
    np.testing.assert_allclose(by["tinyshift:amount=0"], by["Original"], rtol=1e-6)  # amount 0 = identity
    with pytest.raises(BenchError):
        sweep(_cfg(tmp_path), "tinyshift", "amount", [], detectors=[plugin.TinyDetector()], suite=suite, progress=False)
    # a composed chain: the swept parameter belongs to its last step
    comp = sweep(_cfg(tmp_path), "tinyshift:amount=5+tinyshift", "amount", [10], detectors=[plugin.TinyDetector()], suite=suite,
                 progress=False)  # fmt: skip
    assert comp.scores["condition"].drop_duplicates().tolist() == ["Original", "tinyshift:amount=5+tinyshift:amount=10"]


CRASH_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    import mini_plugin
    from bench.runner import RunConfig, run
    data, out, log = sys.argv[1:4]
    det = mini_plugin.TinyDetector(sleep=0.15, log_path=log)
    cfg = RunConfig(suite="tinyfolder", out=Path(out), batch_size=2, workers=0, post_process=True, chain="tinyshift")
    run(cfg, detectors=[det], suite=mini_plugin.load_folder(data), progress=False)
""")


@pytest.mark.slow
def test_resume_after_kill_9(tmp_path, plugin, plugin_root, folder_suite_dir):
    out, log = tmp_path / "results", tmp_path / "crash.log"
    proc = subprocess.Popen([sys.executable, "-c", CRASH_SCRIPT, str(folder_suite_dir), str(out), str(log)],
                            env=plugin_env(plugin_root), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    db = out / "cache.sqlite"
    committed = 0
    deadline = time.time() + 60
    try:
        while time.time() < deadline and proc.poll() is None:
            if db.exists():
                try:
                    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
                        committed = con.execute("SELECT COUNT(*) FROM scores").fetchone()[0]
                except sqlite3.OperationalError:
                    committed = 0  # tables not created yet
            if committed >= 6:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        proc.kill()  # SIGKILL: no cleanup, no export
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -9
    assert not (out / "tinyfolder" / "scores.csv").exists()
    with sqlite3.connect(db) as con:
        done = con.execute("SELECT COUNT(*) FROM scores").fetchone()[0]
    assert 6 <= done < 28

    # rerun: only unfinished work is computed
    relog = tmp_path / "rerun.log"
    cfg = RunConfig(suite="tinyfolder", out=out, batch_size=2, workers=0, post_process=True, chain="tinyshift")
    resumed = run(cfg, detectors=[plugin.TinyDetector(log_path=relog)], suite=plugin.load_folder(folder_suite_dir), progress=False)
    assert _forwards(relog) == 28 - done
    # and the result equals an uninterrupted run
    fresh = run(RunConfig(suite="tinyfolder", out=tmp_path / "fresh", batch_size=5, workers=0, post_process=True, chain="tinyshift"),
                detectors=[plugin.TinyDetector()], suite=plugin.load_folder(folder_suite_dir), progress=False)  # fmt: skip
    a, b = resumed.scores, fresh.scores
    assert a[["path", "condition_key", "params"]].equals(b[["path", "condition_key", "params"]])
    np.testing.assert_allclose(a["logit"], b["logit"], rtol=1e-6)
    assert Counter(a["condition"]) == {"Original": 14, "Post-processed": 14}


def test_processed_copies_form_the_post_processed_block(tmp_path, plugin):
    """DEAR's test_processed/ tree: the Post-processed block scores the stored copies as they are."""
    import shutil

    from conftest import write_png

    root = tmp_path / "data"
    for i in range(3):
        write_png(root / "test/real/redcaps" / f"r{i}.png", (32, 32), red=40, blue=120, seed=i)
        write_png(root / "test/fake/sd" / f"f{i}.png", (32, 40), red=150, blue=80, seed=10 + i)
        write_png(root / "test_processed/real/redcaps" / f"r{i}.png", (24, 24), red=40, blue=110, seed=20 + i)
        write_png(root / "test_processed/fake/sd" / f"f{i}.png", (24, 30), red=140, blue=80, seed=30 + i)
    shutil.copy(root / "test/real/redcaps/r0.png", root / "test_processed/real/redcaps/r0.png")  # an unchanged copy
    log = tmp_path / "fw.log"
    cfg = _cfg(tmp_path, suite="synthetic", data_root=str(root), processed_copies=True)
    res = run(cfg, detectors=[plugin.TinyDetector(log_path=log)], progress=False)
    assert res.ok and _forwards(log) == 6 + 5  # the unchanged copy reuses its original score
    post = res.scores[res.scores["condition"] == "Post-processed"]
    assert len(post) == 6 and set(post["condition_key"]) == {"processed-copies"}
    assert all("/test_processed/" in p for p in post["path"]) and (post["params"] == "{}").all()
    orig = res.scores[res.scores["condition"] == "Original"].set_index("image_sha")["logit"]
    same = post[post["path"].str.endswith("redcaps/r0.png")].iloc[0]
    assert same["logit"] == orig[same["image_sha"]]
    assert res.manifest["conditions"][1] == {"key": "processed-copies", "display": "Post-processed", "spec": None,
                                             "fakes_only": False, "copies": True}
    again = run(cfg, detectors=[plugin.TinyDetector(log_path=log)], progress=False)  # all cached
    assert _forwards(log) == 11 and len(again.scores) == 12

    with pytest.raises(BenchError, match="choose one post-processed block"):
        run(_cfg(tmp_path, suite="synthetic", data_root=str(root), processed_copies=True, post_process=True),
            detectors=[plugin.TinyDetector()], progress=False)
    with pytest.raises(BenchError, match="no stored pre-processed copies"):
        run(_cfg(tmp_path, processed_copies=True, data_root=str(make_folder_suite(tmp_path / "f"))),
            detectors=[plugin.TinyDetector()], progress=False)
