"""The `bench` CLI in-process: help, clean errors with suggestions, run -> table -> plot, sweep,
and the subcommand extension point."""
from __future__ import annotations

import argparse
import re

import numpy as np
import pandas as pd
import pytest

import bench_cli as cli
from bench import plots
from conftest import density, hist_panels


def test_every_subcommand_has_help(capsys):
    for cmd in cli.COMMANDS:
        with pytest.raises(SystemExit) as exc:
            cli.main([cmd.name, "--help"])
        assert exc.value.code == 0
        assert f"usage: bench {cmd.name}" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--suite", "tinyfoldr", "--detectors", "mydet"], "unknown suite 'tinyfoldr'; did you mean 'tinyfolder'"),
        (["run", "--suite", "tinyfolder", "--detectors", "mydett"], "unknown detector 'mydett'; did you mean 'mydet'"),
        (["run", "--suite", "tinyfolder", "--detectors", "mydet", "--post-process", "--chain", "tinyshfit:amount=3"],
         "unknown chain 'tinyshfit'; did you mean 'tinyshift'"),
        (["run", "--suite", "tinyfolder", "--detectors", "heavy.offical"], "detector 'heavy' has no weights 'offical'; known: official"),
        (["run", "--suite", "tinyfolder", "--detectors", "mydet"], "suite 'tinyfolder' is not available"),
        (["run", "--suite", "tinyfolder", "--processed-copies", "--fakes-only"], "--fakes-only applies to the post-processing chain"),
        (["table", "--run", "nowhere"], "nowhere: no run here"),
        (["sweep", "--suite", "tinyfolder", "--detectors", "mydet", "--chain", "tinyshift", "--param", "amount", "--values", ","],
         "a sweep needs at least one value"),
        (["sweep", "--suite", "tinyfolder", "--detectors", "mydet", "--chain", "tinyshift:amount=5", "--param", "amount",
          "--values", "1"], "already sets 'amount' in its last step"),
        (["run", "--suite", "tinyfolder", "--detectors", "mydet", "--chain", "tinyshift"], "add --post-process"),
    ],
)  # fmt: skip
def test_errors_are_one_clean_line(env, capsys, args, message):
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench: error: ") and message in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("option", ["--batch-size", "--pixel-budget", "--max-per-set"])
def test_counts_are_checked_when_the_command_line_is_read(env, capsys, option):
    with pytest.raises(SystemExit) as stop:
        cli.main(["run", "--suite", "tinyfolder", option, "0"])
    assert stop.value.code == 2
    assert f"argument {option}: must be at least 1, got 0" in capsys.readouterr().err


