"""SAFE, AIDE, FerretNet, LaDeDa and DRCT, the remaining CNN and ViT rows of DEAR's Table 1,
described as data (same rules as `detectors.catalog`: no torch here, builders imported lazily).

Families: SAFE, FerretNet, LaDeDa and DRCT (ConvNeXt-B) are CNNs. AIDE is registered as "ViT":
its issue names these five as the CNN and ViT rows of DEAR's Table 1, and AIDE is the one left
once the four CNNs are placed (not checked against the paper, which could not be read here). The
DRCT variant on CLIP ViT-L/14 is registered as "CLIP" (a frozen CLIP encoder under trained layers,
like UFD); which DRCT variant DEAR's table uses could not be checked either.
"""
from __future__ import annotations

from bench.api import InputPolicy, WeightSpec
from bench.registry import detector_spec_of
from detectors.catalog import mini_weights

_FER = "github.com/xigua7105/FerretNet"

ferretnet = detector_spec_of(
    "ferretnet", "FerretNet", "CNN", "detectors.ferretnet:build",
    weights=(
        WeightSpec("official", "ferretnet-b-median-3.pth",
                   where=f"Liang et al. (NeurIPS 2025) FerretNet-B trained on ProGAN 4-class: checkpoints/4cls_ckpt/"
                   f"ferretnet-b-median-3.pth in {_FER} (also on the Baidu link of its README); keep the name."),
        WeightSpec("official-s", "ferretnet-s-median-3.pth",
                   where=f"FerretNet-S (ProGAN 4-class): checkpoints/4cls_ckpt/ferretnet-s-median-3.pth in {_FER}; keep the name."),
        mini_weights("ferretnet"),
    ),
    default_weights="mini", input=InputPolicy(size=(256, 256)), trained_as="ferretnet", tiny="detectors.ferretnet:tiny",
    description="Depthwise-separable CNN on x minus the masked 3x3 median of x (local pixel dependencies); "
                "centre crop 256, CLIP normalisation (Liang et al., NeurIPS 2025).",
)

_LDD = "github.com/barcavia/RealTime-DeepfakeDetection-in-the-RealWorld"
_LDD_DRIVE = "https://drive.google.com/drive/folders/1KxNdnPRJJTuqxmzBPiGsg43tXzO8AN2d"

ladeda = detector_spec_of(
    "ladeda", "LaDeDa", "CNN", "detectors.ladeda:build",
    weights=(
        WeightSpec("official", "WildRF_LaDeDa.pth",
                   where=f"Cavia et al. (2024) LaDeDa9 trained on WildRF: the Google Drive folder linked from weights/LaDeDa/"
                   f"download_weights.txt of {_LDD} ({_LDD_DRIVE}); test_config.py loads it as WildRF_LaDeDa.pth."),
        WeightSpec("forensynth", "ForenSynth_LaDeDa.pth",
                   where=f"LaDeDa9 trained on ForenSynth (ProGAN), from the same Google Drive folder ({_LDD_DRIVE}); the README "
                   "lists a WildRF and a ForenSynth model, this file name is inferred from the Tiny-LaDeDa files of the "
                   "repository: rename the file to it."),
        mini_weights("ladeda"),
    ),
    default_weights="mini", input=InputPolicy(size=(256, 256)), trained_as="ladeda", tiny="detectors.ladeda:tiny",
    description="BagNet-like ResNet-50 scoring 9x9 patches of the NPR residual, patch logits averaged; "
                "resize 256x256, ImageNet normalisation (Cavia et al. 2024, WildRF).",
)

safe = detector_spec_of(
    "safe", "SAFE", "CNN", "detectors.safe:build",
    weights=(WeightSpec("official", "checkpoint-best.pth",
                        where="Li et al. (KDD 2025) SAFE trained on ProGAN 4-class: checkpoint/checkpoint-best.pth in "
                        "github.com/Ouxiang-Li/SAFE (its README); keep the name."),),
    default_weights="official", input=InputPolicy(size=(256, 256)), trained_as="safe", tiny="detectors.safe:tiny",
    description="Truncated ResNet-50 on the diagonal bior1.3 wavelet band of a 256 centre crop, no resize, "
                "no normalisation (Li et al., KDD 2025).",
)

