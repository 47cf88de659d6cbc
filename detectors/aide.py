"""AIDE (Yan et al., ICLR 2025, "A Sanity Check for AI-generated Image Detection", the Chameleon
paper): DCT-scored patches through SRM filters and two ResNet-50s, fused with a frozen OpenCLIP
ConvNeXt-XXL view of the whole image.

Facts from shilinyan99/AIDE @6725b710d5c437ab2f59792908ce0377dfc907de: models/AIDE.py
(`HPF`, `ResNet`, `Mlp`, `AIDE_Model`), models/srm_filter_kernel.py, data/dct.py
(`DCT_base_Rec_Module`, `Filter`, `DCT_mat`), data/datasets.py (`TestDataset`), engine_finetune.py
(`evaluate`), utils.py (`save_model`, `auto_load_model`), docs/install.md, README.md (Model Zoo):
- test input: the whole image at native resolution (PIL RGB, ToTensor), cut into 32x32 patches
  at stride 16; each patch gets a 2-D DCT (orthonormal DCT-II matrix D: D p D^T) and a grade
  sum_k 2^k * sum_{c, i+j in band k} log(|DCT| + 1) / |band k|, for 6 bands of i + j in
  [64k/6, 64(k+1)/6] (bounds inclusive); `torch.sort` ascending gives the two lowest-graded
  patches (minmin, minmin1) and the two highest (maxmax, maxmax1); each is returned through the
  all-pass band filter (D^T (D p D^T) D, the patch itself up to rounding);
- the four patches and the whole image are resized to 256x256 (torchvision tensor Resize,
  bilinear; the tested environment, torchvision 0.15, does not antialias tensors) and
  ImageNet-normalised, stacked as [minmin, maxmax, minmin1, maxmax1, image];
- `hpf.hpf`: Conv2d(3, 30, 5, padding 2, no bias) holding 30 fixed SRM filters (in the state
  dict); `model_min` / `model_max`: torchvision ResNet-50s with a 30-channel 7x7 stem whose
  2048-d pooled features are used (their `fc` Linear(2048, 1000) is kept but unused); model_min
  sees minmin and minmin1, model_max maxmax and maxmax1, and the four features are averaged;
- `openclip_convnext_xxl`: open_clip "convnext_xxlarge" `.visual.trunk` (timm convnext_xxlarge,
  LayerNorm eps 1e-5) with `head.global_pool` and `head.flatten` replaced by identities, so it
  returns the normed 3072x8x8 map of the whole image, re-normalised from ImageNet to CLIP
  statistics inside forward; frozen, average-pooled, then `convnext_proj` = [Linear(3072, 256)];
- `fc` = Mlp(fc1 Linear(2304, 1024), GELU, fc2 Linear(1024, 2)) on [proj (256), patches (2048)];
  softmax[:, 1] = P(fake), threshold 0.5;
- checkpoint `{'model', 'optimizer', 'epoch', 'scaler', 'args': argparse.Namespace}` loaded
  strictly from 'model' (1025 keys, 897.8 M parameters, 843 M of them the ConvNeXt-XXL, so no
  separate open_clip download is needed); the Namespace is let through the weights-only loader.
The harness batches one tensor per image: `AIDEPreprocess` returns the five 3x256x256 views
stacked along the height (3 x 1280 x 256), and the model splits them again.
"""
from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from detectors.convnext import build_convnext, convnext_shape
from detectors.module_detector import ModuleDetector, build_module_detector, official_state, tiny_module_detector, two_class_logit
from detectors.preprocess import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, normalize, to_tensor
from detectors.checkpoint import load_strict
from detectors.resnet import ResNetArch, timm_resnet

VIEWS = 5  # minmin, maxmax, minmin1, maxmax1, whole image
SIDE = 256
INPUT_SIZE = (VIEWS * SIDE, SIDE)


