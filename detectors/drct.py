"""DRCT (Chen et al., ICML 2024, "Diffusion Reconstruction Contrastive Training"): a ConvNeXt-B or a
frozen CLIP ViT-L/14 trained on real images against generated images and diffusion
reconstructions of both.

Facts from beibuwandeluori/DRCT @01aa7d0b6de903cf3208801f8f6b469edffbc762: network/models.py
(`ContrastiveModels`, `get_convnext`, `CLIPModelV2`), scripts/train.py (`eval_model`, loading),
scripts/test_DRCT-2M.sh, scripts/test_GenImage.sh, data/transform.py (`create_val_transforms`),
data/dataset.py, requirements.txt, README.md:
- the test scripts build `ContrastiveModels(model_name, num_classes=2, embedding_size=1024)`:
  `model` = the backbone with a 1024-d output, `fc` = Linear(1024, 2);
- "convnext_base_in22k" (timm 0.6.12): timm's ConvNeXt-B (depths 3-3-27-3, widths 128-1024) whose
  `head.fc` is Linear(1024, 1024); 346 state-dict keys;
- "clip-ViT-L-14": `CLIPModelV2` = the *whole* OpenAI CLIP ViT-L/14 from `clip.load` (fp32 on
  CPU, text tower included) as `model.model` plus `model.fc` = Linear(768, 1024); forward =
  fc(model.fc(encode_image(x))); trained with `--freeze_extractor`;
- test (`--is_crop --input_size 224`): cv2 read, BGR -> RGB, albumentations PadIfNeeded(224,
  constant 0), CenterCrop(224) (offset floor((size - 224) / 2)), Normalize with ImageNet mean/std
  for both backbones, ToTensorV2; no resize;
- score = 1 - softmax(logits)[:, 0], threshold 0.5 (labels: real 0, every fake kind > 0);
- checkpoint: a raw state dict (`model.module.state_dict()` under DataParallel, so no prefix),
  loaded with strict=True; published in `pretrained.zip` on ModelScope (dataset BokingChen/DRCT-2M).
The CLIP key layout is OpenAI's (visual.*, transformer.*, token_embedding, positional_embedding,
ln_final, text_projection, logit_scale), which open_clip's `CLIP` reproduces with QuickGELU; the
text tower is checked by the strict load and then dropped (only `encode_image` runs).
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import torch
from torch import nn

from bench.api import BenchError
from detectors.convnext import build_convnext, convnext_shape
from detectors.module_detector import ModuleDetector, build_module_detector, official_state, tiny_module_detector, two_class_logit
from detectors.preprocess import IMAGENET, CenterCropNormalize
from detectors.checkpoint import BadCheckpointError, assign_state

SIZE = (224, 224)


def drct_preprocess() -> CenterCropNormalize:
    """PadIfNeeded(224, zeros) + CenterCrop(224) with albumentations' floor offset, ImageNet mean/std."""
    return CenterCropNormalize(SIZE, *IMAGENET, rounding="floor")


