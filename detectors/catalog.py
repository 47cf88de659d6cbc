"""The built-in detectors of `detectors/`, described as data: names, display names, families,
weight tags and where each official file is published, input policies, builders.

This module imports no torch: `bench list`, name checks and the default detector selection read
it without loading a model. The entry points of pyproject.toml (group `bench.detectors`) name
these specs; each builder ("module:function") is imported only when a detector is built.
"""
from __future__ import annotations

from bench.api import InputPolicy, WeightSpec
from bench.registry import DetectorSpec, detector_spec_of

_DM = "github.com/grip-unina/DMimageDetection"
_AF = "github.com/AniSundar18/AlignedForensics"


def mini_weights(name: str, recipe: str = "detectors.mini.train_mini") -> WeightSpec:
    """The bundled AIGI-mini weights of a detector of this package."""
    return WeightSpec(
        "mini",
        f"{name}.mini.safetensors",
        bundled=f"detectors:weights/{name}.mini.safetensors",
        where=f"Bundled with aigi-bench (trained on AIGI-mini only); retrain with `bench train {name}` ({recipe}).",
    )


DEAR_CHECKPOINTS = "k-aisi-anti-deepfake/dear-checkpoints"


def dear_base_weights(name: str) -> WeightSpec:
    """DEAR's own release of a base detector (dahyedahye/dear README, "Checkpoints":
    checkpoints/{corvi,rajan}/model_best.pth, saved by dear/detector/corvi_detector.py as
    {"model": state_dict} of the GRIP res50nodown), the bases its DEAR-c/-r were refit from."""
    return WeightSpec(
        "dear", "model_best.pth", hf_repo=DEAR_CHECKPOINTS, hf_filename=f"{name}/model_best.pth",
        where=f"DEAR's base {name.capitalize()} (ICML 2026 release): https://huggingface.co/{DEAR_CHECKPOINTS} file "
              f"{name}/model_best.pth; `bench dear run --base {name}.dear` starts from it.",
    )


def _resnet(name: str, display: str, trained_as: str, official: WeightSpec, description: str,
            extra: tuple[WeightSpec, ...] = ()) -> DetectorSpec:
    return detector_spec_of(name, display, "CNN", "detectors.resnet:build", weights=(official, *extra, mini_weights(name)),
                            default_weights="mini", input=InputPolicy(), description=description, trained_as=trained_as)


corvi = _resnet("corvi", "Corvi", "corvi", WeightSpec(
    "official", "model_epoch_best.pth",
    where=f"Corvi et al. (ICASSP 2023), latent-diffusion model: download the weights zip linked in the README of {_DM} "
    "(https://drive.google.com/file/d/1sAoAuOGCWS4dAMBhDkRHgBf4SgBgvkVf) and use weights/Grag2021_latent/model_epoch_best.pth.",
), "ResNet-50 nodown trained on real vs unpaired latent-diffusion fakes (Corvi et al., ICASSP 2023).",
   (dear_base_weights("corvi"),))

rajan = _resnet("rajan", "Rajan", "rajan", WeightSpec(
    "official", "weights.pth",
    where=f"Rajan et al. (ICLR 2025) 'Ours-Sync' from the README of {_AF} "
    "(https://drive.google.com/file/d/1rn0hgAjTXeY7QTpCnx9lMGNPfrwvO1lO); save it as weights.pth.",
), "ResNet-50 nodown trained on reals vs their LDM-autoencoder reconstructions, synced batches (Rajan et al., ICLR 2025).",
   (dear_base_weights("rajan"),))

corvi_plus = _resnet("corvi-plus", "Corvi+", "corvi", WeightSpec(
    "official", "corvi-plus.pth",
    where=f"Stay-Positive (ICML 2025) 'Corvi +' from the README of {_AF} "
    "(https://drive.google.com/file/d/16Rp0G0Onbdmpm3xT2ZxTV6P13youB-kp); save it as corvi-plus.pth.",
), "Corvi with its linear head refit under the Stay-Positive non-negativity constraint (ICML 2025).")

rajan_plus = _resnet("rajan-plus", "Rajan+", "rajan", WeightSpec(
    "official", "rajan-plus.pth",
    where=f"Stay-Positive (ICML 2025) 'Rajan/Ours +' from the README of {_AF} "
    "(https://drive.google.com/file/d/14k9qakoIh36Z6U-fVHHjhvs667aywzfz); save it as rajan-plus.pth.",
), "Rajan with its linear head refit under the Stay-Positive non-negativity constraint (ICML 2025).")

npr = detector_spec_of(
    "npr", "NPR", "CNN", "detectors.npr:build",
    weights=(WeightSpec("official", "NPR.pth", where="Tan et al. (CVPR 2024): NPR.pth is committed in the root of "
                        "github.com/chuangchuangtan/NPR-DeepfakeDetection."), mini_weights("npr")),
    default_weights="mini", input=InputPolicy(size=(256, 256)), trained_as="npr",
    description="Truncated ResNet-50 on neighbouring-pixel residuals x - up(down(x)), input resized to 256x256 (Tan et al., CVPR 2024).",
)
