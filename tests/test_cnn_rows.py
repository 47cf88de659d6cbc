"""SAFE, FerretNet, LaDeDa, DRCT and AIDE: official key layouts load strictly in every official
wrapping, preprocessing matches torchvision (or an explicit formula), and each network's
distinctive computation is checked against an independent reference."""
from __future__ import annotations

import argparse
import pathlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

from bench.api import BenchError, MissingWeightsError
from bench.registry import create_detector, detector_spec
from bench.weights import load_state, local_path
from detectors.module_detector import ModuleDetector, two_class_logit
from detectors.preprocess import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, CenterCropNormalize
from detectors.checkpoint import BadCheckpointError
from official_states import (
    batch_norm,
    ferretnet_shapes,
    ladeda9_shapes,
    openai_clip_shapes,
    random_bottleneck_state,
    random_state,
    reference_stages,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NAMES = ("safe", "ferretnet", "ladeda", "drct", "drct-clip", "aide")


def _image(h: int, w: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _wrappings(state: dict[str, torch.Tensor]) -> list[dict]:
    """The wrappings official loaders accept: raw, {'model': ...}, a DataParallel prefix."""
    return [state, {"model": state}, {"model": {f"module.{k}": v for k, v in state.items()}}]


# --------------------------------------------------------------------------- preprocessing


@pytest.mark.parametrize("size", [(300, 411), (256, 256), (100, 257), (259, 90), (64, 48), (263, 263)])
def test_center_crop_matches_torchvision(size):
    """SAFE/FerretNet: torchvision CenterCrop (zero padding, rounded offset), ToTensor, Normalize."""
    image = _image(*size)
    ref = transforms.Compose([transforms.CenterCrop(256), transforms.ToTensor(), transforms.Normalize(CLIP_MEAN, CLIP_STD)])(image)
    got = CenterCropNormalize((256, 256), CLIP_MEAN, CLIP_STD)(image)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)
    unit = CenterCropNormalize((256, 256), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))(image)  # SAFE: no normalisation
    torch.testing.assert_close(unit, transforms.Compose([transforms.CenterCrop(256), transforms.ToTensor()])(image), rtol=0, atol=0)


