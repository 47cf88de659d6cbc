"""The builder of `clip-lr` (`probes.catalog`): a probe file on its frozen encoder.

`ProbeModel` is a `bench.api.LinearHeadModel` (pooled = the encoder's features, gated; head =
nn.Linear(D, 1) holding the probe's weight and a zero bias, as the paper fits it), so
`detectors.head.refit_head` (e.g. Stay-Positive's clamp) refits it like any linear detector.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from bench.api import Detector, DetectorInfo
from detectors.head import FeatureGate
from probes.probe_file import ProbeFile


class ProbeModel(nn.Module):
    """head(gate(features(x)[:, kept])) with the features of an Embedder."""

    def __init__(self, embedder: Any, weight: np.ndarray, features: np.ndarray | None = None):
        super().__init__()
        self.embedder = embedder
        self.register_buffer("kept", torch.as_tensor(features, dtype=torch.long) if features is not None else torch.empty(0, dtype=torch.long))
        self.num_features = len(weight)
        self.fc = nn.Linear(self.num_features, 1)
        with torch.no_grad():
            self.fc.weight.copy_(torch.as_tensor(weight, dtype=torch.float32).reshape(1, -1))
            self.fc.bias.zero_()
        self.gate = FeatureGate(self.num_features)
        self.normalization = embedder.normalization
        for module in [getattr(embedder, "encoder", None), getattr(embedder, "model", None)]:
            if isinstance(module, nn.Module):
                self.backbone = module  # registered: moves with .to() and is frozen with the model
                break
        self.requires_grad_(False)
        self.fc.requires_grad_(True)

    @property
    def head(self) -> nn.Linear:
        return self.fc

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        f = self.embedder.features(x)
        return self.gate(f[:, self.kept] if self.kept.numel() else f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pooled(x)).squeeze(1)


class ProbeDetector(Detector):
    """A ProbeModel behind the Detector contract, with the encoder's own preprocessing."""

    def __init__(self, model: ProbeModel, info: DetectorInfo, weights: str, fingerprint: str):
        self.model = model.eval()
        self.info, self.weights, self.fingerprint = info, weights, fingerprint

    def preprocess(self) -> Callable[[Any], Any]:
        return self.model.embedder.preprocess()

    def prepare(self, batch: Any) -> Any:
        return self.model.embedder.prepare(batch)

    def to(self, device: str) -> "ProbeDetector":
        super().to(device)
        self.model.embedder.to(device)
        self.model.to(device)
        return self

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(batch).float()


def detector_from(probe: ProbeFile, embedder: Any, info: DetectorInfo, weights: str, digest: str) -> ProbeDetector:
    """The detector of a loaded probe on a built embedder; its family follows the encoder."""
    family = "CLIP" if probe.encoder.is_clip else embedder.info.family
    size = getattr(getattr(embedder, "prep", None), "size", None)
    from bench.api import InputPolicy

    policy = InputPolicy((size, size), steps=embedder.prep.describe()) if size else embedder.info.input
    info = dataclasses.replace(info, family=family, input=policy,
                               description=f"{info.description} Encoder {probe.encoder.name}, tap {probe.encoder.tap}; trained on "
                                           f"{probe.meta.get('generator', '?')}.")
    return ProbeDetector(ProbeModel(embedder, probe.weight, probe.features), info, weights, f"{digest}+{embedder.fingerprint}")


def build(spec: Any, weights: str | None = None, *, path: str | os.PathLike | None = None, device: str = "cpu") -> ProbeDetector:
    """`create_detector("clip-lr.corvi-mini-ldm")` (installed by `bench probe fit --install`) or
    `create_detector("clip-lr", path="results/probe/fit/.../probe.safetensors")`."""
    from bench.weights import resolve_tag
    from probes.encoders import build_embedder

    if weights in (None, spec.default_weights) and path is not None:
        weights = Path(path).name.removesuffix(".safetensors")
    tag, file, digest = resolve_tag(spec, weights, path)
    probe = ProbeFile.load(file)
    embedder = build_embedder(probe.encoder, device)
    if probe.features is None and len(probe.weight) != embedder.dim:
        from probes.spec import ProbeError

        raise ProbeError(f"{file}: {len(probe.weight)} weights, but encoder {probe.encoder.name} (tap {probe.encoder.tap}) "
                         f"gives {embedder.dim} features")
    return detector_from(probe, embedder, spec.info, f"{spec.name}.{tag}", digest).to(device)


def tiny(spec: Any, *, seed: int = 0, device: str = "cpu") -> ProbeDetector:
    """A random probe on a tiny random open_clip encoder (contract tests only)."""
    from detectors.clip.build import tiny_open_clip
    from detectors.clip.encoders import open_clip_encoder
    from probes.encoders import ClipFeatures
    from probes.spec import EncoderSpec

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = open_clip_encoder(tiny_open_clip(image=64), fingerprint=f"tiny-random-seed{seed}")
        enc_spec = EncoderSpec("clip:openai-vit-l-14", "embed")
        embedder = ClipFeatures(encoder, enc_spec)
        weight = torch.randn(embedder.dim).numpy() / embedder.dim**0.5
    probe = ProbeFile(weight, None, {"encoder": enc_spec.to_json(), "generator": "random"})
    return detector_from(probe, embedder, spec.info, f"{spec.name}.tiny", f"tiny-random-seed{seed}").to(device)
