"""WaRPAD (Choi, Lee and Lee, NeurIPS 2025): a training-free detector built on how a
self-supervised ViT's embedding of an image reacts to a push along the image's high frequencies.
Self-supervised models are trained to be invariant to RandomResizedCrop on real images, so the
embedding of a real image moves less.

Facts from sungikchoi/WaRPAD @ 59f2b382171e579f2b7e180165b327f10332152b, `final_imgn.py`:
- backbone `torch.hub.load('facebookresearch/dinov2', 'dinov2_vitl14')` in eval mode, float32;
  features `model.forward_features(x)["x_norm_clstoken"]` (the final LayerNorm of the CLS token);
- preprocessing `Resize((896, 896), interpolation=BICUBIC)` on the PIL image (aspect ratio not
  kept), `ToTensor`, ImageNet mean/std;
- `cal_metric`: the 896x896 image is cut into 16 non-overlapping 224x224 patches (unfold, row
  major); `DWTForward(J=2, wave='haar')` of each, the low-pass band zeroed, `DWTInverse` -> the
  high-frequency part HF; the perturbed patch is `patch - 0.1 * HF` (minus since commit 1c74ae5),
  in the normalised space, unclamped; per patch the cosine similarity of the two CLS embeddings;
  the image's value is the mean over its 16 patches.
- The script saves that mean and computes no AUROC. The paper's premise (real images' embeddings
  are the robust ones; OpenReview TL;DR "Self-supervised models learn robust representation of
  real images under cropping and resizing") makes a high similarity mean real, so this detector's
  score is **minus the mean similarity: higher = more likely generated**. The direction is read
  from the paper, not from code. The score is not a calibrated logit (`calibrated=False`).

The DINOv2 ViT-L/14 is built with timm's VisionTransformer (the same blocks: LayerScale, GELU
MLP, LayerNorm eps 1e-6, qkv bias) and loaded strictly from Meta's checkpoint file
(`dinov2_vitl14_pretrain.pth`, the file torch.hub downloads) minus its unused `mask_token`. Its
37x37 position embedding is resized to the 16x16 grid of a 224 patch exactly as DINOv2's
`interpolate_pos_encoding` does at run time (facebookresearch/dinov2 @
b8931f7bf91576930313be2c6d6af376033b35f0, `dinov2/models/vision_transformer.py`: bicubic, scale
factor (16 + 0.1) / 37, no antialias), once, at load. The Haar transform is `detectors.wavelets`.

The backbone is a parameter: `backbone="timm:<model name>"` takes any timm ViT (pretrained
weights from timm's Hugging Face cache, its own mean/std, position embedding resized the same
way), and `build(..., backbone=module)` any torch module mapping (N, 3, 224, 224) normalised
patches to (N, D) embeddings (e.g. a CLIP vision tower).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from bench.api import BenchError, Detector, DetectorInfo, MissingWeightsError
from bench.weights import load_state, resolve_tag, state_digest
from detectors.preprocess import IMAGENET_MEAN, IMAGENET_STD, normalize_pixels, pixels, resized
from detectors.checkpoint import BadCheckpointError, unwrap_checkpoint
from detectors.wavelets import haar_highpass

IMAGE_SIZE = 896
PATCH_SIZE = 224
NOISE_LEVEL = 0.1
WAVELET_LEVELS = 2
POS_EMBED_OFFSET = 0.1  # DINOv2's interpolate_offset


@dataclass(frozen=True)
class DinoV2Arch:
    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int = 14
    train_size: int = 518  # the position embedding's grid is train_size / patch_size


DINOV2_ARCHS = {
    "vits14": DinoV2Arch(384, 12, 6),
    "vitb14": DinoV2Arch(768, 12, 12),
    "vitl14": DinoV2Arch(1024, 24, 16),
}


# --------------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class WarpadInput:
    """PIL RGB -> bicubic resize to size x size (aspect ratio not kept) -> uint8 pixels; the
    detector's `prepare` does ToTensor and the normalisation on the device (`normalize_pixels`,
    the same arithmetic), so a 896 x 896 image travels as 2.4 MB instead of 9.6 MB."""

    size: int = IMAGE_SIZE

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return pixels(resized(image, (self.size, self.size), Image.BICUBIC))


def patchify(x: torch.Tensor, patch: int = PATCH_SIZE) -> torch.Tensor:
    """(B, C, H, W) -> (B * n, C, patch, patch): non-overlapping patches, row-major, grouped by
    image (WaRPAD's unfold/reshape/transpose)."""
    b, c = x.shape[:2]
    tiles = x.unfold(2, patch, patch).unfold(3, patch, patch)  # (B, C, rows, cols, p, p)
    return tiles.reshape(b, c, -1, patch, patch).transpose(1, 2).reshape(-1, c, patch, patch)


def perturb(patches: torch.Tensor, noise_level: float = NOISE_LEVEL, levels: int = WAVELET_LEVELS) -> torch.Tensor:
    """patch - noise_level * (its Haar high-frequency part)."""
    return patches - noise_level * haar_highpass(patches, levels)


# --------------------------------------------------------------------------- backbones


class ClsTokenViT(nn.Module):
    """A timm VisionTransformer's final-normed CLS token (DINOv2's `x_norm_clstoken`)."""

    def __init__(self, vit: nn.Module):
        super().__init__()
        self.vit = vit.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit.forward_features(x)[:, 0]


def dinov2_vit(arch: str | DinoV2Arch = "vitl14", image_size: int = PATCH_SIZE) -> nn.Module:
    """An untrained timm VisionTransformer shaped like DINOv2's `dinov2_<arch>` hub model (no
    registers), its position embedding sized for `image_size` inputs."""
    from timm.models.vision_transformer import VisionTransformer

    a = DINOV2_ARCHS[arch] if isinstance(arch, str) else arch
    return VisionTransformer(img_size=image_size, patch_size=a.patch_size, embed_dim=a.embed_dim, depth=a.depth,
                             num_heads=a.num_heads, mlp_ratio=4.0, init_values=1.0, num_classes=0, global_pool="token")


def dinov2_pos_embed(pos_embed: torch.Tensor, grid: int, prefix: int = 1, offset: float = POS_EMBED_OFFSET) -> torch.Tensor:
    """DINOv2's `interpolate_pos_encoding` for a square `grid`: the patch part of a (1, prefix + M*M,
    D) embedding resized bicubically with scale factor (grid + offset) / M, no antialias, in float32."""
    dtype = pos_embed.dtype
    pos = pos_embed.float()
    n = pos.shape[1] - prefix
    m = int(math.sqrt(n))
    if m * m != n:
        raise ValueError(f"position embedding of {n} patch tokens is not a square grid")
    if m == grid:
        return pos_embed
    patch = pos[:, prefix:].reshape(1, m, m, -1).permute(0, 3, 1, 2)
    scale = (grid + offset) / m
    patch = F.interpolate(patch, scale_factor=(scale, scale), mode="bicubic", antialias=False)
    if tuple(patch.shape[-2:]) != (grid, grid):
        raise ValueError(f"interpolating {m}x{m} by {scale} gave {tuple(patch.shape[-2:])}, not {grid}x{grid}")
    return torch.cat((pos[:, :prefix], patch.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)), dim=1).to(dtype)