_DRCT = ("the `pretrained.zip` of https://modelscope.cn/datasets/BokingChen/DRCT-2M/files (README of "
         "github.com/beibuwandeluori/DRCT)")

drct = detector_spec_of(
    "drct", "DRCT", "CNN", "detectors.drct:build",
    weights=(
        WeightSpec("official", "14_acc0.9996.pth",
                   where=f"Chen et al. (ICML 2024) DRCT ConvNeXt-B trained on DRCT-2M with SDv1.4 reconstructions: "
                   f"DRCT-2M/sdv14/convnext_base_in22k_224_drct_amp_crop/14_acc0.9996.pth in {_DRCT}."),
        WeightSpec("sdv2", "16_acc0.9993.pth",
                   where=f"DRCT ConvNeXt-B, SDv2 reconstructions: DRCT-2M/sdv2/convnext_base_in22k_224_drct_amp_crop/"
                   f"16_acc0.9993.pth in {_DRCT}."),
        WeightSpec("genimage", "last_acc0.9991.pth",
                   where=f"DRCT ConvNeXt-B trained on GenImage (SDv1.4): GenImage/sdv14/convnext_base_in22k_224_drct_amp_crop/"
                   f"last_acc0.9991.pth in {_DRCT}."),
    ),
    default_weights="official", input=InputPolicy(size=(224, 224)), trained_as="drct", tiny="detectors.drct:tiny",
    description="ConvNeXt-B trained with diffusion-reconstruction contrastive learning; 224 centre crop "
                "(zero padding), ImageNet normalisation (Chen et al., ICML 2024).",
)

drct_clip = detector_spec_of(
    "drct-clip", "DRCT-CLIP", "CLIP", "detectors.drct:build",
    weights=(
        WeightSpec("official", "13_acc0.9664.pth",
                   where=f"DRCT on a frozen CLIP ViT-L/14 ('UnivFD' in its README), DRCT-2M with SDv1.4 reconstructions: "
                   f"DRCT-2M/sdv14/clip-ViT-L-14_224_drct_amp_crop/13_acc0.9664.pth in {_DRCT}."),
        WeightSpec("sdv2", "last_acc0.9112.pth",
                   where=f"DRCT CLIP ViT-L/14, SDv2 reconstructions: DRCT-2M/sdv2/clip-ViT-L-14_224_drct_amp_crop/"
                   f"last_acc0.9112.pth in {_DRCT}."),
        WeightSpec("genimage", "2_acc0.9558.pth",
                   where=f"DRCT CLIP ViT-L/14 trained on GenImage (SDv1.4): GenImage/sdv14/clip-ViT-L-14_224_drct_amp_crop/"
                   f"2_acc0.9558.pth in {_DRCT}."),
    ),
    default_weights="official", input=InputPolicy(size=(224, 224)), trained_as="drct", tiny="detectors.drct:tiny_clip_detector",
    description="Frozen OpenAI CLIP ViT-L/14 with two trained linear layers, diffusion-reconstruction contrastive "
                "training; 224 centre crop, ImageNet normalisation (Chen et al., ICML 2024).",
)

aide = detector_spec_of(
    "aide", "AIDE", "ViT", "detectors.aide:build",
    weights=(WeightSpec("official", "progan_train.pth",
                        where="Yan et al. (ICLR 2025) AIDE trained on ProGAN: the Model Zoo Google Drive folder of "
                        "github.com/shilinyan99/AIDE (https://drive.google.com/drive/folders/1qx76UFvDpgCxaPLBCmsA2WY-SSzeJrd4); "
                        "save the ProGAN checkpoint as progan_train.pth (the name its README uses)."),),
    default_weights="official", input=InputPolicy(size=(1280, 256)), trained_as="aide", tiny="detectors.aide:tiny",
    description="DCT-selected lowest/highest-frequency 32x32 patches through SRM filters and two ResNet-50s, fused "
                "with a frozen OpenCLIP ConvNeXt-XXL view; five 256x256 views stacked as 1280x256 (Yan et al., ICLR 2025).",
)