def dct_matrix(n: int) -> torch.Tensor:
    """The orthonormal DCT-II matrix D (rows = frequencies), as data/dct.py `DCT_mat` builds it."""
    i = torch.arange(n, dtype=torch.float64).view(-1, 1)
    j = torch.arange(n, dtype=torch.float64).view(1, -1)
    scale = torch.where(i == 0, math.sqrt(1.0 / n), math.sqrt(2.0 / n))
    return (scale * torch.cos((j + 0.5) * math.pi * i / n)).float()


def band_masks(window: int, grades: int) -> torch.Tensor:
    """(grades, window, window) 0/1 masks of i + j in [2w k / g, 2w (k + 1) / g], both ends included."""
    s = torch.arange(window).view(-1, 1) + torch.arange(window).view(1, -1)
    bounds = [(window * 2.0 / grades * k, window * 2.0 / grades * (k + 1)) for k in range(grades)]
    return torch.stack([((s >= lo) & (s <= hi)).float() for lo, hi in bounds])


@dataclass(frozen=True)
class AIDEPreprocess:
    """PIL image -> (3, 5 * 256, 256): the four DCT-selected 32x32 patches and the whole image,
    each resized to 256x256 and ImageNet-normalised, stacked along the height."""

    window: int = 32
    stride: int = 16
    grades: int = 6
    side: int = SIDE

    def patches(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[minmin, maxmax, minmin1, maxmax1] (each (3, w, w)) of a (3, H, W) image in [0, 1]."""
        w = self.window
        if min(x.shape[-2:]) < w:
            raise ValueError(f"AIDE needs images of at least {w}x{w} pixels, got {tuple(x.shape[-2:])}")
        tiles = x.unfold(1, w, self.stride).unfold(2, w, self.stride)  # (3, nh, nw, w, w)
        tiles = tiles.permute(1, 2, 0, 3, 4).reshape(-1, x.shape[0], w, w)  # row-major positions
        d = dct_matrix(w)
        spectrum = torch.log(torch.abs(d @ tiles @ d.T) + 1)
        grade = torch.zeros(tiles.shape[0])
        for k, mask in enumerate(band_masks(w, self.grades)):
            grade += 2.0**k * torch.sum(spectrum * mask / mask.sum(), dim=(1, 2, 3))
        order = torch.sort(grade).indices
        low, high = order, torch.flip(order, dims=[0])
        picks = [low[0], high[0], low[min(1, len(low) - 1)], high[min(1, len(high) - 1)]]
        return [d.T @ (d @ tiles[i] @ d.T) @ d for i in picks]  # the all-pass band "reconstruction"

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        resized = F.interpolate(x[None], size=(self.side, self.side), mode="bilinear", align_corners=False, antialias=False)[0]
        return normalize(resized, IMAGENET_MEAN, IMAGENET_STD)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        x = to_tensor(image)
        return torch.cat([self.resize(v) for v in (*self.patches(x), x)], dim=1)


@dataclass(frozen=True)
class AIDEArch:
    resnet: ResNetArch = ResNetArch((3, 4, 6, 3), (64, 128, 256, 512), 64)
    resnet_classes: int = 1000  # the unused ImageNet fc the official ResNets keep
    convnext_depths: tuple[int, ...] = (3, 4, 30, 3)
    convnext_dims: tuple[int, ...] = (384, 768, 1536, 3072)
    proj: int = 256
    hidden: int = 1024


def imagenet_to_clip() -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) taking an ImageNet-normalised image to CLIP's normalisation, the way
    AIDE_Model.forward computes them: x * (std_in / std_clip) + (mean_in - mean_clip) / std_clip."""
    clip_mean, clip_std = torch.tensor(CLIP_MEAN).view(3, 1, 1), torch.tensor(CLIP_STD).view(3, 1, 1)
    in_mean, in_std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return in_std / clip_std, (in_mean - clip_mean) / clip_std


TINY_ARCH = AIDEArch(ResNetArch((1, 1, 1, 1), (8, 16, 32, 64), 8), 10, (1, 1, 1, 1), (8, 16, 32, 64), 16, 32)


class AIDEModel(nn.Module):
    """`AIDE_Model` with its parameter names; input (B, 3, 5 * 256, 256) from AIDEPreprocess."""

    def __init__(self, arch: AIDEArch = AIDEArch()):
        super().__init__()
        self.arch = arch
        self.hpf = nn.Module()
        self.hpf.hpf = nn.Conv2d(3, 30, 5, padding=2, bias=False)
        self.hpf.hpf.weight.requires_grad_(False)
        self.model_min = timm_resnet(arch.resnet, in_chans=30, num_classes=arch.resnet_classes)
        self.model_max = timm_resnet(arch.resnet, in_chans=30, num_classes=arch.resnet_classes)
        features = arch.resnet.num_features
        self.fc = nn.Sequential()
        self.fc.add_module("fc1", nn.Linear(arch.proj + features, arch.hidden))
        self.fc.add_module("act", nn.GELU())
        self.fc.add_module("fc2", nn.Linear(arch.hidden, 2))
        trunk = build_convnext(arch.convnext_depths, arch.convnext_dims, num_classes=0, norm_eps=1e-5)
        trunk.head.global_pool, trunk.head.flatten = nn.Identity(), nn.Identity()
        self.openclip_convnext_xxl = trunk.requires_grad_(False)
        self.convnext_proj = nn.Sequential(nn.Linear(arch.convnext_dims[-1], arch.proj))
        scale, shift = imagenet_to_clip()  # not in the state dict
        self.register_buffer("to_clip_scale", scale, persistent=False)
        self.register_buffer("to_clip_shift", shift, persistent=False)

    def patch_features(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return net.forward_features(self.hpf.hpf(x)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        views = x.reshape(b, 3, VIEWS, x.shape[-2] // VIEWS, x.shape[-1]).transpose(1, 2)
        with torch.no_grad():
            semantic = self.openclip_convnext_xxl(views[:, 4] * self.to_clip_scale + self.to_clip_shift)
            semantic = self.convnext_proj(semantic.mean(dim=(2, 3)))
        texture = (self.patch_features(self.model_min, views[:, 0]) + self.patch_features(self.model_max, views[:, 1])
                   + self.patch_features(self.model_min, views[:, 2]) + self.patch_features(self.model_max, views[:, 3])) / 4
        return two_class_logit(self.fc(torch.cat([semantic, texture], dim=1)))


def aide_arch_of(state: Mapping[str, torch.Tensor]) -> AIDEArch:
    from detectors.resnet import arch_of

    resnet = arch_of(state, "model_min.")
    depths, dims = convnext_shape(state, "openclip_convnext_xxl.")
    return AIDEArch(resnet, int(state["model_min.fc.weight"].shape[0]), depths, dims,
                    int(state["convnext_proj.0.weight"].shape[0]), int(state["fc.fc1.weight"].shape[0]))


def load_aide_checkpoint(path_or_state: str | os.PathLike | Mapping[str, Any], where: str | None = None) -> AIDEModel:
    """An AIDEModel (eval mode) from the official training checkpoint (only its 'args' Namespace
    is let through the weights-only unpickler) or a raw state dict; strictly."""
    state, where = official_state(path_or_state, "hpf.hpf.weight", where, data_types=(argparse.Namespace,))
    model = load_strict(state, where, "an AIDE", aide_arch_of, AIDEModel)
    model.to_clip_scale, model.to_clip_shift = imagenet_to_clip()  # built on the meta device above
    return model


def build(spec: Any, weights: str | None = None, *, path: str | os.PathLike | None = None, device: str = "cpu") -> ModuleDetector:
    """The builder of `aide` (about 3.6 GB of float32 weights)."""
    return build_module_detector(spec, weights, path, device, load_aide_checkpoint, AIDEPreprocess())


def tiny(spec: Any, *, seed: int = 0, device: str = "cpu") -> ModuleDetector:
    """AIDE's structure at toy widths (ResNets and ConvNeXt of width 8-64), random weights."""
    return tiny_module_detector(spec, lambda: AIDEModel(TINY_ARCH), AIDEPreprocess(), seed, device)
