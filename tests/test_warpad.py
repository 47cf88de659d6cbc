"""WaRPAD's mechanics on small or random backbones (no self-supervised ViT is on a fresh
machine): preprocessing, patch order, the Haar push, aggregation and sign, DINOv2 checkpoint
loading and its position-embedding interpolation, the offline refusal."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from bench import registry
from bench.api import MissingWeightsError
from detectors import warpad as wp
from detectors.checkpoint import BadCheckpointError
from official_states import dinov2_official_shapes, random_state

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _image(h=300, w=500, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_preprocessing_is_the_official_torchvision_pipeline():
    from torchvision import transforms

    official = transforms.Compose([transforms.Resize((896, 896), interpolation=Image.BICUBIC), transforms.ToTensor(),
                                   transforms.Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))])
    image = _image()
    det = _detector(_Pooled())
    x = det.preprocess()(image)
    assert x.dtype == torch.uint8  # the loader ships pixels; prepare normalises on the device
    torch.testing.assert_close(det.prepare(x[None])[0], official(image), rtol=0, atol=1e-6)


def test_patches_are_row_major_per_image():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    patches = wp.patchify(x, 4)
    assert patches.shape == (8, 3, 4, 4)
    for b in range(2):
        for r in range(2):
            for c in range(2):
                torch.testing.assert_close(patches[b * 4 + r * 2 + c], x[b, :, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4])


def test_the_push_removes_a_tenth_of_the_detail_below_4x4_blocks():
    torch.manual_seed(0)
    p = torch.randn(2, 3, 224, 224)
    mean4 = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(p, 4), scale_factor=4, mode="nearest")
    torch.testing.assert_close(wp.perturb(p), 0.9 * p + 0.1 * mean4, rtol=1e-5, atol=1e-5)


class _Pooled(nn.Module):
    """Embeds a patch from its 28x28 block means: blind to detail below 4x4 blocks."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Linear(3 * 8 * 8, 16)

    def forward(self, x):
        return self.proj(torch.nn.functional.avg_pool2d(x, 28).flatten(1))


