"""res50nodown: official checkpoint wrappings load and match an independent functional forward."""
from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F

from bench.api import MissingWeightsError
from bench.registry import create_detector
from detectors.preprocess import IMAGENET_MEAN, IMAGENET_STD, ImageNetNormalize
from detectors.checkpoint import BadCheckpointError
from detectors.resnet import (
    ARCHS,
    ResNetDetector,
    arch_name,
    arch_of,
    build_res50nodown,
    load_resnet_checkpoint,
)
from official_states import batch_norm, random_bottleneck_state, reference_stages


pytestmark = pytest.mark.usefixtures("one_torch_thread")

PLANES = (64, 128, 256, 512)
BLOCKS = (3, 4, 6, 3)


def official_state(seed: int = 0, with_counters: bool = True) -> dict[str, torch.Tensor]:
    """Random tensors under the official res50nodown names and shapes (torchvision layout)."""
    return random_bottleneck_state(7, PLANES, BLOCKS, "fc", seed, counter=1000 if with_counters else None)


def reference_logits(x: torch.Tensor, sd: dict[str, torch.Tensor], gate: torch.Tensor | None = None) -> torch.Tensor:
    """res50nodown written with plain functional ops, in float64; the head is applied per
    position and then averaged, as grip-unina/DMimageDetection does."""
    sd = {k: v.double() for k, v in sd.items()}
    x = F.relu(batch_norm(sd)(F.conv2d(x.double(), sd["conv1.weight"], stride=1, padding=3), "bn1"))
    x = reference_stages(F.max_pool2d(x, 3, stride=1, padding=1), sd, BLOCKS)
    if gate is not None:
        x = x * gate.double().view(1, -1, 1, 1)
    per_position = torch.einsum("bchw,oc->bohw", x, sd["fc.weight"]) + sd["fc.bias"].view(1, -1, 1, 1)
    return per_position.mean(dim=(2, 3))[:, 0]


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return official_state()


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.randn(1, 3, 24, 32, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def expected(state, image) -> torch.Tensor:
    return reference_logits(image, state)


def _close(got: torch.Tensor, ref: torch.Tensor) -> None:
    assert torch.allclose(got.double(), ref, rtol=1e-4, atol=1e-4), (got, ref)


WRAPPINGS = {
    "raw": lambda sd: sd,
    "model": lambda sd: {"model": sd, "optimizer": {}, "total_steps": 7},
    "model_module": lambda sd: {"model": {f"module.{k}": v for k, v in sd.items()}},
    "state_dict": lambda sd: {"state_dict": sd},
    "net": lambda sd: {"net": sd},
}


@pytest.mark.parametrize("wrapping", sorted(WRAPPINGS))
def test_official_wrappings_match_reference(tmp_path, state, image, expected, wrapping):
    path = tmp_path / "model_epoch_best.pth"
    torch.save(WRAPPINGS[wrapping](state), path)
    det = create_detector("corvi.official", path=path)
    assert isinstance(det, ResNetDetector) and det.weights == "corvi.official"
    assert arch_of(det.model.state_dict()) == ARCHS["full"] and det.model.num_features == 2048
    assert len(det.fingerprint) == 64
    _close(det.forward(image), expected)


def test_checkpoint_without_bn_counters(state, image, expected):
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    _close(load_resnet_checkpoint(old)(image), expected)


def test_dear_format_loads_gate(tmp_path, state, image):
    gate = (torch.rand(2048, generator=torch.Generator().manual_seed(3)) > 0.4).float()
    ckpt = {"model": {**{f"backbone.{k}": v for k, v in state.items()}, "gate.gate": gate}}
    path = tmp_path / "dear.pth"
    torch.save(ckpt, path)
    model = load_resnet_checkpoint(path)
    assert torch.equal(model.gate.gate, gate)
    with torch.no_grad():
        _close(model(image), reference_logits(image, state, gate))
    # the registered detector reads the official file the same way
    det = create_detector("dear-c.official", path=path)
    assert det.weights == "dear-c.official" and torch.equal(det.model.gate.gate, gate)
    _close(det.forward(image), reference_logits(image, state, gate))
    # and what we save is the official layout: every official name, with its shape, and nothing else
    from dear.checkpoint import save_dear

    raw = torch.load(save_dear(model, tmp_path / "again.pth"), map_location="cpu", weights_only=True)
    assert list(raw) == ["model"]
    assert {k: tuple(v.shape) for k, v in raw["model"].items()} == {k: tuple(v.shape) for k, v in ckpt["model"].items()}


def test_own_safetensors_round_trip(tmp_path, image):
    from bench.weights import save_state

    model = build_res50nodown("mini").eval()
    model.gate.set_((torch.arange(model.num_features) % 3 != 0).float())
    save_state(model.state_dict(), tmp_path / "m.safetensors")
    back = load_resnet_checkpoint(tmp_path / "m.safetensors")
    assert arch_name(arch_of(back.state_dict())) == "mini"
    with torch.no_grad():
        assert torch.allclose(back(image), model(image))


def test_bad_checkpoints_name_the_file(tmp_path, state):
    bad = tmp_path / "npr_like.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 3, 3), "fc1.weight": torch.zeros(1, 512)}, bad)
    with pytest.raises(BadCheckpointError, match="npr_like.pth"):
        load_resnet_checkpoint(bad)
    junk = tmp_path / "junk.pth"
    torch.save({"weights": {"a": torch.zeros(1)}}, junk)
    with pytest.raises(BadCheckpointError, match="junk.pth"):
        load_resnet_checkpoint(junk)
    truncated = {k: v for k, v in state.items() if not k.startswith("layer4.2.")}
    trunc_path = tmp_path / "truncated.pth"
    torch.save(truncated, trunc_path)
    model = load_resnet_checkpoint(trunc_path)  # a shallower but consistent network still loads
    arch = arch_of(model.state_dict())
    assert arch.layers == (3, 4, 6, 2) and arch_name(arch) == "custom"
    wrong = dict(state)
    wrong["layer2.0.conv2.weight"] = torch.zeros(128, 128, 1, 1)
    with pytest.raises(BadCheckpointError):
        load_resnet_checkpoint(wrong)
    with pytest.raises(MissingWeightsError, match="nowhere.pth"):
        create_detector("corvi.official", path=tmp_path / "nowhere.pth")


@pytest.mark.parametrize("key", ["conv1.weight", "layer3.0.conv1.weight"])
def test_a_scalar_where_a_conv_weight_belongs_names_the_file(tmp_path, state, key):
    """A 0-dim tensor in place of a conv weight used to escape as IndexError from the shape
    reading; both loaders that read shapes (res50nodown, NPR) name the file and the entry."""
    from detectors.npr import NPR_ARCHS, NPRNet, load_npr_checkpoint

    path = tmp_path / "scalar.pth"
    torch.save({**state, key: torch.tensor(3.0)}, path)
    with pytest.raises(BadCheckpointError, match=rf"scalar\.pth: not a res50nodown checkpoint \(backbone\.{key} has shape \(\)"):
        load_resnet_checkpoint(path)
    npr_state = NPRNet(NPR_ARCHS["mini"]).state_dict()
    npr_key = "layer1.0.conv1.weight" if key.startswith("layer") else key
    torch.save({**npr_state, npr_key: torch.tensor(3.0)}, path)
    with pytest.raises(BadCheckpointError, match=rf"scalar\.pth: not an NPR checkpoint \({npr_key} has shape \(\)"):
        load_npr_checkpoint(path)


def test_architecture_is_nodown():
    model = build_res50nodown("full")
    bb = model.backbone
    assert bb.conv1.stride == (1, 1) and bb.conv1.kernel_size == (7, 7) and bb.maxpool.stride == 1
    assert [len(getattr(bb, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    assert bb.layer2[0].conv2.stride == (2, 2) and bb.layer2[0].conv1.stride == (1, 1)
    x = torch.zeros(1, 3, 40, 48)
    assert model.eval().forward_features(x).shape == (1, 2048, 5, 6)


def test_preprocess_is_imagenet_native():
    from PIL import Image
    import numpy as np

    arr = np.random.default_rng(0).integers(0, 256, (33, 47, 3), dtype=np.uint8)
    t = ImageNetNormalize()(Image.fromarray(arr))
    assert t.shape == (3, 33, 47)
    manual = (torch.from_numpy(arr).permute(2, 0, 1).float() / 255 - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert torch.allclose(t, manual, atol=1e-6)
    det = create_detector("corvi.mini")  # the runner's path: uint8 pixels, normalised on the device
    pixels = det.preprocess()(Image.fromarray(arr))
    assert pixels.dtype == torch.uint8 and torch.equal(pixels, torch.from_numpy(arr).permute(2, 0, 1))
    assert torch.equal(det.prepare(pixels[None])[0], t)  # bit for bit the float preprocessing


class _GlobalStatBackbone(torch.nn.Module):
    """A stand-in backbone whose features depend on whole-input statistics, so tiling changes
    the result; it makes the 1600x1700 run cheap (the nodown stem at that size takes minutes)."""

    num_features = 3

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return (x - x.mean(dim=(2, 3), keepdim=True)).abs()


def _tile_reference(model, x, size):
    h, w = x.shape[-2:]
    num, den = 0.0, 0.0
    for t in range(0, h, size):
        for l in range(0, w, size):
            crop = x[..., t : t + size, l : l + size]
            num = num + model(crop).double() * crop.shape[-2] * crop.shape[-1]
            den += crop.shape[-2] * crop.shape[-1]
    return num / den


def test_tiling_real_thresholds():
    """GRIP tiling: 1600x1700 (both sides > 1536) -> 1024 tiles from (0, 0), area-weighted."""
    from detectors.catalog import corvi
    from detectors.resnet import GatedResNet

    torch.manual_seed(0)
    model = GatedResNet(_GlobalStatBackbone()).eval()
    det = ResNetDetector(model, info=corvi.info)
    assert (det.tile_limit, det.tile_size) == (1536, 1024)
    yy, xx = torch.meshgrid(torch.linspace(0, 3, 1600), torch.linspace(0, 1, 1700), indexing="ij")
    x = torch.stack([yy, xx, yy * xx])[None] + 0.1 * torch.randn(1, 3, 1600, 1700)
    boxes = [(0, 0, 1024, 1024), (0, 1024, 1024, 676), (1024, 0, 576, 1024), (1024, 1024, 576, 676)]
    with torch.no_grad():
        per_tile = torch.stack([model(x[..., t : t + h, l : l + w]) for t, l, h, w in boxes])
        areas = torch.tensor([h * w for _, _, h, w in boxes], dtype=torch.float32).view(-1, 1)
        expected = (per_tile * areas).sum(0) / areas.sum()
        whole = model(x)
    got = det.forward(x)
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, whole, atol=1e-3)  # tiling really changed the result
    tall = x[..., :1536, :]  # one side not above 1536: scored whole
    with torch.no_grad():
        assert torch.allclose(det.forward(tall), model(tall), atol=1e-6)
    det.tile = False
    assert torch.allclose(det.forward(x), whole, atol=1e-6)


def test_tiling_through_mini_network():
    """The same rule through the real mini network, with thresholds scaled down for speed."""
    from detectors.catalog import corvi

    torch.manual_seed(0)
    model = build_res50nodown("mini").eval()
    torch.nn.init.normal_(model.head.weight, 0, 1.0)
    det = ResNetDetector(model, info=corvi.info, tile_limit=48, tile_size=32)
    x = torch.randn(2, 3, 70, 90)
    got = det.forward(x)
    with torch.no_grad():
        assert torch.allclose(got.double(), _tile_reference(model, x, 32), atol=1e-4)
        assert not torch.allclose(got, model(x), atol=1e-3)


def test_tiling_is_part_of_the_cache_key():
    """Scores are cached under the fingerprint, and another tiling gives other logits on large images."""
    from detectors.catalog import corvi

    model = build_res50nodown("mini")
    keys = {ResNetDetector(model, corvi.info, fingerprint="d", **kw).fingerprint for kw in
            ({}, {"tile": True, "tile_limit": 1536, "tile_size": 1024}, {"tile": False}, {"tile_limit": 48, "tile_size": 32})}
    assert keys == {"d", "d+whole", "d+tile48/32"}


def test_registry_specs():
    from detectors.catalog import corvi, corvi_plus, rajan, rajan_plus

    for spec, display in ((corvi, "Corvi"), (rajan, "Rajan"), (corvi_plus, "Corvi+"), (rajan_plus, "Rajan+")):
        assert spec.info.display_name == display and spec.info.family == "CNN" and spec.info.calibrated
        assert spec.info.input.native and spec.default_weights == "mini"
        base = spec.name in ("corvi", "rajan")  # DEAR also released the bases it started from
        assert {w.tag for w in spec.weights} == {"official", "mini"} | ({"dear"} if base else set())
        if base:
            dear = spec.weight("dear")
            assert (dear.hf_repo, dear.hf_filename) == ("k-aisi-anti-deepfake/dear-checkpoints", f"{spec.name}/model_best.pth")
        assert spec.weight("mini").bundled == f"detectors:weights/{spec.name}.mini.safetensors"
        assert spec.weight("official").hf_repo is None and spec.weight("official").where
