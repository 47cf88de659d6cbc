"""ResNet-50 "nodown" detectors: Corvi, Rajan and their Stay-Positive variants Corvi+ / Rajan+.

The network (res50nodown) is the one of grip-unina/DMimageDetection networks/networks/resnet_mod.py,
grip-unina/ClipBased-SyntheticImageDetection networks/__init__.py and
AniSundar18/AlignedForensics test_code/networks: a torchvision-v1.5 ResNet-50 (Bottleneck
[3, 4, 6, 3], stride on the 3x3 conv) whose 7x7 stem conv and 3x3 max-pool both run at stride 1,
so no resolution is thrown away before layer1; a 2048 -> 1 linear head gives one logit, > 0 =
fake. DMimageDetection applies that linear per position and then averages, ClipBased and
AlignedForensics average then apply it: identical by linearity. We build it from timm's ResNet
(same parameter names as torchvision and the official checkpoints) with the two strides set to 1.

`GatedResNet` adds DEAR's channel gate on the layer4 map before pooling (dahyedahye/dear,
dear/detector/corvi_mask_gated_detector.py), so one model class serves Corvi, Rajan, the +
variants and DEAR. Its state dict ("backbone.<resnet keys>", "gate.gate") is DEAR's format, and
it is a `bench.api.LinearHeadModel`, so the head refit (`detectors.head`) works on it.

"mini" is the smallest member of the same family (same code path, fewer and narrower blocks),
trained on AIGI-mini by `detectors.mini.train_mini` and bundled as safetensors. The registered
names and weight tags are in `detectors.catalog`; `build` is their builder.
"""
from __future__ import annotations

import os
from functools import partial
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from timm.models.resnet import Bottleneck, ResNet, make_blocks
from torch import nn

from bench.api import Detector, DetectorInfo
from bench.weights import load_state, resolve_tag
from detectors.checkpoint import load_strict, unwrap_checkpoint
from detectors.head import FeatureGate
from detectors.preprocess import IMAGENET, Pixels, normalize_pixels


# --------------------------------------------------------------------------- architecture


@dataclass(frozen=True)
class ResNetArch:
    """Depth and width of a Bottleneck ResNet; `num_features` = channels[-1] * 4."""

    layers: tuple[int, ...]
    channels: tuple[int, ...]
    stem_width: int

    @property
    def num_features(self) -> int:
        return self.channels[-1] * Bottleneck.expansion


# "mini": one Bottleneck per stage at 1/8 width -> 256 features, 129k parameters. The nodown
# stem keeps stem and layer1 at full input resolution, so run time is memory traffic at full
# resolution: ~0.25-0.35 s for a 512x512 image on one shared CPU core, and 1/16 width is no
# faster. (Full res50nodown: ~3.5 s at 256x256.)
ARCHS: dict[str, ResNetArch] = {
    "full": ResNetArch((3, 4, 6, 3), (64, 128, 256, 512), 64),
    "mini": ResNetArch((1, 1, 1, 1), (8, 16, 32, 64), 8),
}


class GatedResNet(nn.Module):
    """res50nodown (or its mini sibling) with a channel gate before global average pooling.

    `drop_rate` is the dropout before the head that the official training code uses (0.5 in
    AlignedForensics' resnet_mod; 0.0 for the Stay-Positive refit); inactive in eval mode."""

    normalization = IMAGENET  # its inputs: ToTensor + ImageNet mean/std (`ImageNetNormalize`)

    def __init__(self, backbone: ResNet, drop_rate: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.num_features = int(backbone.num_features)
        self.gate = FeatureGate(self.num_features)
        self.head_drop = nn.Dropout(drop_rate)

    @property
    def head(self) -> nn.Linear:
        """The 1-logit linear head, `backbone.fc` in the official state dicts."""
        return self.backbone.fc

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """layer4 feature map (B, C, h, w), before the gate."""
        return self.backbone.forward_features(x)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C) global average of the gated layer4 map."""
        return self.gate(self.forward_features(x)).mean(dim=(2, 3))

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, C) pooled features -> (B,) logits."""
        return self.backbone.fc(self.head_drop(pooled)).squeeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.pooled(x))


def arch_name(arch: ResNetArch, table: Mapping[str, ResNetArch] = ARCHS) -> str:
    """The name of `arch` in `table` ("full", "mini"), or "custom"."""
    return next((k for k, v in table.items() if v == arch), "custom")