def _regrid(vit: nn.Module, image_size: int) -> nn.Module:
    """Set a timm ViT to square `image_size` inputs, its absolute position embedding resized
    the DINOv2 way (`dinov2_pos_embed`)."""
    old = vit.pos_embed.detach().clone()
    prefix = 0 if vit.no_embed_class else vit.num_prefix_tokens
    vit.set_input_size(img_size=(image_size, image_size))
    grid = vit.patch_embed.grid_size
    if grid[0] != grid[1]:
        raise BenchError(f"WaRPAD needs a square patch grid, got {grid}")
    with torch.no_grad():
        vit.pos_embed.copy_(dinov2_pos_embed(old, grid[0], prefix))
    return vit


def load_dinov2_checkpoint(obj: Mapping[str, Any] | str | os.PathLike, arch: str | DinoV2Arch = "vitl14",
                           image_size: int = PATCH_SIZE) -> ClsTokenViT:  # fmt: skip
    """DINOv2's pretrain checkpoint (a raw state dict of `dinov2_<arch>`, or wrapped in
    'model'/'state_dict', optionally with a `module.` prefix) in timm's ViT, loaded strictly."""
    where = "checkpoint" if isinstance(obj, Mapping) else str(obj)
    state = unwrap_checkpoint(obj if isinstance(obj, Mapping) else load_state(obj), where, "cls_token")
    state.pop("mask_token", None)  # DINOv2's masked-token embedding, used only in training
    if "register_tokens" in state:
        raise BadCheckpointError(f"{where}: a DINOv2 with registers; WaRPAD uses dinov2_vitl14 without")
    with torch.device("meta"):  # no random init of 300M parameters that the checkpoint replaces
        vit = dinov2_vit(arch, image_size)
    try:
        state["pos_embed"] = dinov2_pos_embed(state["pos_embed"], vit.patch_embed.grid_size[0])
        vit.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise BadCheckpointError(f"{where}: not a DINOv2 {arch} checkpoint ({str(exc).splitlines()[0][:300]})") from None
    return ClsTokenViT(vit)


