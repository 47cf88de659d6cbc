"""A RAD vector on disk: per-channel Regional Activation Discrepancy of one layer of one detector.

numpy only, so that pruning (`bench dear prune`) reads it without torch. `dear.dissect`
computes it; `dear.prune` turns it into a gate.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.api import BenchError, MissingDataError


class DissectError(BenchError):
    pass


# --------------------------------------------------------------------------- results


@dataclass
class RADResult:
    """Per-channel RAD of one layer of one detector on one diagnostic set."""

    scores: np.ndarray  # float64 [C]
    n_samples: int  # samples whose mask survived the crop and were scored
    n_batches: int  # batches that contributed
    layer: str
    detector: str = ""  # e.g. "corvi.mini" or a checkpoint path
    data: str = ""  # what the diagnostic set was, e.g. its folder and augmentation
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = field(default=None, compare=False)  # the file it was loaded from, for error messages

    @property
    def num_channels(self) -> int:
        return int(self.scores.size)

    def check_channels(self, channels: int, where: str) -> None:
        """Refuse to read this RAD against `where` (a layer of `channels` channels) when the
        widths differ: it was dissected from another detector or layer, and its channel
        indices mean nothing there."""
        if channels != self.num_channels:
            raise DissectError(
                f"{self.path or 'RAD vector'}: {self.num_channels} channels (dissected from "
                f"{self.detector or 'an unnamed detector'} at {self.layer}) but {where} has {channels}")

    def metadata(self) -> dict[str, Any]:
        return {"n_samples": self.n_samples, "n_batches": self.n_batches, "layer": self.layer,
                "detector": self.detector, "data": self.data, "extra": self.extra}

    def save(self, path: str | Path) -> Path:
        """`.npz` (scores array + JSON metadata) or `.json` (scores as a list)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".npz":
            np.savez(path, scores=self.scores.astype(np.float64), metadata=np.array(json.dumps(self.metadata())))
        elif path.suffix == ".json":
            path.write_text(json.dumps({"scores": self.scores.tolist(), **self.metadata()}, indent=1))
        else:
            raise DissectError(f"{path}: RAD files are .npz or .json")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "RADResult":
        path = Path(path)
        if not path.is_file():
            raise MissingDataError(f"{path}: no RAD file here")
        what = "a RAD file written by bench dear dissect"
        if path.suffix == ".npz":
            scores, meta = read_npz(path, "scores", DissectError, what)
        elif path.suffix == ".json":
            try:
                meta = json.loads(path.read_text())
            except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError alike
                raise DissectError(f"{path}: not {what} (not JSON text)") from exc
            scores = meta.pop("scores", None) if isinstance(meta, dict) else None
        else:
            raise DissectError(f"{path}: RAD files are .npz or .json")
        try:  # every field checked here, so a hand-edited or foreign file never escapes as a traceback
            if not isinstance(meta, dict) or not isinstance(meta.get("extra", {}), dict):
                raise TypeError("metadata is not an object")
            values = np.asarray(scores, dtype=np.float64)
            if values.ndim != 1 or values.size == 0:
                raise ValueError(f"scores must be a non-empty list of numbers, got shape {values.shape}")
            return cls(values, int(meta["n_samples"]), int(meta["n_batches"]), str(meta["layer"]),
                       str(meta.get("detector", "")), str(meta.get("data", "")), dict(meta.get("extra", {})), path)
        except KeyError as exc:
            raise DissectError(f"{path}: not {what} (no {exc.args[0]!r} entry)") from exc
        except (TypeError, ValueError) as exc:
            raise DissectError(f"{path}: not {what} ({exc})") from exc


def read_npz(path: Path, key: str, error: type[BenchError], what: str) -> tuple[np.ndarray, Any]:
    """(array `key`, decoded JSON `metadata`) of an .npz that bench wrote (RAD or gate).

    Anything else (truncated, text, object arrays, other keys) raises `error` naming the file;
    numpy's own messages are left out, since their advice (allow_pickle=True) is unsafe here."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return np.asarray(z[key]), json.loads(str(z["metadata"]))
    except KeyError as exc:
        raise error(f"{path}: not {what} (no {exc.args[0]!r} array)") from exc
    except json.JSONDecodeError as exc:
        raise error(f"{path}: not {what} (its metadata is not JSON)") from exc
    except (OSError, ValueError, TypeError, AttributeError, EOFError, zipfile.BadZipFile) as exc:
        raise error(f"{path}: not {what} (unreadable as an .npz archive of plain arrays: {type(exc).__name__})") from exc