def timm_resnet(arch: ResNetArch, *, in_chans: int = 3, num_classes: int = 1) -> ResNet:
    """A torchvision-layout Bottleneck ResNet of any depth and width (timm's, whose parameter
    names are torchvision's): 7x7 stride-2 stem, max-pool, stages, global pool, `fc`."""
    backbone = ResNet(Bottleneck, arch.layers, num_classes=num_classes, in_chans=in_chans, channels=arch.channels)
    if arch.stem_width != 64:  # timm's plain stem is always 64 wide: rebuild it and the stages after it
        backbone.conv1 = nn.Conv2d(in_chans, arch.stem_width, kernel_size=7, stride=2, padding=3, bias=False)
        backbone.bn1 = nn.BatchNorm2d(arch.stem_width)
        stages, _ = make_blocks((Bottleneck,) * len(arch.layers), arch.channels, arch.layers, arch.stem_width)
        for name, stage in stages:
            setattr(backbone, name, stage)
        backbone.init_weights(zero_init_last=True)
    return backbone


def build_res50nodown(size: str | ResNetArch = "full", *, drop_rate: float = 0.0) -> GatedResNet:
    """A freshly initialised GatedResNet: "full" = ResNet-50 nodown, "mini" = the small sibling."""
    if isinstance(size, str) and size not in ARCHS:
        raise ValueError(f"unknown size {size!r}; known: {', '.join(ARCHS)}")
    arch = ARCHS[size] if isinstance(size, str) else size
    backbone = timm_resnet(arch, num_classes=1)
    backbone.conv1.stride = (1, 1)  # "stride0=1": no downsampling in the stem
    backbone.maxpool.stride = 1
    return GatedResNet(backbone, drop_rate=drop_rate)


# --------------------------------------------------------------------------- checkpoints


