"""The encoder layer of the CLIP/ViT family on tiny random encoders: every tap against a
reference computed without hooks, the RINE tap in both token layouts, the per-head decomposition,
open_clip and transformers agreeing on the same weights, and backbone files read back."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from detectors.clip.build import tiny_open_clip
from detectors.clip.contributions import project
from detectors.clip.encoders import TAPS, Encoder, TapError, capture, hf_clip_to_open_clip, load_open_clip, open_clip_encoder, \
    open_clip_state

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ATOL = 1e-5


def _shake_norms(model: nn.Module, seed: int) -> nn.Module:
    """LayerNorms start at weight 1 and every bias at 0: randomise them so that a tap read
    before or after the wrong norm, or a bias counted once per head, cannot pass by accident."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=g))
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return model


@pytest.fixture(scope="module")
def clip_model() -> nn.Module:
    """open_clip CLIP: width 128 (2 heads of 64, as shapes imply), 2 blocks, 5x5 patches of 8 + CLS."""
    torch.manual_seed(0)
    return _shake_norms(tiny_open_clip(width=128, heads=2, layers=2, patch=8, image=40, embed_dim=24, with_text=True), 1)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(3, 3, 40, 40, generator=torch.Generator().manual_seed(2))


def _manual_open_clip(visual: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The vision tower block by block, without hooks: CLS of each ln_2 output, of the last
    residual, after ln_post, and projected."""
    h = visual._embeds(x)
    ln2 = []
    for blk in visual.transformer.resblocks:
        mid = h + blk.ls_1(blk.attention(blk.ln_1(h)))
        ln2.append(blk.ln_2(mid)[:, 0])
        h = mid + blk.ls_2(blk.mlp(blk.ln_2(mid)))
    cls = visual.ln_post(h)[:, 0]
    return {"residual": h[:, 0], "cls": cls, "embed": cls @ visual.proj, "ln2": torch.stack(ln2, dim=1)}


def test_open_clip_taps_match_a_blockwise_reference(clip_model, images):
    enc = open_clip_encoder(clip_model, fingerprint="t")
    with torch.no_grad():
        ref = _manual_open_clip(clip_model.visual, images)
        got = {tap: enc.embed(images, tap) for tap in ("embed", "cls", "residual", "ln2")}
        library = clip_model.encode_image(images)
    torch.testing.assert_close(got["embed"], library, atol=ATOL, rtol=0)  # what UFD's encode_image gives
    for tap, value in ref.items():
        torch.testing.assert_close(got[tap], value, atol=ATOL, rtol=0, msg=tap)
    assert got["ln2"].shape == (3, 2, 128) and enc.width == 128 and enc.embed_dim == 24 and enc.tap_dim("cls") == 128
    assert not torch.allclose(got["cls"], got["residual"], atol=1e-2)  # the norms were shaken: the two taps differ


def _sequence_first(model: nn.Module) -> nn.Module:
    """The same weights run sequence-first (LND), as OpenAI's clip package and open_clip < 2.26 do."""
    import copy

    model = copy.deepcopy(model)
    model.visual.transformer.batch_first = False
    for blk in model.visual.transformer.resblocks:
        blk.attn.batch_first = False
    return model


def test_rine_tap_takes_the_cls_token_in_both_layouts(clip_model, images):
    """RINE indexes the stacked ln_2 outputs with [0] because OpenAI CLIP runs (L, N, D); batch-first
    open_clip needs [:, 0]. The tap must give the same (B, blocks, D) CLS tokens either way."""
    first = open_clip_encoder(clip_model, fingerprint="t")
    seq = open_clip_encoder(_sequence_first(clip_model), fingerprint="t")
    assert first.batch_first and not seq.batch_first
    with torch.no_grad(), capture([seq.blocks[0].ln2]) as (seen,):
        seq.adapter.forward(images)
    assert seen.output.shape == (26, 3, 128)  # tokens first: [:, 0] would take image 0's tokens, not the CLS
    with torch.no_grad():
        a, b = first.embed(images, "ln2"), seq.embed(images, "ln2")
        ref = _manual_open_clip(clip_model.visual, images)["ln2"]
    assert a.shape == b.shape == (3, 2, 128)
    torch.testing.assert_close(b, ref, atol=ATOL, rtol=0)
    torch.testing.assert_close(a, ref, atol=ATOL, rtol=0)


def _check_contributions(enc: Encoder, images: torch.Tensor, n_heads: int) -> None:
    with torch.no_grad():
        c = enc.embed(images, "contributions")
        residual = enc.embed(images, "residual")
        with capture([b.ln1 for b in enc.blocks]) as ln1, capture([b.ln2 for b in enc.blocks]) as ln2:
            enc.adapter.forward(images)
    assert c.heads.shape == (images.shape[0], len(enc.blocks), n_heads, enc.width)
    torch.testing.assert_close(c.total(), residual, atol=ATOL, rtol=0)
    for layer, (a, m) in enumerate(zip(ln1, ln2)):  # each block's heads add up to its attention output
        torch.testing.assert_close(c.attention()[:, layer], enc.token0(m.input) - enc.token0(a.input), atol=ATOL, rtol=0)
    with torch.no_grad():
        final = enc.embed(images, "embed" if enc.embed_dim else "cls")
    torch.testing.assert_close(project(enc, c).total(), final, atol=ATOL, rtol=0)
    torch.testing.assert_close(project(enc, c, through_projection=False).total(), enc.embed(images, "cls"), atol=ATOL, rtol=0)
    assert not torch.allclose(c.heads[:, 0, 0], c.heads[:, 0, 1], atol=1e-3)  # heads really differ


@pytest.mark.parametrize("layout", ["batch-first", "sequence-first"])
def test_head_contributions_add_up_open_clip(clip_model, images, layout):
    model = clip_model if layout == "batch-first" else _sequence_first(clip_model)
    _check_contributions(open_clip_encoder(model, fingerprint="t"), images, n_heads=2)


def test_head_contributions_follow_the_encoder_to_another_dtype(clip_model, images):
    """Moving the encoder (.to(device or dtype)) replaces its tensors: the decomposition must
    read the packed in_proj then, not a copy taken when the encoder was built."""
    import copy

    enc = open_clip_encoder(copy.deepcopy(clip_model), fingerprint="t").double()
    with torch.no_grad():
        c = enc.embed(images.double(), "contributions")
        torch.testing.assert_close(c.total(), enc.embed(images.double(), "residual"), atol=1e-10, rtol=0)


def _tiny_hf_clip() -> nn.Module:
    pytest.importorskip("transformers")
    from detectors.clip.build import tiny_hf_clip

    torch.manual_seed(3)
    return _shake_norms(tiny_hf_clip(width=128, heads=2, layers=2, patch=8, image=40, embed_dim=24), 4)


def test_head_contributions_add_up_transformers_clip_and_vit(images):
    from detectors.clip.build import tiny_hf_vit
    from detectors.clip.encoders import HFViTAdapter, hf_clip_encoder
    from detectors.clip.preprocess import IMAGENET

    _check_contributions(hf_clip_encoder(_tiny_hf_clip(), fingerprint="t"), images, n_heads=2)
    torch.manual_seed(5)
    vit = _shake_norms(tiny_hf_vit(width=48, heads=3, layers=2, patch=8, image=40), 6)
    enc = Encoder(HFViTAdapter(vit), normalization=IMAGENET, fingerprint="t")
    _check_contributions(enc, images, n_heads=3)
    with torch.no_grad():  # CoDE's feature: last_hidden_state[:, 0] of ViTModel is the "cls" tap
        torch.testing.assert_close(enc.embed(images, "cls"), vit(pixel_values=images).last_hidden_state[:, 0], atol=ATOL, rtol=0)
    with pytest.raises(TapError, match="no image projection"):
        enc.embed(images, "embed")


def test_open_clip_and_transformers_agree_on_the_same_weights(images):
    """UFD and RINE run OpenAI's weights through open_clip or transformers: converted keys must
    give the same features at every tap."""
    hf = _tiny_hf_clip()
    from detectors.clip.encoders import hf_clip_encoder

    state = {k: v for k, v in hf.state_dict().items()}
    a = hf_clip_encoder(hf, fingerprint="hf")
    b = load_open_clip(hf_clip_to_open_clip(state), quick_gelu=True, fingerprint="oc")
    assert b.batch_first and len(b.blocks) == 2 and b.blocks[0].heads == 2
    with torch.no_grad():
        for tap in ("embed", "cls", "residual", "ln2"):
            torch.testing.assert_close(a.embed(images, tap), b.embed(images, tap), atol=ATOL, rtol=0, msg=tap)
        ca, cb = a.embed(images, "contributions"), b.embed(images, "contributions")
    torch.testing.assert_close(ca.heads, cb.heads, atol=ATOL, rtol=0)
    with torch.no_grad():  # and the library's own projected output, not only our taps
        torch.testing.assert_close(b.embed(images), hf(pixel_values=images).image_embeds, atol=ATOL, rtol=0)


@pytest.mark.parametrize("fmt", ["safetensors", "wrapped-pth"])
def test_open_clip_backbone_file_reads_back(clip_model, images, tmp_path, fmt):
    """An open_clip weights file (HF's open_clip_model.safetensors, or a training checkpoint
    {'state_dict': {'module.*'}}) gives the same encoder, architecture read off the shapes."""
    state = {k: v.clone() for k, v in clip_model.state_dict().items()}
    if fmt == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "open_clip_model.safetensors"
        save_file(state, str(path))
    else:
        path = tmp_path / "epoch_1.pt"
        torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    enc = load_open_clip(open_clip_state(path), quick_gelu=True, fingerprint="f", with_text=True)
    with torch.no_grad():
        torch.testing.assert_close(enc.embed(images), clip_model.encode_image(images), atol=ATOL, rtol=0)
        text = enc.text(["a photo of a cat", "a painting"])
        tokens = enc.text.tokenize(["a photo of a cat", "a painting"])
        torch.testing.assert_close(text, clip_model.encode_text(tokens), atol=ATOL, rtol=0)
    assert text.shape == (2, 24)
    vision_only = load_open_clip(open_clip_state(path), quick_gelu=True, fingerprint="f")
    assert vision_only.text is None and not any(p.is_meta for p in vision_only.parameters())
    with torch.no_grad():  # quick_gelu is part of the architecture: the wrong activation changes the numbers
        other = load_open_clip(open_clip_state(path), quick_gelu=False, fingerprint="f")
        assert not torch.allclose(other.embed(images), vision_only.embed(images), atol=1e-3)


def test_unknown_tap_is_refused(clip_model, images):
    enc = open_clip_encoder(clip_model, fingerprint="t")
    with pytest.raises(TapError, match="unknown tap 'pooled'"):
        enc.embed(images, "pooled")
    assert set(TAPS) == {"embed", "cls", "residual", "ln2", "contributions"}
    assert not any(p.requires_grad for p in enc.parameters()) and not enc.training
    enc.train()
    assert not enc.training  # frozen: train() does not switch dropout on


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.script is deprecated: here it only makes the file
def test_openai_torchscript_release_is_refused_with_a_plain_alternative(tmp_path):
    path = tmp_path / "ViT-L-14.pt"
    torch.jit.script(nn.Linear(2, 2)).save(str(path))
    from bench.api import MissingWeightsError

    with pytest.raises(MissingWeightsError, match="TorchScript archive .* open_clip_model.safetensors"):
        open_clip_state(path)
