"""bench.metrics: each metric against scikit-learn and hand-computed cases, the bootstrap,
and evaluate() on a small scores table whose numbers are worked out by hand below."""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from bench import metrics as M
from bench.api import BenchError

FIXTURE = Path(__file__).parent / "golden" / "scores_fixture.csv"


def random_case(seed: int, n: int = 200, decimals: int = 1):
    """Labels with both classes and rounded scores, so ties are frequent."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    s = np.round(rng.normal(size=n) + y * rng.uniform(0, 2), decimals)
    return y, s


# --------------------------------------------------------------------------- metrics


@pytest.mark.parametrize("seed", range(8))
def test_auc_ap_match_sklearn_with_ties(seed):
    y, s = random_case(seed, n=50 + 40 * seed)
    assert len(np.unique(s)) < len(s)  # the case really has ties
    assert M.auc(y, s) == pytest.approx(100 * roc_auc_score(y, s), abs=1e-9)
    assert M.ap(y, s) == pytest.approx(100 * average_precision_score(y, s), abs=1e-9)


def test_all_tied_scores():
    y = np.array([0, 1, 0, 1, 1])
    s = np.zeros(5)
    assert M.auc(y, s) == 50.0
    assert M.ap(y, s) == pytest.approx(100 * average_precision_score(y, s))  # = prevalence 60
    assert M.eer(y, s) == 50.0
    assert M.real_acc(y, s) == 0.0 and M.fake_acc(y, s) == 0.0  # logit 0 is right for nobody


def test_hand_case():
    y, s = [0, 0, 1, 1], [-1, 0.5, 0.2, 2]
    # fake-real pairs won: (2,-1) (2,.5) (.2,-1); lost: (.2,.5) -> 3/4
    assert M.auc(y, s) == 75.0
    # ranked 2(F) .5(R) .2(F) -1(R): AP = 1/2 * 1 + 1/2 * 2/3
    assert M.ap(y, s) == pytest.approx(100 * (0.5 + 1 / 3))
    assert M.real_acc(y, s) == 50.0 and M.fake_acc(y, s) == 100.0
    assert M.acc(y, s) == 75.0 and M.asymmetry(y, s) == -50.0
    # ROC points (0,0) (0,.5) (.5,.5) (.5,1) (1,1): FPR = FNR = .5 at the third
    assert M.eer(y, s) == 50.0
    assert M.tpr_at_fpr(y, s, 0.01) == 50.0 and M.tpr_at_fpr(y, s, 0.5) == 100.0


def test_zero_logit_counts_as_neither():
    y, s = [0, 0, 1, 1], [0.0, -1.0, 0.0, 1.0]
    assert M.real_acc(y, s) == 50.0
    assert M.fake_acc(y, s) == 50.0


def test_eer_hand_cases():
    assert M.eer([0, 0, 1, 1], [-2, -1, 1, 2]) == 0.0  # separated
    assert M.eer([0, 0, 1, 1], [1, 2, -2, -1]) == 100.0  # inverted
    # reals 1..4, fakes tied at 4: ROC goes (0,0) -> (.25,1); FPR - FNR crosses 0 at 4/5 of it
    assert M.eer([0, 0, 0, 0, 1, 1], [1, 2, 3, 4, 4, 4]) == pytest.approx(20.0)


@pytest.mark.parametrize("seed", range(5))
def test_eer_matches_usual_interpolated_definition(seed):
    rng = np.random.default_rng(100 + seed)
    y = rng.integers(0, 2, 300)
    s = rng.normal(size=300) + y  # continuous: no ties, the ROC is a clean staircase
    fpr, tpr, _ = roc_curve(y, s)
    ref = brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)
    assert M.eer(y, s) == pytest.approx(100 * ref, abs=1e-6)


def test_tpr_at_fpr_hand_case():
    reals = np.arange(100.0)  # 0..99
    fakes = np.array([200, 98.5, 97.5, 50])
    y = np.r_[np.zeros(100), np.ones(4)].astype(int)
    s = np.r_[reals, fakes]
    # FPR 1%: only real 99 may be above the threshold -> fakes 200, 98.5 caught
    assert M.tpr_at_fpr(y, s, 0.01) == 50.0
    # FPR 5%: reals 95..99 above -> fakes 200, 98.5, 97.5
    assert M.tpr_at_fpr(y, s, 0.05) == 75.0
    assert M.tpr_at_fpr(y, s, 0.0) == 25.0


@pytest.mark.parametrize("seed", range(5))
def test_tpr_at_fpr_matches_sklearn_roc(seed):
    y, s = random_case(seed + 20, n=400)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    for target in (0.01, 0.05, 0.2):
        assert M.tpr_at_fpr(y, s, target) == pytest.approx(100 * tpr[fpr <= target].max())


@pytest.mark.parametrize(
    "fn", [M.auc, M.ap, M.acc, M.eer, M.tpr_at_fpr, M.asymmetry, lambda y, s: M.bootstrap_ci(M.auc, y, s, n=5)]
)
def test_one_class_is_a_clear_error(fn):
    with pytest.raises(M.MetricError, match="needs both classes"):
        fn([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(BenchError):  # also a BenchError, so the CLI prints it cleanly
        fn([0, 0], [0.1, 0.2])


def test_bad_input_errors():
    with pytest.raises(M.MetricError, match="real"):
        M.real_acc([1, 1], [1.0, 2.0])
    with pytest.raises(M.MetricError, match="fake"):
        M.fake_acc([0, 0], [1.0, 2.0])
    assert M.real_acc([0, 0], [-1.0, 2.0]) == 50.0  # one class is enough for R.Acc
    with pytest.raises(M.MetricError, match="NaN"):
        M.auc([0, 1], [0.0, float("nan")])
    with pytest.raises(M.MetricError, match="0 \\(real\\) or 1"):
        M.auc([0, 2], [0.0, 1.0])
    with pytest.raises(M.MetricError, match="equal length"):
        M.auc([0, 1, 1], [0.0, 1.0])
    with pytest.raises(M.MetricError):
        M.tpr_at_fpr([0, 1], [0.0, 1.0], fpr=5)


def test_infinite_logits_are_valid_extremes():
    y, s = [0, 0, 1, 1], [-np.inf, 0.5, 0.2, np.inf]
    assert M.auc(y, s) == 75.0 and M.fake_acc(y, s) == 100.0


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_is_seeded_and_contains_estimate():
    y, s = random_case(3, n=300)
    a = M.bootstrap_ci(M.auc, y, s, n=400, seed=7)
    assert a == M.bootstrap_ci(M.auc, y, s, n=400, seed=7)
    assert a != M.bootstrap_ci(M.auc, y, s, n=400, seed=8)
    lo, hi = a
    assert lo < M.auc(y, s) < hi
    assert hi - lo < 20  # 300 images: a few AUC points wide, not the whole range
    lo90, hi90 = M.bootstrap_ci(M.auc, y, s, n=400, seed=7, level=0.9)
    assert lo <= lo90 <= hi90 <= hi


def test_bootstrap_fast_auc_path_equals_generic_loop():
    y, s = random_case(5, n=150)
    fast = M.bootstrap_ci(M.auc, y, s, n=300, seed=1)
    slow = M.bootstrap_ci(lambda yy, ss: M.auc(yy, ss), y, s, n=300, seed=1)
    assert fast == pytest.approx(slow, abs=1e-9)


def test_bootstrap_is_stratified():
    y = np.array([0] * 7 + [1] * 3)
    s = np.arange(10.0)
    seen = []

    def count(yy, ss):
        seen.append(((yy == 0).sum(), set(ss[yy == 0]) <= set(range(7)), set(ss[yy == 1]) <= {7.0, 8.0, 9.0}))
        return 0.0

    M.bootstrap_ci(count, y, s, n=50, seed=0)
    assert len(seen) == 50 and all(c == (7, True, True) for c in seen)


def test_bootstrap_argument_errors():
    with pytest.raises(M.MetricError):
        M.bootstrap_ci(M.auc, [0, 1], [0.0, 1.0], n=0)
    with pytest.raises(M.MetricError):
        M.bootstrap_ci(M.auc, [0, 1], [0.0, 1.0], level=1.0)


# --------------------------------------------------------------------------- evaluate


@pytest.fixture(scope="module")
def scores() -> pd.DataFrame:
    return pd.read_csv(FIXTURE)


@pytest.fixture(scope="module")
def table(scores) -> pd.DataFrame:
    return M.evaluate(scores)


def cell(table, cond, det, set_):
    rows = table[(table["condition"] == cond) & (table["detector"] == det) & (table["set"] == set_)]
    assert len(rows) == 1
    return rows.iloc[0]


def test_evaluate_shape_and_order(table):
    assert list(table.columns) == list(M.OUTPUT_COLUMNS)
    assert len(table) == 2 * 2 * 4  # conditions x detectors x (sd, gan, avg, wild)
    # the fixture lists Post-processed first; Original still comes first
    assert list(dict.fromkeys(table["condition"])) == ["Original", "Post-processed"]
    assert list(table["set"][:4]) == ["sd", "gan", "avg", "wild"]
    assert list(table["set_order"][:4]) == [0, 1, 2, 3]
    assert list(table["set_kind"][:4]) == ["generator", "generator", "avg", "wild"]
    assert "real" not in set(table["set"])
    assert table["auc_lo"].isna().all() and table["auc_hi"].isna().all()


def test_evaluate_hand_checked_numbers(table):
    # Corvi, Original: reals -2 -1 .5 -3 ; SD fakes 1 2 ; GAN fakes .5 -.5 ; wild reals -1 1, fakes 2 0
    sd = cell(table, "Original", "corvi", "sd")
    assert (sd.n_real, sd.n_fake, sd.auc, sd.ap, sd.racc, sd.facc, sd.acc, sd.asym) == (4, 2, 100, 100, 75, 100, 87.5, -25)
    gan = cell(table, "Original", "corvi", "gan")
    assert gan.auc == 81.25  # (3.5 + 3) / 8: the fake at .5 ties the real at .5
    assert gan.ap == pytest.approx(100 * (0.5 * 0.5 + 0.5 * 2 / 3))
    assert (gan.racc, gan.facc, gan.asym) == (75, 50, 25)
    wild = cell(table, "Original", "corvi", "wild")  # scored on its own reals only
    assert (wild.n_real, wild.n_fake, wild.auc, wild.racc, wild.facc) == (2, 2, 75, 50, 50)
    avg = cell(table, "Original", "corvi", "avg")  # generator sets only: the wild 75 stays out
    assert avg.auc == pytest.approx((100 + 81.25) / 2)
    assert (avg.racc, avg.facc, avg.acc, avg.asym) == (75, 75, 75, 0)
    assert (avg.n_real, avg.n_fake) == (4, 4)
    assert avg.set_display == "Avg" and avg.set_kind == "avg"
    # Corvi, Post-processed: reals -.5 -1.5 .2 -1 ; SD fakes .1 -2 -> 3 wins of 8
    assert cell(table, "Post-processed", "corvi", "sd").auc == 37.5
    assert cell(table, "Post-processed", "corvi", "avg").auc == pytest.approx((37.5 + 100) / 2)
    # UnivFD (uncalibrated), Post-processed: reals 1 2 3 4 ; SD fakes 4 4 -> 7/8 ; GAN 0 0 -> 0
    u = cell(table, "Post-processed", "univfd", "sd")
    assert u.auc == 87.5 and u.eer == pytest.approx(20.0)
    assert cell(table, "Post-processed", "univfd", "gan").auc == 0.0
    assert cell(table, "Post-processed", "univfd", "wild").auc == 62.5
    assert cell(table, "Post-processed", "univfd", "avg").auc == pytest.approx(43.75)


def test_evaluate_uncalibrated_has_no_threshold_metrics(table):
    u = table[table["detector"] == "univfd"]
    assert u[["racc", "facc", "acc", "asym"]].isna().all().all()
    assert u[["auc", "ap", "eer", "tpr1", "tpr5"]].notna().all().all()
    assert not u["calibrated"].any() and table.loc[table["detector"] == "corvi", "calibrated"].all()
    c = table[table["detector"] == "corvi"]
    assert c[["auc", "ap", "racc", "facc", "acc", "eer", "tpr1", "tpr5", "asym"]].notna().all().all()


def enlarged(scores: pd.DataFrame, copies: int = 5) -> pd.DataFrame:
    """The fixture with every image repeated under other paths, so each set holds at least
    SMALL_SET reals and fakes (bootstrap intervals are computed only then)."""
    parts = [scores.assign(path=scores["path"] + f"#{k}", logit=scores["logit"] + 0.01 * k) for k in range(copies)]
    return pd.concat(parts, ignore_index=True)


def test_evaluate_bootstrap(scores):
    big = enlarged(scores)
    a = M.evaluate(big, bootstrap=200, seed=1)
    assert a.equals(M.evaluate(big, bootstrap=200, seed=1))
    assert a[["auc_lo", "auc_hi"]].notna().all().all()  # every set and the Avg
    # a percentile interval need not contain the estimate (skewed near 100); on this fixture it does
    assert (a["auc_lo"] <= a["auc"] + 1e-9).all() and (a["auc"] <= a["auc_hi"] + 1e-9).all()
    assert M.evaluate(big)[["auc_lo", "auc_hi"]].isna().all().all()  # none without bootstrap


def test_no_bootstrap_interval_for_a_set_too_small_to_have_one(scores):
    """Two fakes resample to the same two fakes over and over: an interval of width ~0 would look
    certain. Below SMALL_SET images of a class, no interval (NaN), the Avg's included."""
    small = M.evaluate(scores, bootstrap=200, seed=1)  # 2 fakes per set
    assert small[["auc_lo", "auc_hi"]].isna().all().all()
    assert M.evaluate(enlarged(scores), bootstrap=200, seed=1)[["auc_lo", "auc_hi"]].notna().all().all()