def test_run_table_plot_roundtrip(env, capsys, caplog, tmp_path, folder_suite_dir, monkeypatch):
    out = tmp_path / "res"
    rc = cli.main(["run", "--suite", "folder", "--data-root", str(folder_suite_dir), "--detectors", "mydet,heavy",
                   "--post-process", "--chain", "tinyshift", "--out", str(out), "--workers", "0", "--batch-size", "3"])  # fmt: skip
    captured = capsys.readouterr()
    # heavy has no weights: reported by name at the end, exit 1, while mydet's scores are complete
    assert rc == 1
    assert "these detectors did not finish" in captured.err and "heavy.official: weights heavy.official not found" in captured.err
    assert "Traceback" not in captured.err
    assert len([line for line in captured.out.splitlines() if line.startswith("Mydet ")]) == 2  # Original + Post-processed
    assert f"run: {out / 'folder'}" in captured.out and "gan 6/4" in captured.out  # the terminal summary, with counts
    scores = pd.read_parquet(out / "folder" / "scores.parquet")
    assert set(scores["detector"]) == {"mydet"} and len(scores) == 28

    # tables from stored scores only; the run is marked incomplete wherever it is read
    assert cli.main(["table", "--run", str(out / "folder"), "--format", "latex", "--metrics", "auc,racc", "--output", "t/table.tex"]) == 0
    assert "is incomplete: heavy.official did not finish" in caplog.text
    tex = (tmp_path / "t" / "table.tex").read_text()
    assert "\\begin{tabular}" in tex and "Mydet" in tex and "Post-processed" in tex
    capsys.readouterr()
    assert cli.main(["table", "--suite", "folder", "--results", str(out), "--format", "csv", "--metrics", "auc", "--sets", "gan"]) == 0
    csv_text = capsys.readouterr().out
    header = csv_text.splitlines()[0]
    assert "gan_auc" in header and "diff_auc" not in header

    # figures; the distribution figures are read back to check they draw this run's scores
    saved = {}
    real_save = plots._save

    def spy(fig, path):
        saved[path.name] = fig
        return real_save(fig, path)

    monkeypatch.setattr(plots, "_save", spy)
    assert cli.main(["plot", "--run", str(out / "folder"), "--out", str(tmp_path / "figs")]) == 0
    pngs = sorted(p.name for p in (tmp_path / "figs").glob("*.png"))
    assert "accuracy_bars.png" in pngs and len(pngs) == 3  # two distribution figures + bars
    assert all((tmp_path / "figs" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    for cond, g in scores.groupby("condition"):
        (panel,) = hist_panels(saved[f"scores_mydet-mydet_{cond}.png"])  # no wild set: one panel
        assert panel["legend"] == ["real (n=6)", "diff (n=4)", "gan (n=4)", "threshold (logit 0)"]
        np.testing.assert_allclose(panel["real"], density(g.loc[g["label"] == 0, "logit"], panel["edges"]), atol=1e-9)
        assert len(panel["fakes"]) == 2
        for heights, name in zip(panel["fakes"], ("diff", "gan")):
            np.testing.assert_allclose(heights, density(g.loc[g["set"] == name, "logit"], panel["edges"]), atol=1e-9)


def test_sweep_writes_figure(env, capsys, tmp_path, folder_suite_dir):
    rc = cli.main(["sweep", "--suite", "tinyfolder", "--data-root", str(folder_suite_dir), "--detectors", "mydet",
                   "--chain", "tinyshift", "--param", "amount", "--values", "0,40,80", "--out", str(tmp_path / "res"),
                   "--workers", "0", "--max-per-set", "2", "--metric", "auc"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    run_dir = tmp_path / "res" / "tinyfolder-sweep-tinyshift-amount"
    fig = run_dir / "sweep_tinyshift_amount_auc.png"
    assert f"figure: {fig}" in out and fig.read_bytes()[:4] == b"\x89PNG"
    scores = pd.read_parquet(run_dir / "scores.parquet")
    assert scores["condition"].drop_duplicates().tolist() == ["Original", "tinyshift:amount=0", "tinyshift:amount=40", "tinyshift:amount=80"]


def test_sweep_with_fakes_only(env, capsys, tmp_path, folder_suite_dir):
    """Stay-Positive's protocol: labelled as such, in its own folder, and the figure finds its points."""
    rc = cli.main(["sweep", "--suite", "tinyfolder", "--data-root", str(folder_suite_dir), "--detectors", "mydet",
                   "--chain", "tinyshift", "--param", "amount", "--values", "0,40", "--fakes-only",
                   "--out", str(tmp_path / "res"), "--workers", "0", "--max-per-set", "2"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0, out
    run_dir = tmp_path / "res" / "tinyfolder-sweep-tinyshift-amount-fakes-only"
    assert f"figure: {run_dir / 'sweep_tinyshift_amount_ap.png'}" in out
    labels = pd.read_parquet(run_dir / "scores.parquet")["condition"].drop_duplicates().tolist()
    assert labels == ["Original", "tinyshift:amount=0 (fakes only)", "tinyshift:amount=40 (fakes only)"]


def test_sweep_of_a_composed_chain(env, capsys, tmp_path, folder_suite_dir):
    """The swept parameter also appears in an earlier step: values come from the manifest, and
    the folder and figure are named after the whole chain (not confused with a plain sweep)."""
    rc = cli.main(["sweep", "--suite", "tinyfolder", "--data-root", str(folder_suite_dir), "--detectors", "mydet",
                   "--chain", "tinyshift:amount=5+tinyshift", "--param", "amount", "--values", "0,40",
                   "--out", str(tmp_path / "res"), "--workers", "0", "--max-per-set", "2"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0, out
    fig = tmp_path / "res" / "tinyfolder-sweep-tinyshift-amount-5-tinyshift-amount" / "sweep_tinyshift-amount-5-tinyshift_amount_ap.png"
    assert f"figure: {fig}" in out and fig.read_bytes()[:4] == b"\x89PNG"


def test_run_that_scores_nothing_fails(env, capsys, tmp_path, folder_suite_dir):
    for png in folder_suite_dir.rglob("*.png"):
        png.write_bytes(b"not an image")
    rc = cli.main(["run", "--suite", "tinyfolder", "--data-root", str(folder_suite_dir), "--detectors", "mydet",
                   "--out", str(tmp_path / "res"), "--workers", "0"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "no image was scored" in err and "could not be scored" in err


def test_list_shows_weights_status(env, capsys, tmp_path):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "heavy" in out and "official* (missing)" in out
    assert re.search(r"^tinyshift +amount=40 +Brightness shift", out, re.M)  # chains with their parameters
    (tmp_path / "weights" / "heavy").mkdir(parents=True)
    (tmp_path / "weights" / "heavy" / "heavy.pth").write_bytes(b"x")
    assert cli.main(["list"]) == 0
    assert "official* (local)" in capsys.readouterr().out


def test_commands_are_an_extension_point(monkeypatch, capsys):
    seen = {}

    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument("--who", default="world")

    def handler(args: argparse.Namespace) -> int:
        seen["who"] = args.who
        return 7

    monkeypatch.setattr(cli, "COMMANDS", [*cli.COMMANDS, cli.Command("hello", "say hello", add, handler)])
    assert cli.main(["hello", "--who", "lead"]) == 7 and seen == {"who": "lead"}


def test_os_errors_are_one_clean_line(env, capsys, tmp_path, folder_suite_dir):
    """An output path that is a file fails with the OS message, exit 2, before any scoring."""
    (tmp_path / "afile").write_text("x")
    rc = cli.main(["run", "--suite", "folder", "--data-root", str(folder_suite_dir), "--detectors", "mydet",
                   "--out", str(tmp_path / "afile"), "--workers", "0"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "afile" in err and "Traceback" not in err
    out = tmp_path / "res"
    assert cli.main(["run", "--suite", "folder", "--data-root", str(folder_suite_dir), "--detectors", "mydet,mydet",
                     "--out", str(out), "--workers", "0"]) == 0  # fmt: skip
    assert pd.read_parquet(out / "folder" / "scores.parquet")["detector"].value_counts().to_dict() == {"mydet": 14}  # scored once
    capsys.readouterr()
    assert cli.main(["table", "--run", str(out / "folder"), "--output", str(tmp_path / "afile" / "t.md")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench: error: ") and "afile" in err and "Traceback" not in err


def test_no_score_at_all_exits_2(env, capsys, tmp_path, folder_suite_dir):
    """The only detector cannot be built (no weights): nothing scored is exit 2, not 1."""
    rc = cli.main(["run", "--suite", "folder", "--data-root", str(folder_suite_dir), "--detectors", "heavy",
                   "--out", str(tmp_path / "res"), "--workers", "0"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "heavy.official" in err and "no image was scored" in err


def test_analyze_decomposition_lists_and_clears_unreadable_images(env, capsys, tmp_path, folder_suite_dir):
    """`bench analyze decomposition` on a bundled ResNet: a bad file is listed, not fatal, and a
    rerun without it removes the stale list."""
    bad = folder_suite_dir / "fake" / "gan" / "bad.png"
    bad.write_bytes(b"not a png")
    args = ["analyze", "decomposition", "--suite", "folder", "--data-root", str(folder_suite_dir),
            "--detectors", "corvi.mini", "--out", str(tmp_path / "an")]  # fmt: skip
    assert cli.main(args) == 0
    out = tmp_path / "an" / "decomposition-corvi"
    assert "1 image(s) could not be read" in capsys.readouterr().err
    assert pd.read_csv(out / "failures.csv")["path"].str.endswith("bad.png").tolist() == [True]
    frame = pd.read_csv(out / "decomposition.csv")
    assert len(frame) == 14 and {"fake_score", "real_score", "logit"} <= set(frame.columns)
    bad.unlink()
    (out / "decomposition_gone.png").write_bytes(b"a set of an earlier run")
    assert cli.main(args) == 0 and not (out / "failures.csv").exists()
    assert sorted(f.name for f in out.glob("*.png")) == ["decomposition_diff.png", "decomposition_gan.png", "decomposition_real.png"]
    capsys.readouterr()
    two = [("corvi.mini,nosuch" if a == "corvi.mini" else a) for a in args]
    assert cli.main(two) == 2  # every name is checked before any work
    assert "unknown detector 'nosuch'" in capsys.readouterr().err
    for png in folder_suite_dir.rglob("*.png"):
        png.write_bytes(b"not a png")
    assert cli.main(args) == 2
    assert "corvi.mini: no image of suite 'folder' could be read; see " in capsys.readouterr().err
    assert len(pd.read_csv(out / "failures.csv")) == 14  # the list is this run's (every image), not the earlier one


@pytest.mark.parametrize("args, message", [
    (["speed", "--batches", "0"], "--batches: must be at least 1, got 0"),
    (["speed", "--batch-size", "x"], "--batch-size: invalid int value: 'x'"),
    (["compare", "a", "b", "--atol", "-1"], "--atol: must be a number >= 0, got -1"),
    (["compare", "a", "b", "--atol", "nan"], "--atol: must be a number >= 0, got nan"),
])  # fmt: skip
def test_bad_numbers_are_usage_errors(capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        cli.main(args)
    assert exc.value.code == 2 and message in capsys.readouterr().err


class _FailingDataset:
    """A one-item dataset whose item raises `error` inside a DataLoader worker."""

    def __init__(self, error):
        self.error = error

    def __len__(self):
        return 1

    def __getitem__(self, i):
        raise self.error


@pytest.mark.parametrize("error, caught, message", [
    (__import__("bench.api", fromlist=["BadImageError"]).BadImageError("x.png", "truncated"), RuntimeError, "x.png: truncated"),
    (__import__("bench.api", fromlist=["BenchError"]).BenchError("masks/a.png: no mask pixel"), Exception, "masks/a.png: no mask pixel"),
    (__import__("bench.api", fromlist=["BenchError"]).BenchError("two\nlines"), Exception, "two\nlines"),
    (ValueError("a bug"), ValueError, None),
])  # fmt: skip
def test_worker_errors_are_reported_without_the_worker_traceback(error, caught, message):
    """torch wraps a worker's exception in its traceback (or, when it cannot rebuild it, in a
    RuntimeError); the CLI reports ours as one line and leaves real bugs their traceback."""
    from torch.utils.data import DataLoader

    with pytest.raises(caught) as exc:
        next(iter(DataLoader(_FailingDataset(error), num_workers=1)))
    assert "in DataLoader worker process 0" in str(exc.value)
    assert cli.worker_message(str(exc.value)) == message


def test_warnings_print_as_one_line(capsys):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = cli._show_warning
        warnings.warn("evaluate: dropping 2 score row(s)", stacklevel=1)
        warnings.warn("old API", DeprecationWarning, stacklevel=1)
    assert capsys.readouterr().err.splitlines() == [
        "bench: warning: evaluate: dropping 2 score row(s)", "bench: warning: DeprecationWarning: old API"]


@pytest.mark.parametrize("detector, extra, alpha, kept", [
    ("rajan.mini", {}, 0.3, 256 - 2 * 76), ("corvi.mini", {}, 0.2, 256 - 2 * 51), ("dear-r.mini", {}, 0.3, 104),
    ("/ckpt/model_best.pth", {"kind": "rajan"}, 0.3, 104),  # a file base: dissect records the --kind it was given
])  # fmt: skip
def test_dear_prune_takes_its_default_alpha_from_the_rad(tmp_path, capsys, detector, extra, alpha, kept):
    import numpy as np

    from dear.rad import RADResult

    rad = RADResult(np.random.default_rng(0).normal(size=256), n_samples=10, n_batches=1, layer="layer4", detector=detector,
                    extra=extra)
    path = rad.save(tmp_path / "rad.npz")
    assert cli.main(["dear", "prune", "--rad", str(path), "--out", str(tmp_path / "p")]) == 0
    assert f"keeps {kept} of 256 channels, alpha {alpha:g}/{alpha:g}, count" in capsys.readouterr().out
    assert cli.main(["dear", "prune", "--rad", str(path), "--out", str(tmp_path / "p"), "--kind", "corvi"]) == 0
    assert "keeps 154 of 256" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["train", "corvi", "--max-epochs", "0"], "--max-epochs: must be at least 1, got 0"),
    (["train", "corvi", "--steps-per-epoch", "-2"], "--steps-per-epoch: must be at least 1, got -2"),
    (["dear", "refine", "--gate", "g.npz", "--max-epochs", "-3"], "--max-epochs: must be at least 0, got -3"),
    (["dear", "dissect", "--max-batches", "0"], "--max-batches: must be at least 1, got 0"),
    (["dear", "dissect", "--workers", "-1"], "--workers: must be at least 0, got -1"),
    (["dear", "refine", "--gate", "g.npz", "--lr", "nan"], "--lr: must be a number > 0, got nan"),
    (["dear", "diagnose", "imgs", "--limit", "-1"], "--limit: must be at least 1, got -1"),
    (["reproduce", "--reduced", "--install"], "argument --install: not allowed with argument --reduced"),
])  # fmt: skip
def test_method_commands_refuse_bad_numbers_when_read(capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        cli.main(args)
    assert exc.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("stage", [["run"], ["analyze", "probe"]])
def test_dear_alpha_that_prunes_everything_fails_before_any_work(tmp_path, capsys, stage):
    rc = cli.main(["dear", *stage, "--alpha", "0.5", "--world", str(tmp_path / "no-world"), "--out", str(tmp_path / "o")])
    assert rc == 2 and "prunes every channel" in capsys.readouterr().err and not (tmp_path / "o").exists()


@pytest.mark.parametrize("stage, option", [
    (["dissect"], ["--alpha", "0.1"]), (["dissect"], ["--lr", "0.1"]), (["dissect"], ["--mode", "percentile"]),
    (["refine", "--gate", "g.npz"], ["--alpha", "0.1"]), (["refine", "--gate", "g.npz"], ["--max-batches", "3"]),
    (["prune", "--rad", "r.npz"], ["--max-epochs", "3"]), (["prune", "--rad", "r.npz"], ["--base", "rajan.mini"]),
])  # fmt: skip
def test_dear_stages_refuse_options_they_would_ignore(capsys, stage, option):
    """dissect computes no gate and refine prunes nothing: an option a stage would not read is a
    usage error, not a silent no-op (`--alpha` on dissect used to be accepted and ignored)."""
    with pytest.raises(SystemExit) as exc:
        cli.main(["dear", *stage, *option])
    assert exc.value.code == 2 and f"unrecognized arguments: {option[0]}" in capsys.readouterr().err


def test_sweep_names_its_chain_when_a_swept_spec_is_refused(tmp_path, capsys):
    rc = cli.main(["sweep", "--suite", "mini", "--detectors", "npr", "--chain", "jpeg:quality_range=30-100",
                   "--param", "quality", "--values", "50", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "sweeping quality over --chain 'jpeg:quality_range=30-100'" in err
    assert "give quality or quality_range, not both" in err and not any(tmp_path.iterdir())


@pytest.mark.parametrize("detector", ["npr.mini", "/ckpt/rajan.pth"])  # a file's name says nothing of its training
def test_dear_prune_asks_for_alpha_when_the_rad_is_of_neither_base(tmp_path, capsys, detector):
    import numpy as np

    from dear.rad import RADResult

    path = RADResult(np.random.default_rng(0).normal(size=128), n_samples=10, n_batches=1, layer="layer2",
                     detector=detector).save(tmp_path / "rad.npz")
    assert cli.main(["dear", "prune", "--rad", str(path), "--out", str(tmp_path / "p")]) == 2
    assert f"recorded on {detector!r}, which is neither Corvi- nor Rajan-trained" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
    assert cli.main(["dear", "prune", "--rad", str(path), "--out", str(tmp_path / "p"), "--alpha", "0.1"]) == 0
    assert "keeps 104 of 128 channels, alpha 0.1/0.1" in capsys.readouterr().out


def test_table_of_a_suite_without_a_run_names_the_run_folders_there(tmp_path, capsys):
    for name in ("mini", "mini-sweep-webp-quality"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text("{}")
    (tmp_path / "weights").mkdir()  # not a run folder
    assert cli.main(["table", "--suite", "mimi", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no run here; did you mean 'mini'?" in err and "run folders in" in err and "weights" not in err


class PluginError(__import__("bench.api", fromlist=["BenchError"]).BenchError):
    """An error class of a third party's own, raised in a worker."""


def test_worker_errors_of_a_plugin_are_one_line_too():
    """Unwrapping is by class, not by the name of the package that raised it."""
    from torch.utils.data import DataLoader

    with pytest.raises(Exception) as exc:
        next(iter(DataLoader(_FailingDataset(PluginError("plugin.png: its own reason")), num_workers=1)))
    assert cli.worker_message(str(exc.value)) == "plugin.png: its own reason"
