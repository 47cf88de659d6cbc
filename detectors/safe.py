"""SAFE (Li et al., KDD 2025): a truncated ResNet-50 on the diagonal wavelet band of a crop.

Facts from Ouxiang-Li/SAFE @46801cacbd50e4763d09783e169475dfa92c5ee4 (read through the text index;
no snapshot could be fetched): models/resnet.py (`resnet50`, `ResNet._preprocess_dwt`, `forward`),
data/datasets.py, scripts/eval.sh, main_finetune.py, engine_finetune.py (`evaluate`), utils.py
(`save_model`, `auto_load_model`); README @76b04b895429734171fe74d88bc635a1c7cf5428:
- the network is NPR's truncated ResNet-50 (`detectors.npr.NPRNet`): conv1 3x3 stride 2 (3 -> 64),
  bn1, ReLU, max-pool 3/2, layer1 (3 Bottlenecks), layer2 (4, stride 2), average pool, and
  `fc1 = Linear(512, 2)`; 1.44 M parameters;
- inside forward the input is replaced by the HH (diagonal) band of a one-level 2-D DWT,
  pytorch_wavelets `DWTForward(J=1, mode='symmetric', wave='bior1.3')` `Yh[0][:, :, 2]`
  (fbcotter/pytorch_wavelets @9a0c507 dwt/lowlevel.py `afb1d`, `AFB2D`: rows then columns,
  correlation with the reversed filters at stride 2 after half-sample symmetric padding to
  pywt's coefficient length floor((N + 5) / 2)), resized back to the input size with torchvision
  `Resize` on a tensor (bilinear, antialias=True, torchvision's default since 0.17);
- test (eval.sh `--input_size 256 --transform_mode crop`): CenterCrop(256) then ToTensor, *no*
  resize and *no* normalisation; softmax(logits)[:, 1] = P(fake), threshold 0.5;
- checkpoint `{'model', 'optimizer', 'epoch', 'scaler', 'args': argparse.Namespace}` loaded with
  `load_state_dict(checkpoint['model'])` (strict). The Namespace is let through torch's
  weights-only unpickler (`bench.weights.load_state(data_types=...)`), nothing else.
The bior1.3 high-pass filter is written out below (pywt `Wavelet('bior1.3').dec_hi`; the tests
check it against PyWavelets when installed), so running SAFE needs neither pywt nor
pytorch_wavelets.

The JPEG-vs-PNG shortcut (Ouxiang-Li/SAFE issue #7, 2025-04-25): SAFE's training reals are LSUN
images, JPEG-compressed at quality 75 before being stored as PNG, while its fakes never were, so
high-frequency bands can separate compression from no compression rather than real from fake;
the reporter found 56.6% real accuracy for the released weights on FFHQ's PNG reals. AIGI-mini
plants the same cue (WEBP-compressed reals), and a crop-only, DWT-based input keeps such traces,
so SAFE's post-processed rows are the ones to read.
"""
from __future__ import annotations

import argparse
import math
import os
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from detectors.module_detector import ModuleDetector, build_module_detector, official_state, tiny_module_detector, two_class_logit
from detectors.npr import NPRNet, npr_arch_of
from detectors.preprocess import UNIT, CenterCropNormalize
from detectors.checkpoint import load_strict
from detectors.resnet import ResNetArch

SIZE = (256, 256)
_A = 1.0 / math.sqrt(2.0)
BIOR13_DEC_HI = (0.0, 0.0, -_A, _A, 0.0, 0.0)  # pywt.Wavelet("bior1.3").dec_hi


def symmetric_index(n: int, before: int, after: int) -> torch.Tensor:
    """Indices of a half-sample symmetric padding (x[1] x[0] | x[0] x[1] ... | x[n-1] x[n-2])."""
    return torch.from_numpy(np.pad(np.arange(n), (before, after), mode="symmetric"))


def dwt_highpass(x: torch.Tensor, dim: int, taps: tuple[float, ...] = BIOR13_DEC_HI) -> torch.Tensor:
    """One analysis high-pass along `dim` (-1 or -2) with pywt's 'symmetric' extension: output
    length floor((N + L - 1) / 2), as pywt.dwt and pytorch_wavelets compute it."""
    n, taps_n = x.shape[dim], len(taps)
    out = (n + taps_n - 1) // 2
    pad = 2 * (out - 1) - n + taps_n
    x = x.index_select(dim, symmetric_index(n, pad // 2, (pad + 1) // 2).to(x.device))
    kernel = torch.tensor(taps[::-1], dtype=x.dtype, device=x.device)  # conv2d correlates
    c = x.shape[1]
    shape = (1, taps_n) if dim == -1 else (taps_n, 1)
    stride = (1, 2) if dim == -1 else (2, 1)
    return F.conv2d(x, kernel.view(1, 1, *shape).expand(c, 1, *shape), stride=stride, groups=c)


def dwt_hh(x: torch.Tensor) -> torch.Tensor:
    """The diagonal detail band of a one-level bior1.3 DWT of (B, C, H, W): rows, then columns."""
    return dwt_highpass(dwt_highpass(x, -1), -2)


class SAFENet(NPRNet):
    """SAFE: NPR's network (same parameter names) on the resized DWT HH band, two-class `fc1`."""

    normalization = UNIT  # ToTensor only
    num_outputs = 2

    def input_map(self, x: torch.Tensor) -> torch.Tensor:
        # torchvision >= 0.17 (SAFE pins torch 2.2.1) resizes tensors with antialias=True
        return F.interpolate(dwt_hh(x), size=x.shape[-2:], mode="bilinear", align_corners=False, antialias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return two_class_logit(self.fc1(self.pooled(x)))


def load_safe_checkpoint(path_or_state: str | os.PathLike | Mapping[str, Any], where: str | None = None) -> SAFENet:
    """A SAFENet (eval mode) from the official training checkpoint (its 'args' Namespace is
    allowed, nothing else is unpickled), a raw state dict or our safetensors; strictly."""
    state, where = official_state(path_or_state, "fc1.weight", where, data_types=(argparse.Namespace,))
    return load_strict(state, where, "a SAFE", safe_arch_of, SAFENet)


def safe_arch_of(state: Mapping[str, torch.Tensor]) -> ResNetArch:
    """NPR's stages read off the shapes, checked for SAFE's 3x3 conv1 and two-class fc1."""
    arch = npr_arch_of(state)
    fc = tuple(state["fc1.weight"].shape)
    if fc != (2, arch.num_features) or state["conv1.weight"].shape[-2:] != (3, 3):
        raise ValueError(f"conv1 {tuple(state['conv1.weight'].shape)}, fc1 {fc}; SAFE has a 3x3 conv1 and a two-class fc1")
    return arch


def safe_preprocess() -> CenterCropNormalize:
    """eval.sh `--transform_mode crop`: CenterCrop(256) + ToTensor, values in [0, 1]."""
    return CenterCropNormalize(SIZE, *UNIT)


def build(spec: Any, weights: str | None = None, *, path: str | os.PathLike | None = None, device: str = "cpu") -> ModuleDetector:
    """The builder of `safe`."""
    return build_module_detector(spec, weights, path, device, load_safe_checkpoint, safe_preprocess())


TINY_ARCH = ResNetArch((1, 1), (8, 16), 8)


def tiny(spec: Any, *, seed: int = 0, device: str = "cpu") -> ModuleDetector:
    """SAFE's network at 1/8 width with one block per stage, random weights (contract tests)."""
    return tiny_module_detector(spec, lambda: SAFENet(TINY_ARCH), safe_preprocess(), seed, device)
