"""The CLIP/ViT detectors end to end, offline: preprocessing against hand-computed crops, every
official head layout (reference state dicts of the official shapes), backbones found in the
weights folder, the Hub cache or an explicit path and refused clearly when absent, the policy and
engine options, CoDE's one-time conversion, and the harness (`bench list`, `bench run`).

Real released files are read from ../shared/assets when present (`AIGI_BENCH_SHARED` points
elsewhere, e.g. from a worktree), and skipped otherwise."""
from __future__ import annotations

import hashlib
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import bench_cli as cli
from bench import registry
from bench.api import BenchError, LinearHeadModel, MissingWeightsError
from bench.weights import sha256_file
from detectors.checkpoint import BadCheckpointError
from detectors.clip import catalog
from detectors.clip.build import RECIPES, tiny_open_clip
from detectors.clip.linear import clipdet_head, ufd_head
from detectors.clip.preprocess import IMAGENET, POLICIES, CropNormalize, pipeline
from detectors.preprocess import CLIP_MEAN, CLIP_STD
from detectors.clip.rine import rine_head

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SHARED = Path(os.environ.get("AIGI_BENCH_SHARED", Path(__file__).resolve().parents[2] / "shared"))
ATOL = 1e-5


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty weights folder and Hub cache, and no Hub: what a fresh offline machine has."""
    import huggingface_hub.constants

    monkeypatch.setenv("AIGI_BENCH_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("AIGI_BENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return tmp_path / "weights"


def _noise(h: int, w: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _normalised(arr: np.ndarray, mean=CLIP_MEAN, std=CLIP_STD) -> torch.Tensor:
    t = torch.from_numpy(arr.astype(np.float32) / 255.0).permute(2, 0, 1)
    return (t - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


# --------------------------------------------------------------------------- preprocessing


def test_center_crop_without_resize_and_the_padding_of_small_images():
    """UFD/RINE/CoDE: the central 224x224 pixels; torchvision's offsets round((h - 224) / 2); an
    image smaller than 224 sits in the middle of a zero (black) canvas, (224 - h) // 2 from the top."""
    big, small = _noise(301, 404, 1), _noise(100, 151, 2)
    crop = CropNormalize(*catalog_norm("ufd"))
    a = np.asarray(big)[38:262, 90:314]  # round(77 / 2) = 38, round(180 / 2) = 90
    torch.testing.assert_close(crop(big), _normalised(a), atol=1e-6, rtol=0)
    canvas = np.zeros((224, 224, 3), np.uint8)
    canvas[62:162, 36:187] = np.asarray(small)  # (224 - 100) // 2 = 62, (224 - 151) // 2 = 36
    torch.testing.assert_close(crop(small), _normalised(canvas), atol=1e-6, rtol=0)
    coded = CropNormalize(*IMAGENET)(big)  # CoDE: same pixels, ImageNet's mean/std
    torch.testing.assert_close(coded, _normalised(a, *IMAGENET), atol=1e-6, rtol=0)


@pytest.mark.parametrize("resize, pil", [("bicubic", Image.BICUBIC), ("bilinear", Image.BILINEAR)])
def test_shorter_side_resize_then_crop(resize, pil):
    """ClipDet (bicubic) and C2P-CLIP (bilinear): shorter side to 224, the longer one
    int(224 * long / short), then the central crop."""
    image = _noise(300, 500, 3)
    got = CropNormalize(CLIP_MEAN, CLIP_STD, resize=resize)(image)
    resized = np.asarray(image.resize((373, 224), pil))  # int(224 * 500 / 300) = 373
    torch.testing.assert_close(got, _normalised(resized[:, 74:298]), atol=1e-6, rtol=0)  # round(149 / 2) = 74
    assert got.shape == (3, 224, 224)


def catalog_norm(name: str):
    return RECIPES[name].native.mean, RECIPES[name].native.std


def test_each_native_pipeline_is_what_the_catalog_says_and_harmonized_is_shared():
    for name, recipe in RECIPES.items():
        assert recipe.native.describe() == catalog.NATIVE_STEPS[name], name
        harmonized = pipeline(recipe.native, "harmonized")
        assert (harmonized.resize, harmonized.mean, harmonized.std) == ("bicubic", recipe.native.mean, recipe.native.std)
    assert RECIPES["code"].native.mean == IMAGENET[0] and RECIPES["ufd"].native.mean == CLIP_MEAN
    with pytest.raises(ValueError, match="unknown input policy"):
        pipeline(RECIPES["ufd"].native, "resized")


