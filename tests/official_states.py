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


# --------------------------------------------------------------------------- SAFE, FerretNet, LaDeDa, DRCT, AIDE
# Reference key names and shapes written from the official module structures (cited in each
# detector's docstring), independently of the modules under test.

Shapes = dict[str, tuple[int, ...]]


def _bn_shapes(name: str, c: int) -> Shapes:
    return {f"{name}.{p}": (c,) for p in ("weight", "bias", "running_mean", "running_var")} | {f"{name}.num_batches_tracked": ()}


def ferretnet_shapes(dim: int, depths: tuple[int, ...] = (2, 2)) -> Shapes:
    """xigua7105/FerretNet src/model/ferretnet.py `Ferret(dim, depths)`."""
    s: Shapes = {"cbr1.0.weight": (dim // 2, 3, 3, 3), **_bn_shapes("cbr1.1", dim // 2),
                 "cbr2.0.weight": (dim, dim // 2, 3, 3), **_bn_shapes("cbr2.1", dim)}
    c = dim
    for i, depth in enumerate(depths):
        for j in range(depth):
            cin, cout, p = (c if j == 0 else 2 * c), 2 * c, f"feature.{i}.{j}"
            s |= {f"{p}.layers.0.conv1.weight": (cout, 1, 3, 3), f"{p}.layers.0.conv2.weight": (cout, 1, 3, 3),
                  f"{p}.layers.0.conv3.weight": (cout, cout, 1, 1), **_bn_shapes(f"{p}.layers.1", cout),
                  f"{p}.layers.3.depth_wise.weight": (cout, 1, 3, 3), f"{p}.layers.3.point_wise.weight": (cout, cout, 1, 1),
                  **_bn_shapes(f"{p}.layers.4", cout)}
            if j == 0:
                s |= {f"{p}.shortcut.0.weight": (cout, cin, 1, 1), f"{p}.shortcut.0.bias": (cout,), **_bn_shapes(f"{p}.shortcut.1", cout)}
        c *= 2
    return s | {f"feature.{len(depths)}.weight": (c, c, 1, 1), "logit.1.weight": (1, c), "logit.1.bias": (1,)}


def ladeda9_shapes() -> Shapes:
    """barcavia/RealTime-DeepfakeDetection-in-the-RealWorld networks/LaDeDa.py `LaDeDa9`."""
    s: Shapes = {"conv1.weight": (64, 3, 1, 1), "conv2.weight": (64, 64, 3, 3), **_bn_shapes("bn1", 64)}
    cin = 64
    for i, (n, planes, k3) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512), (1, 1, 0, 0)), 1):
        for j in range(n):
            k = 3 if (j == 0 and k3) else 1
            p = f"layer{i}.{j}"
            s |= {f"{p}.conv1.weight": (planes, cin, 1, 1), **_bn_shapes(f"{p}.bn1", planes), f"{p}.conv2.weight": (planes, planes, k, k),
                  **_bn_shapes(f"{p}.bn2", planes), f"{p}.conv3.weight": (planes * 4, planes, 1, 1), **_bn_shapes(f"{p}.bn3", planes * 4)}
            if j == 0:
                s |= {f"{p}.downsample.0.weight": (planes * 4, cin, 1, 1), **_bn_shapes(f"{p}.downsample.1", planes * 4)}
            cin = planes * 4
    return s | {"fc.weight": (1, 2048), "fc.bias": (1,)}


def openai_clip_shapes(vision_width: int, vision_layers: int, patch: int, grid: int, text_width: int, text_layers: int,
                       embed: int, vocab: int = 49408, context: int = 77) -> Shapes:
    """OpenAI CLIP ViT (openai/CLIP clip/model.py `CLIP`, `VisionTransformer`, `Transformer`) state dict."""
    def blocks(prefix: str, w: int, n: int) -> Shapes:
        out: Shapes = {}
        for i in range(n):
            p = f"{prefix}.resblocks.{i}"
            out |= {f"{p}.attn.in_proj_weight": (3 * w, w), f"{p}.attn.in_proj_bias": (3 * w,), f"{p}.attn.out_proj.weight": (w, w),
                    f"{p}.attn.out_proj.bias": (w,), f"{p}.ln_1.weight": (w,), f"{p}.ln_1.bias": (w,), f"{p}.mlp.c_fc.weight": (4 * w, w),
                    f"{p}.mlp.c_fc.bias": (4 * w,), f"{p}.mlp.c_proj.weight": (w, 4 * w), f"{p}.mlp.c_proj.bias": (w,),
                    f"{p}.ln_2.weight": (w,), f"{p}.ln_2.bias": (w,)}
        return out

    v = vision_width
    return {"positional_embedding": (context, text_width), "text_projection": (text_width, embed), "logit_scale": (),
            "visual.class_embedding": (v,), "visual.positional_embedding": (grid * grid + 1, v), "visual.proj": (v, embed),
            "visual.conv1.weight": (v, 3, patch, patch), "visual.ln_pre.weight": (v,), "visual.ln_pre.bias": (v,),
            **blocks("visual.transformer", v, vision_layers), "visual.ln_post.weight": (v,), "visual.ln_post.bias": (v,),
            **blocks("transformer", text_width, text_layers), "token_embedding.weight": (vocab, text_width),
            "ln_final.weight": (text_width,), "ln_final.bias": (text_width,)}


def random_state(shapes: Shapes, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors of the given shapes: weights ~ N(0, 1/fan_in), BN variances and norm
    weights around 1, counters as integers."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for k, shape in shapes.items():
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(7)
        elif k.endswith("running_var"):
            sd[k] = 0.5 + torch.rand(shape, generator=g)
        elif len(shape) == 1 and k.endswith(".weight"):
            sd[k] = 0.8 + 0.4 * torch.rand(shape, generator=g)
        else:
            fan_in = max(1, math.prod(shape[1:]))
            sd[k] = torch.randn(shape, generator=g) / math.sqrt(fan_in)
    return sd