class DRCTConvNeXt(nn.Module):
    """`ContrastiveModels` on convnext_base_in22k: `model` (ConvNeXt, 1024-d head) and `fc`."""

    def __init__(self, depths: tuple[int, ...] = (3, 3, 27, 3), dims: tuple[int, ...] = (128, 256, 512, 1024),
                 embedding: int = 1024):
        super().__init__()
        self.model = build_convnext(depths, dims, num_classes=embedding)
        self.fc = nn.Linear(embedding, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return two_class_logit(self.fc(self.model(x)))


def openai_clip_config(state: Mapping[str, torch.Tensor], prefix: str) -> tuple[int, Any, Any]:
    """(embed_dim, vision cfg, text cfg) of an OpenAI-layout CLIP ViT read off its shapes (heads
    of 64 channels, as in OpenAI's and open_clip's builders)."""
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    def n_blocks(tower: str) -> int:
        return len({k[len(tower):].split(".", 1)[0] for k in state if k.startswith(tower)})

    for tower in ("visual.transformer", "transformer"):
        if n_blocks(f"{prefix}{tower}.resblocks.") == 0:
            raise KeyError(f"{prefix}{tower}.resblocks.0.*")
    conv = state[f"{prefix}visual.conv1.weight"]
    grid = round((state[f"{prefix}visual.positional_embedding"].shape[0] - 1) ** 0.5)
    vision = CLIPVisionCfg(layers=n_blocks(f"{prefix}visual.transformer.resblocks."), width=int(conv.shape[0]),
                           patch_size=int(conv.shape[-1]), image_size=int(conv.shape[-1]) * grid)
    width = int(state[f"{prefix}ln_final.weight"].shape[0])
    text = CLIPTextCfg(context_length=int(state[f"{prefix}positional_embedding"].shape[0]),
                       vocab_size=int(state[f"{prefix}token_embedding.weight"].shape[0]), width=width, heads=width // 64,
                       layers=n_blocks(f"{prefix}transformer.resblocks."))
    return int(state[f"{prefix}text_projection"].shape[1]), vision, text


class CLIPEmbedding(nn.Module):
    """`CLIPModelV2`: the OpenAI CLIP as `model`, `fc` = Linear(embed, 1024) on encode_image."""

    def __init__(self, clip: nn.Module, embed_dim: int, out: int = 1024):
        super().__init__()
        self.model = clip
        self.fc = nn.Linear(embed_dim, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.model.visual(x))


class DRCTCLIP(nn.Module):
    """`ContrastiveModels` on clip-ViT-L-14: `model` (CLIPEmbedding) and `fc` = Linear(1024, 2)."""

    def __init__(self, clip: nn.Module, embed_dim: int, embedding: int = 1024):
        super().__init__()
        self.model = CLIPEmbedding(clip, embed_dim, embedding)
        self.fc = nn.Linear(embedding, 2)

    def drop_text_tower(self) -> "DRCTCLIP":
        """Free the text encoder once the strict load has checked it: only encode_image runs."""
        clip = self.model.model
        for name in ("transformer", "token_embedding", "ln_final"):
            setattr(clip, name, nn.Identity())
        for name in ("positional_embedding", "text_projection", "attn_mask"):  # attn_mask: a text buffer
            if hasattr(clip, name):
                setattr(clip, name, None)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return two_class_logit(self.fc(self.model(x)))


def _open_clip():
    try:
        import open_clip
    except ImportError as exc:
        raise BenchError("DRCT's CLIP variant needs open_clip: pip install open_clip_torch (a dependency of aigi-bench)") from exc
    return open_clip


def build_drct_clip(state: Mapping[str, torch.Tensor]) -> DRCTCLIP:
    """An uninitialised (meta) DRCTCLIP shaped like `state` (keys model.model.*, model.fc.*, fc.*)."""
    open_clip = _open_clip()
    embed_dim, vision, text = openai_clip_config(state, "model.model.")
    clip = open_clip.model.CLIP(embed_dim, vision_cfg=vision, text_cfg=text, quick_gelu=True)
    return DRCTCLIP(clip, embed_dim, int(state["fc.weight"].shape[1]))


def load_drct_checkpoint(path_or_state: str | os.PathLike | Mapping[str, Any], where: str | None = None) -> DRCTConvNeXt | DRCTCLIP:
    """A DRCT model (eval mode) from its raw state dict (or wrapped); ConvNeXt or CLIP read off
    the keys; strictly."""
    state, where = official_state(path_or_state, "fc.weight", where)
    if tuple(getattr(state.get("fc.weight"), "shape", ())[:1]) != (2,):
        raise BadCheckpointError(f"{where}: not a DRCT checkpoint (no two-class 'fc.weight')")
    try:
        if "model.model.visual.conv1.weight" in state:
            with torch.device("meta"):
                model: nn.Module = build_drct_clip(state)
            model = assign_state(model, state, where)
            return model.drop_text_tower().eval()
        depths, dims = convnext_shape(state, "model.")
        with torch.device("meta"):
            model = DRCTConvNeXt(depths, dims, int(state["model.head.fc.weight"].shape[0]))
    except (KeyError, ValueError) as exc:
        raise BadCheckpointError(f"{where}: not a DRCT checkpoint (missing or odd {exc}; expected model.stages.* "
                                 "(ConvNeXt) or model.model.visual.* (CLIP))") from None
    return assign_state(model, state, where)


def build(spec: Any, weights: str | None = None, *, path: str | os.PathLike | None = None, device: str = "cpu") -> ModuleDetector:
    """The builder of `drct` and `drct-clip` (the backbone is read off the file)."""
    return build_module_detector(spec, weights, path, device, load_drct_checkpoint, drct_preprocess())


def tiny_convnext() -> DRCTConvNeXt:
    return DRCTConvNeXt((1, 1, 1, 1), (8, 16, 32, 64), embedding=16)


def tiny_clip() -> DRCTCLIP:
    """An OpenAI-layout CLIP ViT of width 64 (one head), 2 blocks, patch 14 on 224, text width 64."""
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    clip = _open_clip().model.CLIP(32, vision_cfg=CLIPVisionCfg(layers=2, width=64, patch_size=14, image_size=224),
                                   text_cfg=CLIPTextCfg(context_length=77, vocab_size=100, width=64, heads=1, layers=1),
                                   quick_gelu=True)
    return DRCTCLIP(clip, 32, 16)


def tiny(spec: Any, *, seed: int = 0, device: str = "cpu") -> ModuleDetector:
    """DRCT-ConvNeXt at toy width with random weights (contract tests; never in a table)."""
    return tiny_module_detector(spec, tiny_convnext, drct_preprocess(), seed, device)


def tiny_clip_detector(spec: Any, *, seed: int = 0, device: str = "cpu") -> ModuleDetector:
    """DRCT-CLIP on a toy CLIP ViT with random weights (contract tests; never in a table)."""
    return tiny_module_detector(spec, lambda: tiny_clip().drop_text_tower(), drct_preprocess(), seed, device)