class _Sharp(nn.Module):
    """Embeds a patch through a random 4x4 stride-4 convolution: sees the detail."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(3, 16, 4, stride=4)

    def forward(self, x):
        return torch.relu(self.conv(x)).mean(dim=(2, 3))


def _detector(backbone: nn.Module) -> wp.WarpadDetector:
    return wp.WarpadDetector(backbone, registry.detector_spec("warpad").info, "warpad.test", "fp")


def test_score_is_minus_the_mean_patch_similarity():
    det = _detector(_Sharp())
    batch = det.prepare(torch.stack([det.preprocess()(_image(seed=s)) for s in (0, 1)]))
    scores = det.forward(batch)
    with torch.no_grad():  # by hand: 16 crops per image, the push in closed form, cosines, mean
        for b in range(2):
            sims = []
            for r in range(4):
                for c in range(4):
                    p = batch[b : b + 1, :, 224 * r : 224 * (r + 1), 224 * c : 224 * (c + 1)]
                    mean4 = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(p, 4), scale_factor=4)
                    q = p - 0.1 * (p - mean4)
                    sims.append(torch.nn.functional.cosine_similarity(det.backbone(p), det.backbone(q)).item())
            assert scores[b].item() == pytest.approx(-np.mean(sims), abs=1e-6)
    # sign: an embedding blind to the pushed detail does not move (similarity 1, the most "real"
    # score, -1); one that sees it moves, and scores higher (more "generated")
    blind = _detector(_Pooled()).forward(batch)
    torch.testing.assert_close(blind, torch.full((2,), -1.0), rtol=0, atol=1e-5)
    assert (scores > blind).all()
    assert _detector(_Sharp()).forward(batch[:1]).item() == pytest.approx(scores[0].item(), abs=1e-6)  # batch-free
    assert det.info.input.size == (896, 896) and not det.info.calibrated


def test_dinov2_architecture_has_the_official_checkpoint_layout():
    """timm's ViT built as dinov2_vitl14 holds exactly the official keys and shapes (minus
    mask_token, used only in training), on the meta device: nothing allocated."""
    with torch.device("meta"):
        vit = wp.dinov2_vit("vitl14", image_size=518)
    want = dinov2_official_shapes()
    want.pop("mask_token")
    assert {k: tuple(v.shape) for k, v in vit.state_dict().items()} == want
    with torch.device("meta"):
        assert tuple(wp.dinov2_vit("vitl14").pos_embed.shape) == (1, 1 + 16 * 16, 1024)  # a 224 patch


@pytest.mark.parametrize("wrap", ["raw", "model", "module"])
def test_dinov2_checkpoints_load_strictly_in_every_wrapping(wrap):
    arch = wp.DinoV2Arch(embed_dim=32, depth=2, num_heads=2)
    state = random_state(dinov2_official_shapes(embed_dim=32, depth=2))
    obj = {"raw": state, "model": {"model": state}, "module": {f"module.{k}": v for k, v in state.items()}}[wrap]
    model = wp.load_dinov2_checkpoint(obj, arch)
    torch.testing.assert_close(model.vit.cls_token, state["cls_token"])
    torch.testing.assert_close(model.vit.pos_embed, wp.dinov2_pos_embed(state["pos_embed"], 16))
    out = model(torch.randn(2, 3, 224, 224))
    assert out.shape == (2, 32)
    # x_norm_clstoken: the final LayerNorm applied to the CLS token
    tokens = model.vit.forward_features(torch.randn(1, 3, 224, 224))
    assert tokens.shape == (1, 257, 32)


def test_broken_dinov2_checkpoints_are_refused():
    arch = wp.DinoV2Arch(embed_dim=32, depth=2, num_heads=2)
    state = random_state(dinov2_official_shapes(embed_dim=32, depth=2))
    with pytest.raises(BadCheckpointError, match="not a DINOv2"):
        wp.load_dinov2_checkpoint({k: v for k, v in state.items() if k != "norm.bias"}, arch)
    with pytest.raises(BadCheckpointError, match="registers"):
        wp.load_dinov2_checkpoint({**state, "register_tokens": torch.zeros(1, 4, 32)}, arch)
    with pytest.raises(BadCheckpointError, match="cls_token"):
        wp.load_dinov2_checkpoint({"weights": torch.zeros(1)}, arch)


def _bicubic_reference(grid_in: np.ndarray, out: int, scale: float) -> np.ndarray:
    """Bicubic resampling (Keys, a = -0.75, half-pixel centres, edge indices clamped) where the
    source coordinate of output pixel i is (i + 0.5) / scale - 0.5: what F.interpolate does when
    given a scale factor, which DINOv2 gives as (16 + 0.1) / 37 rather than 16 / 37."""
    def weights(t):
        a = -0.75
        t = abs(t)
        return (a + 2) * t**3 - (a + 3) * t**2 + 1 if t <= 1 else a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a if t < 2 else 0.0

    n = grid_in.shape[0]

    def resample_axis(arr, axis):
        result = []
        for i in range(out):
            src = (i + 0.5) / scale - 0.5
            base = math.floor(src)
            acc = 0
            for k in range(base - 1, base + 3):
                acc = acc + weights(src - k) * np.take(arr, min(max(k, 0), n - 1), axis=axis)
            result.append(acc)
        return np.stack(result, axis=axis)

    return resample_axis(resample_axis(grid_in, 0), 1)


def test_position_embedding_is_resized_the_dinov2_way():
    torch.manual_seed(0)
    pos = torch.randn(1, 1 + 37 * 37, 3)
    got = wp.dinov2_pos_embed(pos, 16)
    assert got.shape == (1, 257, 3)
    torch.testing.assert_close(got[:, :1], pos[:, :1])  # the CLS position is kept
    grid = pos[0, 1:].reshape(37, 37, 3).double().numpy()
    want = _bicubic_reference(grid, 16, (16 + 0.1) / 37)
    np.testing.assert_allclose(got[0, 1:].reshape(16, 16, 3).numpy(), want, atol=1e-5)
    plain = _bicubic_reference(grid, 16, 16 / 37)
    assert np.abs(want - plain).max() > 1e-3, "the offset changes the sampling positions"


def test_official_offline_refuses_naming_the_file_and_torch_home(offline_weights):
    with pytest.raises(MissingWeightsError) as err:
        registry.create_detector("warpad.official")
    message = str(err.value)
    assert "dinov2_vitl14_pretrain.pth" in message and "TORCH_HOME" in message
    assert str(offline_weights.parent / "weights" / "warpad" / "dinov2_vitl14_pretrain.pth") in message


def test_official_weights_from_torch_hub_cache(offline_weights):
    """A checkpoint torch.hub already downloaded is found offline and loaded strictly."""
    hub = offline_weights / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    state = random_state(dinov2_official_shapes(embed_dim=32, depth=2))
    torch.save(state, hub / "dinov2_vitl14_pretrain.pth")
    with pytest.raises(BadCheckpointError, match="not a DINOv2 vitl14"):  # a small one is not ViT-L/14
        registry.create_detector("warpad.official")


def test_any_module_can_be_the_backbone():
    det = registry.create_detector("warpad", backbone=_Sharp())
    again = registry.create_detector("warpad", backbone=_Sharp())
    assert det.weights == "warpad._Sharp" and det.fingerprint == again.fingerprint
    assert det.fingerprint != registry.create_detector("warpad", backbone=_Pooled()).fingerprint
    scores = det.score([_image(seed=0), _image(200, 100, seed=1)])
    assert np.isfinite(scores).all() and (scores >= -1).all()
