"""The CLIP and ViT detectors of DEAR's Table 1 as data: names, weight tags (the head files), the
backbone each reads, and each official preprocessing. No torch: `bench list` reads it.

The entry points of pyproject.toml name these specs; `detectors.clip.build` builds them.
"""
from __future__ import annotations

from bench.api import InputPolicy, WeightSpec
from bench.registry import detector_spec_of
from detectors.clip.backbones import HF_WEIGHT_FILES, OPEN_CLIP_FILES, Backbone

BUILD, TINY, REQUIRES = "detectors.clip.build:build", "detectors.clip.build:tiny", "detectors.clip.backbones:requirement"

# --------------------------------------------------------------------------- backbones

# timm's repo of OpenAI's weights listed only a 1.71 GB pytorch_model.bin (the whole CLIP in open_clip's
# format) when last seen; open_clip asks it for its own names first.
OPENAI_L14 = Backbone(
    "openai-vit-l-14", "OpenAI CLIP ViT-L/14", "open_clip", "ViT-L-14-quickgelu", "timm/vit_large_patch14_clip_224.openai",
    (*OPEN_CLIP_FILES, "pytorch_model.bin"), pretrained="openai")
OPENAI_L14_HF = Backbone(
    "openai-clip-vit-large-patch14", "OpenAI CLIP ViT-L/14 (transformers)", "transformers", "clip", "openai/clip-vit-large-patch14",
    HF_WEIGHT_FILES)
COMMONPOOL_L14 = Backbone(
    "laion-vit-l-14-commonpool-xl", "LAION CLIP ViT-L/14 CommonPool.XL s13B b90K", "open_clip", "ViT-L-14",
    "laion/CLIP-ViT-L-14-CommonPool.XL-s13B-b90K", OPEN_CLIP_FILES, pretrained="commonpool_xl_s13b_b90k")
CODE_VIT = Backbone("aimagelab-code", "CoDE ViT (aimagelab/CoDE)", "transformers", "vit", "aimagelab/CoDE", HF_WEIGHT_FILES)

BACKBONES = {b.key: b for b in (OPENAI_L14, OPENAI_L14_HF, COMMONPOOL_L14, CODE_VIT)}
# The backbone each detector reads by default; C2P-CLIP's checkpoint carries its own tuned encoder.
BACKBONE_OF: dict[str, Backbone] = {"ufd": OPENAI_L14, "clipdet": COMMONPOOL_L14, "rine": OPENAI_L14, "code": CODE_VIT}
LIBRARY_OF: dict[str, str] = {"c2p-clip": "transformers"}
# engine="transformers" runs UFD and RINE on the same OpenAI weights through transformers.
ALTERNATIVE_BACKBONE: dict[tuple[str, str], Backbone] = {("ufd", "transformers"): OPENAI_L14_HF, ("rine", "transformers"): OPENAI_L14_HF}

# --------------------------------------------------------------------------- preprocessing

CLIP_NORM, IMAGENET_NORM = "CLIP mean/std", "ImageNet mean/std"
CROP = "center-crop 224, no resize"  # torchvision's CenterCrop: a smaller side is zero-padded to 224
NATIVE_STEPS = {
    "ufd": f"{CROP}; {CLIP_NORM}",
    "clipdet": f"shorter side to 224 (bicubic), center-crop 224; {CLIP_NORM}",
    "rine": f"{CROP}; {CLIP_NORM}",
    "c2p-clip": f"shorter side to 224 (bilinear), center-crop 224; {CLIP_NORM}",
    "code": f"{CROP}; {IMAGENET_NORM}",
}


def _input(name: str) -> InputPolicy:
    return InputPolicy(size=(224, 224), steps=NATIVE_STEPS[name])


# --------------------------------------------------------------------------- detectors

_UFD = "github.com/WisconsinAIVision/UniversalFakeDetect"
_GRIP = "github.com/grip-unina/ClipBased-SyntheticImageDetection"
_RINE = "github.com/mever-team/rine"
_C2P = "github.com/chuangchuangtan/C2P-CLIP-DeepfakeDetection"
_BB = "; plus its backbone, see `bench list -v`"

