"""The data every probe method shares: a suite's exported embeddings and the seeded splits.

Splits follow Gaintseva et al. (arXiv 2406.15035): one real set for every generator, each set
cut 7:3 into train and test (AIGI suites here define no splits of their own). A cut is made per
set by image identity (path), seeded by the set's name, so a post-processed copy of a test image
is a test image too, and the reals are the same in every generator's problem.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from probes.folders import read_folder
from probes.spec import EncoderSpec, ProbeError

TEST_FRACTION = 0.3


@dataclass
class Embeddings:
    """A folder written by `bench probe embed`: `index` (one row per vector: path, image_sha,
    set, label, set_kind, real_set, condition_key, condition) and `vectors` (N, D) float32."""

    folder: Path
    manifest: dict[str, Any]
    index: pd.DataFrame
    vectors: np.ndarray

    @staticmethod
    def load(folder: str | Path) -> "Embeddings":
        folder = Path(folder)
        manifest = read_folder(folder, "embed")
        index = pd.read_csv(folder / "index.csv", dtype={"image_sha": str, "real_set": object})
        vectors = np.load(folder / "vectors.npy")
        if len(index) != len(vectors):
            raise ProbeError(f"{folder}: index.csv has {len(index)} rows but vectors.npy {len(vectors)}")
        return Embeddings(folder, manifest, index, vectors)

    @property
    def encoder(self) -> EncoderSpec:
        return EncoderSpec.from_json(self.manifest.get("encoder") or {}, str(self.folder / "manifest.json"))

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def generators(self) -> list[str]:
        """Generator sets, in the suite's order."""
        return [s["name"] for s in self.manifest["suite"]["sets"] if s["kind"] == "generator"]

    @property
    def conditions(self) -> list[str]:
        return [c["key"] for c in self.manifest["conditions"]]

    def condition(self, key: str | None) -> str:
        """A condition key of these embeddings ("original" when None); an unknown one is refused."""
        key = key or "original"
        if key in ("post-processed", "processed"):
            processed = [c for c in self.conditions if c != "original"]
            if len(processed) == 1:
                return processed[0]
        if key not in self.conditions:
            raise ProbeError(f"{self.folder}: no condition {key!r}; it holds {', '.join(self.conditions)}")
        return key

    def display(self, key: str) -> str:
        return next(c["display"] for c in self.manifest["conditions"] if c["key"] == key)

    def require_generators(self, names: list[str], what: str) -> None:
        """Refuse names of generators these embeddings do not have (before any fit)."""
        for name in names:
            if name not in self.generators:
                from bench.api import did_you_mean

                raise ProbeError(f"{what}: generator {name!r} is not in {self.folder} (its generators: "
                                 f"{', '.join(self.generators)}){did_you_mean(name, self.generators)}")


def _test_paths(paths: list[str], set_name: str, seed: int, fraction: float) -> set[str]:
    """A seeded `fraction` of `paths` (at least one when there are two or more), by a hash of
    (seed, set, path): independent of file order and of the other sets."""
    ranked = sorted(paths, key=lambda p: hashlib.sha256(f"{seed}\x1f{set_name}\x1f{p}".encode()).hexdigest())
    n = int(round(len(ranked) * fraction))
    n = min(max(n, 1 if len(ranked) > 1 else 0), max(len(ranked) - 1, 0))
    return set(ranked[:n])


@dataclass(frozen=True)
class Problem:
    """A binary problem's arrays: features, labels (1 = fake, the harness's convention), and
    where each row came from."""

    x: np.ndarray
    y: np.ndarray
    rows: np.ndarray  # row numbers in the embeddings' index

    def check(self, what: str) -> "Problem":
        classes = set(np.unique(self.y).tolist())
        if classes != {0, 1}:
            have = {0: "reals", 1: "fakes"}
            names = " and ".join(have[c] for c in sorted(classes)) or "no images"
            raise ProbeError(f"{what}: needs reals and fakes, but holds only {names} ({len(self.y)} rows); "
                             "use more images (--max-per-set) or another split")
        return self


class Splits:
    """Train/test parts of every set of some embeddings, under one condition."""

    def __init__(self, emb: Embeddings, condition: str | None = None, seed: int = 0, test_fraction: float = TEST_FRACTION):
        self.emb, self.seed, self.test_fraction = emb, seed, test_fraction
        self.condition = emb.condition(condition)
        idx = emb.index
        self.rows = idx[idx["condition_key"] == self.condition]
        self.test: dict[str, set[str]] = {}
        for name, part in emb.index.groupby("set", sort=False):  # every condition: the cut follows the image
            self.test[name] = _test_paths(sorted(set(part["path"])), name, seed, test_fraction)

    def real_set(self, generator: str) -> str:
        sets = {s["name"]: s for s in self.emb.manifest["suite"]["sets"]}
        real = sets[generator].get("real_set")
        if not real:
            raise ProbeError(f"{self.emb.folder}: generator set {generator!r} names no real set to be scored against")
        return real

    def part(self, set_name: str, part: str) -> pd.DataFrame:
        rows = self.rows[self.rows["set"] == set_name]
        is_test = rows["path"].isin(self.test.get(set_name, set()))
        return rows[is_test] if part == "test" else rows[~is_test]

    def problem(self, generator: str, part: str, features: np.ndarray | None = None) -> Problem:
        """Reals of the generator's real set and its fakes, from the `part` ("train"/"test")."""
        rows = pd.concat([self.part(self.real_set(generator), part), self.part(generator, part)])
        x = self.emb.vectors[rows.index.to_numpy()]
        if features is not None:
            x = x[:, features]
        return Problem(x.astype(np.float64), rows["label"].to_numpy(dtype=np.int64).copy(), rows.index.to_numpy().copy())

    def manifest(self) -> dict[str, Any]:
        return {"seed": self.seed, "test_fraction": self.test_fraction, "condition": self.condition,
                "by": "image path, per set (same reals for every generator)"}