def test_bootstrap_avg_auc_of_one_set_is_the_set_interval():
    rng = np.random.default_rng(3)
    reals, fakes = rng.normal(0, 1, 40), rng.normal(1, 1, 25)
    y, s = np.r_[np.zeros(40), np.ones(25)], np.r_[reals, fakes]
    assert M.bootstrap_avg_auc([("r", reals, fakes)], n=300, seed=5) == M.bootstrap_ci(M.auc, y, s, n=300, seed=5)
    with pytest.raises(M.MetricError, match="at least one set"):
        M.bootstrap_avg_auc([("r", reals, fakes[:0])])
    with pytest.raises(M.MetricError, match="different numbers of reals"):
        M.bootstrap_avg_auc([("r", reals, fakes), ("r", reals[:30], fakes)])


def test_evaluate_avg_bootstrap_with_a_generator_set_holding_reals(scores):
    """A generator set with reals of its own (a plugin suite, a hand-made table) is scored with
    them; its Avg replicate resamples those reals, not the shared real set's."""
    df = scores.copy()
    extra = df[(df["set"] == df.loc[df["set_kind"] == "real", "set"].iloc[0])].copy()
    gen = df.loc[df["set_kind"] == "generator", "set"].iloc[0]
    extra["set"], extra["set_kind"] = gen, "generator"
    extra["real_set"] = df.loc[df["set"] == gen, "real_set"].iloc[0]
    extra["set_display"] = df.loc[df["set"] == gen, "set_display"].iloc[0]
    extra["set_order"] = df.loc[df["set"] == gen, "set_order"].iloc[0]
    extra["path"] = extra["path"] + "#copy"
    out = M.evaluate(enlarged(pd.concat([df, extra], ignore_index=True)), bootstrap=100, seed=0)
    avg = out[out["set"] == "avg"]
    assert avg[["auc_lo", "auc_hi"]].notna().all().all() and (avg["auc_lo"] <= avg["auc_hi"]).all()