@pytest.mark.parametrize("size", [(227, 227), (300, 301), (100, 231), (224, 224)])
def test_drct_crop_is_albumentations(size):
    """DRCT: PadIfNeeded(224, 0) + CenterCrop(224) with albumentations' floor offset, written out."""
    arr = np.asarray(_image(*size))
    h, w = arr.shape[:2]
    ph, pw = max(0, 224 - h), max(0, 224 - w)
    padded = np.pad(arr, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    y, x = (padded.shape[0] - 224) // 2, (padded.shape[1] - 224) // 2
    ref = (padded[y : y + 224, x : x + 224] / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    got = _prepared(create_detector_tiny("drct"), Image.fromarray(arr))
    np.testing.assert_allclose(got.permute(1, 2, 0).numpy(), ref, atol=1e-5)
    if (h - 224) % 4 == 3:  # here torchvision's rounding picks the next pixel
        tv = transforms.Compose([transforms.CenterCrop(224), transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
        assert not torch.allclose(tv(Image.fromarray(arr)), got)


def test_ladeda_preprocess_is_resize_256():
    image = _image(300, 411)
    ref = transforms.Compose([transforms.Resize((256, 256)), transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])(image)
    torch.testing.assert_close(_prepared(create_detector_tiny("ladeda"), image), ref, rtol=0, atol=1e-5)


def _prepared(det: ModuleDetector, image: Image.Image) -> torch.Tensor:
    """What `forward` gets for one image in a run: the worker's preprocessing, then `prepare`."""
    return det.prepare(det.preprocess()(image)[None])[0]


@pytest.mark.parametrize("name", ["safe", "ferretnet", "drct", "drct-clip", "ladeda"])
def test_fixed_crops_ship_as_pixels_and_finish_on_the_device_bit_for_bit(name):
    """The workers send 8-bit pixels; `prepare` gives exactly the float pipeline's tensor."""
    det = create_detector_tiny(name)
    for image in (_image(300, 411), _image(100, 150)):  # a crop and a padded one
        shipped = det.preprocess()(image)
        assert shipped.dtype == torch.uint8
        assert torch.equal(det.prepare(shipped[None])[0], det.transform(image)), name


def create_detector_tiny(name: str) -> ModuleDetector:
    det = detector_spec(name).build_tiny()
    assert isinstance(det, ModuleDetector) and det.weights == f"{name}.tiny"
    return det


def test_two_class_logit_is_the_log_odds_of_softmax():
    z = torch.randn(5, 2, dtype=torch.float64)
    p = torch.softmax(z, dim=1)[:, 1]
    torch.testing.assert_close(torch.sigmoid(two_class_logit(z)), p)
    torch.testing.assert_close(torch.sigmoid(two_class_logit(z)), 1 - torch.softmax(z, dim=1)[:, 0])  # DRCT's score


# --------------------------------------------------------------------------- FerretNet


@pytest.mark.parametrize("variant,dim", [("B", 96), ("S", 32)])
def test_ferretnet_keys_are_official(variant, dim):
    from detectors.ferretnet import FERRET_ARCHS, FerretNet

    with torch.device("meta"):
        model = FerretNet(FERRET_ARCHS[variant])
    assert _shapes(model) == ferretnet_shapes(dim)
    params = sum(p.numel() for p in model.parameters())
    assert params == {"B": 1_057_777, "S": 126_289}[variant]  # instantiated from the official class


def test_masked_median_matches_brute_force():
    from detectors.ferretnet import masked_median

    x = torch.randn(2, 3, 7, 9, dtype=torch.float64)
    got = masked_median(x)
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)))
    ref = np.empty(x.shape)
    for i in range(7):
        for j in range(9):
            window = padded[:, :, i : i + 3, j : j + 3].reshape(2, 3, 9).copy()
            window[:, :, 4] = 0.0  # the centre is set to 0, not removed
            ref[:, :, i, j] = np.sort(window, axis=-1)[:, :, 4]
    np.testing.assert_array_equal(got.numpy(), ref)


def test_ferretnet_official_wrappings_load(tmp_path):
    from detectors.ferretnet import load_ferretnet_checkpoint

    state = random_state(ferretnet_shapes(32))
    x = torch.randn(2, 3, 64, 64)
    outs = [load_ferretnet_checkpoint(w)(x) for w in _wrappings(state)]
    assert outs[0].shape == (2,) and all(torch.equal(o, outs[0]) for o in outs)
    path = tmp_path / "ferretnet-s-median-3.pth"
    torch.save({"model": state}, path)  # the official layout
    det = create_detector("ferretnet.official-s", path=path)
    assert det.model.arch.dim == 32 and det.weights == "ferretnet.official-s" and det.info.input.size == (256, 256)
    torch.testing.assert_close(det.forward(x), outs[0])
    bad = dict(state)
    bad["logit.1.weight"] = torch.zeros(1, 64)
    with pytest.raises(BadCheckpointError, match="checkpoint"):
        load_ferretnet_checkpoint(bad)


# --------------------------------------------------------------------------- LaDeDa


def test_ladeda_keys_are_official():
    from detectors.ladeda import LaDeDa, ladeda_arch_of

    with torch.device("meta"):
        model = LaDeDa()
    assert _shapes(model) == ladeda9_shapes()
    assert sum(p.numel() for p in model.parameters()) == 13_641_793
    assert ladeda_arch_of(random_state(ladeda9_shapes())) == model.arch


def test_ladeda_scores_9x9_patches_and_averages_them(tmp_path):
    """Every patch logit depends only on a 9x9 window of the NPR residual (a 2x2-cell aligned
    input change moves only the patches that see it), and the image logit is their mean."""
    from detectors.ladeda import LADEDA_ARCHS, LaDeDa, load_ladeda_checkpoint

    torch.manual_seed(0)
    model = LaDeDa(LADEDA_ARCHS["mini"]).eval()
    path = tmp_path / "WildRF_LaDeDa.pth"
    torch.save(model.state_dict(), path)  # the official raw state dict
    loaded = load_ladeda_checkpoint(path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        patches = loaded.patch_logits(x)
        torch.testing.assert_close(loaded(x), patches.mean(dim=(1, 2)), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(loaded(x), model(x))
        y = x.clone()
        y[..., 40, 40] += 5.0  # one pixel: changes the residual of its 2x2 cell (rows/cols 40-41)
        changed = (loaded.patch_logits(y) - patches).abs() > 1e-6
    rows, cols = torch.nonzero(changed[0], as_tuple=True)
    assert changed.any()
    # output (r, c) sees input rows [8r, 8r + 8] (stride 8 after layer3, receptive field 9)
    assert all(8 * r <= 41 and 40 <= 8 * r + 8 for r in rows.tolist())
    assert all(8 * c <= 41 and 40 <= 8 * c + 8 for c in cols.tolist())
    for wrapped in _wrappings(model.state_dict())[1:]:
        torch.testing.assert_close(load_ladeda_checkpoint(wrapped)(x), model(x))
    with pytest.raises(BadCheckpointError, match="LaDeDa"):
        load_ladeda_checkpoint(random_bottleneck_state(7, (64, 128, 256, 512), (3, 4, 6, 3), "fc"))  # a res50nodown


# --------------------------------------------------------------------------- SAFE


def official_safe_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """SAFE's `resnet50(num_classes=2)`: NPR's names and shapes with a two-class fc1."""
    sd = random_bottleneck_state(3, (64, 128), (3, 4), "fc1", seed, counter=3)
    g = torch.Generator().manual_seed(seed + 1)
    sd["fc1.weight"], sd["fc1.bias"] = torch.randn(2, 512, generator=g) / 512**0.5, torch.randn(2, generator=g)
    return sd


def test_bior13_and_the_hh_band_match_pywavelets():
    pywt = pytest.importorskip("pywt")
    from detectors.safe import BIOR13_DEC_HI, dwt_hh

    np.testing.assert_allclose(BIOR13_DEC_HI, pywt.Wavelet("bior1.3").dec_hi, atol=1e-15)
    x = torch.randn(2, 3, 37, 50, dtype=torch.float64)
    _, (_, _, diagonal) = pywt.dwt2(x.numpy(), "bior1.3", mode="symmetric", axes=(-2, -1))
    got = dwt_hh(x)
    assert got.shape == (2, 3, 21, 27)  # floor((N + 5) / 2)
    np.testing.assert_allclose(got.numpy(), diagonal, atol=1e-12)
    assert dwt_hh(torch.zeros(1, 3, 256, 256)).shape[-2:] == (130, 130)


def reference_safe(x: torch.Tensor, sd: dict[str, torch.Tensor]) -> torch.Tensor:
    """SAFE in float64 functional ops: HH band resized back (torchvision Resize), NPR's stages."""
    from detectors.safe import dwt_hh

    sd = {k: v.double() for k, v in sd.items()}
    hh = transforms.Resize(list(x.shape[-2:]))(dwt_hh(x.double()))
    y = F.relu(batch_norm(sd)(F.conv2d(hh, sd["conv1.weight"], stride=2, padding=1), "bn1"))
    y = reference_stages(F.max_pool2d(y, 3, stride=2, padding=1), sd, (3, 4)).mean(dim=(2, 3))
    z = F.linear(y, sd["fc1.weight"], sd["fc1.bias"])
    return torch.log_softmax(z, 1)[:, 1] - torch.log_softmax(z, 1)[:, 0]


def test_safe_training_checkpoint_loads_and_matches_reference(tmp_path):
    """The official file holds optimizer, scaler and an argparse Namespace beside the weights."""
    from detectors.safe import SAFENet

    state = official_safe_state()
    model = SAFENet()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    model(torch.rand(2, 3, 64, 64)).sum().backward()
    opt.step()
    path = tmp_path / "checkpoint-best.pth"
    args = argparse.Namespace(model="SAFE", input_size=256, transform_mode="crop", blr=1e-2, output_dir="", resume="")
    torch.save({"model": state, "optimizer": opt.state_dict(), "epoch": "best",
                "scaler": torch.amp.GradScaler("cpu").state_dict(), "args": args}, path)
    det = create_detector("safe.official", path=path)
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(det.forward(x).double(), reference_safe(x, state), rtol=1e-4, atol=1e-4)
    assert det.preprocess()(_image(300, 200)).shape == (3, 256, 256)
    with pytest.raises(BadCheckpointError, match="two-class fc1"):
        from detectors.safe import load_safe_checkpoint

        load_safe_checkpoint(random_bottleneck_state(3, (64, 128), (3, 4), "fc1"))  # NPR.pth is not SAFE


def test_only_the_namespace_is_let_through(tmp_path):
    """Allowing argparse.Namespace does not open the door to other classes in the file."""
    path = tmp_path / "ckpt.pth"
    torch.save({"model": {}, "args": argparse.Namespace(out=pathlib.PurePosixPath("/x"))}, path)
    with pytest.raises(MissingWeightsError, match="never unpickled"):
        load_state(path, data_types=(argparse.Namespace,))
    torch.save({"args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(MissingWeightsError):
        load_state(path)  # not allowed unless asked for
    assert load_state(path, data_types=(argparse.Namespace,))["args"].lr == 0.1


# --------------------------------------------------------------------------- DRCT


def test_drct_convnext_keys_are_official():
    """ContrastiveModels('convnext_base_in22k', embedding_size=1024): timm's ConvNeXt-B whose
    head.fc is Linear(1024, 1024), then fc = Linear(1024, 2); 346 keys."""
    import timm

    from detectors.drct import DRCTConvNeXt

    with torch.device("meta"):
        ours = DRCTConvNeXt()
        backbone = timm.create_model("convnext_base", num_classes=1024)
    want = {f"model.{k}": tuple(v.shape) for k, v in backbone.state_dict().items()} | {"fc.weight": (2, 1024), "fc.bias": (2,)}
    assert _shapes(ours) == want and len(want) == 346


def test_drct_convnext_loads_and_scores(tmp_path):
    from detectors.drct import load_drct_checkpoint, tiny_convnext

    torch.manual_seed(1)
    model = tiny_convnext().eval()
    path = tmp_path / "14_acc0.9996.pth"
    torch.save(model.state_dict(), path)
    det = create_detector("drct.official", path=path)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        z = model.fc(model.model(x))
    torch.testing.assert_close(det.forward(x), z[:, 1] - z[:, 0])
    for wrapped in _wrappings(model.state_dict())[1:]:
        torch.testing.assert_close(load_drct_checkpoint(wrapped)(x), det.forward(x))


def test_drct_clip_key_layout_is_openai_and_loads(tmp_path):
    pytest.importorskip("open_clip")
    from detectors.drct import DRCTCLIP, build_drct_clip, load_drct_checkpoint, tiny_clip

    full = openai_clip_shapes(1024, 24, 14, 16, 768, 12, 768)
    assert len(full) == 446
    with torch.device("meta"):
        big = build_drct_clip({f"model.model.{k}": torch.empty(s, device="meta") for k, s in full.items()}
                              | {"fc.weight": torch.empty(2, 1024, device="meta")})
    want = {f"model.model.{k}": s for k, s in full.items()} | {"model.fc.weight": (1024, 768), "model.fc.bias": (1024,),
                                                               "fc.weight": (2, 1024), "fc.bias": (2,)}
    assert _shapes(big) == want  # ViT-L/14 with its text tower, as DRCT saves it
    torch.manual_seed(2)
    model = tiny_clip().eval()
    state = model.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items() if k.startswith("model.model.")} == \
        {f"model.model.{k}": s for k, s in openai_clip_shapes(64, 2, 14, 16, 64, 1, 32, vocab=100).items()}
    path = tmp_path / "13_acc0.9664.pth"
    torch.save(state, path)
    det = create_detector("drct-clip.official", path=path)
    assert isinstance(det.model, DRCTCLIP) and det.info.family == "CLIP"
    assert not any(k.startswith("model.model.transformer.") for k in det.model.state_dict())  # text tower dropped
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        z = model.fc(model.model.fc(model.model.model.encode_image(x)))
    torch.testing.assert_close(det.forward(x), z[:, 1] - z[:, 0], rtol=1e-4, atol=1e-5)
    missing_text = {k: v for k, v in state.items() if not k.startswith("model.model.transformer.")}
    with pytest.raises(BadCheckpointError, match="transformer.resblocks"):  # the text tower is part of the file
        load_drct_checkpoint(missing_text)


# --------------------------------------------------------------------------- AIDE


def test_aide_keys_are_official():
    """AIDE_Model: hpf.hpf, two torchvision ResNet-50s on 30 channels (with their unused fc),
    fc.fc1/fc2, open_clip convnext_xxlarge's trunk, convnext_proj.0: 1025 keys, 897.8 M params."""
    import timm
    import torchvision

    from detectors.aide import AIDEModel

    with torch.device("meta"):
        ours = AIDEModel()
        resnet = torchvision.models.resnet50()
        resnet.conv1 = torch.nn.Conv2d(30, 64, 7, 2, 3, bias=False)
        trunk = timm.create_model("convnext_xxlarge", num_classes=0)
    want = {"hpf.hpf.weight": (30, 3, 5, 5)}
    for branch in ("model_min", "model_max"):
        want |= {f"{branch}.{k}": s for k, s in _shapes(resnet).items()}
    want |= {"fc.fc1.weight": (1024, 2304), "fc.fc1.bias": (1024,), "fc.fc2.weight": (2, 1024), "fc.fc2.bias": (2,)}
    want |= {f"openclip_convnext_xxl.{k}": s for k, s in _shapes(trunk).items()}
    want |= {"convnext_proj.0.weight": (256, 3072), "convnext_proj.0.bias": (256,)}
    assert _shapes(ours) == want
    assert len(want) == 1025 and sum(p.numel() for p in ours.parameters()) == 897_832_732
    assert ours.openclip_convnext_xxl.stem[1].eps == 1e-5  # timm's convnext_xxlarge LayerNorm


def reference_patches(x: np.ndarray, window: int = 32, stride: int = 16) -> list[np.ndarray]:
    """AIDE's patch choice with scipy's orthonormal 2-D DCT and explicit band sums."""
    from scipy.fft import dctn

    c, h, w = x.shape
    tiles = [x[:, i : i + window, j : j + window] for i in range(0, h - window + 1, stride) for j in range(0, w - window + 1, stride)]
    s = np.add.outer(np.arange(window), np.arange(window))
    grades = []
    for t in tiles:
        spec = np.log(np.abs(dctn(t.astype(np.float64), axes=(1, 2), norm="ortho")) + 1)
        grades.append(sum(2.0**k * spec[:, (s >= 64 * k / 6) & (s <= 64 * (k + 1) / 6)].sum() / ((s >= 64 * k / 6) & (s <= 64 * (k + 1) / 6)).sum()
                          for k in range(6)))
    order = np.argsort(grades, kind="stable")
    return [tiles[order[0]], tiles[order[-1]], tiles[order[1]], tiles[order[-2]]]


def test_aide_preprocess_selects_dct_patches_and_resizes():
    from detectors.aide import AIDEPreprocess

    image = _image(80, 112, seed=3)
    got = AIDEPreprocess()(image)
    assert got.shape == (3, 1280, 256)
    views = got.reshape(3, 5, 256, 256).transpose(0, 1)
    x = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0
    tf = transforms.Compose([transforms.Resize([256, 256], antialias=False), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    for view, patch in zip(views, [*reference_patches(x), x]):
        torch.testing.assert_close(view, tf(torch.from_numpy(np.ascontiguousarray(patch))), rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="at least 32x32"):
        AIDEPreprocess()(_image(31, 100))


def test_aide_training_checkpoint_loads(tmp_path):
    from detectors.aide import TINY_ARCH, AIDEModel

    torch.manual_seed(3)
    model = AIDEModel(TINY_ARCH).eval()
    path = tmp_path / "progan_train.pth"
    torch.save({"model": model.state_dict(), "epoch": 4, "args": argparse.Namespace(model="AIDE", eval=True)}, path)
    det = create_detector("aide.official", path=path)
    assert det.model.arch == TINY_ARCH and det.info.input.size == (1280, 256)
    x = det.preprocess()(_image(96, 64))[None]
    with torch.no_grad():
        v = x.reshape(1, 3, 5, 256, 256).transpose(1, 2)
        clip = (v[:, 4] * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
                - torch.tensor(CLIP_MEAN).view(3, 1, 1)) / torch.tensor(CLIP_STD).view(3, 1, 1)
        sem = model.convnext_proj(model.openclip_convnext_xxl(clip).mean(dim=(2, 3)))
        feats = [net.forward_features(model.hpf.hpf(v[:, i])).mean(dim=(2, 3))
                 for net, i in ((model.model_min, 0), (model.model_max, 1), (model.model_min, 2), (model.model_max, 3))]
        z = model.fc(torch.cat([sem, sum(feats) / 4], dim=1))
    torch.testing.assert_close(det.forward(x), z[:, 1] - z[:, 0], rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- registry


@pytest.mark.parametrize("name", NAMES)
def test_missing_official_weights_name_the_file(name, tmp_path, monkeypatch):
    monkeypatch.setenv("AIGI_BENCH_WEIGHTS", str(tmp_path))
    spec = detector_spec(name)
    official = spec.weight("official")
    with pytest.raises(MissingWeightsError) as err:
        create_detector(f"{name}.official")
    message = str(err.value)
    assert str(local_path(name, official)) in message and official.filename in message
    assert "github.com" in message or "modelscope.cn" in message  # where the official file is published


def test_families_and_default_tags():
    fam = {n: detector_spec(n).info.family for n in NAMES}
    assert fam == {"safe": "CNN", "ferretnet": "CNN", "ladeda": "CNN", "drct": "CNN", "drct-clip": "CLIP", "aide": "ViT"}
    assert detector_spec("ferretnet").default_weights == "mini" and detector_spec("ladeda").default_weights == "mini"
    with pytest.raises(BenchError):
        create_detector("safe.mini")