def test_pixels_normalised_on_the_device_equal_the_float_pipeline():
    """A run ships the crop as 8-bit pixels and `prepare` normalises them: bit for bit the float
    pipeline (ToTensor + Normalize), for every recipe and both policies, padding included."""
    images = [_noise(240, 260, 1), _noise(180, 300, 2), _noise(100, 150, 3)]  # the last is padded to 224
    for name, recipe in RECIPES.items():
        for policy in POLICIES:
            steps = pipeline(recipe.native, policy)
            shipped = torch.stack([steps.pixels()(im) for im in images])
            assert shipped.dtype == torch.uint8 and shipped.shape == (3, 3, 224, 224)
            assert torch.equal(steps.normalize_pixels(shipped), torch.stack([steps(im) for im in images])), (name, policy)
            assert steps.pixels().describe() == steps.describe()


# --------------------------------------------------------------------------- tiny backbones on disk


def _tiny_clip(embed_dim: int = 16, quick_gelu: bool = True, seed: int = 0) -> nn.Module:
    """A ViT-L/14-shaped open_clip CLIP in miniature: width 64 (one 64-wide head, as shapes
    imply), 2 blocks, 32-px patches at 224, with its text tower."""
    torch.manual_seed(seed)
    return tiny_open_clip(quick_gelu=quick_gelu, width=64, heads=1, layers=2, patch=32, image=224, embed_dim=embed_dim, with_text=True)


def _put_open_clip_backbone(folder: Path, model: nn.Module) -> Path:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def _linear_state(dim: int, seed: int, prefix: str = "") -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {f"{prefix}weight": torch.randn(1, dim, generator=g), f"{prefix}bias": torch.randn(1, generator=g)}


def _images() -> list[Image.Image]:
    return [_noise(240, 260, 7), _noise(180, 300, 8)]


def _batch(det) -> torch.Tensor:
    return det.prepare(torch.stack([det.preprocess()(im) for im in _images()]))


# --------------------------------------------------------------------------- UFD


def test_ufd_from_the_weights_folder_equals_its_definition(offline):
    """UFD = fc(encode_image(x)), 768-d in the real model, not normalised; bare {weight, bias} head."""
    model = _tiny_clip()
    backbone = _put_open_clip_backbone(offline / "backbones" / "openai-vit-l-14", model)
    head = offline / "ufd" / "fc_weights.pth"
    head.parent.mkdir(parents=True)
    state = _linear_state(16, 1)
    torch.save(state, head)
    spec = registry.detector_spec("ufd")
    assert spec.missing() is None
    det = registry.create_detector("ufd")
    assert det.weights == "ufd.official" and det.info.input.size == (224, 224)
    assert det.fingerprint == f"{sha256_file(head)}+open_clip:ViT-L-14-quickgelu:{sha256_file(backbone)[:16]}"
    x = _batch(det)
    with torch.no_grad():
        expected = model.encode_image(x) @ state["weight"].t() + state["bias"]
    torch.testing.assert_close(det.forward(x), expected.squeeze(1), atol=ATOL, rtol=0)
    assert isinstance(det.model, LinearHeadModel) and det.model.normalization == (CLIP_MEAN, CLIP_STD)

    from bench.selection import default_detector_names

    assert "ufd.official" in default_detector_names("official")  # head and backbone here: it joins default runs


def test_ufd_head_layouts(tmp_path):
    official = _linear_state(768, 2)
    torch.save(official, tmp_path / "fc_weights.pth")
    fc = ufd_head(tmp_path / "fc_weights.pth")
    assert torch.equal(fc.weight, official["weight"]) and torch.equal(fc.bias, official["bias"])
    torch.save({f"fc.{k}": v for k, v in official.items()}, tmp_path / "prefixed.pth")
    assert torch.equal(ufd_head(tmp_path / "prefixed.pth").weight, official["weight"])
    torch.save({**official, "extra": torch.zeros(1)}, tmp_path / "extra.pth")
    with pytest.raises(BadCheckpointError, match="expected exactly"):
        ufd_head(tmp_path / "extra.pth")
    torch.save({"weight": torch.zeros(2, 768), "bias": torch.zeros(2)}, tmp_path / "two.pth")
    with pytest.raises(BadCheckpointError, match=r"weight \(1, D\)"):
        ufd_head(tmp_path / "two.pth")


