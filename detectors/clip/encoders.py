"""One frozen image encoder behind one interface, whichever library loaded it.

`Encoder.embed(x, tap=...)` gives the features each detector reads:

| tap | what | used by |
|---|---|---|
| "embed" | projected image embedding, `encode_image` (not normalised) | UFD, C2P-CLIP, probes |
| "cls" | CLS after the final LayerNorm, before any projection | ClipDet (then L2-normalised), CoDE |
| "residual" | CLS of the residual stream after the last block, before the final LayerNorm | probes |
| "ln2" | CLS of every block's second LayerNorm output (the MLP input), (B, L, D) | RINE |
| "contributions" | per-head / MLP / embedding direct contributions to "residual" | Gandelsman-style probes |

Libraries and their names for the same parts (mlfoundations/open_clip v3.3.0 @ 89fb801f
src/open_clip/transformer.py and model.py; openai/CLIP @ ea41722f clip/model.py; huggingface/
transformers @ 000f1ffd src/transformers/models/clip/modeling_clip.py and @ 005db820
models/vit/modeling_vit.py, whose 5.x release renames ViT's blocks, both layouts read here):
- open_clip `VisionTransformer` (and OpenAI CLIP, same module names): `ln_pre`, `transformer.
  resblocks[i].{ln_1, attn (nn.MultiheadAttention, packed in_proj), ls_1, ln_2, mlp}`, `ln_post`
  applied to every token, `proj` (D, E). Since open_clip 2.26 the blocks run batch-first
  (`transformer.batch_first`); OpenAI's `clip` package and older open_clip run sequence-first,
  where a block's token 0 is `t[0]`, not `t[:, 0]` (RINE indexes `[0]` for that reason).
- transformers `CLIPVisionModel`: `pre_layrnorm`, `encoder.layers[i].{layer_norm1, self_attn.{q,k,
  v,out}_proj, layer_norm2, mlp}`, `post_layernorm` on the CLS only (the pooler output);
  `visual_projection` Linear(D, E, bias=False) = open_clip's `proj` transposed.
- transformers `ViTModel` (CoDE): `encoder.layer[i].{layernorm_before, attention.attention.{query,
  key,value}, attention.output.dense, layernorm_after}`, final `layernorm` on every token, so its
  `last_hidden_state[:, 0]` is our "cls".

The taps read the library's own forward through hooks on its LayerNorms, so the numbers are the
library's; only the per-head split (`detectors.clip.contributions`) recomputes attention.
"""
from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from bench.api import BenchError, MissingWeightsError
from bench.weights import load_state
from detectors.checkpoint import BadCheckpointError, unwrap_checkpoint
from detectors.clip.backbones import Located, require_library
from detectors.clip.preprocess import CLIP, IMAGENET

TAPS = ("embed", "cls", "residual", "ln2", "contributions")


class TapError(BenchError):
    """A tap this encoder does not have (a projection on a ViT without one, an unknown name)."""


# --------------------------------------------------------------------------- library adapters


@dataclass
class BlockView:
    """What the taps need of one pre-LN transformer block, in library-neutral terms."""

    ln1: nn.Module  # LayerNorm before attention: its input is the block input
    ln2: nn.Module  # LayerNorm before the MLP: its input is block input + attention output
    qkv: tuple[nn.Module, nn.Module, nn.Module] | nn.MultiheadAttention  # three Linears, or one packed in_proj
    out: nn.Linear  # attention output projection
    heads: int
    scale1: nn.Module = field(default_factory=nn.Identity)  # layer scale on the attention branch

    def linear(self, which: str, x: torch.Tensor) -> torch.Tensor:
        """The query, key or value projection of `x`. A packed in_proj is split at call time,
        so the block follows the module to another device or dtype."""
        i = "qkv".index(which)
        if isinstance(self.qkv, nn.MultiheadAttention):
            bias = self.qkv.in_proj_bias
            return nn.functional.linear(x, self.qkv.in_proj_weight.chunk(3)[i], bias.chunk(3)[i] if bias is not None else None)
        return self.qkv[i](x)