def test_bootstrap_avg_auc_shares_the_resample_of_a_shared_real_set():
    """Constant fakes: each set's AUC varies only with the reals. Sets sharing one real set move
    together (the Avg is as uncertain as one set); sets with their own reals average out (~1/2
    the width for 4 sets)."""
    rng = np.random.default_rng(0)
    reals, fakes = rng.normal(0, 1, 30), np.zeros(10)
    width = lambda lo_hi: lo_hi[1] - lo_hi[0]  # noqa: E731
    one = width(M.bootstrap_avg_auc([("r", reals, fakes)], n=2000, seed=1))
    shared = width(M.bootstrap_avg_auc([("r", reals, fakes)] * 4, n=2000, seed=1))
    own = width(M.bootstrap_avg_auc([(k, reals, fakes) for k in "abcd"], n=2000, seed=1))
    assert one > 10 and abs(shared - one) < 0.1 * one and 0.35 * one < own < 0.65 * one


def _mini_scores(**overrides) -> pd.DataFrame:
    """Scores of one detector: 3 reals, a generator set and a fake-only wild set."""
    rows = []
    spec = [("real", "real", None, 0, [-1.0, -2.0, 0.5]), ("g", "generator", "real", 1, [1.0, 2.0]),
            ("w", "wild", "real", 2, [0.2, -3.0])]
    for set_, kind, real_set, order, logits in spec:
        for i, x in enumerate(logits):
            rows.append({"detector": "d", "display_name": "D", "family": "CNN", "calibrated": True, "set": set_,
                             "set_display": set_.upper(), "set_kind": kind, "real_set": real_set, "set_order": order,
                             "condition": "Original", "path": f"{set_}/{i}", "label": int(kind != "real"), "logit": x})
    df = pd.DataFrame(rows)
    for k, v in overrides.items():
        df[k] = v
    return df


