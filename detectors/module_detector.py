"""A network that maps a preprocessed batch straight to logits, behind the Detector contract.

SAFE, FerretNet, LaDeDa, DRCT and AIDE all have this shape: a fixed preprocessing (a small
picklable callable) and a module whose output is one logit per image. Their two-class heads are
turned into one logit by `two_class_logit`: softmax(z)[:, 1] = sigmoid(z1 - z0), so z1 - z0 is
the logit of the official "probability of fake" and its 0.5 threshold is logit 0.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from bench.api import Detector, DetectorInfo


def two_class_logit(z: torch.Tensor) -> torch.Tensor:
    """(B, 2) logits [real, fake] -> (B,) logit of P(fake) = softmax(z)[:, 1]."""
    return z[:, 1] - z[:, 0]


class ModuleDetector(Detector):
    """`model(batch) -> (B,)` logits with the preprocessing `transform`; fingerprint = the
    weights' digest (plus a suffix for any option that changes scores)."""

    def __init__(self, model: nn.Module, info: DetectorInfo, transform: Callable[[Any], torch.Tensor], weights: str = "",
                 fingerprint: str = ""):
        self.model = model.eval()
        self.info, self.transform = info, transform
        self.weights, self.fingerprint = weights, fingerprint

    def preprocess(self) -> Callable[[Any], torch.Tensor]:
        return self.transform

    def to(self, device: str) -> "ModuleDetector":
        super().to(device)
        self.model.to(device)
        return self

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch.to(self.device))
