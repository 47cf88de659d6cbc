"""NPR (Tan et al., CVPR 2024): a truncated ResNet-50 on Neighboring Pixel Relationships.

Facts from chuangchuangtan/NPR-DeepfakeDetection, networks/resnet.py and test.py:
- NPR = x - up2(down2(x)), both nearest F.interpolate with recompute_scale_factor=True; the
  network sees NPR * 2/3;
- stem: Conv2d(3, 64, 3, stride 2, pad 1, no bias), BatchNorm, ReLU, MaxPool(3, 2, 1);
- layer1 = 3 Bottlenecks (64 planes), layer2 = 4 Bottlenecks (128 planes, stride 2); there is no
  layer3/layer4; global average pool; fc1 = Linear(512, 1);
- raw state dict with keys conv1, bn1, layer1, layer2, fc1 (NPR.pth in the repository root);
- test: Resize((256, 256)) + ToTensor + ImageNet normalisation for ForenSynths,
  DiffusionForensics and UniversalFakeDetect (test.py resizes those so that images of
  different shapes batch); GANGen-Detection runs with `no_resize`, and the README tells
  AIGCDetectBenchmark users to set no_resize/no_crop with batch size 1. `resize=False` gives
  that native-resolution protocol (`npr.official` with `create_detector(..., resize=False)`).
The (commented) crop in the official forward removes the last row/column of an odd-sized input,
without which down/up-sampling changes the size (the README's advice); we apply it, which
matters only without resize.

Blocks come from timm's `make_blocks`, the builder behind the res50nodown backbone, so both
detectors share one Bottleneck implementation.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from timm.models.resnet import Bottleneck, make_blocks
from torch import nn

from bench.api import Detector, DetectorInfo, InputPolicy
from bench.weights import load_state, resolve_tag
from detectors.checkpoint import load_strict, unwrap_checkpoint
from detectors.preprocess import IMAGENET, Pixels, ResizePixels, normalize_pixels
from detectors.resnet import ResNetArch, arch_name, conv_out_channels

NPR_ARCHS: dict[str, ResNetArch] = {
    "full": ResNetArch((3, 4), (64, 128), 64),
    # mini: two Bottlenecks per stage at 1/4 width -> 128 features; at the fixed 256x256 input
    # it costs a few ms, so it can afford a little depth.
    "mini": ResNetArch((2, 2), (16, 32), 16),
}


def npr_residual(x: torch.Tensor) -> torch.Tensor:
    """x minus its nearest 2x down-then-up copy, after dropping an odd last row/column."""
    h, w = x.shape[-2:]
    x = x[..., : h - h % 2, : w - w % 2]
    half = F.interpolate(x, scale_factor=0.5, mode="nearest", recompute_scale_factor=True)
    return x - F.interpolate(half, scale_factor=2.0, mode="nearest", recompute_scale_factor=True)


class NPRNet(nn.Module):
    """The NPR classifier; parameter names equal the official ones. SAFE (`detectors.safe`) is
    the same truncated ResNet-50 on another input map and with a two-class `fc1`."""

    normalization = IMAGENET
    num_outputs = 1

    def __init__(self, arch: ResNetArch = NPR_ARCHS["full"]):
        super().__init__()
        self.conv1 = nn.Conv2d(3, arch.stem_width, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(arch.stem_width)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        stages, _ = make_blocks((Bottleneck,) * len(arch.layers), arch.channels, arch.layers, arch.stem_width)
        for stage_name, stage in stages:
            self.add_module(stage_name, stage)
        self.num_features = arch.num_features
        self.fc1 = nn.Linear(self.num_features, self.num_outputs)
        self._stages = [n for n, _ in stages]
        for m in self.modules():  # the official init (torchvision's)
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def input_map(self, x: torch.Tensor) -> torch.Tensor:
        """What conv1 sees: the NPR residual, scaled by 2/3."""
        return npr_residual(x) * (2.0 / 3.0)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.act1(self.bn1(self.conv1(self.input_map(x)))))
        for name in self._stages:
            x = getattr(self, name)(x)
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc1(self.pooled(x)).squeeze(1)

    @property
    def size(self) -> str:
        return arch_name(npr_arch_of(self.state_dict()), NPR_ARCHS)


def npr_arch_of(state: Mapping[str, torch.Tensor]) -> ResNetArch:
    layers, channels = [], []
    i = 1
    while f"layer{i}.0.conv1.weight" in state:
        layers.append(len({k.split(".")[1] for k in state if k.startswith(f"layer{i}.")}))
        channels.append(conv_out_channels(state, f"layer{i}.0.conv1.weight"))
        i += 1
    if not layers:
        raise KeyError("layer1.0.conv1.weight")
    return ResNetArch(tuple(layers), tuple(channels), conv_out_channels(state, "conv1.weight"))


def load_npr_checkpoint(path_or_state: str | os.PathLike | Mapping[str, Any]) -> NPRNet:
    """An NPRNet (eval mode) from the official raw state dict (or any wrapping the ResNet
    loader accepts); full or mini inferred from the shapes."""
    if isinstance(path_or_state, Mapping):
        where, obj = "checkpoint", path_or_state
    else:
        where, obj = str(path_or_state), load_state(path_or_state)
    state = unwrap_checkpoint(obj, where, "fc1.weight")

    def checked_arch(state: Mapping[str, torch.Tensor]) -> ResNetArch:
        arch = npr_arch_of(state)
        if state["conv1.weight"].shape[-2:] != (3, 3) or tuple(state["fc1.weight"].shape) != (1, arch.num_features):
            raise ValueError(f"conv1 {tuple(state['conv1.weight'].shape)}, fc1 {tuple(state['fc1.weight'].shape)}")
        return arch

    return load_strict(state, where, "an NPR", checked_arch, NPRNet)


class NPRDetector(Detector):
    """NPR behind the Detector contract: 256x256 input as in the official test, or native
    resolution with `size=None` (the official no_resize protocol)."""

    def __init__(self, model: NPRNet, info: DetectorInfo, weights: str = "", fingerprint: str = "",
                 size: tuple[int, int] | None = (256, 256)):  # fmt: skip
        self.model = model.eval()
        self.info = dataclasses.replace(info, input=InputPolicy(size))
        self.weights, self.size = weights, size
        # another input size scores other pixels: cache it apart (the default keeps the bare digest)
        self.fingerprint = fingerprint if not fingerprint or size == (256, 256) else \
            fingerprint + ("+native" if size is None else f"+{size[0]}x{size[1]}")

    def preprocess(self) -> ResizePixels | Pixels:
        return Pixels() if self.size is None else ResizePixels(self.size)

    def prepare(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 pixels -> ImageNet-normalised float, on the device."""
        return normalize_pixels(batch, *self.model.normalization)

    def to(self, device: str) -> "NPRDetector":
        super().to(device)
        self.model.to(device)
        return self

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch)


def build(spec: Any, weights: str | None = None, *, path: str | os.PathLike | None = None, device: str = "cpu",
          resize: bool = True) -> NPRDetector:
    """The builder of `npr` in `detectors.catalog`; `path` points at a local file for that tag
    instead of the weights folder; `resize=False` scores at native resolution (official
    no_resize) instead of 256x256."""
    tag, file, digest = resolve_tag(spec, weights, path)
    size = (256, 256) if resize else None
    return NPRDetector(load_npr_checkpoint(file), spec.info, f"npr.{tag}", digest, size=size).to(device)
