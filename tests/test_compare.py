"""bench compare: two runs matched score by score (how the CPU/CUDA check is done)."""
from __future__ import annotations

import json

import pandas as pd

from bench_cli import main
from bench.compare import compare_runs
from bench.runner import RunConfig, run


def _run(tmp_path, plugin, suite, name):
    cfg = RunConfig(suite="tinyfolder", out=tmp_path / name, batch_size=4, workers=0)
    return run(cfg, detectors=[plugin.TinyDetector()], suite=suite, progress=False).run_dir


def _rewrite(run_dir, scores):
    """Stand in for a run that scored differently: its folder written by the run writer
    (a scores file edited by hand is refused by its digest, see test_runner)."""
    from bench.rundir import write_run

    manifest = json.loads((run_dir / "manifest.json").read_text())
    write_run(run_dir, {**manifest, "counts": {**manifest["counts"], "scores": len(scores)}}, scores,
              pd.read_csv(run_dir / "failures.csv"))


def test_equal_runs_match_and_a_changed_score_is_found(tmp_path, plugin, folder_suite_dir, capsys):
    suite = plugin.load_folder(folder_suite_dir)
    a, b = _run(tmp_path, plugin, suite, "a"), _run(tmp_path, plugin, suite, "b")
    cmp = compare_runs(a, b)
    assert cmp.matched == 14 and cmp.only_a == cmp.only_b == 0 and cmp.max_abs_diff == 0.0 and cmp.same_table
    assert main(["compare", str(a), str(b)]) == 0 and "tables identical: yes" in capsys.readouterr().out

    scores = pd.read_parquet(b / "scores.parquet")
    i = scores.index[scores["logit"] > 0][0]
    scores.loc[i, "logit"] = -scores.loc[i, "logit"]  # one fake now reads real
    _rewrite(b, scores.drop(index=scores.index[-1]))  # and one score is missing
    cmp = compare_runs(a, b)
    assert (cmp.matched, cmp.only_a, cmp.only_b, cmp.sign_flips) == (13, 1, 0, 1) and not cmp.same_table
    assert cmp.worst.iloc[0]["path"] == scores.loc[i, "path"]
    assert cmp.unmatched[["run", "path"]].values.tolist() == [["A", scores.iloc[-1]["path"]]]
    assert main(["compare", str(a), str(b), "--atol", "100"]) == 1  # a missing score always fails
    out = capsys.readouterr().out
    assert "only in A: 1" in out and "scored in one run only" in out and "largest differences" not in out


def test_scores_are_compared_even_without_a_table(tmp_path, plugin, folder_suite_dir):
    suite = plugin.load_folder(folder_suite_dir)
    a, b = _run(tmp_path, plugin, suite, "a"), _run(tmp_path, plugin, suite, "b")
    for run_dir in (a, b):  # no reals left: AUC has no meaning, the per-image comparison still does
        scores = pd.read_parquet(run_dir / "scores.parquet")
        _rewrite(run_dir, scores[scores["label"] == 1])
    cmp = compare_runs(a, b)
    assert cmp.matched == 8 and cmp.max_abs_diff == 0.0 and cmp.within(1e-6)
    assert not cmp.same_table and cmp.table_error and "no table:" in cmp.summary()


def test_a_logit_difference_beyond_atol_fails(tmp_path, plugin, folder_suite_dir, capsys):
    """Same rows in both runs, one logit moved by 0.5: only --atol decides."""
    suite = plugin.load_folder(folder_suite_dir)
    a, b = _run(tmp_path, plugin, suite, "a"), _run(tmp_path, plugin, suite, "b")
    scores = pd.read_parquet(b / "scores.parquet")
    i = scores.index[scores["logit"].abs() > 1.0][0]  # far from 0: moving it by 0.5 flips no sign
    scores.loc[i, "logit"] += 0.5 if scores.loc[i, "logit"] > 0 else -0.5
    _rewrite(b, scores)
    cmp = compare_runs(a, b)
    assert (cmp.matched, cmp.only_a, cmp.only_b, cmp.sign_flips) == (14, 0, 0, 0)
    assert abs(cmp.max_abs_diff - 0.5) < 1e-5
    assert not cmp.within(0.1) and cmp.within(1.0)
    capsys.readouterr()
    assert main(["compare", str(a), str(b), "--atol", "0.1"]) == 1
    captured = capsys.readouterr()
    assert "largest differences" in captured.out and "beyond atol=0.1" in captured.err
    assert main(["compare", str(a), str(b), "--atol", "1"]) == 0
