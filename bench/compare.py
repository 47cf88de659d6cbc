"""Compare two runs of the same suite image by image: the same code on CPU and CUDA, before
and after an upgrade, or on two machines. Tables are pure functions of the scores, so equal
scores (within a tolerance) mean equal tables; both checks are reported."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.api import BenchError

KEY = ["detector", "weights", "condition_key", "image_sha"]


@dataclass
class RunComparison:
    devices: tuple[str, str]  # "cuda (fp32)": device and effective precision of each run
    matched: int  # scores present in both runs
    only_a: int
    only_b: int
    max_abs_diff: float  # of the logits, over matched scores
    mean_abs_diff: float
    sign_flips: int  # matched scores on different sides of the threshold (logit 0)
    same_table: bool  # the default markdown tables are identical, digit for digit
    worst: pd.DataFrame  # the largest differences, for a look
    table_error: str | None = None  # why a table could not be computed (then same_table is False)
    unmatched: pd.DataFrame | None = None  # a few scores found in one run only, with the run ("A"/"B")

    def within(self, atol: float) -> bool:
        return self.matched > 0 and self.only_a == 0 and self.only_b == 0 and self.max_abs_diff <= atol

    def summary(self) -> str:
        return (f"devices: {self.devices[0]} vs {self.devices[1]}\n"
                f"matched scores: {self.matched} (only in A: {self.only_a}, only in B: {self.only_b})\n"
                f"logit |A-B|: max {self.max_abs_diff:.3g}, mean {self.mean_abs_diff:.3g}; sign flips: {self.sign_flips}\n"
                f"tables identical: {'yes' if self.same_table else 'no'}"
                + (f" (no table: {self.table_error})" if self.table_error else ""))


def compare_runs(run_a: str | Path, run_b: str | Path, top: int = 5) -> RunComparison:
    """Match the scores of two run folders on (detector, weights, condition, image sha)."""
    from bench.metrics import evaluate
    from bench.rundir import load_run
    from bench.tables import render

    (man_a, a), (man_b, b) = load_run(run_a), load_run(run_b)
    for name, df in ((run_a, a), (run_b, b)):
        if df.duplicated(KEY + ["set"]).any():
            raise BenchError(f"{name}: the same image is scored twice under one key; not a single run")
    a1, b1 = a.drop_duplicates(KEY), b.drop_duplicates(KEY)  # an image in two sets is one score
    both = a1.merge(b1[KEY + ["logit"]], on=KEY, suffixes=("_a", "_b"))
    sides = a1[KEY + ["path"]].merge(b1[KEY + ["path"]], on=KEY, how="outer", indicator=True, suffixes=("_a", "_b"))
    lone = sides[sides["_merge"] != "both"]
    unmatched = pd.DataFrame({
        "run": lone["_merge"].map({"left_only": "A", "right_only": "B"}).astype(str),
        "detector": lone["detector"], "condition_key": lone["condition_key"],
        "path": lone["path_a"].where(lone["_merge"] == "left_only", lone["path_b"]),
    }).head(top)  # fmt: skip
    diff = (both["logit_a"] - both["logit_b"]).abs()
    both = both.assign(abs_diff=diff)
    flips = int(((both["logit_a"] > 0) != (both["logit_b"] > 0)).sum())
    same, table_error = False, None
    try:  # the score comparison stands on its own even where a table cannot be computed
        same = not a.empty and not b.empty and render(evaluate(a)) == render(evaluate(b))
    except BenchError as exc:
        table_error = str(exc)
    return RunComparison(
        devices=(_numerics(man_a), _numerics(man_b)),
        matched=len(both), only_a=len(a1) - len(both), only_b=len(b1) - len(both),
        max_abs_diff=float(diff.max()) if len(both) else float("nan"),
        mean_abs_diff=float(diff.mean()) if len(both) else float("nan"),
        sign_flips=flips, same_table=same, table_error=table_error,
        worst=both.nlargest(top, "abs_diff")[["detector", "condition_key", "path", "logit_a", "logit_b", "abs_diff"]],
        unmatched=unmatched,
    )


def _numerics(manifest: dict) -> str:
    return f"{manifest.get('device', '?')} ({manifest.get('precision', 'fp32')})"
