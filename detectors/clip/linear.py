"""A linear head on one tap of a frozen encoder: UFD, ClipDet, C2P-CLIP and CoDE's logistic
regression, and the head-file loaders of the first three.

- UFD (WisconsinAIVision/UniversalFakeDetect @ 76a0e3e6, models/clip_models.py CLIPModel,
  validate.py): `fc(encode_image(x))` on OpenAI CLIP ViT-L/14, the 768-d projected CLS, not
  normalised; `pretrained_weights/fc_weights.pth` is a bare {weight (1, 768), bias (1,)} that
  validate.py loads into `model.fc` (saved from CUDA: read with map_location="cpu").
- ClipDet (grip-unina/ClipBased-SyntheticImageDetection @ c76ef7f5, networks/openclipnet.py
  OpenClipLinear with next_to_last=True, networks/resnet_mod.py ChannelLinear): `visual.proj =
  None`, then `encode_image(x, normalize=True)`, i.e. the L2-normalised 1024-d ln_post(CLS); the
  head is a ChannelLinear(1024, 1), which on a (B, 1024) input is exactly a Linear. The backbone
  sits in a Python list, so the checkpoint holds only `fc.weight`, `fc.bias`, wrapped as
  networks/__init__.py load_weights accepts: {'model'} (its 'module.' prefix dropped when
  'module.fc.weight' is there), {'state_dict'} or {'net'}; a bare dict it refuses (its bare
  markers are other networks' keys), we accept too. The output is an LLR: > 0 = synthetic.
- C2P-CLIP (chuangchuangtan/C2P-CLIP-DeepfakeDetection @ 27b52325, inference.py C2P_CLIP):
  transformers CLIPModel's `vision_model` pooler output -> `visual_projection` -> divided by its
  L2 norm -> `fc` Linear(768, 1). The release is a strict state dict of that whole module
  (`model.vision_model.*`, `model.visual_projection.weight`, `model.fc.*`), i.e. it carries its own
  tuned encoder, published as a zip holding the .pth (torch.hub's legacy zip format).
- CoDE's LogisticRegression on the CLS (`detectors.clip.code` converts it).
All four threshold at logit 0 (sigmoid 0.5; LLR 0), label 1 = fake.
"""
from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.api import MissingWeightsError
from bench.weights import load_state
from detectors.checkpoint import BadCheckpointError, unwrap_checkpoint
from detectors.clip.encoders import Encoder
from detectors.head import FeatureGate


class LinearProbe(nn.Module):
    """`fc(gate(f))` with f the encoder's `tap` features, L2-normalised when `l2`: a
    `bench.api.LinearHeadModel`, so `detectors.head.refit_head` refits it like the ResNets."""

    def __init__(self, encoder: Encoder, tap: str, l2: bool, fc: nn.Linear | None = None):
        super().__init__()
        self.encoder, self.tap, self.l2 = encoder, tap, l2
        self.num_features = encoder.tap_dim(tap)
        self.fc = fc if fc is not None else nn.Linear(self.num_features, 1)
        if tuple(self.fc.weight.shape) != (1, self.num_features):
            raise BadCheckpointError(f"head weight {tuple(self.fc.weight.shape)} does not fit the {self.num_features}-d {tap!r} features")
        self.gate = FeatureGate(self.num_features)
        self.normalization = encoder.normalization

    @property
    def head(self) -> nn.Linear:
        return self.fc

    def features(self, x: torch.Tensor) -> torch.Tensor:
        f = self.encoder.embed(x, self.tap)
        return F.normalize(f, dim=-1) if self.l2 else f

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pooled(x)).squeeze(1)


def linear_from(state: dict[str, torch.Tensor], where: str, prefix: str = "") -> nn.Linear:
    """A Linear(D, 1) from exactly `{prefix}weight` (1, D) and `{prefix}bias` (1,)."""
    keys = {f"{prefix}weight", f"{prefix}bias"}
    if set(state) != keys:
        raise BadCheckpointError(f"{where}: expected exactly {sorted(keys)}, found {sorted(state)[:8]}")
    w, b = state[f"{prefix}weight"], state[f"{prefix}bias"]
    if w.dim() != 2 or w.shape[0] != 1 or tuple(b.shape) != (1,):
        raise BadCheckpointError(f"{where}: a 1-logit linear head needs weight (1, D) and bias (1,), "
                                 f"got {tuple(w.shape)} and {tuple(b.shape)}")
    fc = nn.Linear(w.shape[1], 1)
    with torch.no_grad():
        fc.weight.copy_(w.float())
        fc.bias.copy_(b.float())
    return fc


def ufd_head(path: str | os.PathLike) -> nn.Linear:
    """UFD's fc_weights.pth: a bare {weight, bias} (an 'fc.' prefix is accepted too)."""
    state = unwrap_checkpoint(load_state(path), str(path), "weight")
    if set(state) == {"fc.weight", "fc.bias"}:
        state = {k[3:]: v for k, v in state.items()}
    return linear_from(state, str(path))


def clipdet_head(path: str | os.PathLike) -> nn.Linear:
    """ClipDet's weights.pth in any wrapping its load_weights accepts: OpenClipLinear's state
    dict is `fc.weight`, `fc.bias` (the backbone is not in it)."""
    return linear_from(unwrap_checkpoint(load_state(path), str(path), "fc.weight"), str(path), "fc.")


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint file, or the single .pth inside a zip in torch.hub's legacy format (what
    torch.hub.load_state_dict_from_url unpacks), read without unpickling code."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
            if not any(n.endswith("data.pkl") for n in names):  # not itself a torch archive
                if len(names) != 1:
                    raise MissingWeightsError(f"{path}: a zip with {len(names)} files; expected the one .pth of the release")
                data = io.BytesIO(zf.read(names[0]))
                try:
                    return torch.load(data, map_location="cpu", weights_only=True)
                except Exception as exc:
                    raise MissingWeightsError(f"{path}!{names[0]}: not a readable weights-only checkpoint "
                                              f"({type(exc).__name__}); checkpoints are never unpickled") from None
    return load_state(path)


def c2p_state(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], nn.Linear]:
    """C2P-CLIP's release: (the transformers CLIPVisionModelWithProjection state: vision_model.*
    and visual_projection.weight, the fc head). The non-persistent `position_ids` buffer that
    older transformers saved is dropped."""
    where = str(path)
    state = unwrap_checkpoint(read_checkpoint(path), where, "fc.weight")
    if not any(k.startswith("model.vision_model.") for k in state):
        raise BadCheckpointError(f"{where}: not a C2P-CLIP checkpoint (no 'model.vision_model.*' keys; found {sorted(state)[:5]})")
    state = {k[len("model."):] if k.startswith("model.") else k: v for k, v in state.items()}
    state.pop("vision_model.embeddings.position_ids", None)
    fc = linear_from({k: state.pop(k) for k in ("fc.weight", "fc.bias") if k in state}, where, "fc.")
    if "visual_projection.weight" not in state:
        raise BadCheckpointError(f"{where}: no 'model.visual_projection.weight'")
    return state, fc
