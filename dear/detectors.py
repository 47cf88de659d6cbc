"""The builder of DEAR-c and DEAR-r (registered in `dear.catalog`).

A DEAR detector is the base ResNet-50 nodown with a fixed 0/1 channel gate on layer4 and a
refit head; at test time it is the base detector's pipeline (ToTensor + ImageNet
normalisation at native resolution, logit > 0 = fake; dahyedahye/dear `pipelines/utils.py`),
so `detectors.resnet.ResNetDetector` serves it unchanged.
"""
from __future__ import annotations

import os
from typing import Any

from bench.weights import resolve_tag
from dear.checkpoint import load_dear
from detectors.resnet import ResNetDetector


def build(spec: Any, weights: str | None = None, *, path: str | os.PathLike | None = None, tile: bool = True,
          device: str = "cpu") -> ResNetDetector:
    """`create_detector("dear-c.official", path="model_best.pth")`; `tile` as for the ResNets."""
    tag, file, digest = resolve_tag(spec, weights, path)
    return ResNetDetector(load_dear(file), spec.info, f"{spec.name}.{tag}", digest, tile=tile).to(device)


def tiny(spec: Any, *, seed: int = 0, device: str = "cpu") -> ResNetDetector:
    """DEAR's architecture with random weights: the mini res50nodown, a random head and a gate
    keeping every other channel. For the contract tests, where no DEAR-c weights exist offline."""
    import torch

    from detectors.resnet import build_res50nodown

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_res50nodown("mini").eval()
        torch.nn.init.normal_(model.head.weight, std=0.1)
    model.gate.set_((torch.arange(model.num_features) % 2 == 0).float())
    return ResNetDetector(model, spec.info, f"{spec.name}.tiny", f"tiny-random-seed{seed}").to(device)
