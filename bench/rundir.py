"""A run folder: what `bench run` writes and what tables, figures and `bench compare` read.

Results are data: `manifest.json` (what was run, with which versions, seeds and counts) beside
the per-image scores (`scores.parquet`, the same table as `scores.csv`) and `failures.csv`.
Everything downstream is a function of these files, so a table never reruns a detector.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from bench.api import BenchError, MissingDataError
from bench.files import atomic_path

log = logging.getLogger("bench")

# The scores table, one row per image x detector x condition: the boundary between the runner
# and metrics, tables and figures.
SCORE_COLUMNS = [
    "detector", "weights", "display_name", "family", "calibrated",
    "suite", "set", "set_display", "set_kind", "real_set", "set_order",
    "condition", "condition_key", "path", "image_sha", "label", "params", "logit",
]  # fmt: skip
FAILURE_COLUMNS = ["detector", "weights", "condition", "condition_key", "set", "path", "image_sha", "label", "reason"]


def write_run(run_dir: Path, manifest: dict[str, Any], scores: pd.DataFrame, failures: pd.DataFrame) -> None:
    """Write the run folder; each file replaces the old one only once it is whole (`bench.files`)."""

    def atomic(name: str, write: Any) -> None:
        with atomic_path(run_dir / name) as tmp:
            write(tmp)

    atomic("scores.csv", lambda p: scores.to_csv(p, index=False))
    atomic("scores.parquet", lambda p: scores.to_parquet(p, index=False))
    atomic("failures.csv", lambda p: failures.to_csv(p, index=False))
    atomic("manifest.json", lambda p: p.write_text(json.dumps(manifest, indent=2, default=str) + "\n"))


def read_scores(run_dir: Path) -> pd.DataFrame:
    """scores.parquet, else scores.csv (the same table), with an error naming a damaged file."""
    parquet, csv = run_dir / "scores.parquet", run_dir / "scores.csv"
    if not (parquet.is_file() or csv.is_file()):
        raise MissingDataError(f"{run_dir}: no scores.parquet or scores.csv")
    path = parquet if parquet.is_file() else csv
    try:
        if path is parquet:
            return pd.read_parquet(path)
        scores = pd.read_csv(path, dtype={"params": str, "real_set": object, "image_sha": str})
    except Exception as exc:  # pyarrow and pandas raise many types for a cut or garbled file
        raise BenchError(f"{path}: unreadable scores table ({type(exc).__name__}: {str(exc)[:200]}); "
                         "rerun the same command to export it again from the cache") from exc
    scores["real_set"] = scores["real_set"].where(scores["real_set"].notna(), None)
    return scores


def load_run(run_dir: str | Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """(manifest, scores table) of a finished run folder."""
    run_dir = Path(run_dir)
    manifest_path = run_dir / "manifest.json"
    if not manifest_path.is_file():
        raise MissingDataError(f"{run_dir}: no run here (no manifest.json); score it first with `bench run`")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BenchError(f"{manifest_path}: unreadable manifest ({exc})") from exc
    scores = read_scores(run_dir)
    missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise BenchError(f"{run_dir}: the scores table lacks columns {missing}")
    expected = (manifest.get("counts") or {}).get("scores")
    if isinstance(expected, int) and expected != len(scores):  # cut in transit, or filtered on purpose: say so
        log.warning("%s: the scores table has %d rows but the run exported %d; the file was cut or edited (rerun the "
                    "same command to export it again from the cache)", run_dir, len(scores), expected)
    stopped = sorted(manifest.get("errors") or {})
    if stopped:  # their rows cover only what they scored before stopping: say so wherever the run is read
        log.warning("%s is incomplete: %s did not finish (reasons in its manifest.json); their numbers, if any, cover only "
                    "the images scored before they stopped (rerun the same command to resume)", run_dir, ", ".join(stopped))  # fmt: skip
    return manifest, scores
