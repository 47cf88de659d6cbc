"""A fitted linear probe on disk: `<name>.safetensors` (weight (1, D), bias (1,) = 0, and the
indices of the features it reads when a removal kept fewer than all) and `<name>.json` beside it
(encoder, tap, training generator and condition, hyper-parameters, where the embeddings were).
Never a pickle. `bench probe fit` writes it; `clip-lr` (`probes.detector`) loads it."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from probes.spec import EncoderSpec, ProbeError


@dataclass
class ProbeFile:
    weight: np.ndarray  # (D_kept,)
    features: np.ndarray | None  # indices into the encoder's D features, None: all
    meta: dict[str, Any]

    @property
    def encoder(self) -> EncoderSpec:
        return EncoderSpec.from_json(self.meta.get("encoder") or {}, "probe metadata")

    def save(self, path: Path) -> None:
        import torch

        from bench.files import atomic_path
        from bench.weights import save_state

        state = {"weight": torch.as_tensor(self.weight, dtype=torch.float32).reshape(1, -1), "bias": torch.zeros(1)}
        if self.features is not None:
            state["features"] = torch.as_tensor(np.asarray(self.features, dtype=np.int64))
        save_state(state, path)
        with atomic_path(meta_path(path)) as tmp:
            tmp.write_text(json.dumps(self.meta, indent=2, default=str) + "\n")

    @staticmethod
    def load(path: str | Path) -> "ProbeFile":
        from bench.weights import load_state

        path = Path(path)
        meta_file = meta_path(path)
        if not meta_file.is_file():
            raise ProbeError(f"{path}: its metadata {meta_file.name} is not beside it (it names the encoder the probe reads)")
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, ValueError) as exc:
            raise ProbeError(f"{meta_file}: unreadable ({exc})") from None
        state = load_state(path)
        if "weight" not in state or state["weight"].dim() != 2 or state["weight"].shape[0] != 1:
            raise ProbeError(f"{path}: not a probe file (expected 'weight' of shape (1, D))")
        features = state["features"].numpy() if "features" in state else None
        weight = state["weight"][0].double().numpy()
        if features is not None and len(features) != len(weight):
            raise ProbeError(f"{path}: {len(features)} feature indices for {len(weight)} weights")
        return ProbeFile(weight, features, meta)


def meta_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name.removesuffix(".safetensors") + ".json")
