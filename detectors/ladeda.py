"""LaDeDa (Cavia et al., 2024, "Real-Time Deepfake Detection in the Real-World", WildRF): a
BagNet-like ResNet-50 that scores 9x9 patches and averages them into an image score.

Facts from barcavia/RealTime-DeepfakeDetection-in-the-RealWorld @e734562bbb6763f5bb2951099e9dc9a38df5e7dd:
networks/LaDeDa.py (`LaDeDa`, `Bottleneck`, `LaDeDa9`), test.py (`get_model`, `test_model`),
test_config.py, data/datasets.py, options/base_options.py, networks/base_model.py:
- LaDeDa9 = `LaDeDa(Bottleneck, [3, 4, 6, 3], strides=[2, 2, 2, 1], kernel3=[1, 1, 0, 0],
  preprocess_type="NPR", num_classes=1)`, the model of test.py and trainer.py (the committed
  `LaDeDa9(strides=..., preprocess_type, **kwargs)` signature is not valid Python; its default
  preprocessing everywhere is "NPR");
- stem: `conv1` 1x1 (3 -> 64) then `conv2` 3x3 with *no padding* (64 -> 64), `bn1`, ReLU; no
  max-pool; every convolution has padding 0;
- torchvision-named Bottlenecks (conv1 1x1, conv2, conv3 1x1, downsample [1x1, BN]); conv2 is
  3x3 only in the first block of layer1 and layer2, 1x1 everywhere else (also in the first,
  strided block of layer3); strides 2, 2, 2, 1 in the first block of each layer (conv2 and the
  downsample); a residual larger than its output is cropped at the bottom and right;
  receptive field 9x9;
- the network first replaces x (already normalised) by x - up2(down2(x)) (nearest; unlike NPR,
  not scaled);
- head: average over all positions then `fc` Linear(2048, 1); with pool=False the same fc is
  applied per position, giving one logit per 9x9 patch (`patch_logits`);
- test: Resize((256, 256)) (PIL bilinear), ToTensor, ImageNet mean/std, no crop; sigmoid > 0.5 =
  fake; raw state dict saved by `torch.save(model.state_dict())`, loaded with strict=True;
- weights: not in the repository; weights/LaDeDa/download_weights.txt points to a Google Drive
  folder, test_config.py loads `weights/LaDeDa/WildRF_LaDeDa.pth`.
"mini" is the same code path with one block per stage at 1/8 width (`LADEDA_ARCHS`), trained on
AIGI-mini by `detectors.mini` on labels. The official Tiny-LaDeDa (networks/Tiny_LaDeDa.py, 1.3 k
parameters) is distilled from LaDeDa's patch logits and is not what "mini" is.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from detectors.module_detector import ModuleDetector, build_module_detector, official_state, tiny_module_detector
from detectors.npr import npr_arch_of, npr_residual
from detectors.preprocess import IMAGENET, ResizeNormalize
from detectors.checkpoint import load_strict

SIZE = (256, 256)


@dataclass(frozen=True)
class LaDeDaArch:
    """Depth and width of a LaDeDa; `kernel3[i]` = 1: the first block of layer i+1 has a 3x3 conv2."""

    layers: tuple[int, ...] = (3, 4, 6, 3)
    planes: tuple[int, ...] = (64, 128, 256, 512)
    stem: int = 64
    strides: tuple[int, ...] = (2, 2, 2, 1)
    kernel3: tuple[int, ...] = (1, 1, 0, 0)

    @property
    def num_features(self) -> int:
        return self.planes[-1] * 4


LADEDA_ARCHS: dict[str, LaDeDaArch] = {
    "LaDeDa9": LaDeDaArch(),
    "mini": LaDeDaArch(layers=(1, 1, 1, 1), planes=(8, 16, 32, 64), stem=8),
}


class Bottleneck(nn.Module):
    """torchvision's Bottleneck without padding; the residual is cropped to the output size."""

    def __init__(self, cin: int, planes: int, stride: int = 1, kernel: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel, stride, padding=0, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        residual = residual[..., : out.shape[-2], : out.shape[-1]]  # drop the bottom rows / right columns
        return torch.relu(out + residual)


class LaDeDa(nn.Module):
    """LaDeDa9 (or a narrower member), parameter names as in the official state dicts."""

    normalization = IMAGENET

    def __init__(self, arch: LaDeDaArch = LADEDA_ARCHS["LaDeDa9"], stem_momentum: float = 0.001):
        """`stem_momentum`: the running-statistics momentum of `bn1` in training (the official
        0.001 needs thousands of steps to settle; it does not matter in eval)."""
        super().__init__()
        self.arch = arch
        self.conv1 = nn.Conv2d(3, arch.stem, 1, bias=False)
        self.conv2 = nn.Conv2d(arch.stem, arch.stem, 3, padding=0, bias=False)
        self.bn1 = nn.BatchNorm2d(arch.stem, momentum=stem_momentum)
        cin = arch.stem
        for i, (n, planes, stride, k3) in enumerate(zip(arch.layers, arch.planes, arch.strides, arch.kernel3), 1):
            down = None
            if stride != 1 or cin != planes * 4:
                down = nn.Sequential(nn.Conv2d(cin, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4))
            blocks = [Bottleneck(cin, planes, stride, 3 if k3 else 1, down)]
            blocks += [Bottleneck(planes * 4, planes, 1, 3 if k3 > j else 1) for j in range(1, n)]
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
            cin = planes * 4
        self.fc = nn.Linear(cin, 1)
        self.num_features = cin

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2048, h, w): one feature vector per 9x9 patch of the NPR residual."""
        x = torch.relu(self.bn1(self.conv2(self.conv1(npr_residual(x)))))  # x - up2(down2(x))
        for i in range(1, len(self.arch.layers) + 1):
            x = getattr(self, f"layer{i}")(x)
        return x

    def patch_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, h, w) logit of every patch (the official pool=False head)."""
        return self.fc(self.feature_map(x).permute(0, 2, 3, 1)).squeeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) image logits: the fc of the average feature (= the mean of the patch logits)."""
        return self.fc(self.feature_map(x).mean(dim=(2, 3))).squeeze(1)


def ladeda_arch_of(state: Mapping[str, torch.Tensor]) -> LaDeDaArch:
    """Depth, width and where the 3x3 conv2s are, read off a state dict."""
    stem = tuple(state["conv1.weight"].shape[-2:])
    if stem != (1, 1):
        raise ValueError(f"conv1 is {stem[0]}x{stem[1]}, LaDeDa's is 1x1")
    stages = npr_arch_of(state)  # the torchvision-named stages, as NPR's
    if len(stages.layers) != 4:
        raise KeyError(f"layer{len(stages.layers) + 1}.0.conv1.weight")
    kernel3 = tuple(int(state[f"layer{j}.0.conv2.weight"].shape[-1] == 3) for j in range(1, 5))
    return LaDeDaArch(stages.layers, stages.channels, stages.stem_width, kernel3=kernel3)


def load_ladeda_checkpoint(path_or_state: str | os.PathLike | Mapping[str, Any], where: str | None = None) -> LaDeDa:
    """A LaDeDa (eval mode) from the official raw state dict (or a wrapped one, or our
    safetensors); depth and width read off the shapes; strictly."""
    state, where = official_state(path_or_state, "conv2.weight", where)
    return load_strict(state, where, "a LaDeDa", ladeda_arch_of, LaDeDa)


def build(spec: Any, weights: str | None = None, *, path: str | os.PathLike | None = None, device: str = "cpu") -> ModuleDetector:
    """The builder of `ladeda`: Resize 256x256, ImageNet normalisation, LaDeDa9 or its mini."""
    return build_module_detector(spec, weights, path, device, load_ladeda_checkpoint, ResizeNormalize(SIZE))


def tiny(spec: Any, *, seed: int = 0, device: str = "cpu") -> ModuleDetector:
    """The mini LaDeDa with random weights (contract tests; never in a results table)."""
    return tiny_module_detector(spec, lambda: LaDeDa(LADEDA_ARCHS["mini"]), ResizeNormalize(SIZE), seed, device)
