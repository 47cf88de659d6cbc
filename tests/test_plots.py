"""bench.plots: figures are written as real, non-blank PNGs; condition labels parse."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench import plots
from bench.metrics import evaluate
from conftest import density, hist_panels

FIXTURE = Path(__file__).parent / "golden" / "scores_fixture.csv"


@pytest.fixture(scope="module")
def scores() -> pd.DataFrame:
    return pd.read_csv(FIXTURE)


def assert_png(path: Path, min_colors: int = 8) -> None:
    assert path.exists() and path.stat().st_size > 5_000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        w, h = im.size
        assert w >= 600 and h >= 400  # ~150 dpi
        colors = im.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colors is None or len(colors) >= min_colors  # not a blank canvas


def test_import_is_cheap():
    code = "import sys, bench.plots; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_score_distributions(scores, tmp_path, monkeypatch):
    saved = {}  # file name -> figure, as first drawn
    real_save = plots._save

    def spy(fig, path):
        saved.setdefault(path.name, fig)
        return real_save(fig, path)

    monkeypatch.setattr(plots, "_save", spy)
    paths = plots.score_distributions(scores, tmp_path / "dist")
    assert len(paths) == 4  # 2 detectors x 2 conditions
    assert {p.name for p in paths} == {
        "scores_corvi-mini_Original.png", "scores_corvi-mini_Post-processed.png",
        "scores_univfd-official_Original.png", "scores_univfd-official_Post-processed.png",
    }
    for p in paths:
        assert_png(p)
    with Image.open(paths[0]) as im:
        assert im.size[0] > im.size[1] * 2  # generator and wild panels side by side
    # what each panel draws: reals filled, one outline per fake set, from this figure's rows only
    for (det, wt, cond), g in scores.groupby(["detector", "weights", "condition"]):
        gen, wild = hist_panels(saved[f"scores_{det}-{wt}_{cond}.png"])
        assert (gen["title"], wild["title"]) == ("Generators", "In the wild")
        assert gen["legend"] == ["real (n=4)", "SD (n=2)", "GAN (n=2)", "threshold (logit 0)"]  # suite order
        assert wild["legend"] == ["real (n=2)", "Wild (n=2)", "threshold (logit 0)"]
        for panel, real, fakes in ((gen, g[g["set"] == "real"], [g[g["set"] == "sd"], g[g["set"] == "gan"]]),
                                   (wild, g[(g["set"] == "wild") & (g["label"] == 0)], [g[(g["set"] == "wild") & (g["label"] == 1)]])):
            edges = panel["edges"]
            assert len(edges) == 41 and edges[0] <= min(g["logit"].min(), 0) and edges[-1] >= max(g["logit"].max(), 0)
            np.testing.assert_allclose(panel["real"], density(real["logit"], edges), atol=1e-9)
            assert len(panel["fakes"]) == len(fakes)
            for heights, fake in zip(panel["fakes"], fakes):
                np.testing.assert_allclose(heights, density(fake["logit"], edges), atol=1e-9)
    # the runner labels weights in full ("corvi.mini"); file names must not double the detector
    full = scores.assign(weights=scores["detector"] + "." + scores["weights"])
    assert {p.name for p in plots.score_distributions(full, tmp_path / "full")} == {p.name for p in paths}


def test_accuracy_bars(scores, tmp_path):
    out = plots.accuracy_bars(evaluate(scores), tmp_path / "bars.png")
    assert out == tmp_path / "bars.png"
    assert_png(out)
    sweep_only = scores.assign(condition=scores["condition"].map({"Original": "webp:quality=90", "Post-processed": "webp:quality=30"}))
    assert_png(plots.accuracy_bars(evaluate(sweep_only), tmp_path / "bars_sweep.png"))  # no Original block: every condition
    uncal = evaluate(scores[scores["detector"] == "univfd"])
    with pytest.raises(plots.PlotError, match="no calibrated detector"):
        plots.accuracy_bars(uncal, tmp_path / "none.png")


def test_accuracy_bars_show_every_condition(scores, tmp_path, monkeypatch, caplog):
    """A sweep run (Original plus swept chains) shows all its conditions, not Original alone."""
    saved = []
    real_save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: saved.append(fig) or real_save(fig, path))
    m = sweep_metrics(scores)
    assert_png(plots.accuracy_bars(m, tmp_path / "bars.png"))
    labels = [t.get_text() for t in saved[0].axes[0].get_legend().get_texts()]
    assert labels == [f"{what} {cond}" for cond in ("Original", "webp:quality=30", "webp:quality=60", "webp:quality=90")
                      for what in ("R.Acc", "F.Acc")]  # fmt: skip
    twin = m[m["detector"] == "corvi"].assign(detector="twin", display_name="Twin")
    gap = pd.concat([m, twin[twin["condition"] != "webp:quality=60"]])  # e.g. a set without processed copies
    with caplog.at_level("WARNING", logger="bench.plots"):
        assert_png(plots.accuracy_bars(gap, tmp_path / "gap.png"))
    assert "Twin has no webp:quality=60 value on avg" in caplog.text


def test_summary_sets_without_generator_sets(scores, tmp_path):
    """A wild-only suite has no Avg: summary figures are drawn per set, named after it."""
    assert plots.summary_sets(evaluate(scores)) == ["avg"]
    wild_only = evaluate(scores[scores["set"] == "wild"])
    assert plots.summary_sets(wild_only) == ["wild"]
    out = plots.summary_path(tmp_path, "accuracy_bars", "wild")
    assert out.name == "accuracy_bars_wild.png"
    assert_png(plots.accuracy_bars(wild_only, out, set_name="wild"))


def sweep_metrics(scores: pd.DataFrame) -> pd.DataFrame:
    """The fixture's post-processed scores relabelled as a WEBP quality sweep, logits shrunk
    towards 0 as quality drops, plus the Original block."""
    parts = [scores[scores["condition"] == "Original"]]
    pp = scores[scores["condition"] == "Post-processed"]
    for q in (30, 60, 90):
        parts.append(pp.assign(condition=f"webp:quality={q}", logit=pp["logit"] * q / 100 + np.where(pp["label"] == 1, q / 50, 0)))
    return evaluate(pd.concat(parts))


def test_sweep_figure(scores, tmp_path):
    m = sweep_metrics(scores)
    out = plots.sweep_figure(m, "quality", out_path=tmp_path / "sweep.png")
    assert_png(out)
    out2 = plots.sweep_figure(m, "webp.quality", "auc", out_path=tmp_path / "sweep_auc.png", set_name="sd")
    assert_png(out2)
    with pytest.raises(plots.PlotError, match="no condition label setting 'sigma'"):
        plots.sweep_figure(m, "sigma", out_path=tmp_path / "x.png")
    with pytest.raises(plots.PlotError, match="unknown metric"):
        plots.sweep_figure(m, "quality", "f1", out_path=tmp_path / "x.png")


def test_sweep_figure_with_recorded_values(scores, tmp_path):
    """A composed chain sets the parameter twice, so the label cannot be parsed; the values the
    sweep recorded (condition -> value) are used instead."""
    m = sweep_metrics(scores)
    m["condition"] = m["condition"].str.replace("webp:", "webp:quality=95+webp:", regex=False)
    with pytest.raises(plots.PlotError, match="more than once"):
        plots.sweep_figure(m, "quality", out_path=tmp_path / "x.png")
    x = {f"webp:quality=95+webp:quality={q}": q for q in (30, 60, 90)}
    assert_png(plots.sweep_figure(m, "quality", out_path=tmp_path / "composed.png", x=x))
    with pytest.raises(plots.PlotError, match="none of the swept conditions"):
        plots.sweep_figure(m, "quality", out_path=tmp_path / "x.png", x={"webp:quality=10": 10})


def test_param_value():
    assert plots.param_value("webp:quality=50", "quality") == 50.0
    assert plots.param_value("jpeg:quality=75+blur:sigma=1.5", "sigma") == 1.5
    assert plots.param_value("jpeg:quality=75+blur:sigma=1.5", "blur.sigma") == 1.5
    assert plots.param_value("webp:quality=50@seed=0", "quality") == 50.0
    assert plots.param_value("Original", "quality") is None
    assert plots.param_value("Post-processed", "quality") is None
    assert plots.param_value("jpeg:quality=75+webp:quality=50", "webp.quality") == 50.0
    with pytest.raises(plots.PlotError, match="more than once"):
        plots.param_value("jpeg:quality=75+webp:quality=50", "quality")
    with pytest.raises(plots.PlotError, match="not a number"):
        plots.param_value("resize:mode=bicubic", "mode")


def test_param_value_reads_fakes_only_labels_and_refuses_text_values():
    assert plots.param_value("webp:quality=50 (fakes only)", "quality") == 50.0
    assert plots.param_value("downscale:factor=0.5+jpeg:quality=90", "jpeg.quality") == 90.0
    assert plots.param_value("my own label", "quality") is None
    with pytest.raises(plots.PlotError, match="is not a number"):
        plots.param_value("resize:size=big", "size")
    with pytest.raises(plots.PlotError, match="more than once"):
        plots.param_value("jpeg:quality=75+webp:quality=50", "quality")


def test_sweep_figure_places_values_that_are_not_numbers_in_sweep_order(scores, tmp_path, monkeypatch):
    """`bench sweep --chain resize --param size --values 128,64x64` records a number and a text:
    both stand at even steps with their own tick labels (this used to crash after scoring)."""
    m = sweep_metrics(scores)
    saved = []
    real_save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: saved.append(fig) or real_save(fig, path))
    x = {"webp:quality=90": 128, "webp:quality=30": "64x64", "webp:quality=60": "30-100"}
    assert_png(plots.sweep_figure(m, "size", out_path=tmp_path / "sizes.png", x=x))
    (ax,) = saved[0].axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["128", "64x64", "30-100"]
    line = next(ln for ln in ax.get_lines() if ln.get_marker() == "o")  # the first detector's
    avg = m[m["set"] == "avg"]
    ap = avg[avg["detector"] == avg["detector"].iloc[0]].set_index("condition")["ap"]
    assert list(line.get_xdata()) == [0, 1, 2]
    assert np.allclose(line.get_ydata(), [ap["webp:quality=90"], ap["webp:quality=30"], ap["webp:quality=60"]])


def test_param_value_skips_a_step_it_cannot_read():
    assert plots.param_value("jpeg:quality=75+mystep:x", "quality") == 75.0
