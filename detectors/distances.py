"""Image similarities between an image and its reconstruction: AEROBLADE's distances.

Every similarity maps two (B, 3, H, W) batches in [0, 1] to (B,) float scores, **higher = more
alike**, which is AEROBLADE's convention: it stores LPIPS negated and PSNR/SSIM as they are
(jonasricker/aeroblade @ 50fc2b22c929fdc481757adc4bc81bf98d36f9fc, `src/aeroblade/distances.py`:
`LPIPS._postprocess` negates; `PyIQADistance` negates only metrics whose pyiqa config says
`lower_better`). The names are the ones its `--distance-metric` takes:

- `lpips_vgg_0` ... `lpips_vgg_5`: LPIPS v0.1 on torchvision's ImageNet VGG16 with the linear
  layers of the `lpips` package (richzhang/PerceptualSimilarity, PyPI lpips 0.1.4). Layer k >= 1
  is the k-th VGG stage (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3) weighted by `lin{k-1}`, at
  the feature's own resolution (AEROBLADE's `_PatchedLPIPS` keeps that map un-upsampled), averaged
  over space; layer 0 is the sum of the five maps bilinearly upsampled to the input size (the
  original LPIPS), averaged. AEROBLADE's default is `lpips_vgg_2`. The VGG trunk stops at the
  stage the layer needs.
- `psnr`, `ssimc`, `ssim`, `ms_ssim`: pyiqa's metrics with the defaults AEROBLADE gets from
  `pyiqa.create_metric(name)` (chaofengc/IQA-PyTorch tag v0.1.10 =
  3041923434fa170eac0ba4182e6584dcb7a9fefc, the version AEROBLADE pins; `default_model_configs.py`,
  `archs/psnr_arch.py`, `archs/ssim_arch.py`): PSNR on RGB, data range 1, eps 1e-8; SSIM on RGB
  (`ssimc`) or on the YIQ luma (`ssim`), inputs scaled to 0-255 and rounded, an 11x11 Gaussian
  window (sigma 1.5) applied 'valid', no downsampling, the contrast-structure map clamped at 0;
  MS-SSIM on the luma, five scales, product form. The pyiqa package itself is not needed.

A similarity states `min_side`, the smallest image side it can score, so a detector refuses
smaller images one by one instead of failing a batch.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LPIPS_NAMES = tuple(f"lpips_vgg_{i}" for i in range(6))
PYIQA_NAMES = ("psnr", "ssimc", "ssim", "ms_ssim")
NAMES = LPIPS_NAMES + PYIQA_NAMES

# --------------------------------------------------------------------------- LPIPS (VGG)

# lpips.ScalingLayer (lpips/lpips.py): inputs in [-1, 1] -> (x - shift) / scale
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
# lpips.pretrained_networks.vgg16: the five slices of torchvision's vgg16().features
_SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))
_CHANNELS = (64, 128, 256, 512, 512)


def _normalize_channels(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """lpips.normalize_tensor: unit norm over channels, eps outside the sqrt."""
    return x / (torch.sqrt(torch.sum(x**2, dim=1, keepdim=True)) + eps)


class Similarity(nn.Module):
    """(B, 3, H, W) x2 in [0, 1] -> (B,) similarity, higher = more alike."""

    name: str = ""
    min_side: int = 1


class LpipsVgg(Similarity):
    """-LPIPS(x, y) at one AEROBLADE layer (0 = the summed original LPIPS, 1-5 = one VGG stage).

    `vgg_features` is the state dict of torchvision's `vgg16().features` (keys "0.weight", ...),
    `lins` the lpips package's `weights/v0.1/vgg.pth` (keys "lin{k}.model.1.weight")."""

    def __init__(self, layer: int, vgg_features: Mapping[str, torch.Tensor], lins: Mapping[str, torch.Tensor]):
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        if not 0 <= layer <= 5:
            raise ValueError(f"LPIPS layer must be 0-5, got {layer}")
        self.layer, self.name = layer, f"lpips_vgg_{layer}"
        self.stages = 5 if layer == 0 else layer
        with torch.device("meta"):  # no random init of 15M parameters that the checkpoint replaces
            features = make_layers(cfgs["D"], batch_norm=False)
        features.load_state_dict({k: v.float() for k, v in vgg_features.items()}, strict=True, assign=True)
        self.slices = nn.ModuleList(features[a:b] for a, b in _SLICES[: self.stages])
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in _CHANNELS[: self.stages])
        for k, lin in enumerate(self.lins):
            lin.weight.data.copy_(lins[f"lin{k}.model.1.weight"])
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))
        self.min_side = 16 if layer == 0 else 2 ** (layer - 1)
        self.eval().requires_grad_(False)

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = (x * 2.0 - 1.0 - self.shift) / self.scale
        out = []
        for stage in self.slices:
            h = stage(h)
            out.append(h)
        return out

    def layer_maps(self, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        """lin_k((n(f_k(x)) - n(f_k(y)))^2) per stage, (B, 1, h_k, w_k), not upsampled."""
        return [lin((_normalize_channels(a) - _normalize_channels(b)) ** 2)
                for lin, a, b in zip(self.lins, self._features(x), self._features(y))]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        maps = self.layer_maps(x, y)
        if self.layer == 0:
            size = x.shape[-2:]
            total = sum(F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps)
            return -total.mean(dim=(1, 2, 3))
        return -maps[-1].mean(dim=(1, 2, 3))


# --------------------------------------------------------------------------- pyiqa's PSNR / SSIM / MS-SSIM


class Psnr(Similarity):
    """pyiqa `psnr`: 10 log10(1 / (MSE + 1e-8)) over RGB in [0, 1]."""

    name = "psnr"

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        mse = torch.mean((x - y) ** 2, dim=(1, 2, 3))
        return 10 * torch.log10(1.0 / (mse + 1e-8))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """pyiqa's `fspecial(11, 1.5)`: MATLAB's Gaussian, normalised, stored as float32."""
    m = (size - 1) / 2.0
    y, x = np.ogrid[-m : m + 1, -m : m + 1]
    h = np.exp(-(x * x + y * y) / (2.0 * sigma * sigma))
    h[h < np.finfo(h.dtype).eps * h.max()] = 0
    return torch.from_numpy(h / h.sum()).float()


_LUMA = (0.299, 0.587, 0.114)
_MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_WINDOW = 11


def _to_255(x: torch.Tensor, luma: bool) -> torch.Tensor:
    """pyiqa `preprocess_rgb(x, test_y_channel, 255)`: YIQ luma or RGB, x255, rounded."""
    if luma:  # the Y row of pyiqa's rgb2yiq, as the same matmul
        x = (x.permute(0, 2, 3, 1) @ x.new_tensor(_LUMA).view(3, 1)).permute(0, 3, 1, 2)
    return (x.float() * 255).round()


def _ssim_and_cs(x: torch.Tensor, y: torch.Tensor, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """pyiqa `ssim(..., get_cs=True)` at data range 255: (ssim, cs), each (B,).

    In float32, where pyiqa casts to float64: the five local moments go through one grouped
    convolution, which float64 makes 40x slower on CPU (1.6 s against 40 ms for a 256x256 image),
    for differences below 1e-6 (tests/test_distances.py checks 1e-5 against scikit-image)."""
    c = x.shape[1]
    moments = F.conv2d(torch.cat((x, y, x * x, y * y, x * y), dim=1), window.to(x).expand(5 * c, 1, *window.shape), groups=5 * c)
    mu1, mu2, xx, yy, xy = moments.split(c, dim=1)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    cs_map = F.relu((2 * (xy - mu12) + c2) / ((xx - mu1_sq) + (yy - mu2_sq) + c2))
    ssim_map = ((2 * mu12 + c1) / (mu1_sq + mu2_sq + c1)) * cs_map
    return ssim_map.mean(dim=(1, 2, 3)), cs_map.mean(dim=(1, 2, 3))


class Ssim(Similarity):
    """pyiqa `ssimc` (RGB, `luma=False`) or `ssim` (YIQ luma)."""

    min_side = _WINDOW

    def __init__(self, luma: bool = False):
        super().__init__()
        self.luma, self.name = luma, "ssim" if luma else "ssimc"
        self.register_buffer("window", _gaussian_window(_WINDOW, 1.5))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _ssim_and_cs(_to_255(x, self.luma), _to_255(y, self.luma), self.window)[0]


def _pooled_side(side: int, times: int) -> int:
    for _ in range(times):
        side = side // 2 + side % 2  # avg_pool2d(2) with padding side % 2
    return side


class MsSsim(Similarity):
    """pyiqa `ms_ssim`: YIQ luma, five scales, product of cs^w over the first four and ssim^w."""

    name = "ms_ssim"
    # the fifth scale must still hold an 11x11 window
    min_side = next(s for s in range(_WINDOW, 10_000) if _pooled_side(s, len(_MS_WEIGHTS) - 1) >= _WINDOW)

    def __init__(self):
        super().__init__()
        self.register_buffer("window", _gaussian_window(_WINDOW, 1.5))
        self.register_buffer("weights", torch.tensor(_MS_WEIGHTS, dtype=torch.float32))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        a, b = _to_255(x, True), _to_255(y, True)
        weights = self.weights.to(a)
        cs = []
        for _ in range(len(_MS_WEIGHTS)):
            ssim_val, cs_val = _ssim_and_cs(a, b, self.window)
            cs.append(cs_val)
            padding = (a.shape[2] % 2, a.shape[3] % 2)
            a = F.avg_pool2d(a, kernel_size=2, padding=padding)
            b = F.avg_pool2d(b, kernel_size=2, padding=padding)
        mcs = torch.stack(cs, dim=0)
        return torch.prod(mcs[:-1] ** weights[:-1].unsqueeze(1), dim=0) * ssim_val ** weights[-1]


# --------------------------------------------------------------------------- names


def needs_lpips_weights(name: str) -> bool:
    check_name(name)
    return name in LPIPS_NAMES


def check_name(name: str) -> None:
    if name not in NAMES:
        from bench.api import BenchError, did_you_mean

        raise BenchError(f"unknown AEROBLADE distance {name!r}{did_you_mean(name, NAMES)}; known: {', '.join(NAMES)}")


def similarity_from_name(name: str, lpips_weights: tuple[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]] | None = None) -> Similarity:
    """The similarity `name`; LPIPS names need (VGG16 features state, lpips linear layers)."""
    if needs_lpips_weights(name):
        if lpips_weights is None:
            raise ValueError(f"{name} needs the VGG16 trunk and the lpips linear layers")
        return LpipsVgg(int(name.rsplit("_", 1)[1]), *lpips_weights)
    return {"psnr": Psnr, "ssimc": lambda: Ssim(luma=False), "ssim": lambda: Ssim(luma=True), "ms_ssim": MsSsim}[name]()
