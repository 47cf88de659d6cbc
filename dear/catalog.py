"""DEAR-c and DEAR-r as registered detectors (entry points `dear-c`, `dear-r`), described as data.

No torch here (see `detectors.catalog`); `dear.detectors.build` is imported when one is built.
Official weights: Hugging Face `k-aisi-anti-deepfake/dear-checkpoints`, `dear_c/model_best.pth`,
`dear_r/model_best.pth`.
"""
from __future__ import annotations

from bench.api import InputPolicy, WeightSpec
from bench.registry import DetectorSpec, detector_spec_of

HF_REPO = "k-aisi-anti-deepfake/dear-checkpoints"


def _spec(name: str, display: str, base: str, folder: str, alpha: float) -> DetectorSpec:
    weights = (
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
    return detector_spec_of(
        name, display, "CNN", "dear.detectors:build", weights=weights, default_weights="mini", input=InputPolicy(),
        tiny="dear.detectors:tiny",
        trained_as=base,  # the backbone is the base's: only the gate and the head changed
        description=f"DEAR on {base.capitalize()}: RAD-dissected layer4 channels, {int(alpha * 100)}% pruned at each end, "
                    f"head refit with inpainted images (ICML 2026).",
    )


dear_c = _spec("dear-c", "DEAR-c", "corvi", "dear_c", 0.2)
dear_r = _spec("dear-r", "DEAR-r", "rajan", "dear_r", 0.3)