ufd = detector_spec_of(
    "ufd", "UFD", "CLIP", BUILD, tiny=TINY, requires=REQUIRES, input=_input("ufd"),
    weights=(WeightSpec("official", "fc_weights.pth", where=f"Ojha et al. (CVPR 2023): pretrained_weights/fc_weights.pth in {_UFD}{_BB}."),),
    description="Linear(768, 1) on the projected CLS embedding of frozen OpenAI CLIP ViT-L/14 (Ojha et al., CVPR 2023).",
)

clipdet = detector_spec_of(
    "clipdet", "ClipDet", "CLIP", BUILD, tiny=TINY, requires=REQUIRES, input=_input("clipdet"),
    weights=(
        WeightSpec("official", "clipdet_latent10k_plus.pth",
                   where=f"Cozzolino et al. (CVPRW 2024): weights/clipdet_latent10k_plus/weights.pth (Git LFS; main.py's default "
                   f"model) in {_GRIP}, saved as clipdet_latent10k_plus.pth{_BB}."),
        WeightSpec("latent10k", "clipdet_latent10k.pth",
                   where=f"Cozzolino et al. (CVPRW 2024): weights/clipdet_latent10k/weights.pth (Git LFS) in {_GRIP}, "
                   f"saved as clipdet_latent10k.pth{_BB}."),
    ),
    description="Linear(1024, 1) on the L2-normalised pre-projection CLS of frozen LAION ViT-L/14 CommonPool (Cozzolino et al., CVPRW 2024).",
)

# RINE's four released settings; "official" is the 4-class ProGAN model that demo/demo.py loads.
rine = detector_spec_of(
    "rine", "RINE", "CLIP", BUILD, tiny=TINY, requires=REQUIRES, input=_input("rine"),
    weights=tuple(
        WeightSpec(tag, f"model_{setting}_trainable.pth", where=f"Koutlis & Papadopoulos (ECCV 2024): ckpt/model_{setting}_trainable.pth "
                   f"(Git LFS) in {_RINE} ({what}){_BB}.")
        for tag, setting, what in (("official", "4class", "ProGAN, 4 classes; the model of demo/demo.py"),
                                   ("1class", "1class", "ProGAN, 1 class"), ("2class", "2class", "ProGAN, 2 classes"),
                                   ("ldm", "ldm", "trained on latent-diffusion images"))
    ),
    description="CLS tokens of all 24 intermediate blocks of frozen OpenAI CLIP ViT-L/14, weighted per block (TIE) under an MLP "
                "(Koutlis & Papadopoulos, ECCV 2024).",
)

c2p_clip = detector_spec_of(
    "c2p-clip", "C2P-CLIP", "CLIP", BUILD, tiny=TINY, requires=REQUIRES, input=_input("c2p-clip"),
    weights=(WeightSpec("official", "C2P_CLIP_release_20240901.zip",
                        where=f"Tan et al. (AAAI 2025): https://www.now61.com/f/95OefW/C2P_CLIP_release_20240901.zip, the --model_path "
                        f"default of inference.py in {_C2P}; keep the zip (or pass the .pth inside it with path=). It holds the "
                        "whole tuned encoder: no separate backbone."),),
    description="Linear(768, 1) on the L2-normalised projected CLS of its own tuned CLIP ViT-L/14 (Tan et al., AAAI 2025).",
)

# CoDE's three scikit-learn heads; "official" is the logistic regression of the README's example.
CODE_TAGS = {"linear": "official", "svm": "svm", "knn": "knn"}  # converted kind -> weight tag
_CODE_SOURCES = {"linear": "linear_tot_classifier_epoch-32.sav", "svm": "ocsvm_kernel_poly_gamma_auto_nu_0_1_crop.joblib",
                 "knn": "knn_tot_classifier_epoch-32.sav"}
code = detector_spec_of(
    "code", "CoDE", "ViT", BUILD, tiny=TINY, requires=REQUIRES, input=_input("code"),
    weights=tuple(
        WeightSpec(tag, f"code-{kind}.safetensors",
                   where=f"Baraldi et al. (ECCV 2024): convert sklearn/{_CODE_SOURCES[kind]} of huggingface.co/aimagelab/CoDE once with "
                   f"`bench weights convert-code {_CODE_SOURCES[kind]}` (it unpickles that file: only one you trust){_BB}.")
        for kind, tag in CODE_TAGS.items()
    ),
    description="Logistic regression (or one-class SVM, 1-NN) on the final CLS of the contrastively trained ViT of "
                "aimagelab/CoDE (Baraldi et al., ECCV 2024).",
)