def test_fake_only_wild_set_uses_its_real_set():
    t = M.evaluate(_mini_scores())
    w = cell(t, "Original", "d", "w")
    assert (w.n_real, w.n_fake) == (3, 2)
    assert w.auc == pytest.approx(100 * 2 / 6)  # .2 beats -1 and -2; -3 beats nothing
    assert list(t["set"]) == ["g", "avg", "w"]
    assert cell(t, "Original", "d", "avg").auc == cell(t, "Original", "d", "g").auc  # w is not averaged
    assert (t["weights"] == "").all() and (t["suite"] == "").all()  # optional columns default to ""


def test_evaluate_errors(scores):
    with pytest.raises(M.MetricError, match="lacks column"):
        M.evaluate(scores.drop(columns=["logit"]))
    bad = _mini_scores()
    bad.loc[bad["set"] == "g", "real_set"] = None
    with pytest.raises(M.MetricError, match="names no real_set"):
        M.evaluate(bad)
    with pytest.raises(M.MetricError, match="scored more than once"):
        M.evaluate(pd.concat([scores, scores.iloc[:1]]))
    no_reals = scores[~((scores["set"] == "real") & (scores["detector"] == "corvi"))]
    with pytest.raises(M.MetricError, match="real set 'real'"):
        M.evaluate(no_reals)
    other = scores.copy()
    other.loc[other["detector"] == "corvi", "family"] = other.loc[other["detector"] == "corvi", "set"]
    with pytest.raises(M.MetricError, match="more than one"):
        M.evaluate(other)


