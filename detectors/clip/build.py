"""The builders behind `detectors.clip.catalog`: a head file (the weight tag) plus a backbone
(open_clip or transformers) make a `FrozenEncoderDetector`; `tiny` makes the same architecture
with small random weights for the contract tests.

    create_detector("ufd.official")                              # backbone from the weights folder / Hub cache
    create_detector("ufd.official", backbone="ViT-L-14.safetensors", policy="harmonized")
    create_detector("rine.ldm", engine="transformers")          # same OpenAI weights through transformers
    create_detector("c2p-clip.official", engine="open_clip")    # C2P's encoder converted to open_clip

Builder options: `path` (the head file), `backbone` (file, folder or Hub id), `policy`
("native": each official preprocessing; "harmonized": shorter side to 224 bicubic then
center-crop 224 for all), `engine` (the library that runs the backbone), `device`. Everything
that changes scores is in the fingerprint: head digest, backbone fingerprint, engine, policy.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from bench.api import BenchError, Detector, DetectorInfo, InputPolicy
from bench.weights import resolve_tag
from detectors.clip import catalog
from detectors.clip.backbones import locate, require_library
from detectors.clip.encoders import Encoder, HFViTAdapter, hf_clip_encoder, hf_clip_to_open_clip, load_backbone, load_hf_clip_vision, \
    load_open_clip, open_clip_encoder
from detectors.clip.preprocess import CLIP, IMAGENET, POLICIES, CropNormalize, pipeline


class FrozenEncoderDetector(Detector):
    """A frozen-encoder model behind the Detector contract: 224x224 input made by its
    preprocessing policy, (B,) float32 logits, > 0 = fake."""

    def __init__(self, model: nn.Module, prep: CropNormalize, info: DetectorInfo, weights: str, fingerprint: str, policy: str = "native"):
        self.model = model.eval()
        self.prep, self.policy = prep, policy
        steps = prep.describe() if policy == "native" else f"{policy}: {prep.describe()}"
        self.info = dataclasses.replace(info, input=InputPolicy((prep.size, prep.size), steps=steps))
        self.weights = weights
        self.fingerprint = fingerprint if policy == "native" else f"{fingerprint}+{policy}"

    def preprocess(self) -> Any:
        """The cropped 8-bit pixels; `prepare` normalises them on the device (`self.prep` is the
        same pipeline in float, for direct use)."""
        return self.prep.pixels()

    def prepare(self, batch: torch.Tensor) -> torch.Tensor:
        return self.prep.normalize_pixels(batch)

    def to(self, device: str) -> "FrozenEncoderDetector":
        super().to(device)
        self.model.to(device)
        return self

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch).float()


# --------------------------------------------------------------------------- recipes


def _ufd(file: Any, encoder: Encoder) -> nn.Module:
    from detectors.clip.linear import LinearProbe, ufd_head

    return LinearProbe(encoder, "embed", l2=False, fc=ufd_head(file))


def _clipdet(file: Any, encoder: Encoder) -> nn.Module:
    from detectors.clip.linear import LinearProbe, clipdet_head

    return LinearProbe(encoder, "cls", l2=True, fc=clipdet_head(file))


def _rine(file: Any, encoder: Encoder) -> nn.Module:
    from detectors.clip.rine import RineModel, rine_head

    return RineModel(encoder, rine_head(file, blocks=len(encoder.blocks), width=encoder.width))


def _code(file: Any, encoder: Encoder) -> nn.Module:
    from detectors.clip.code import load_head

    return load_head(file, encoder, "cls")


@dataclass(frozen=True)
class Recipe:
    """How one detector reads its backbone: the official preprocessing, the engines that can
    run it (the first is the official library's), and the model made from head file + encoder."""

    native: CropNormalize
    engines: tuple[str, ...]
    make: Callable[[Any, Encoder], nn.Module] | None  # None: the head file carries its encoder (C2P-CLIP)


RECIPES: dict[str, Recipe] = {
    "ufd": Recipe(CropNormalize(*CLIP), ("open_clip", "transformers"), _ufd),
    "clipdet": Recipe(CropNormalize(*CLIP, resize="bicubic"), ("open_clip",), _clipdet),
    "rine": Recipe(CropNormalize(*CLIP), ("open_clip", "transformers"), _rine),
    "c2p-clip": Recipe(CropNormalize(*CLIP, resize="bilinear"), ("transformers", "open_clip"), None),
    "code": Recipe(CropNormalize(*IMAGENET), ("transformers",), _code),
}


def _options(spec: Any, policy: str, engine: str | None) -> tuple[Recipe, str]:
    recipe = RECIPES[spec.name]
    if policy not in POLICIES:
        raise BenchError(f"{spec.name}: unknown input policy {policy!r}; known: {', '.join(POLICIES)}")
    engine = engine or recipe.engines[0]
    if engine not in recipe.engines:
        raise BenchError(f"{spec.name}: engine {engine!r} is not available; known: {', '.join(recipe.engines)}")
    return recipe, engine


def _c2p(file: Any, engine: str, digest: str) -> nn.Module:
    """C2P-CLIP from its release file alone: the tuned encoder is in it."""
    from detectors.clip.linear import LinearProbe, c2p_state

    require_library(engine)
    state, fc = c2p_state(file)
    fingerprint = f"{engine}:c2p-clip:{digest[:16]}"
    if engine == "transformers":
        encoder = load_hf_clip_vision(state, fingerprint=fingerprint, where=str(file))
    else:
        encoder = load_open_clip(hf_clip_to_open_clip(state), quick_gelu=True, fingerprint=fingerprint, where=str(file))
    return LinearProbe(encoder, "embed", l2=True, fc=fc)


def build(spec: Any, weights: str | None = None, *, path: str | os.PathLike | None = None, device: str = "cpu",
          policy: str = "native", backbone: str | os.PathLike | None = None, engine: str | None = None) -> FrozenEncoderDetector:
    """The builder of every detector of `detectors.clip.catalog` (see the module docstring).
    The head file is resolved first, so a missing head fails before a backbone is loaded."""
    recipe, engine = _options(spec, policy, engine)
    tag, file, digest = resolve_tag(spec, weights, path)
    if recipe.make is None:
        if backbone is not None:
            raise BenchError(f"{spec.name}: its checkpoint carries its own encoder; backbone= does not apply")
        model = _c2p(file, engine, digest)
        fingerprint = f"{digest}+{engine}"
    else:
        b = catalog.ALTERNATIVE_BACKBONE.get((spec.name, engine)) or catalog.BACKBONE_OF[spec.name]
        encoder = load_backbone(locate(b, backbone, who=f"{spec.name}.{tag}"))
        model = recipe.make(file, encoder)
        fingerprint = f"{digest}+{encoder.fingerprint}"
    return FrozenEncoderDetector(model, pipeline(recipe.native, policy), spec.info, f"{spec.name}.{tag}", fingerprint, policy).to(device)


# --------------------------------------------------------------------------- tiny random models


def tiny_open_clip(*, quick_gelu: bool = True, width: int = 32, heads: int = 2, layers: int = 2, patch: int = 16, image: int = 224,
                   embed_dim: int = 16, with_text: bool = False) -> nn.Module:
    """A small open_clip CLIP (random init, current RNG) of the ViT-L/14 family's structure."""
    import open_clip

    text = dict(context_length=16, vocab_size=49408, width=64, heads=1, layers=1) if with_text else \
        dict(context_length=2, vocab_size=2, width=8, heads=1, layers=1)
    return open_clip.CLIP(embed_dim, vision_cfg=dict(image_size=image, patch_size=patch, width=width, layers=layers,
                                                     head_width=width // heads), text_cfg=text, quick_gelu=quick_gelu).eval()


def tiny_hf_clip(*, width: int = 32, heads: int = 2, layers: int = 2, patch: int = 16, image: int = 224, embed_dim: int = 16) -> nn.Module:
    """A small transformers CLIPVisionModelWithProjection (random init, current RNG)."""
    require_library("transformers")
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    return CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers, num_attention_heads=heads, patch_size=patch,
        image_size=image, projection_dim=embed_dim, hidden_act="quick_gelu")).eval()


def tiny_hf_vit(*, width: int = 32, heads: int = 2, layers: int = 2, patch: int = 16, image: int = 224) -> nn.Module:
    """A small transformers ViTModel (CoDE's architecture family; random init, current RNG)."""
    require_library("transformers")
    from transformers import ViTConfig, ViTModel

    return ViTModel(ViTConfig(hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers, num_attention_heads=heads,
                              patch_size=patch, image_size=image)).eval()


def tiny_encoder(name: str, engine: str, fingerprint: str) -> Encoder:
    """The tiny encoder of detector `name` run by `engine` (current RNG)."""
    if name == "code":
        return Encoder(HFViTAdapter(tiny_hf_vit()), normalization=IMAGENET, fingerprint=fingerprint, image_size=224)
    if engine == "transformers":
        return hf_clip_encoder(tiny_hf_clip(), fingerprint=fingerprint)
    return open_clip_encoder(tiny_open_clip(quick_gelu=name != "clipdet"), fingerprint=fingerprint)


def tiny(spec: Any, *, seed: int = 0, device: str = "cpu", policy: str = "native", engine: str | None = None) -> FrozenEncoderDetector:
    """`spec`'s architecture with small random weights (seeded, the caller's RNG left alone):
    width 32, 2 blocks, patch 16 at 224, the real head type. For the contract tests only."""
    from detectors.clip.linear import LinearProbe
    from detectors.clip.rine import RineHead, RineModel

    recipe, engine = _options(spec, policy, engine)
    fingerprint = f"tiny-random-seed{seed}+{engine}"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = tiny_encoder(spec.name, engine, fingerprint)
        if spec.name == "rine":
            model: nn.Module = RineModel(encoder, RineHead(len(encoder.blocks), encoder.width, proj_dim=8, nproj=2).eval())
        else:
            tap = {"ufd": "embed", "c2p-clip": "embed"}.get(spec.name, "cls")
            model = LinearProbe(encoder, tap, l2=spec.name in ("clipdet", "c2p-clip"))
            nn.init.normal_(model.fc.weight, std=1.0 / model.num_features**0.5)
    return FrozenEncoderDetector(model, pipeline(recipe.native, policy), spec.info, f"{spec.name}.tiny", fingerprint, policy).to(device)