def test_ufd_through_transformers_and_open_clip_gives_the_same_logits(offline, tmp_path):
    """engine="transformers" reads a transformers CLIP folder (openai/clip-vit-large-patch14's
    layout); the same weights converted to open_clip give the same UFD logits."""
    pytest.importorskip("transformers")
    from safetensors.torch import save_file
    from transformers import CLIPConfig, CLIPModel

    from detectors.clip.encoders import hf_clip_to_open_clip, load_encoder

    torch.manual_seed(11)
    hf = CLIPModel(CLIPConfig(
        text_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=1, vocab_size=100,
                         max_position_embeddings=16),
        vision_config=dict(hidden_size=128, intermediate_size=512, num_hidden_layers=2, num_attention_heads=2, patch_size=32, image_size=224,
                           hidden_act="quick_gelu"),
        projection_dim=16)).eval()
    hf.save_pretrained(tmp_path / "hf")
    save_file({k: v.contiguous() for k, v in hf_clip_to_open_clip(hf.state_dict()).items()}, str(tmp_path / "oc.safetensors"))
    (offline / "ufd").mkdir(parents=True)
    head = _linear_state(16, 12)
    torch.save(head, offline / "ufd" / "fc_weights.pth")
    a = registry.create_detector("ufd", engine="transformers", backbone=tmp_path / "hf")
    b = registry.create_detector("ufd", backbone=tmp_path / "oc.safetensors")
    x = _batch(a)
    with torch.no_grad():
        v = hf.visual_projection(hf.vision_model(pixel_values=x).pooler_output)
    expected = (v @ head["weight"].t() + head["bias"]).squeeze(1)
    torch.testing.assert_close(a.forward(x), expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(b.forward(x), expected, atol=ATOL, rtol=0)
    assert "transformers:" in a.fingerprint and "open_clip:" in b.fingerprint
    with pytest.raises(MissingWeightsError, match="transformers loads a folder"):
        registry.create_detector("ufd", engine="transformers", backbone=tmp_path / "oc.safetensors")
    encoder = load_encoder("openai-clip-vit-large-patch14", tmp_path / "hf", with_text=True)
    assert encoder.text is None  # no tokenizer files in the folder: vision only, said plainly
    assert encoder.embed_dim == 16 and len(encoder.blocks) == 2


@pytest.mark.skipif(not (SHARED / "assets" / "ufd" / "fc_weights.pth").is_file(), reason="../shared/assets/ufd is absent")
def test_the_released_ufd_head_on_a_768_d_encoder():
    """The official fc_weights.pth (saved from cuda:0) loads on CPU into UFD's Linear(768, 1)."""
    from detectors.clip.encoders import open_clip_encoder
    from detectors.clip.linear import LinearProbe

    path = SHARED / "assets" / "ufd" / "fc_weights.pth"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == "477100745713bcc957beb2b40859536859b6483fd6301b3b9293151b194c7847"
    fc = ufd_head(path)
    assert fc.weight.shape == (1, 768) and abs(fc.bias.item() + 0.5167) < 1e-3 and abs(fc.weight.norm().item() - 6.20) < 0.01
    model = _tiny_clip(embed_dim=768)
    probe = LinearProbe(open_clip_encoder(model, fingerprint="t"), "embed", l2=False, fc=fc)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(probe(x), (model.encode_image(x) @ fc.weight.t() + fc.bias).squeeze(1), atol=ATOL, rtol=0)


# --------------------------------------------------------------------------- ClipDet


@pytest.mark.parametrize("wrap", ["model", "model-module", "state_dict", "net", "bare"])
def test_clipdet_head_in_every_official_wrapping(tmp_path, wrap):
    """networks/__init__.py load_weights: {'model'} (a 'module.' prefix dropped), {'state_dict'} or
    {'net'}, each holding OpenClipLinear's fc.weight (1, 1024) and fc.bias (1,); bare is accepted too."""
    state = _linear_state(1024, 3, "fc.")
    obj = {"model": state, "model-module": {"model": {f"module.{k}": v for k, v in state.items()}}, "state_dict": {"state_dict": state},
           "net": {"net": state}, "bare": state}[wrap]
    obj = obj if wrap != "model" else {"model": state}
    torch.save(obj, tmp_path / "weights.pth")
    fc = clipdet_head(tmp_path / "weights.pth")
    assert torch.equal(fc.weight, state["fc.weight"]) and torch.equal(fc.bias, state["fc.bias"])


def test_clipdet_is_the_normalised_pre_projection_cls(offline):
    """ClipDet sets visual.proj = None: ln_post(CLS), L2-normalised, then ChannelLinear(1024, 1)
    (here 64-d); the logit is an LLR, > 0 = synthetic. Its ViT-L-14 runs GELU, not QuickGELU."""
    model = _tiny_clip(quick_gelu=False)
    _put_open_clip_backbone(offline / "backbones" / "laion-vit-l-14-commonpool-xl", model)
    state = _linear_state(64, 4, "fc.")
    (offline / "clipdet").mkdir(parents=True)
    torch.save({"model": state}, offline / "clipdet" / "clipdet_latent10k_plus.pth")
    det = registry.create_detector("clipdet.official")
    x = _batch(det)
    import copy

    reference = copy.deepcopy(model)
    reference.visual.proj = None  # exactly what OpenClipLinear(next_to_last=True) does
    with torch.no_grad():
        feats = reference.encode_image(x, normalize=True)
    torch.testing.assert_close(det.forward(x), (feats @ state["fc.weight"].t() + state["fc.bias"]).squeeze(1), atol=ATOL, rtol=0)
    assert det.info.input.steps == "shorter side to 224 (bicubic), center-crop 224; CLIP mean/std"


# --------------------------------------------------------------------------- RINE


def _rine_state(blocks: int, width: int, proj_dim: int, nproj: int, seed: int = 0, empty: bool = False) -> dict[str, torch.Tensor]:
    """The keys and shapes of ckpt/model_*_trainable.pth, from RINE's Model: alpha, proj1.{1,4,..},
    proj2.{1,4,..}, head.{0,3,6}."""
    g = torch.Generator().manual_seed(seed)
    new = (lambda *s: torch.zeros(*s)) if empty else (lambda *s: torch.randn(*s, generator=g) / max(1, s[-1]) ** 0.5)
    state = {"alpha": new(1, blocks, proj_dim)}
    for i in range(nproj):
        state[f"proj1.{1 + 3 * i}.weight"], state[f"proj1.{1 + 3 * i}.bias"] = new(proj_dim, width if i == 0 else proj_dim), new(proj_dim)
        state[f"proj2.{1 + 3 * i}.weight"], state[f"proj2.{1 + 3 * i}.bias"] = new(proj_dim, proj_dim), new(proj_dim)
    for i, out in ((0, proj_dim), (3, proj_dim), (6, 1)):
        state[f"head.{i}.weight"], state[f"head.{i}.bias"] = new(out, proj_dim), new(out)
    return state


@pytest.mark.parametrize("setting, nproj, proj_dim", [("1class", 4, 1024), ("2class", 4, 128), ("4class", 2, 1024), ("ldm", 4, 1024)])
def test_rine_checkpoints_of_every_released_setting_load_strictly(setting, nproj, proj_dim):
    head = rine_head(_rine_state(24, 1024, proj_dim, nproj, empty=True), blocks=24, width=1024, where=setting)
    assert head.alpha.shape == (1, 24, proj_dim)
    assert sum(isinstance(m, nn.Linear) for m in head.proj1) == nproj == sum(isinstance(m, nn.Linear) for m in head.proj2)
    assert head.head[6].weight.shape == (1, proj_dim)


def test_rine_head_computes_the_official_forward():
    """z = sum over blocks of softmax(alpha, dim=1) * proj1(g); logit = head(proj2(z)); ReLU
    between linears, dropout off at test time."""
    state = _rine_state(3, 32, 8, 2, seed=5)
    head = rine_head(state, blocks=3, width=32)
    g = torch.randn(4, 3, 32)

    def mlp(x, prefix, n):
        for i in range(n):
            x = torch.relu(x @ state[f"{prefix}.{1 + 3 * i}.weight"].t() + state[f"{prefix}.{1 + 3 * i}.bias"])
        return x

    z = (torch.softmax(state["alpha"], dim=1) * mlp(g, "proj1", 2)).sum(dim=1)
    h = mlp(z, "proj2", 2)
    h = torch.relu(h @ state["head.0.weight"].t() + state["head.0.bias"])
    h = torch.relu(h @ state["head.3.weight"].t() + state["head.3.bias"])
    expected = (h @ state["head.6.weight"].t() + state["head.6.bias"]).squeeze(1)
    with torch.no_grad():
        torch.testing.assert_close(head(g), expected, atol=ATOL, rtol=0)
    with pytest.raises(BadCheckpointError, match="made for 3 blocks of width 32, but the backbone has 24 blocks of width 1024"):
        rine_head(state, blocks=24, width=1024)
    with pytest.raises(BadCheckpointError, match="not a RINE checkpoint"):
        rine_head({"alpha": state["alpha"]}, blocks=3, width=32)


def test_rine_detector_reads_the_ln2_cls_tokens(offline):
    model = _tiny_clip()
    _put_open_clip_backbone(offline / "backbones" / "openai-vit-l-14", model)
    state = _rine_state(2, 64, 8, 2, seed=6)
    (offline / "rine").mkdir(parents=True)
    torch.save(state, offline / "rine" / "model_4class_trainable.pth")
    det = registry.create_detector("rine")
    assert det.weights == "rine.official"
    x = _batch(det)
    h, tokens = model.visual._embeds(x), []
    with torch.no_grad():
        for blk in model.visual.transformer.resblocks:  # the CLS of every ln_2 output, computed without hooks
            mid = h + blk.attention(blk.ln_1(h))
            tokens.append(blk.ln_2(mid)[:, 0])
            h = mid + blk.mlp(blk.ln_2(mid))
        expected = rine_head(state, blocks=2, width=64)(torch.stack(tokens, dim=1))
    torch.testing.assert_close(det.forward(x), expected, atol=ATOL, rtol=0)


@pytest.mark.skipif(not (SHARED / "assets" / "rine" / "model_2class_trainable.pth").is_file(), reason="../shared/assets/rine is absent")
def test_the_released_rine_2class_checkpoint():
    head = rine_head(SHARED / "assets" / "rine" / "model_2class_trainable.pth", blocks=24, width=1024)
    assert head.alpha.shape == (1, 24, 128) and head.proj1[1].weight.shape == (128, 1024) and head.head[6].weight.shape == (1, 128)


# --------------------------------------------------------------------------- C2P-CLIP


def _c2p_release(tmp_path: Path, zipped: bool, position_ids: bool) -> tuple[Path, nn.Module, dict]:
    """A C2P_CLIP module's strict state dict (model.vision_model.*, model.visual_projection.weight,
    model.fc.*) of a tiny transformers CLIP, as a .pth or inside a zip like the release."""
    pytest.importorskip("transformers")
    from detectors.clip.build import tiny_hf_clip

    torch.manual_seed(8)
    hf = tiny_hf_clip(width=128, heads=2, layers=2, patch=32, image=224, embed_dim=24)
    fc = _linear_state(24, 9, "fc.")
    state = {f"model.{k}": v for k, v in hf.state_dict().items()} | {f"model.{k}": v for k, v in fc.items()}
    if position_ids:  # what transformers < 4.31 saved
        state["model.vision_model.embeddings.position_ids"] = torch.arange(50).unsqueeze(0)
    pth = tmp_path / "C2P_CLIP_release_20240901.pth"
    torch.save(state, pth)
    if not zipped:
        return pth, hf, fc
    path = tmp_path / "C2P_CLIP_release_20240901.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.write(pth, pth.name)
    return path, hf, fc


@pytest.mark.parametrize("zipped, position_ids", [(True, False), (False, True)])
def test_c2p_clip_release_carries_its_encoder(offline, tmp_path, zipped, position_ids):
    """fc(v / |v|) with v = visual_projection(pooler_output), on the encoder inside the file;
    engine="open_clip" converts it and gives the same logits."""
    path, hf, fc = _c2p_release(tmp_path, zipped, position_ids)
    det = registry.create_detector("c2p-clip.official", path=path)
    x = _batch(det)
    with torch.no_grad():
        v = hf(pixel_values=x).image_embeds
        expected = ((v / v.norm(p=2, dim=-1, keepdim=True)) @ fc["fc.weight"].t() + fc["fc.bias"]).squeeze(1)
        torch.testing.assert_close(det.forward(x), expected, atol=ATOL, rtol=0)
        other = registry.create_detector("c2p-clip.official", path=path, engine="open_clip")
        torch.testing.assert_close(other.forward(x), expected, atol=ATOL, rtol=0)
    assert det.fingerprint.endswith("+transformers") and other.fingerprint.endswith("+open_clip")
    assert det.info.input.steps == "shorter side to 224 (bilinear), center-crop 224; CLIP mean/std"
    with pytest.raises(BenchError, match="carries its own encoder"):
        registry.create_detector("c2p-clip.official", path=path, backbone="x")


def test_c2p_clip_refuses_other_checkpoints(tmp_path):
    pytest.importorskip("transformers")
    torch.save(_linear_state(768, 1, "fc."), tmp_path / "fc_only.pth")
    with pytest.raises(BadCheckpointError, match="not a C2P-CLIP checkpoint"):
        registry.create_detector("c2p-clip.official", path=tmp_path / "fc_only.pth")
    with zipfile.ZipFile(tmp_path / "two.zip", "w") as zf:
        zf.writestr("a.pth", b"1")
        zf.writestr("b.pth", b"2")
    with pytest.raises(MissingWeightsError, match="a zip with 2 files"):
        registry.create_detector("c2p-clip.official", path=tmp_path / "two.zip")


# --------------------------------------------------------------------------- CoDE


def _tiny_vit_folder(folder: Path) -> nn.Module:
    """CoDE's backbone in miniature, saved as transformers saves it (config.json + model.safetensors)."""
    pytest.importorskip("transformers")
    from detectors.clip.build import tiny_hf_vit

    torch.manual_seed(10)
    vit = tiny_hf_vit(width=32, heads=2, layers=2, patch=32, image=224)
    vit.save_pretrained(folder)
    return vit


def _code_heads(features: np.ndarray, labels: np.ndarray) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import OneClassSVM

    return {"linear": LogisticRegression(C=0.316, class_weight="balanced", max_iter=200).fit(features, labels),
            "svm": OneClassSVM(nu=0.1, kernel="poly", gamma="auto").fit(features[labels == 0]),
            "knn": KNeighborsClassifier(n_neighbors=1, weights="uniform", metric="cosine").fit(features, labels)}


def test_code_heads_are_converted_once_and_score_like_decision_function(offline, tmp_path, capsys):
    """`bench weights convert-code` unpickles CoDE's estimator once and writes safetensors; the
    detector reads only that and returns decision_function's score: the logistic logit, minus
    the one-class SVM's decision (fake = outlier), and the 1-NN margin, each > 0 exactly when
    the official predict() says fake."""
    import joblib

    vit = _tiny_vit_folder(offline / "backbones" / "aimagelab-code")
    rng = np.random.default_rng(0)
    train = [_noise(230, 230, 100 + i) for i in range(24)]
    labels = np.array([i % 2 for i in range(24)])
    prep = CropNormalize(*IMAGENET)
    with torch.no_grad():
        feats = vit(pixel_values=torch.stack([prep(im) for im in train])).last_hidden_state[:, 0].numpy()
    feats[labels == 1] += 0.05 * rng.standard_normal(feats.shape[1])  # separable enough to be non-trivial
    for kind, est in _code_heads(feats, labels).items():
        src = tmp_path / f"{kind}.sav"
        joblib.dump(est, src)
        assert cli.main(["weights", "convert-code", str(src)]) == 0
        out = capsys.readouterr()
        tag = catalog.CODE_TAGS[kind]
        assert f"score with --detectors code.{tag}" in out.out and "runs code from the file" in out.err
        det = registry.create_detector(f"code.{tag}")
        test = [_noise(224, 224, 200 + i) for i in range(6)] + train[:4]
        x = det.prepare(torch.stack([det.preprocess()(im) for im in test]))
        with torch.no_grad():
            f = vit(pixel_values=x).last_hidden_state[:, 0].numpy()
        got = det.forward(x).numpy()
        if kind == "linear":
            np.testing.assert_allclose(got, est.decision_function(f), atol=1e-4)
        elif kind == "svm":
            np.testing.assert_allclose(got, -est.decision_function(f), rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(got > 0, est.predict(f) == (1 if kind != "svm" else -1))
        assert det.info.family == "ViT" and det.info.input.steps.endswith("ImageNet mean/std")


def test_code_conversion_refuses_what_it_cannot_score(tmp_path, capsys):
    import joblib
    from safetensors.torch import save_file
    from sklearn.linear_model import LogisticRegression

    x = np.random.default_rng(1).standard_normal((30, 4))
    joblib.dump(LogisticRegression().fit(x, np.arange(30) % 3), tmp_path / "three.sav")
    assert cli.main(["weights", "convert-code", str(tmp_path / "three.sav"), "--out", str(tmp_path / "o.safetensors")]) == 2
    assert "expected [0, 1]" in capsys.readouterr().err
    save_file({"weight": torch.zeros(1, 4)}, str(tmp_path / "plain.safetensors"))
    from detectors.clip.code import read_converted

    with pytest.raises(BadCheckpointError, match="convert the official file with `bench weights convert-code`"):
        read_converted(tmp_path / "plain.safetensors")


# --------------------------------------------------------------------------- backbones


def test_missing_backbone_offline_fails_at_once_and_says_what_to_put_where(offline):
    (offline / "ufd").mkdir(parents=True)
    torch.save(_linear_state(16, 1), offline / "ufd" / "fc_weights.pth")
    start = time.perf_counter()
    with pytest.raises(MissingWeightsError) as exc:
        registry.create_detector("ufd.official")
    assert time.perf_counter() - start < 5, "no retries against an unreachable Hub"
    message = str(exc.value)
    for needed in ("OpenAI CLIP ViT-L/14", "HF_HUB_OFFLINE is set", "open_clip_model.safetensors",
                   "https://huggingface.co/timm/vit_large_patch14_clip_224.openai", str(offline / "backbones" / "openai-vit-l-14"),
                   "pretrained='openai'", "backbone="):
        assert needed in message, needed
    assert "backbone missing (OpenAI CLIP ViT-L/14)" in registry.detector_spec("ufd").missing()


def test_missing_head_is_named_before_any_backbone_is_looked_for(offline):
    with pytest.raises(MissingWeightsError, match=str(offline / "ufd" / "fc_weights.pth")):
        registry.create_detector("ufd.official")


def test_explicit_backbone_paths_and_hub_ids(offline, tmp_path):
    model = _tiny_clip()
    file = _put_open_clip_backbone(tmp_path / "mine", model)
    (offline / "ufd").mkdir(parents=True)
    torch.save(_linear_state(16, 1), offline / "ufd" / "fc_weights.pth")
    a = registry.create_detector("ufd", backbone=file)
    b = registry.create_detector("ufd", backbone=tmp_path / "mine")  # a folder holding the file
    assert a.fingerprint == b.fingerprint
    with pytest.raises(MissingWeightsError, match="holds none of the files needed"):
        registry.create_detector("ufd", backbone=tmp_path)
    with pytest.raises(MissingWeightsError, match="not a Hub repository id"):
        registry.create_detector("ufd", backbone="no such thing")
    with pytest.raises(MissingWeightsError, match="https://huggingface.co/someone/other-clip"):
        registry.create_detector("ufd", backbone="someone/other-clip")  # a Hub id: offline, so named and refused


def test_backbones_in_the_hub_cache_are_found_without_network(offline):
    """What open_clip or transformers downloaded before: models--org--name/snapshots/<rev>/."""
    import huggingface_hub.constants as hc

    from detectors.clip.backbones import find_local

    repo = Path(hc.HF_HUB_CACHE) / "models--timm--vit_large_patch14_clip_224.openai"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    _put_open_clip_backbone(repo / "snapshots" / "abc123", _tiny_clip())
    found = find_local(catalog.OPENAI_L14)
    assert found is not None and found.origin == "hub cache" and found.path.name == "open_clip_model.safetensors"
    assert registry.detector_spec("rine").missing() is None


def test_a_reachable_hub_is_asked_for_each_file_name_in_turn(offline, tmp_path, monkeypatch):
    """Online, the first of the backbone's file names that the repository has is downloaded
    (for transformers, config.json too); a repository with none of them is a named error."""
    import huggingface_hub

    from detectors.clip import backbones

    remote = {("laion/CLIP-ViT-L-14-CommonPool.XL-s13B-b90K", "open_clip_pytorch_model.bin"),
              ("aimagelab/CoDE", "config.json"), ("aimagelab/CoDE", "model.safetensors")}
    asked = []

    def fake_download(repo: str, filename: str) -> str:
        asked.append(filename)
        if (repo, filename) not in remote:
            raise FileNotFoundError(filename)
        path = tmp_path / "hub" / repo / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        return str(path)

    monkeypatch.setattr(backbones, "hub_unreachable", lambda: None)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    got = backbones.locate(catalog.COMMONPOOL_L14)
    assert got.origin == "hub download" and got.path.name == "open_clip_pytorch_model.bin"
    assert asked == ["open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "open_clip_pytorch_model.bin"]
    vit = backbones.locate(catalog.CODE_VIT) if importlib_has("transformers") else None
    assert vit is None or vit.path == tmp_path / "hub" / "aimagelab" / "CoDE"
    with pytest.raises(MissingWeightsError, match="has none of open_clip_model.safetensors"):
        backbones.locate(catalog.OPENAI_L14)


def importlib_has(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def test_harmonized_policy_and_engines_are_options_with_their_own_cache_key(offline):
    spec = registry.detector_spec("ufd")
    native, harmonized = spec.build_tiny(), spec.build_tiny(policy="harmonized")
    assert harmonized.fingerprint == native.fingerprint + "+harmonized"
    assert harmonized.info.input.steps == "harmonized: shorter side to 224 (bicubic), center-crop 224; CLIP mean/std"
    image = _noise(300, 500, 4)
    assert not torch.equal(native.preprocess()(image), harmonized.preprocess()(image))
    with pytest.raises(BenchError, match="unknown input policy 'resize'"):
        spec.build_tiny(policy="resize")
    with pytest.raises(BenchError, match="engine 'transformers' is not available; known: open_clip"):
        registry.detector_spec("clipdet").build_tiny(engine="transformers")


def test_linear_probes_refit_like_the_resnets():
    """A CLIP linear head is a LinearHeadModel: the house refit (Stay-Positive clamp) runs on it."""
    from detectors.head import refit_head

    det = registry.detector_spec("ufd").build_tiny()
    x = _batch(det).repeat(2, 1, 1, 1)
    y = torch.tensor([0.0, 1.0, 0.0, 1.0])
    loader = [(x, y)]
    result = refit_head(det.model, loader, loader, nonneg=True, max_epochs=1, progress=False)
    assert result is not None and (det.model.head.weight >= 0).all()


# --------------------------------------------------------------------------- harness


def test_bench_list_shows_the_family_and_what_is_missing(offline, capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("ufd "))
    assert "UFD" in row and "CLIP" in row and "center-crop 224, no resize; CLIP mean/std" in row
    assert "official* (missing)" in row and "backbone missing (OpenAI CLIP ViT-L/14) (-v: details)" in row
    code = next(line for line in out.splitlines() if line.startswith("code "))
    assert " ViT " in code
    assert cli.main(["list", "-v"]) == 0
    assert str(offline / "backbones" / "openai-vit-l-14") in capsys.readouterr().out


def test_bench_run_names_the_missing_head_file_then_runs_and_records_the_preprocessing(offline, capsys, folder_suite_dir, tmp_path):
    import json

    args = ["run", "--suite", "folder", "--data-root", str(folder_suite_dir), "--out", str(tmp_path / "res"), "--workers", "0"]
    assert cli.main([*args, "--detectors", "ufd"]) == 2
    err = capsys.readouterr().err
    assert str(offline / "ufd" / "fc_weights.pth") in err and "Traceback" not in err
    _put_open_clip_backbone(offline / "backbones" / "openai-vit-l-14", _tiny_clip())
    (offline / "ufd").mkdir(parents=True)
    torch.save(_linear_state(16, 1), offline / "ufd" / "fc_weights.pth")
    assert cli.main(args) == 0  # the default selection: every detector whose official weights (and backbone) are here
    captured = capsys.readouterr()
    assert any(line.startswith("UFD ") for line in captured.out.splitlines()), captured.out  # its row in the summary
    manifest = json.loads((tmp_path / "res" / "folder" / "manifest.json").read_text())
    ufd = next(d for d in manifest["detectors"] if d["name"] == "ufd")
    assert ufd["input"] == "fixed 224x224: center-crop 224, no resize; CLIP mean/std" and ufd["family"] == "CLIP"


def test_policy_engine_and_backbone_reach_a_run_as_detector_options():
    """`bench run --detector-option policy=harmonized` goes to the CLIP rows only, and labels them."""
    from bench.selection import options_for, row_label

    taken = options_for(["ufd", "c2p-clip", "corvi"], {"policy": "harmonized", "engine": "open_clip"})
    assert taken == {"ufd": {"policy": "harmonized", "engine": "open_clip"},
                     "c2p-clip": {"policy": "harmonized", "engine": "open_clip"}, "corvi": {}}
    det = registry.detector_spec("ufd").build_tiny(policy="harmonized")
    assert row_label(det, taken["ufd"]) == "UFD (tiny, engine=open_clip, policy=harmonized)"