def timm_backbone(name: str, image_size: int = PATCH_SIZE) -> tuple[ClsTokenViT, tuple, tuple, str]:
    """A pretrained timm ViT by name (timm's Hugging Face cache), with its mean/std and a digest."""
    import timm

    try:
        vit = timm.create_model(name, pretrained=True, num_classes=0)
    except Exception as exc:  # offline, unknown name: say which and where weights go
        raise MissingWeightsError(f"WaRPAD backbone timm:{name} could not be created ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); timm downloads pretrained weights "
                                  "from the Hugging Face Hub into $HF_HOME once, then works offline") from None
    if not hasattr(vit, "pos_embed") or not hasattr(vit, "set_input_size"):
        raise BenchError(f"WaRPAD backbone timm:{name} is not a VisionTransformer with an absolute position embedding")
    cfg = vit.pretrained_cfg
    return (ClsTokenViT(_regrid(vit, image_size)), tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD)),
            state_digest(vit.state_dict()))


# --------------------------------------------------------------------------- detector


class WarpadDetector(Detector):
    """Score = -(mean over patches of cos(CLS(patch), CLS(patch - eps * HF(patch)))), higher =
    more likely generated."""

    def __init__(self, backbone: nn.Module, info: DetectorInfo, weights: str, fingerprint: str, *,
                 mean: tuple[float, float, float] = IMAGENET_MEAN, std: tuple[float, float, float] = IMAGENET_STD,
                 size: int = IMAGE_SIZE, patch: int = PATCH_SIZE, noise_level: float = NOISE_LEVEL,
                 levels: int = WAVELET_LEVELS, patch_batch: int = 64):  # fmt: skip
        if size % patch or patch % 2**levels:
            raise BenchError(f"WaRPAD: size {size} must be a multiple of patch {patch}, and patch of {2**levels}")
        self.backbone = backbone.eval()
        self.info = dataclasses.replace(info, input=dataclasses.replace(info.input, size=(size, size)))
        self.weights, self.fingerprint = weights, fingerprint
        self.mean, self.std, self.size, self.patch = mean, std, size, patch
        self.noise_level, self.levels, self.patch_batch = noise_level, levels, patch_batch

    def preprocess(self) -> WarpadInput:
        return WarpadInput(self.size)

    def prepare(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 pixels -> ToTensor + ImageNet mean/std; float input is taken as normalised."""
        return normalize_pixels(batch, self.mean, self.std)

    def to(self, device: str) -> "WarpadDetector":
        super().to(device)
        self.backbone.to(device)
        return self

    def patch_similarities(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, n) cosine similarities of each patch's embedding before and after the push."""
        patches = patchify(batch, self.patch)
        out = []
        for i in range(0, len(patches), self.patch_batch):  # bounded memory whatever the batch
            p = patches[i : i + self.patch_batch]
            a, b = self.backbone(torch.cat((p, perturb(p, self.noise_level, self.levels)))).chunk(2)
            out.append(F.cosine_similarity(a, b, dim=-1))
        return torch.cat(out).view(len(batch), -1)

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return -self.patch_similarities(batch).mean(dim=1)


def _fingerprint(backbone: str, digest: str, **params: Any) -> str:
    parts = {"method": "warpad-v1", "backbone": backbone, "weights": digest, **params}
    return "warpad:" + hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def build(spec: Any, weights: str | None = None, *, path: str | os.PathLike | None = None, device: str = "cpu",
          backbone: str | nn.Module | None = None, noise_level: float = NOISE_LEVEL, patch_batch: int = 64) -> WarpadDetector:
    """The builder of `warpad` (`detectors.free_catalog`). `warpad.official` loads DINOv2 ViT-L/14
    from `path`, the weights folder or torch's hub cache (downloading it when online);
    `backbone="timm:<name>"` or a module replaces it (the tag then names no file)."""
    params = dict(size=IMAGE_SIZE, patch=PATCH_SIZE, noise_level=noise_level, levels=WAVELET_LEVELS)
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    if backbone is None:
        tag, file, digest = resolve_tag(spec, weights, path)
        model, name, label = load_dinov2_checkpoint(file, "vitl14"), "dinov2_vitl14", f"{spec.name}.{tag}"
    elif isinstance(backbone, str) and backbone.startswith("timm:"):
        name = backbone
        model, mean, std, digest = timm_backbone(backbone[len("timm:"):])
        label = f"{spec.name}.{backbone}"
    elif isinstance(backbone, nn.Module):
        name, label = type(backbone).__name__, f"{spec.name}.{type(backbone).__name__}"
        digest = state_digest(backbone.state_dict())
        model = backbone
    else:
        raise BenchError(f"warpad: backbone must be None (DINOv2 ViT-L/14), 'timm:<model>' or a torch module, got {backbone!r}")
    fingerprint = _fingerprint(name, digest, mean=list(mean), std=list(std), **params)
    return WarpadDetector(model, spec.info, label, fingerprint, mean=mean, std=std, noise_level=noise_level,
                          patch_batch=patch_batch).to(device)


def tiny(spec: Any, *, seed: int = 0, device: str = "cpu", arch: str | DinoV2Arch | None = None) -> WarpadDetector:
    """WaRPAD on a random-weight ViT (a 2-block, 32-wide DINOv2-shaped ViT/14 by default; `arch`
    e.g. "vitl14" gives ViT-L/14's cost for speed measurements). For tests and timing only:
    a random backbone's scores mean nothing and belong in no table."""
    a = arch or DinoV2Arch(embed_dim=32, depth=2, num_heads=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vit = dinov2_vit(a)
        with torch.no_grad():  # LayerScale 1.0 and a non-trivial embedding: patches must matter
            vit.pos_embed.normal_(std=0.02)
            vit.cls_token.normal_(std=0.02)
    label = a if isinstance(a, str) else f"{a.embed_dim}x{a.depth}"
    weights = f"{spec.name}.tiny" if arch is None else f"{spec.name}.random-{label}"
    return WarpadDetector(ClsTokenViT(vit), spec.info, weights, f"tiny-random-vit-{label}-seed{seed}").to(device)
