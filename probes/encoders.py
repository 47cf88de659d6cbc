"""Frozen encoders as `bench.api.Embedder`s: the runner feeds them like detectors and stores
their (B, D) features (`bench.scoring`).

- `PooledFeatures`: a registered detector's penultimate features, `pooled(x)` of its
  `bench.api.LinearHeadModel` (the vector its linear head reads; for the ResNets, tiled as the
  detector tiles), with the detector's own preprocessing.
- `ClipFeatures`: a CLIP-family `detectors.clip.encoders.Encoder` behind open_clip's own test
  transform (shorter side to the input size, bicubic; center crop; CLIP mean/std), the transform
  CLIP embeddings are usually taken with, as the paper takes them.

The fingerprint names encoder weights, tap and preprocessing: features are cached under it.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch

from bench.api import Detector, DetectorInfo, Embedder, LinearHeadModel
from probes.spec import EncoderSpec, ProbeError


class PooledFeatures(Embedder):
    """The penultimate features of a detector whose model is a LinearHeadModel."""

    def __init__(self, det: Detector, spec: EncoderSpec):
        model = getattr(det, "model", None)
        if not isinstance(model, LinearHeadModel):
            raise ProbeError(f"detector {spec.name!r} has no frozen backbone under a linear head (bench.api.LinearHeadModel: "
                             "pooled(x), head), so it has no penultimate features to probe")
        from bench.scoring import fingerprint

        self.det, self.model, self.spec = det, model, spec
        self.info = dataclasses.replace(det.info, description=f"penultimate features of {det.weights or spec.name}")
        self.weights = det.weights or spec.name
        self.fingerprint = f"{fingerprint(det)}#tap=pooled"
        self.dim = int(model.num_features)

    def preprocess(self) -> Callable[[Any], Any]:
        return self.det.preprocess()

    def prepare(self, batch: Any) -> Any:
        return self.det.prepare(batch)

    def to(self, device: str) -> "PooledFeatures":
        super().to(device)
        self.det.to(device)
        return self

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, D) features outside inference mode, so a head refit can train on them."""
        pooled = getattr(self.det, "pooled", None) or self.model.pooled  # ResNetDetector.pooled tiles large images
        return pooled(batch).float()

    @property
    def normalization(self) -> Any:
        return self.model.normalization

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.features(batch)


def mean_tokens(encoder: Any, x: torch.Tensor) -> torch.Tensor:
    """(B, D) mean over all tokens (CLS included) of the residual stream after the last block,
    before the final LayerNorm: transformers' `last_hidden_state.mean(1)`, the paper's "mean
    pooling". Read off the final norm's input, which open_clip and ViT apply to every token."""
    from detectors.clip.encoders import TapError, capture

    with capture([encoder.adapter.final_norm]) as (seen,):
        encoder.adapter.forward(x)
    if seen.input is None or seen.input.dim() != 3:
        raise TapError(f"this {encoder.library} encoder normalises the CLS token alone at the end, so the tap 'mean' "
                       "(all tokens) is not available; use an open_clip backbone or tap 'embed'")
    return seen.input.mean(dim=1)


def head_contributions(encoder: Any, x: torch.Tensor) -> torch.Tensor:
    """(B, L, H, E) direct contribution of every attention head to the image embedding (through
    the final LayerNorm linearised at the whole sum, and the projection), as Gandelsman et al.'s
    prs_hook.py splits it (`detectors.clip.contributions`)."""
    from detectors.clip.contributions import decompose, project

    return project(encoder, decompose(encoder, x)).heads


class ClipFeatures(Embedder):
    """A CLIP-family encoder's features at one tap (`probes.spec.CLIP_TAPS`)."""

    def __init__(self, encoder: Any, spec: EncoderSpec, info: DetectorInfo | None = None):
        from detectors.clip.preprocess import CropNormalize

        self.encoder, self.spec, self.tap = encoder, spec, spec.tap
        self.prep = CropNormalize(*encoder.normalization, resize="bicubic", size=int(encoder.image_size))
        if spec.tap == "embed":
            self.dim = encoder.tap_dim("embed")  # TapError without a projection
        elif spec.tap == "mean":
            self.dim = encoder.width
        else:
            if encoder.embed_dim is None:
                raise ProbeError(f"{spec.name}: tap 'heads' projects each head into the image embedding, which this encoder lacks")
            self.dim = len(encoder.blocks) * encoder.blocks[0].heads * encoder.embed_dim
        self.info = info or DetectorInfo(spec.key, spec.name, "CLIP", description=f"{spec.name} features, tap {spec.tap}")
        self.weights = spec.name
        self.fingerprint = f"{encoder.fingerprint}#tap={spec.tap}#prep={self.prep.describe()}"

    @property
    def layout(self) -> tuple[int, int, int] | None:
        """(L, H, E) of the 'heads' tap, else None."""
        if self.tap != "heads":
            return None
        return len(self.encoder.blocks), self.encoder.blocks[0].heads, int(self.encoder.embed_dim)

    def preprocess(self) -> Callable[[Any], Any]:
        return self.prep.pixels()

    def prepare(self, batch: Any) -> Any:
        return self.prep.normalize_pixels(batch)

    def to(self, device: str) -> "ClipFeatures":
        super().to(device)
        self.encoder.to(device)
        return self

    @property
    def normalization(self) -> Any:
        return self.encoder.normalization

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.features(batch)

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        if self.tap == "embed":
            return self.encoder.embed(batch, "embed").float()
        if self.tap == "mean":
            return mean_tokens(self.encoder, batch).float()
        return head_contributions(self.encoder, batch).flatten(1).float()


def load_clip_encoder(spec: EncoderSpec, with_text: bool = False) -> Any:
    """The `detectors.clip.encoders.Encoder` of a `clip:<key>` spec, found as the detectors find
    their backbones (`spec.backbone` = their `backbone=`)."""
    from detectors.clip.encoders import load_encoder

    return load_encoder(spec.key, spec.backbone, with_text=with_text)


def build_embedder(spec: EncoderSpec, device: str = "cpu") -> Embedder:
    """The Embedder of `spec` (a CLIP encoder is loaded vision-only: features need no text)."""
    if spec.is_clip:
        return ClipFeatures(load_clip_encoder(spec), spec).to(device)
    from bench import registry

    return PooledFeatures(registry.create_detector(spec.name, device=device), spec).to(device)