class Adapter:
    """A library's vision tower seen through `BlockView`s, its final norm and projection."""

    library: str
    module: nn.Module  # everything with parameters (moved by .to, put in eval)
    blocks: list[BlockView]
    final_norm: nn.Module
    batch_first: bool = True  # layout of the tensors inside the blocks

    @property
    def projection(self) -> torch.Tensor | None:
        """(D, E) image projection, or None."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor | None:
        """Run the library's forward; the projected embedding when there is a projection."""
        raise NotImplementedError


class OpenClipAdapter(Adapter):
    library = "open_clip"

    def __init__(self, visual: nn.Module):
        if getattr(visual, "attn_pool", None) is not None or getattr(visual, "pool_type", "tok") != "tok":
            raise TapError("open_clip vision towers with attentional or average pooling are not supported (CLS taps only)")
        blocks = list(visual.transformer.resblocks)
        if not blocks or not all(hasattr(b.attn, "in_proj_weight") and b.attn.in_proj_weight is not None for b in blocks):
            raise TapError("open_clip custom attention blocks are not supported: expected nn.MultiheadAttention with packed in_proj")
        self.module = visual
        self.final_norm = visual.ln_post
        # open_clip >= 2.26 runs the stack batch-first; older releases (and OpenAI clip) sequence-first
        self.batch_first = bool(getattr(visual.transformer, "batch_first", False))
        self.blocks = [BlockView(b.ln_1, b.ln_2, b.attn, b.attn.out_proj, b.attn.num_heads, b.ls_1) for b in blocks]

    @property
    def projection(self) -> torch.Tensor | None:
        return self.module.proj

    def forward(self, x: torch.Tensor) -> torch.Tensor | None:
        out = self.module(x)
        out = out[0] if isinstance(out, tuple) else out
        return out if self.module.proj is not None else None


class HFClipAdapter(Adapter):
    library = "transformers"

    def __init__(self, vision_model: nn.Module, visual_projection: nn.Linear | None):
        self.module = nn.ModuleDict({"vision_model": vision_model, **({"visual_projection": visual_projection} if visual_projection else {})})
        self.vision, self.proj = vision_model, visual_projection
        self.final_norm = vision_model.post_layernorm
        self.blocks = [BlockView(layer.layer_norm1, layer.layer_norm2, (att.q_proj, att.k_proj, att.v_proj), att.out_proj, att.num_heads)
                       for layer in vision_model.encoder.layers for att in (layer.self_attn,)]

    @property
    def projection(self) -> torch.Tensor | None:
        return self.proj.weight.t() if self.proj is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor | None:
        pooled = self.vision(pixel_values=x).pooler_output
        return self.proj(pooled) if self.proj is not None else None


class HFViTAdapter(Adapter):
    library = "transformers"

    def __init__(self, vit: nn.Module):
        # transformers 4.x: encoder.layer[i].attention.{attention.{query,key,value}, output.dense};
        # 5.x: layers[i].attention.{q,k,v,o}_proj (it renames 4.x checkpoints when loading them)
        layers = getattr(vit, "layers", None) or getattr(getattr(vit, "encoder", None), "layer", None)
        if layers is None or not hasattr(vit, "layernorm") or not hasattr(vit, "config"):
            raise TapError(f"{type(vit).__name__} is not a transformers ViTModel (embeddings, layers, layernorm)")
        vit.pooler = None  # CoDE replaces it by an Identity; its tanh head is never read
        self.module = vit
        self.final_norm = vit.layernorm
        heads = int(vit.config.num_attention_heads)
        self.blocks = []
        for layer in layers:
            att = layer.attention
            if hasattr(att, "q_proj"):
                q, k, v, o = att.q_proj, att.k_proj, att.v_proj, att.o_proj
            else:
                q, k, v, o = att.attention.query, att.attention.key, att.attention.value, att.output.dense
            self.blocks.append(BlockView(layer.layernorm_before, layer.layernorm_after, (q, k, v), o, heads))

    @property
    def projection(self) -> torch.Tensor | None:
        return None

    def forward(self, x: torch.Tensor) -> torch.Tensor | None:
        self.module(pixel_values=x)
        return None


