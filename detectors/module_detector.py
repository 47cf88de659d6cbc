"""A network that maps a preprocessed batch straight to logits, behind the Detector contract,
and the checkpoint reading, building and tiny-model steps its families share.

SAFE, FerretNet, LaDeDa, DRCT and AIDE all have this shape: a fixed preprocessing (a small
picklable callable) and a module whose output is one logit per image. Their two-class heads are
turned into one logit by `two_class_logit`: softmax(z)[:, 1] = sigmoid(z1 - z0), so z1 - z0 is
the logit of the official "probability of fake" and its 0.5 threshold is logit 0.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from bench.api import Detector, DetectorInfo
from bench.weights import load_state, resolve_tag


def two_class_logit(z: torch.Tensor) -> torch.Tensor:
    """(B, 2) logits [real, fake] -> (B,) logit of P(fake) = softmax(z)[:, 1]."""
    return z[:, 1] - z[:, 0]


class ModuleDetector(Detector):
    """`model(batch) -> (B,)` logits with the preprocessing `transform`; fingerprint = the
    weights' digest (plus a suffix for any option that changes scores).

    A transform that can stop at 8-bit pixels (`pixels()` and `normalize_pixels(batch)`, as
    `CenterCropNormalize` and `ResizeNormalize`) ships those from the workers and is finished on
    the device in `prepare`, with the same arithmetic, so the numbers are identical."""

    def __init__(self, model: nn.Module, info: DetectorInfo, transform: Callable[[Any], torch.Tensor], weights: str = "",
                 fingerprint: str = ""):
        self.model = model.eval()
        self.info, self.transform = info, transform
        self.weights, self.fingerprint = weights, fingerprint

    def preprocess(self) -> Callable[[Any], torch.Tensor]:
        pixels = getattr(self.transform, "pixels", None)
        return pixels() if pixels is not None else self.transform

    def prepare(self, batch: torch.Tensor) -> torch.Tensor:
        finish = getattr(self.transform, "normalize_pixels", None)
        return finish(batch) if finish is not None else batch

    def to(self, device: str) -> "ModuleDetector":
        super().to(device)
        self.model.to(device)
        return self

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch.to(self.device))


def official_state(path_or_state: str | os.PathLike | Mapping[str, Any], marker: str, where: str | None = None,
                   data_types: tuple[type, ...] = ()) -> tuple[dict[str, torch.Tensor], str]:
    """(state dict, name for errors) from a checkpoint file or an already loaded object, unwrapped
    the way the official loaders do (`detectors.resnet.unwrap_checkpoint`; `marker` is a key a raw
    state dict of the network holds). `data_types` go to `bench.weights.load_state`."""
    from detectors.checkpoint import unwrap_checkpoint

    if isinstance(path_or_state, Mapping):
        where, obj = where or "checkpoint", path_or_state
    else:
        where, obj = where or str(path_or_state), load_state(path_or_state, data_types=data_types)
    return unwrap_checkpoint(obj, where, marker), where


def build_module_detector(spec: Any, weights: str | None, path: str | os.PathLike | None, device: str,
                          load: Callable[[Path], nn.Module], transform: Callable[[Any], torch.Tensor]) -> ModuleDetector:
    """What each family's `build` does: resolve the tag, `load` the file, wrap it; the
    fingerprint is the file's sha256."""
    tag, file, digest = resolve_tag(spec, weights, path)
    return ModuleDetector(load(file), spec.info, transform, f"{spec.name}.{tag}", digest).to(device)


def tiny_module_detector(spec: Any, make: Callable[[], nn.Module], transform: Callable[[Any], torch.Tensor], seed: int = 0,
                         device: str = "cpu") -> ModuleDetector:
    """A random-weight instance for the contract tests (seeded, the caller's RNG untouched);
    never for a results table."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = make().eval()
    return ModuleDetector(model, spec.info, transform, f"{spec.name}.tiny", f"tiny-random-seed{seed}").to(device)
