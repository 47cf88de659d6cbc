"""A run folder: what `bench run` writes and what tables, figures and `bench compare` read.

Results are data: `manifest.json` (what was run, with which versions, seeds and counts) beside
the per-image scores (`scores.parquet`, the same table as `scores.csv`) and `failures.csv`.
Everything downstream is a function of these files, so a table never reruns a detector.

A run folder is written whole: the four files go into a staging folder that then replaces the
old run folder (`bench.files.replace_folder`), so a kill never leaves new scores beside an old
manifest. The manifest carries the sha256 of every other file, and reading a run checks them:
a file cut in transit or edited by hand is named, not silently tabled.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd

from bench.api import BenchError, MissingDataError
from bench.files import PLAIN_FILE_MODE, replace_folder
from bench.weights import sha256_file

log = logging.getLogger("bench")

# The scores table, one row per image x detector x condition: the boundary between the runner
# and metrics, tables and figures.
SCORE_COLUMNS = [
    "detector", "weights", "display_name", "family", "calibrated",
    "suite", "set", "set_display", "set_kind", "real_set", "set_order",
    "condition", "condition_key", "path", "image_sha", "label", "params", "logit",
]  # fmt: skip
FAILURE_COLUMNS = ["detector", "weights", "condition", "condition_key", "set", "path", "image_sha", "label", "reason"]


DATA_FILES = ("scores.csv", "scores.parquet", "failures.csv")


def write_run(run_dir: Path, manifest: dict[str, Any], scores: pd.DataFrame, failures: pd.DataFrame) -> None:
    """Write the run folder as a whole (see the module docstring), the manifest with the digests
    of the other files."""
    with replace_folder(run_dir) as staging:
        scores.to_csv(staging / "scores.csv", index=False)
        scores.to_parquet(staging / "scores.parquet", index=False)
        failures.to_csv(staging / "failures.csv", index=False)
        digests = {name: sha256_file(staging / name) for name in DATA_FILES}
        (staging / "manifest.json").write_text(json.dumps({**manifest, "digests": digests}, indent=2, default=str) + "\n")
        for name in (*DATA_FILES, "manifest.json"):
            os.chmod(staging / name, PLAIN_FILE_MODE)


def _check_digest(path: Path, manifest: dict[str, Any]) -> None:
    """Refuse a data file whose bytes are not those the run wrote (manifests from before
    digests were recorded are taken as they are)."""
    expected = (manifest.get("digests") or {}).get(path.name)
    if expected and sha256_file(path) != expected:
        raise BenchError(f"{path}: not the file this run wrote (its sha256 differs from the one in manifest.json): cut in "
                         "transit, or edited; rerun the same command to export the run again from the cache")


def read_scores(run_dir: Path, manifest: dict[str, Any] | None = None) -> pd.DataFrame:
    """scores.parquet, else scores.csv (the same table), with an error naming a damaged file;
    with the run's `manifest`, the file's digest is checked first."""
    parquet, csv = run_dir / "scores.parquet", run_dir / "scores.csv"
    if not (parquet.is_file() or csv.is_file()):
        raise MissingDataError(f"{run_dir}: no scores.parquet or scores.csv")
    path = parquet if parquet.is_file() else csv
    if manifest is not None:
        _check_digest(path, manifest)
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
    scores = read_scores(run_dir, manifest)
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
