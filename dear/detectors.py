"""DEAR-c and DEAR-r as registered detectors (entry points `dear-c`, `dear-r`).

A DEAR detector is the base ResNet-50 nodown with a fixed 0/1 channel gate on layer4 and a
refit head; at test time it is the base detector's pipeline (ToTensor + ImageNet
normalisation at native resolution, logit > 0 = fake; dahyedahye/dear `pipelines/utils.py`),
so `detectors.resnet.ResNetDetector` serves it unchanged. Official weights:
Hugging Face `k-aisi-anti-deepfake/dear-checkpoints`, `dear_c/model_best.pth`, `dear_r/model_best.pth`.
"""
from __future__ import annotations

import os

from bench.api import InputPolicy, WeightSpec
from bench.registry import DetectorSpec, register
from dear.checkpoint import load_dear
from detectors.resnet import ResNetDetector, resolve_weights

HF_REPO = "k-aisi-anti-deepfake/dear-checkpoints"


def _weights(name: str, folder: str, base: str, alpha: float) -> tuple[WeightSpec, ...]:
    return (
        WeightSpec(
            "official", "model_best.pth", hf_repo=HF_REPO, hf_filename=f"{folder}/model_best.pth",
            where=f"DEAR (ICML 2026) official checkpoint: https://huggingface.co/{HF_REPO} file {folder}/model_best.pth.",
        ),
        WeightSpec(
            "mini", f"{name}.mini.pth", bundled=f"dear:weights/{name}.mini.pth",
            where=f"Made by dear.pipeline.build_mini('{name}') (DEAR on {base}.mini, alpha {alpha}) and bundled when its refit "
                  f"beats the zero head (DEAR-c's does not on AIGI-mini; see the README).",
        ),
    )


SPECS: dict[str, DetectorSpec] = {}


def _factory(name: str):
    def make(weights: str | None = None, *, path: str | os.PathLike | None = None, tile: bool = True, device: str = "cpu") -> ResNetDetector:
        """Build `name.weights`, e.g. create_detector("dear-c.official", path="model_best.pth")."""
        spec = SPECS[name]
        tag, file, digest = resolve_weights(spec, weights, path)
        return ResNetDetector(load_dear(file), spec.info, f"{name}.{tag}", digest, tile=tile).to(device)

    return make


def _spec(name: str, display: str, base: str, folder: str, alpha: float) -> DetectorSpec:
    SPECS[name] = register(
        name, display, "CNN", weights=_weights(name, folder, base, alpha), default_weights="mini", calibrated=True,
        input=InputPolicy(),
        description=f"DEAR on {base.capitalize()}: RAD-dissected layer4 channels, {int(alpha * 100)}% pruned at each end, "
        f"head refit with inpainted images (ICML 2026).",
    )(_factory(name))
    return SPECS[name]


dear_c = _spec("dear-c", "DEAR-c", "corvi", "dear_c", 0.2)
dear_r = _spec("dear-r", "DEAR-r", "rajan", "dear_r", 0.3)