def test_nan_logits_are_dropped_with_warning(scores):
    s = scores.copy()
    s.loc[0, "logit"] = np.nan  # a real of UnivFD, Post-processed
    with pytest.warns(UserWarning, match="dropping 1"):
        t = M.evaluate(s)
    assert cell(t, "Post-processed", "univfd", "sd").n_real == 3


def test_missing_generator_set_makes_avg_nan(scores):
    s = scores[~((scores["detector"] == "corvi") & (scores["condition"] == "Original") & (scores["set"] == "gan"))]
    with pytest.warns(UserWarning, match="lacks generator"):
        t = M.evaluate(s)
    assert math.isnan(cell(t, "Original", "corvi", "avg").auc)
    assert cell(t, "Original", "univfd", "avg").auc == 62.5  # others unaffected


def test_set_missing_from_a_whole_block_makes_that_avg_nan(scores):
    """Avg covers the suite's generator sets in every block, not the sets that block happens to have."""
    s = scores[~((scores["condition"] == "Post-processed") & (scores["set"] == "gan"))]
    with pytest.warns(UserWarning, match="lacks generator"):
        t = M.evaluate(s)
    assert math.isnan(cell(t, "Post-processed", "corvi", "avg").auc)
    assert not math.isnan(cell(t, "Original", "corvi", "avg").auc)


def test_two_weight_tags_stay_apart(scores):
    twin = scores[scores["detector"] == "corvi"].assign(weights="official")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = M.evaluate(pd.concat([scores, twin]))
    assert len(t) == 3 * 2 * 4
    assert set(t.loc[t["detector"] == "corvi", "weights"]) == {"mini", "official"}


def test_condition_order():
    assert M.condition_order(["webp:quality=50", "Post-processed", "x", "Original", "x"]) == [
        "Original", "Post-processed", "webp:quality=50", "x"]
