"""FerretNet (Liang et al., NeurIPS 2025): local pixel dependencies through a small depthwise CNN.

Facts from xigua7105/FerretNet @e92796c1a2fb07ccc57ecd7e718e6dce067be5fa: src/model/ferretnet.py
(class `Ferret`), src/model/lpd.py (`MaskMedianValues`, "median"), configs/cfgs/FerretNet-{B,S}-Median-3.yaml,
configs/Test.yaml, src/tester/syn_tester.py, checkpoints/4cls_ckpt/:
- the network sees x - LPD(x): LPD replaces every pixel of the *normalised* tensor by the median
  of its 3x3 neighbourhood with the centre set to 0 (zero padding at the border; 9 values, so the
  true middle one);
- `cbr1` Conv3x3(3 -> dim/2) BN ReLU, `cbr2` Conv3x3 stride 2 (dim/2 -> dim) BN ReLU;
- `feature.<s>` per stage: a DSBlock(C -> 2C, stride 2) then DSBlocks(2C -> 2C); a DSBlock is
  `layers` = [DilatedConv2d (depthwise 3x3 dilation 1 + depthwise 3x3 dilation 2, summed, then a
  1x1), BN, ReLU, SeparableConv2d (depthwise 3x3 + pointwise 1x1), BN] plus `shortcut` (1x1 conv
  *with* bias + BN when shape changes, else identity), ReLU of the sum; then `feature.<n>` a 1x1
  conv; global average pool; `logit` = [Dropout(0.2), Linear(C, 1)];
- FerretNet-B: dim 96, depths [2, 2] (1.06 M parameters); FerretNet-S: dim 32 (126 k);
- test: CenterCrop(256) (zero padding when smaller), ToTensor, CLIP mean/std, no resize; one
  logit, sigmoid > 0.5 = fake;
- checkpoint `{'model': state_dict}` without prefix (`ferretnet-{b,s}-median-3.pth`); the
  official loader is non-strict, ours is strict.
The in-repo ferretnet-s-median-3.pth (544,441 bytes) was loaded with this module, strictly, when it
was written. "mini" is the S architecture trained on AIGI-mini (`detectors.mini`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from detectors.module_detector import ModuleDetector, build_module_detector, official_state, tiny_module_detector
from detectors.preprocess import CLIP, CenterCropNormalize
from detectors.checkpoint import load_strict
from detectors.resnet import conv_out_channels

SIZE = (256, 256)

@dataclass(frozen=True)
class FerretArch:
    dim: int
    depths: tuple[int, ...] = (2, 2)

    @property
    def num_features(self) -> int:
        return self.dim * 2 ** len(self.depths)

FERRET_ARCHS: dict[str, FerretArch] = {"B": FerretArch(96), "S": FerretArch(32), "tiny": FerretArch(8, (1, 1))}

def masked_median(x: torch.Tensor) -> torch.Tensor:
    """Median of each pixel's 3x3 neighbourhood (zero padded) with the centre value replaced by 0:
    the official 'median' local pixel dependency (MaskMedianValues, kernel 3)."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1))
    around = [padded[..., i : i + h, j : j + w] for i in range(3) for j in range(3) if (i, j) != (1, 1)]
    return torch.stack([*around, torch.zeros_like(x)], dim=0).median(dim=0).values

class DilatedConv2d(nn.Module):
    """Depthwise 3x3 at dilation 1 plus depthwise 3x3 at dilation 2, summed, then a 1x1 mix."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, padding=1, dilation=1, groups=cin, bias=False)
        self.conv2 = nn.Conv2d(cin, cout, 3, stride, padding=2, dilation=2, groups=cin, bias=False)
        self.conv3 = nn.Conv2d(cout, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.conv1(x) + self.conv2(x))

class SeparableConv2d(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.depth_wise = nn.Conv2d(channels, channels, 3, 1, padding=1, groups=channels, bias=False)
        self.point_wise = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point_wise(self.depth_wise(x))

class DSBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.layers = nn.Sequential(DilatedConv2d(cin, cout, stride), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                                    SeparableConv2d(cout), nn.BatchNorm2d(cout))
        if stride != 1 or cin != cout:
            self.shortcut: nn.Module = nn.Sequential(nn.Conv2d(cin, cout, 1, stride), nn.BatchNorm2d(cout))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.layers(x) + self.shortcut(x))

def conv_bn_relu(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

class FerretNet(nn.Module):
    """The official `Ferret` network (median LPD, window 3), parameter names as in its checkpoints."""

    def __init__(self, arch: FerretArch = FERRET_ARCHS["B"]):
        super().__init__()
        self.arch = arch
        dim = arch.dim
        self.cbr1 = conv_bn_relu(3, dim // 2, 1)
        self.cbr2 = conv_bn_relu(dim // 2, dim, 2)
        stages: list[nn.Module] = []
        for depth in arch.depths:
            stages.append(nn.Sequential(DSBlock(dim, dim * 2, 2), *[DSBlock(dim * 2, dim * 2, 1) for _ in range(depth - 1)]))
            dim *= 2
        self.feature = nn.Sequential(*stages, nn.Conv2d(dim, dim, 1, bias=False))
        self.logit = nn.Sequential(nn.Dropout(0.2), nn.Linear(dim, 1))
        self.num_features = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.feature(self.cbr2(self.cbr1(x - masked_median(x))))
        return self.logit(x.mean(dim=(2, 3))).squeeze(1)

def ferret_arch_of(state: Mapping[str, torch.Tensor]) -> FerretArch:
    """Width and depths read off a state dict (B, S or any other member)."""
    depths = []
    s = 0
    while f"feature.{s}.0.layers.0.conv1.weight" in state:
        depths.append(len({k.split(".")[2] for k in state if k.startswith(f"feature.{s}.")}))
        s += 1
    if not depths:
        raise KeyError("feature.0.0.layers.0.conv1.weight")
    return FerretArch(conv_out_channels(state, "cbr2.0.weight"), tuple(depths))

def load_ferretnet_checkpoint(path_or_state: str | os.PathLike | Mapping[str, Any], where: str | None = None) -> FerretNet:
    """A FerretNet (eval mode) from `{'model': ...}` (official), a raw state dict (our
    safetensors) or either with a `module.` prefix; strictly."""
    state, where = official_state(path_or_state, "cbr1.0.weight", where)
    return load_strict(state, where, "a FerretNet", ferret_arch_of, FerretNet)


def ferret_preprocess() -> CenterCropNormalize:
    """configs/Test.yaml: CenterCrop(256), ToTensor, CLIP mean/std."""
    return CenterCropNormalize(SIZE, *CLIP)


def build(spec: Any, weights: str | None = None, *, path: str | os.PathLike | None = None, device: str = "cpu") -> ModuleDetector:
    """The builder of `ferretnet` (B or S, read off the file's shapes)."""
    return build_module_detector(spec, weights, path, device, load_ferretnet_checkpoint, ferret_preprocess())


def tiny(spec: Any, *, seed: int = 0, device: str = "cpu") -> ModuleDetector:
    """A narrow FerretNet with random weights (contract tests; never in a results table)."""
    return tiny_module_detector(spec, lambda: FerretNet(FERRET_ARCHS["tiny"]), ferret_preprocess(), seed, device)