def _count_blocks(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    ids = {k[len(prefix) :].split(".", 1)[0] for k in state if k.startswith(prefix)}
    return len([i for i in ids if i.isdigit()])


def conv_out_channels(state: Mapping[str, torch.Tensor], key: str) -> int:
    """Output channels of the conv weight `key`: KeyError if absent, ValueError if it is not
    a 4-D (out, in, kh, kw) tensor, so a loader can name the file and the entry."""
    weight = state[key]
    if weight.dim() != 4:
        raise ValueError(f"{key} has shape {tuple(weight.shape)}, not that of a conv weight (out, in, kh, kw)")
    return int(weight.shape[0])


def arch_of(state: Mapping[str, torch.Tensor], prefix: str = "backbone.") -> ResNetArch:
    """Depth and width read off a state dict's shapes (so 'full' and 'mini' need no flag)."""
    layers, channels = [], []
    for i in range(1, 5):
        n = _count_blocks(state, f"{prefix}layer{i}.")
        if n == 0:
            raise KeyError(f"{prefix}layer{i}")
        layers.append(n)
        channels.append(conv_out_channels(state, f"{prefix}layer{i}.0.conv1.weight"))
    return ResNetArch(tuple(layers), tuple(channels), conv_out_channels(state, f"{prefix}conv1.weight"))


def load_resnet_checkpoint(
    path_or_state: str | os.PathLike | Mapping[str, Any], *, drop_rate: float = 0.0, where: str | None = None
) -> GatedResNet:
    """A GatedResNet (eval mode) from any official wrapping, DEAR's format or our safetensors.

    Accepted: raw res50nodown state dict, {"model": ...} with or without "module.",
    {"state_dict": ...}, {"net": ...}, and {"model": {"backbone.*", "gate.gate"}} (DEAR, whose
    loader adds "backbone." when missing). Full or mini is inferred from the shapes. `where`
    names an already loaded state in error messages (e.g. the file it was read from)."""
    if isinstance(path_or_state, Mapping):
        where, obj = where or "checkpoint", path_or_state
    else:
        where, obj = where or str(path_or_state), load_state(path_or_state)
    state = unwrap_checkpoint(obj, where, "conv1.weight")
    if not any(k.startswith("backbone.") for k in state):
        state = {f"backbone.{k}": v for k, v in state.items()}

    def checked_arch(state: dict[str, torch.Tensor]) -> ResNetArch:
        arch, fc = arch_of(state), state["backbone.fc.weight"]
        if state["backbone.conv1.weight"].shape[-2:] != (7, 7) or tuple(fc.shape) != (1, arch.num_features):
            raise ValueError(f"conv1 {tuple(state['backbone.conv1.weight'].shape)}, fc {tuple(fc.shape)}")
        state.setdefault("gate.gate", torch.ones(arch.num_features))  # DEAR's gate, all open, when the file has none
        return arch

    return load_strict(state, where, "a res50nodown", checked_arch, partial(build_res50nodown, drop_rate=drop_rate))


# --------------------------------------------------------------------------- detector


def pooled_tiled(model: GatedResNet, x: torch.Tensor, tile: int = 1024) -> torch.Tensor:
    """Area-weighted mean of the pooled features of non-overlapping `tile` x `tile` tiles from
    (0, 0), edge tiles smaller. The head is linear, so `model.classify` of this equals the
    area-weighted mean of the tile logits that grip-unina/GANimageDetection resnet50nodown.py
    (ResNet.apply) computes for images larger than 1536 on both sides."""
    h, w = x.shape[-2:]
    total = torch.zeros(x.shape[0], model.num_features, dtype=torch.float64, device=x.device)
    for top in range(0, h, tile):
        for left in range(0, w, tile):
            crop = x[..., top : top + tile, left : left + tile]
            total += model.pooled(crop).double() * (crop.shape[-2] * crop.shape[-1])
    return (total / (h * w)).to(x.dtype)


TILE_LIMIT, TILE_SIZE = 1536, 1024  # GRIP's tiling rule; the defaults keep the bare cache key


class ResNetDetector(Detector):
    """A GatedResNet behind the Detector contract: native resolution, ImageNet normalisation.

    With `tile=True` (default) an image larger than `tile_limit` on both sides is scored by
    GRIP's tiling, so a 6000x4000 photo is neither resized nor run in one piece; otherwise the
    whole image goes through the network at once, as in the ClipBased/AlignedForensics code."""

    def __init__(
        self,
        model: GatedResNet,
        info: DetectorInfo,
        weights: str = "",
        fingerprint: str = "",
        *,
        tile: bool = True,
        tile_limit: int = TILE_LIMIT,
        tile_size: int = TILE_SIZE,
    ):
        # channels-last memory layout: same numbers, ~1.7x faster stride-1 stem on CPU
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.info = info
        self.weights = weights
        self.tile, self.tile_limit, self.tile_size = tile, tile_limit, tile_size
        # Scores are cached under the fingerprint: another tiling gives other numbers on large images.
        if fingerprint and (tile, tile_limit, tile_size) != (True, TILE_LIMIT, TILE_SIZE):
            fingerprint += f"+tile{tile_limit}/{tile_size}" if tile else "+whole"
        self.fingerprint = fingerprint

    def preprocess(self) -> Pixels:
        return Pixels()

    def prepare(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 pixels -> ImageNet-normalised float, on the device."""
        return normalize_pixels(batch, *self.model.normalization)

    def to(self, device: str) -> "ResNetDetector":
        super().to(device)
        self.model.to(device)
        return self

    def tiles(self, h: int, w: int) -> bool:
        return self.tile and h > self.tile_limit and w > self.tile_limit

    def pooled(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, C) gated features the head sees, tiled like `forward`."""
        batch = batch.contiguous(memory_format=torch.channels_last)
        if self.tiles(*batch.shape[-2:]):
            return pooled_tiled(self.model, batch, self.tile_size)
        return self.model.pooled(batch)

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model.classify(self.pooled(batch))


# --------------------------------------------------------------------------- builder


def build(spec: Any, weights: str | None = None, *, path: str | os.PathLike | None = None, tile: bool = True,
          device: str = "cpu") -> ResNetDetector:
    """The builder of every res50nodown entry of `detectors.catalog` (Corvi, Rajan, Corvi+,
    Rajan+): `create_detector("corvi.official", path="model_epoch_best.pth")`; `tile=False`
    scores large images whole (the ClipBased/AlignedForensics behaviour) instead of GRIP's tiling."""
    tag, file, digest = resolve_tag(spec, weights, path)
    return ResNetDetector(load_resnet_checkpoint(file), spec.info, f"{spec.name}.{tag}", digest, tile=tile).to(device)