# --------------------------------------------------------------------------- hooks


@dataclass
class _Seen:
    input: torch.Tensor | None = None
    output: torch.Tensor | None = None


@contextlib.contextmanager
def capture(modules: Sequence[nn.Module]) -> Iterator[list[_Seen]]:
    """Record the (first) input and the output of each module during the forwards inside."""
    seen = [_Seen() for _ in modules]

    def hook(record: _Seen) -> Callable[..., None]:
        def fn(_module: nn.Module, args: tuple, output: Any) -> None:
            record.input = args[0] if args else None
            record.output = output[0] if isinstance(output, tuple) else output

        return fn

    handles = [m.register_forward_hook(hook(r)) for m, r in zip(modules, seen)]
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


# --------------------------------------------------------------------------- encoder


@dataclass
class TextTower:
    """A text encoder and its tokenizer, for text directions in the embedding space."""

    tokenize: Callable[[list[str]], Any]
    encode: Callable[[Any], torch.Tensor]

    def __call__(self, texts: list[str]) -> torch.Tensor:
        return self.encode(self.tokenize(list(texts)))


class Encoder(nn.Module):
    """A frozen image encoder (eval mode, no gradients) with named feature taps.

    `fingerprint` identifies library, architecture and weights (detectors add it to their score
    cache key); `normalization` is the (mean, std) its inputs were trained with; `text` is the
    text tower with its tokenizer when one was loaded (None for vision-only encoders)."""

    def __init__(self, adapter: Adapter, *, normalization: tuple[tuple[float, float, float], tuple[float, float, float]],
                 fingerprint: str, image_size: int = 224, arch: str = "", text: TextTower | None = None,
                 text_module: nn.Module | None = None):
        super().__init__()
        self.adapter = adapter
        self.model = adapter.module
        self.text_model = text_module  # registered so .to() moves it with the vision tower
        self.normalization = normalization
        self.fingerprint = fingerprint
        self.image_size = image_size
        self.arch = arch
        self.text = text
        self.requires_grad_(False)
        self.eval()

    # shapes
    @property
    def library(self) -> str:
        return self.adapter.library

    @property
    def batch_first(self) -> bool:
        return self.adapter.batch_first

    @property
    def blocks(self) -> list[BlockView]:
        return self.adapter.blocks

    @property
    def width(self) -> int:
        """D, the residual stream's width."""
        return int(self.adapter.blocks[0].out.weight.shape[0])

    @property
    def embed_dim(self) -> int | None:
        """E, the projected embedding's size (None without a projection)."""
        p = self.adapter.projection
        return None if p is None else int(p.shape[1])

    def tap_dim(self, tap: str) -> int:
        """Features per image of a vector tap ("embed", "cls", "residual")."""
        if tap == "embed":
            if self.embed_dim is None:
                raise TapError(f"this {self.library} encoder has no image projection: tap 'cls' instead of 'embed'")
            return self.embed_dim
        return self.width

    def train(self, mode: bool = True) -> "Encoder":
        return super().train(False)  # frozen: dropout and the like stay off

    def token0(self, t: torch.Tensor) -> torch.Tensor:
        """Token 0 (CLS) of a tensor seen inside the blocks: `[:, 0]` batch-first, `[0]` sequence-first."""
        return t[:, 0] if self.batch_first else t[0]

    def tokens(self, t: torch.Tensor) -> torch.Tensor:
        """A tensor seen inside the blocks as (B, N, D)."""
        return t if self.batch_first else t.transpose(0, 1)

    @staticmethod
    def _final_cls(t: torch.Tensor) -> torch.Tensor:
        return t[:, 0] if t.dim() == 3 else t  # the final norm runs batch-first, on all tokens or on the CLS only

    def embed(self, x: torch.Tensor, tap: str = "embed") -> Any:
        """Features of a normalised (B, 3, H, W) batch at `tap` (see the module docstring)."""
        if tap == "embed":
            self.tap_dim("embed")
            return self.adapter.forward(x)
        if tap in ("cls", "residual"):
            with capture([self.adapter.final_norm]) as (seen,):
                self.adapter.forward(x)
            return self._final_cls(seen.output if tap == "cls" else seen.input)
        if tap == "ln2":
            with capture([b.ln2 for b in self.blocks]) as seen:
                self.adapter.forward(x)
            return torch.stack([self.token0(s.output) for s in seen], dim=1)
        if tap == "contributions":
            from detectors.clip.contributions import decompose

            return decompose(self, x)
        raise TapError(f"unknown tap {tap!r}; known: {', '.join(TAPS)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(x, "embed")


# --------------------------------------------------------------------------- fingerprints


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a weights file. A file in the Hugging Face cache is stored under its own sha256
    (blobs/<sha256> for LFS files), which is read off the name instead of hashing gigabytes;
    other files are hashed once per process."""
    real = Path(path).resolve()
    if real.parent.name == "blobs" and len(real.name) == 64 and all(c in "0123456789abcdef" for c in real.name):
        return real.name
    st = real.stat()
    key = (str(real), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        from bench.weights import sha256_file

        _DIGESTS[key] = sha256_file(real)
    return _DIGESTS[key]


def _weights_file(folder: Path) -> Path:
    from detectors.clip.backbones import HF_WEIGHT_FILES

    found = next((folder / n for n in HF_WEIGHT_FILES if (folder / n).is_file()), None)
    if found is None:
        raise BadCheckpointError(f"{folder}: holds none of {', '.join(HF_WEIGHT_FILES)}")
    return found


# --------------------------------------------------------------------------- open_clip


def open_clip_config(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """open_clip CLIP(...) keyword arguments read off a state dict's shapes, as open_clip's
    build_model_from_openai_state_dict does (heads = width // 64); the text tower only when the
    state holds one."""
    try:
        width = state["visual.conv1.weight"].shape[0]
        patch = state["visual.conv1.weight"].shape[-1]
        grid = round(math.sqrt(state["visual.positional_embedding"].shape[0] - 1))
        layers = len({k.split(".")[3] for k in state if k.startswith("visual.transformer.resblocks.")})
        mlp = state["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
        embed_dim = state["visual.proj"].shape[1] if "visual.proj" in state else width
    except KeyError as exc:
        raise BadCheckpointError(f"not an open_clip/OpenAI ViT state dict (missing {exc.args[0]!r})") from None
    vision = dict(image_size=patch * grid, patch_size=patch, width=width, layers=layers, head_width=64, mlp_ratio=mlp / width)
    if "token_embedding.weight" in state:
        tw = state["ln_final.weight"].shape[0]
        text = dict(context_length=state["positional_embedding"].shape[0], vocab_size=state["token_embedding.weight"].shape[0],
                    width=tw, heads=max(1, tw // 64), layers=len({k.split(".")[2] for k in state if k.startswith("transformer.resblocks.")}))
    else:
        text = dict(context_length=2, vocab_size=2, width=64, heads=1, layers=1)  # placeholder, dropped after building
    return dict(embed_dim=embed_dim, vision_cfg=vision, text_cfg=text)


def open_clip_state(file: str | os.PathLike) -> dict[str, torch.Tensor]:
    """An open_clip / OpenAI CLIP state dict from a file, without unpickling (bench.weights).
    OpenAI's own release (clip.load's ViT-L-14.pt) is a TorchScript archive, which is refused
    with a pointer to the same weights as a plain file."""
    import zipfile

    if zipfile.is_zipfile(file):
        with zipfile.ZipFile(file) as zf:
            if any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist()):
                raise MissingWeightsError(
                    f"{file} is a TorchScript archive (OpenAI's clip.load release), which is not run here; the same weights "
                    "as a plain file: open_clip_model.safetensors of https://huggingface.co/timm/vit_large_patch14_clip_224.openai "
                    "(ViT-L/14), or open_clip's other 'openai' pretrained files")
    state = unwrap_checkpoint(load_state(file), str(file), "visual.class_embedding")
    for key in ("input_resolution", "context_length", "vocab_size"):  # OpenAI's JIT extras
        state.pop(key, None)
    return state


def open_clip_encoder(model: nn.Module, *, fingerprint: str, arch: str = "", with_text: bool = False) -> Encoder:
    """An Encoder over an open_clip CLIP model (its text tower and tokenizer too when `with_text`)."""
    import open_clip

    tower: TextTower | None = None
    if with_text:
        context = int(model.positional_embedding.shape[0])
        # the model's own context length: a checkpoint may differ from the named architecture's
        tokenizer = open_clip.get_tokenizer(arch, context_length=context) if arch in open_clip.list_models() else \
            open_clip.tokenizer.SimpleTokenizer(context_length=context)
        tower = TextTower(tokenize=tokenizer, encode=lambda tokens, m=model: m.encode_text(tokens.to(m.token_embedding.weight.device)))
    visual = model.visual
    size = visual.image_size[0] if isinstance(visual.image_size, (tuple, list)) else int(visual.image_size)
    return Encoder(OpenClipAdapter(visual), normalization=CLIP, fingerprint=fingerprint, image_size=size, arch=arch, text=tower,
                   text_module=model if with_text else None)


def load_open_clip(state: dict[str, torch.Tensor], *, quick_gelu: bool, fingerprint: str, arch: str = "", with_text: bool = False,
                   where: str = "checkpoint") -> Encoder:
    """An Encoder from an open_clip-format state dict (visual.*, maybe the text tower), its
    architecture read off the shapes, in fp32."""
    require_library("open_clip")
    import open_clip

    cfg = open_clip_config(state)
    text = with_text and "token_embedding.weight" in state
    # Vision only: built on the meta device, the tensors assigned (no random init of 300M
    # parameters); with text on CPU, since the text tower has a non-persistent mask buffer.
    with torch.device("cpu" if text else "meta"):
        model = open_clip.CLIP(**cfg, quick_gelu=quick_gelu)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        if text:
            model.load_state_dict(state, strict=True)
        else:
            visual = {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
            model.visual.load_state_dict(visual, strict=True, assign=True)
    except RuntimeError as exc:
        raise BadCheckpointError(f"{where}: does not match the open_clip model read off its shapes: "
                                 f"{str(exc).splitlines()[0][:300]}") from None
    return open_clip_encoder(model, fingerprint=fingerprint, arch=arch, with_text=text)


def hf_clip_to_open_clip(state: dict[str, torch.Tensor], prefix: str = "vision_model.", projection: str = "visual_projection.weight"
                         ) -> dict[str, torch.Tensor]:
    """transformers CLIP vision keys -> open_clip `visual.*` keys (same tensors; q/k/v packed
    into in_proj, the projection transposed). The map of clip_facts.md section 6."""
    out: dict[str, torch.Tensor] = {}
    simple = {"embeddings.class_embedding": "class_embedding", "embeddings.patch_embedding.weight": "conv1.weight",
              "embeddings.position_embedding.weight": "positional_embedding", "pre_layrnorm.weight": "ln_pre.weight",
              "pre_layrnorm.bias": "ln_pre.bias", "post_layernorm.weight": "ln_post.weight", "post_layernorm.bias": "ln_post.bias"}
    rename = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "self_attn.out_proj": "attn.out_proj", "mlp.fc1": "mlp.c_fc",
              "mlp.fc2": "mlp.c_proj"}
    layers: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        k = key[len(prefix):]
        if k in simple:
            out[f"visual.{simple[k]}"] = value
        elif k.startswith("encoder.layers."):
            i, rest = k[len("encoder.layers."):].split(".", 1)
            layers.setdefault(int(i), {})[rest] = value
    for i, parts in sorted(layers.items()):
        p = f"visual.transformer.resblocks.{i}."
        for rest, value in parts.items():
            head = rest.rsplit(".", 1)[0]
            if head in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
                continue
            name = rename.get(head, head) + "." + rest.rsplit(".", 1)[1]
            out[p + name] = value
        out[p + "attn.in_proj_weight"] = torch.cat([parts[f"self_attn.{c}_proj.weight"] for c in "qkv"])
        out[p + "attn.in_proj_bias"] = torch.cat([parts[f"self_attn.{c}_proj.bias"] for c in "qkv"])
    if projection in state:
        out["visual.proj"] = state[projection].t()
    return out


# --------------------------------------------------------------------------- transformers


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers reports unused (text) weights and similar as warnings: not news here."""
    import transformers

    level = transformers.logging.get_verbosity()
    bar = transformers.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()  # 5.x draws one per from_pretrained
    try:
        yield
    finally:
        transformers.logging.set_verbosity(level)
        if bar:
            transformers.logging.enable_progress_bar()


def clip_vision_config(state: dict[str, torch.Tensor], prefix: str = "vision_model.") -> Any:
    """transformers CLIPVisionConfig read off a vision state dict (heads = hidden // 64, OpenAI's
    QuickGELU and LayerNorm eps 1e-5, as in openai/clip-vit-large-patch14)."""
    require_library("transformers")
    from transformers import CLIPVisionConfig

    try:
        hidden = state[f"{prefix}embeddings.class_embedding"].shape[0]
        patch = state[f"{prefix}embeddings.patch_embedding.weight"].shape[-1]
        positions = state[f"{prefix}embeddings.position_embedding.weight"].shape[0]
        layers = len({k[len(prefix):].split(".")[2] for k in state if k.startswith(f"{prefix}encoder.layers.")})
        inner = state[f"{prefix}encoder.layers.0.mlp.fc1.weight"].shape[0]
        proj = state["visual_projection.weight"].shape[0] if "visual_projection.weight" in state else hidden
    except KeyError as exc:
        raise BadCheckpointError(f"not a transformers CLIP vision state dict (missing {exc.args[0]!r})") from None
    return CLIPVisionConfig(hidden_size=hidden, intermediate_size=inner, num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
                            patch_size=patch, image_size=patch * round(math.sqrt(positions - 1)), projection_dim=proj,
                            hidden_act="quick_gelu", layer_norm_eps=1e-5)


def hf_clip_encoder(model: nn.Module, *, fingerprint: str, arch: str = "", text: TextTower | None = None) -> Encoder:
    """An Encoder over a transformers CLIPVisionModelWithProjection or CLIPModel."""
    vision = model.vision_model
    size = int(vision.config.image_size)
    text_module = model if text is not None else None
    return Encoder(HFClipAdapter(vision, getattr(model, "visual_projection", None)), normalization=CLIP, fingerprint=fingerprint,
                   image_size=size, arch=arch, text=text, text_module=text_module)


def _materialize(model: nn.Module, where: str) -> nn.Module:
    """After assigning a state to a meta-built transformers model: its non-persistent
    `position_ids` buffers are rebuilt (arange); anything else left on meta is an error."""
    for name, buf in list(model.named_buffers()):
        if buf.is_meta and name.endswith("position_ids"):
            owner = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            owner.register_buffer("position_ids", torch.arange(buf.shape[-1]).expand(buf.shape).clone(), persistent=False)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise BadCheckpointError(f"{where}: no value for {', '.join(left[:5])}")
    return model


def load_hf_clip_vision(state: dict[str, torch.Tensor], *, fingerprint: str, where: str = "checkpoint") -> Encoder:
    """An Encoder from a transformers CLIPVisionModelWithProjection state (vision_model.*,
    visual_projection.weight), its config read off the shapes (C2P-CLIP's tuned encoder)."""
    from transformers import CLIPVisionModelWithProjection

    config = clip_vision_config(state)
    with torch.device("meta"):
        model = CLIPVisionModelWithProjection(config)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise BadCheckpointError(f"{where}: does not match CLIPVisionModelWithProjection: {str(exc).splitlines()[0][:300]}") from None
    return hf_clip_encoder(_materialize(model, where).eval(), fingerprint=fingerprint)


def load_transformers(folder: Path, family: str, *, fingerprint: str, with_text: bool = False) -> Encoder:
    """A transformers encoder from a local folder (config.json + weights): family "clip" or "vit"."""
    require_library("transformers")
    import transformers

    with _quiet_transformers():
        try:
            if family == "clip":
                config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
                full = with_text and getattr(config, "text_config", None) is not None
                if full:
                    model = transformers.CLIPModel.from_pretrained(folder, local_files_only=True)
                elif getattr(config, "vision_config", None) is not None:  # a CLIPModel folder, read for its vision half:
                    vision = config.vision_config  # its projection size is the top-level one
                    vision.projection_dim = config.projection_dim
                    model = transformers.CLIPVisionModelWithProjection.from_pretrained(folder, config=vision, local_files_only=True)
                else:
                    model = transformers.CLIPVisionModelWithProjection.from_pretrained(folder, local_files_only=True)
                model = model.float().eval()
            else:
                model = transformers.AutoModel.from_pretrained(folder, local_files_only=True).float().eval()
        except (OSError, ValueError) as exc:
            raise BadCheckpointError(f"{folder}: transformers cannot load it: {str(exc).splitlines()[0][:300]}") from None
    if family == "clip":
        text = None
        # transformers 5 builds an empty-vocabulary tokenizer when the files are missing: ask for them
        if full and any((Path(folder) / f).is_file() for f in ("tokenizer.json", "vocab.json")):
            try:
                tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
                text = TextTower(tokenize=lambda t, tok=tokenizer: tok(t, padding=True, return_tensors="pt"),
                                 encode=lambda batch, m=model: m.get_text_features(**batch.to(m.device)))
            except (OSError, ValueError):  # no tokenizer files in the folder: vision only
                text = None
        return hf_clip_encoder(model, fingerprint=fingerprint, arch=str(folder), text=text)
    return Encoder(HFViTAdapter(model), normalization=IMAGENET, fingerprint=fingerprint,
                   image_size=int(model.config.image_size), arch=str(folder))


# --------------------------------------------------------------------------- loading a located backbone


def load_backbone(located: Located, *, with_text: bool = False) -> Encoder:
    """The Encoder of a backbone found by `detectors.clip.backbones.locate`."""
    b = located.backbone
    if b.library == "open_clip":
        digest = file_digest(located.path)
        state = open_clip_state(located.path)
        return load_open_clip(state, quick_gelu="quickgelu" in b.arch, fingerprint=f"open_clip:{b.arch}:{digest[:16]}", arch=b.arch,
                              with_text=with_text, where=str(located.path))
    digest = file_digest(_weights_file(located.path))
    return load_transformers(located.path, b.arch, fingerprint=f"transformers:{b.hf_repo}:{digest[:16]}", with_text=with_text)


def load_encoder(backbone: str | Any, override: str | os.PathLike | None = None, *, with_text: bool = False) -> Encoder:
    """An Encoder by backbone key ("openai-vit-l-14", see `detectors.clip.catalog.BACKBONES`) or
    `Backbone`, found as the detectors find theirs (`override` = their `backbone=`): the entry
    point for probes on frozen features, with the text tower when `with_text`."""
    from detectors.clip.backbones import locate
    from detectors.clip.catalog import BACKBONES

    if isinstance(backbone, str):
        if backbone not in BACKBONES:
            raise BenchError(f"unknown backbone {backbone!r}; known: {', '.join(BACKBONES)}")
        backbone = BACKBONES[backbone]
    return load_backbone(locate(backbone, override), with_text=with_text)
