"""Random state dicts under official ResNet checkpoint names, and a float64 functional
reference forward of their bottleneck stages: what the res50nodown (test_resnet.py) and NPR
(test_npr.py) loaders are checked against, independently of timm's modules."""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F


def random_bottleneck_state(stem_kernel: int, planes: tuple[int, ...], blocks: tuple[int, ...], head: str, seed: int = 0,
                            counter: int | None = 1000) -> dict[str, torch.Tensor]:
    """conv1/bn1 stem, layer<i>.<j> torchvision Bottlenecks (expansion 4), a 1-output linear
    `head` ("fc", "fc1"); `counter` fills BN num_batches_tracked (None: no such keys)."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def conv(name: str, cout: int, cin: int, k: int) -> None:
        sd[name] = torch.randn(cout, cin, k, k, generator=g) * math.sqrt(1.0 / (cin * k * k))

    def bn(name: str, c: int) -> None:
        sd[f"{name}.weight"] = 0.5 + torch.rand(c, generator=g)
        sd[f"{name}.bias"] = 0.1 * torch.randn(c, generator=g)
        sd[f"{name}.running_mean"] = 0.1 * torch.randn(c, generator=g)
        sd[f"{name}.running_var"] = 0.5 + torch.rand(c, generator=g)
        if counter is not None:
            sd[f"{name}.num_batches_tracked"] = torch.tensor(counter)

    conv("conv1.weight", 64, 3, stem_kernel)
    bn("bn1", 64)
    inplanes = 64
    for i, (width, n) in enumerate(zip(planes, blocks), 1):
        for j in range(n):
            p = f"layer{i}.{j}"
            conv(f"{p}.conv1.weight", width, inplanes, 1)
            bn(f"{p}.bn1", width)
            conv(f"{p}.conv2.weight", width, width, 3)
            bn(f"{p}.bn2", width)
            conv(f"{p}.conv3.weight", width * 4, width, 1)
            bn(f"{p}.bn3", width * 4)
            if j == 0:
                conv(f"{p}.downsample.0.weight", width * 4, inplanes, 1)
                bn(f"{p}.downsample.1", width * 4)
            inplanes = width * 4
    sd[f"{head}.weight"] = torch.randn(1, inplanes, generator=g) / math.sqrt(inplanes)
    sd[f"{head}.bias"] = torch.randn(1, generator=g)
    return sd


def batch_norm(sd: dict[str, torch.Tensor]) -> Callable[[torch.Tensor, str], torch.Tensor]:
    """Eval-mode BN of the layer named `p`, from the state dict."""
    def bn(t: torch.Tensor, p: str) -> torch.Tensor:
        return F.batch_norm(t, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"], False, 0.0, 1e-5)

    return bn


def reference_stages(x: torch.Tensor, sd: dict[str, torch.Tensor], blocks: tuple[int, ...]) -> torch.Tensor:
    """The bottleneck stages in plain functional ops (stride 2 in the first block of every
    stage after the first, in conv2 and the downsample, as torchvision does)."""
    bn = batch_norm(sd)
    for i, n in enumerate(blocks, 1):
        for j in range(n):
            p = f"layer{i}.{j}"
            stride = 2 if (i > 1 and j == 0) else 1
            out = F.relu(bn(F.conv2d(x, sd[f"{p}.conv1.weight"]), f"{p}.bn1"))
            out = F.relu(bn(F.conv2d(out, sd[f"{p}.conv2.weight"], stride=stride, padding=1), f"{p}.bn2"))
            out = bn(F.conv2d(out, sd[f"{p}.conv3.weight"]), f"{p}.bn3")
            idt = bn(F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=stride), f"{p}.downsample.1") if j == 0 else x
            x = F.relu(out + idt)
    return x


def dinov2_official_shapes(embed_dim: int = 1024, depth: int = 24, patch: int = 14, grid: int = 37) -> dict[str, tuple[int, ...]]:
    """Key -> shape of DINOv2's hub backbone checkpoints (`dinov2_vitl14_pretrain.pth` with the
    defaults), written from facebookresearch/dinov2 `dinov2/models/vision_transformer.py`
    (DinoVisionTransformer with block_chunks=0, mlp FFN, layer scale, no registers): cls_token,
    pos_embed over the 518 / 14 = 37 grid plus the CLS position, mask_token, the patch conv,
    per block norm1, attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1/fc2, ls2.gamma, then norm."""
    d, hidden = embed_dim, 4 * embed_dim
    shapes: dict[str, tuple[int, ...]] = {
        "cls_token": (1, 1, d), "pos_embed": (1, 1 + grid * grid, d), "mask_token": (1, d),
        "patch_embed.proj.weight": (d, 3, patch, patch), "patch_embed.proj.bias": (d,),
    }
    for i in range(depth):
        b = f"blocks.{i}"
        shapes.update({
            f"{b}.norm1.weight": (d,), f"{b}.norm1.bias": (d,),
            f"{b}.attn.qkv.weight": (3 * d, d), f"{b}.attn.qkv.bias": (3 * d,),
            f"{b}.attn.proj.weight": (d, d), f"{b}.attn.proj.bias": (d,), f"{b}.ls1.gamma": (d,),
            f"{b}.norm2.weight": (d,), f"{b}.norm2.bias": (d,),
            f"{b}.mlp.fc1.weight": (hidden, d), f"{b}.mlp.fc1.bias": (hidden,),
            f"{b}.mlp.fc2.weight": (d, hidden), f"{b}.mlp.fc2.bias": (d,), f"{b}.ls2.gamma": (d,),
        })  # fmt: skip
    shapes.update({"norm.weight": (d,), "norm.bias": (d,)})
    return shapes


def random_state(shapes: dict[str, tuple[int, ...]], seed: int = 0, std: float = 0.05) -> dict[str, torch.Tensor]:
    """Seeded random tensors of the given shapes (LayerNorm weights around 1)."""
    g = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(s, generator=g) * std for k, s in shapes.items()}
    for k in state:
        if k.endswith(("norm1.weight", "norm2.weight")) or k == "norm.weight":
            state[k] += 1.0
    return state
