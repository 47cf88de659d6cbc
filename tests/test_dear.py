"""DEAR: RAD on constructed cases, both pruning rules, gating, checkpoints, data, end to end."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from bench.api import BenchError
from dear.checkpoint import DearCheckpointError, check_dear_file, dear_state, load_base, load_dear, save_dear
from dear.dissect import DiagnosticImages, diagnostic_pairs, rad_batch, rad_scores
from dear.rad import DissectError, RADResult
from dear.prune import PruneError, bilateral_gate, load_gate, save_gate
from detectors.resnet import build_res50nodown

# --------------------------------------------------------------------------- RAD


class MaskNet(nn.Module):
    """A 'detector' whose layer `feat` outputs, from an input whose channel 0 is the mask,
    channel 0 = mask, channel 1 = 1 - mask, channel 2 = 0.5, all at 1/4 resolution."""

    def __init__(self):
        super().__init__()
        self.feat = nn.Identity()
        self.gate = nn.Module()
        self.gate.register_buffer("gate", torch.zeros(3))  # must be ignored (forced to ones) by RAD

    def forward(self, x):
        m = nn.functional.avg_pool2d(x[:, :1], 4)
        f = self.feat(torch.cat([m, 1 - m, torch.full_like(m, 0.5)], dim=1))
        return (f * self.gate.gate.view(1, -1, 1, 1)).mean(dim=(1, 2, 3))


def _mask_batch(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = random.Random(seed)
    masks = torch.zeros(n, 1, size, size)
    for i in range(n):  # rectangles on the 4-pixel grid: the 1/4 feature map sees them exactly
        y0, x0 = 4 * g.randrange(0, 4), 4 * g.randrange(0, 4)
        masks[i, :, y0 : y0 + 4 * g.randrange(1, 4), x0 : x0 + 4 * g.randrange(1, 4)] = 1
    return masks


def test_rad_known_answer_and_skips_invalid_samples():
    model = MaskNet()
    loader = []
    for b in range(3):
        m = _mask_batch(4, seed=b)
        x = m.repeat(1, 3, 1, 1)
        valid = torch.tensor([True, True, True, False])
        m[3] = 1 - m[3]  # an invalid sample with the opposite answer: must not count
        loader.append((x, m, valid))
    rad = rad_scores(model, loader, layer="feat", max_batches=None)
    np.testing.assert_allclose(rad.scores, [1.0, -1.0, 0.0], atol=1e-5)
    assert (rad.n_samples, rad.n_batches, rad.layer) == (9, 3, "feat")
    assert torch.equal(model.gate.gate, torch.zeros(3))  # gate restored after scoring


def test_rad_averages_batches_not_samples():
    """The official compute_rad_scores averages per-batch means: a batch of 1 weighs as much as a
    batch of 4 (a per-sample mean would give -0.6 for channel 0 here)."""
    model = MaskNet()
    m1, m4 = _mask_batch(1, seed=5), _mask_batch(4, seed=6)
    one = (m1.repeat(1, 3, 1, 1), m1, torch.tensor([True]))  # channel 0 fires inside: +1
    four = ((1 - m4).repeat(1, 3, 1, 1), m4, torch.ones(4, dtype=torch.bool))  # fires outside: -1
    rad = rad_scores(model, [one, four], layer="feat", max_batches=None)
    np.testing.assert_allclose(rad.scores, [0.0, 0.0, 0.0], atol=1e-5)
    assert (rad.n_samples, rad.n_batches) == (5, 2)


def test_rad_mask_is_thresholded_at_one_half():
    """Soft masks are binarised at > 0.5 before the resize, as in the official code."""
    feat = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    m = _mask_batch(2)
    torch.testing.assert_close(rad_batch(feat, 0.6 * m), rad_batch(feat, m))
    torch.testing.assert_close(rad_batch(feat, 0.4 * m), rad_batch(feat, 0 * m))
    assert not torch.allclose(rad_batch(feat, m), rad_batch(feat, 0 * m))


def test_rad_max_batches_counts_skipped_batches_and_all_invalid_fails():
    model = MaskNet()
    m = _mask_batch(2)
    x = m.repeat(1, 3, 1, 1)
    none = torch.tensor([False, False])
    both = torch.tensor([True, True])
    rad = rad_scores(model, [(x, m, none), (x, m, both), (x, m, both)], layer="feat", max_batches=2)
    assert rad.n_batches == 1 and rad.n_samples == 2  # batch 0 skipped but counted, batch 2 beyond the cap
    with pytest.raises(DissectError, match="every mask was empty"):
        rad_scores(model, [(x, m, none)], layer="feat")


def test_rad_bilinear_mask_resize_not_rebinarised():
    feat = torch.zeros(1, 1, 2, 2)
    feat[..., 0, 0] = 1.0
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :1, :1] = 1  # one pixel of the top-left 2x2 block: bilinear gives 0.25 there
    got = rad_batch(feat, mask)
    inside = 0.25 * 1.0 / (0.25 + 1e-6)
    outside = 0.75 * 1.0 / (3.75 + 1e-6)
    assert got.item() == pytest.approx(inside - outside, rel=1e-6)


def test_rad_unknown_layer_lists_close_names():
    model = build_res50nodown("mini")
    with pytest.raises(DissectError, match="backbone.layer4"):
        rad_scores(model, [], layer="backbone.layer44")
    with pytest.raises(DissectError, match="'conv2' is ambiguous.*backbone.layer1.0.conv2"):  # a shared suffix is not guessed
        rad_scores(model, [], layer="conv2")


def test_rad_on_gated_resnet_matches_manual_layer4():
    torch.manual_seed(0)
    model = build_res50nodown("mini").eval()
    model.gate.gate[:10] = 0
    x = torch.randn(3, 3, 32, 32)
    m = _mask_batch(3)
    rad = rad_scores(model, [(x, m, torch.ones(3, dtype=torch.bool))])
    with torch.no_grad():
        f = model.backbone.forward_features(x)
    mm = nn.functional.interpolate(m, size=f.shape[-2:], mode="bilinear", align_corners=False)
    manual = ((f * mm).sum((2, 3)) / (mm.sum((2, 3)) + 1e-6) - (f * (1 - mm)).sum((2, 3)) / ((1 - mm).sum((2, 3)) + 1e-6)).mean(0)
    np.testing.assert_allclose(rad.scores, manual.double().numpy(), rtol=1e-5, atol=1e-6)
    assert rad.num_channels == model.num_features == 256
    short = rad_scores(model, [(x, m, torch.ones(3, dtype=torch.bool))], layer="layer4")  # the spec's name, a unique suffix
    np.testing.assert_array_equal(short.scores, rad.scores)
    assert float(model.gate.gate[:10].sum()) == 0  # the pruned gate is back


def test_ungated_reads_all_ones_and_restores_the_gate_even_on_error():
    from dear.dissect import ungated

    model = build_res50nodown("mini")
    gate = (torch.arange(256) % 2).float()
    model.gate.set_(gate)
    with pytest.raises(RuntimeError, match="inside"):
        with ungated(model):
            assert bool((model.gate.gate == 1).all())
            raise RuntimeError("inside")
    assert torch.equal(model.gate.gate, torch.as_tensor(gate))
    with ungated(nn.Linear(2, 1)):  # a model without a gate is read as it is
        pass


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_rad_file_round_trip(tmp_path, suffix):
    r = RADResult(np.array([0.5, -1.25, 3.0]), 7, 2, "backbone.layer4", "corvi.mini", "diag", {"eps": 1e-6})
    back = RADResult.load(r.save(tmp_path / f"rad{suffix}"))
    np.testing.assert_array_equal(back.scores, r.scores)
    assert back.metadata() == r.metadata()


# --------------------------------------------------------------------------- prune


def test_count_prune_exact_indices():
    s = np.array([3.0, 9, 0, 7, 1, 8, 2, 6, 5, 4])
    gate = bilateral_gate(s, 0.2, 0.2, mode="count")
    assert set(np.flatnonzero(gate)) == {i for i, v in enumerate(s) if 2 <= v <= 7}
    gate = bilateral_gate(s, alpha_low=0.1, alpha_high=0.3, mode="count")  # 1 pruned at the bottom, 3 at the top
    assert set(np.flatnonzero(gate)) == {i for i, v in enumerate(s) if 1 <= v <= 6}
    # the official rule keeps C - int(C*a_high) - int(C*a_low): 2048 channels at 0.2/0.2 -> 1230 kept
    assert int(bilateral_gate(np.random.default_rng(0).normal(size=2048), 0.2, 0.2).sum()) == 2048 - 2 * 409


def test_count_bands_are_the_gate_of_the_count_rule():
    """One ranking serves the gate and the analyses' bands (rad_vs_robustness)."""
    from dear.prune import KEPT, PRUNED_HIGH, PRUNED_LOW, count_bands

    s = np.array([3.0, 9, 0, 7, 1, 8, 2, 6, 5, 4])
    band = count_bands(s, alpha_low=0.1, alpha_high=0.3)  # 1 pruned at the bottom, 3 at the top
    assert np.flatnonzero(band == PRUNED_HIGH).tolist() == [1, 3, 5]
    assert np.flatnonzero(band == PRUNED_LOW).tolist() == [2]
    assert np.array_equal(band == KEPT, bilateral_gate(s, 0.1, 0.3) > 0)
    ties = np.array([0.0, 0, 0, 1, 2, 3, 4, 5, 5, 5])
    assert np.array_equal(count_bands(ties, 0.2, 0.2) == KEPT, bilateral_gate(ties, 0.2, 0.2) > 0)
    assert (count_bands(s, 0.0, 0.0) == KEPT).all()
    with pytest.raises(PruneError, match="< 1"):
        count_bands(s, 0.5, 0.5)


def test_percentile_prune_exact_indices_and_ties():
    s = np.arange(10.0)
    assert np.flatnonzero(bilateral_gate(s, 0.2, 0.2, mode="percentile")).tolist() == [2, 3, 4, 5, 6, 7]
    ties = np.array([0.0, 0, 0, 1, 2, 3, 4, 5, 5, 5])
    # count: top 2 = the first two 5s (stable ranking), bottom 2 = the last two 0s in that ranking
    assert np.flatnonzero(bilateral_gate(ties, 0.2, 0.2, "count")).tolist() == [0, 3, 4, 5, 6, 9]
    # percentile: tau_low = 0 and tau_high = 5, every channel lies within: all kept
    assert int(bilateral_gate(ties, 0.2, 0.2, "percentile").sum()) == 10


def test_prune_rejects_bad_input():
    with pytest.raises(PruneError, match="< 1"):
        bilateral_gate(np.arange(10.0), 0.5, 0.5)
    with pytest.raises(PruneError, match="non-finite"):
        bilateral_gate(np.array([0.0, np.nan, 1.0]), 0.1, 0.1)
    with pytest.raises(PruneError, match="unknown prune mode"):
        bilateral_gate(np.arange(10.0), 0.1, 0.1, mode="median")


def test_gate_equals_zeroing_fc_weights(tmp_path):
    torch.manual_seed(1)
    model = build_res50nodown("mini").eval()
    x = torch.randn(2, 3, 32, 32)
    gate = bilateral_gate(torch.randn(model.num_features), 0.3, 0.3)
    with torch.no_grad():
        nn.init.normal_(model.head.weight)
        ref = build_res50nodown("mini").eval()
        ref.load_state_dict(model.state_dict())
        ref.head.weight[:, torch.as_tensor(gate) == 0] = 0
        ungated = model(x)
        model.gate.set_(gate)
        assert not torch.allclose(model(x), ungated)
        torch.testing.assert_close(model(x), ref(x), rtol=1e-5, atol=1e-6)
    assert torch.equal(model.gate.gate, torch.as_tensor(gate))
    g2, meta = load_gate(save_gate(gate, tmp_path / "gate.npz", alpha_low=0.3))
    assert np.array_equal(g2, gate) and meta["kept"] == int(gate.sum()) and meta["alpha_low"] == 0.3


# --------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_official_format(tmp_path):
    torch.manual_seed(2)
    model = build_res50nodown("mini").eval()
    gate = bilateral_gate(torch.randn(model.num_features), 0.2, 0.2)
    model.gate.set_(gate)
    path = save_dear(model, tmp_path / "model_best.pth")
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert list(raw) == ["model"]
    keys = set(raw["model"])
    assert all(k.startswith("backbone.") for k in keys - {"gate.gate"}) and "gate.gate" in keys
    assert {"backbone.fc.weight", "backbone.fc.bias"} <= keys
    assert raw["model"]["gate.gate"].shape == (model.num_features,)
    back = load_dear(path)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(back(x), model(x))
    assert torch.equal(back.gate.gate, torch.as_tensor(gate))
    base = load_base(path)  # a base never keeps a gate
    assert bool((base.gate.gate == 1).all())


def test_base_checkpoint_is_not_a_dear_checkpoint(tmp_path):
    model = build_res50nodown("mini")
    p = tmp_path / "corvi.pth"
    torch.save({"model": model.backbone.state_dict()}, p)  # Corvi/Rajan layout: raw resnet keys
    with pytest.raises(DearCheckpointError, match="base checkpoint"):
        check_dear_file(p)
    assert load_base(p).num_features == 256
    with pytest.raises(DearCheckpointError, match=".pth"):
        save_dear(model, tmp_path / "x.safetensors")
    assert set(dear_state(model)["model"]) == {f"backbone.{k}" for k in model.backbone.state_dict()} | {"gate.gate"}


@pytest.mark.parametrize("gate,problem", [
    ([1.0, 0.0], r"must be a 1-D tensor of 0/1 values, got list"),
    (torch.ones(2, 2), r"must be a 1-D tensor of 0/1 values, got \(2, 2\)"),
    (torch.tensor([1.0, 0.5]), r"gate values must be exactly 0 or 1; 1 of 2"),
], ids=["list", "2-D", "not-0/1"])
def test_bad_dear_gates_name_the_file(tmp_path, gate, problem):
    """A list where the gate tensor belongs used to escape as AttributeError."""
    path = tmp_path / "bad_gate.pth"
    torch.save({"model": {"gate.gate": gate}}, path)
    with pytest.raises(DearCheckpointError, match=rf"bad_gate\.pth: 'gate\.gate'.*{problem}"):
        load_dear(path)


def test_load_dear_reads_the_file_once(tmp_path, monkeypatch):
    import bench.weights
    import dear.checkpoint
    import detectors.resnet

    model = build_res50nodown("mini")
    model.gate.set_((torch.arange(256) % 3 != 0).float())
    path = save_dear(model, tmp_path / "m.pth")
    reads = []

    def counting(p):
        reads.append(Path(p).name)
        return bench.weights.load_state(p)

    monkeypatch.setattr(dear.checkpoint, "load_state", counting)
    monkeypatch.setattr(detectors.resnet, "load_state", counting)
    back = load_dear(path)
    assert reads == ["m.pth"] and torch.equal(back.gate.gate, model.gate.gate)
    bad = dear_state(model)
    bad["model"]["backbone.conv1.weight"] = torch.zeros(3)  # a layout error is still named by the file
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(BenchError, match=r"bad\.pth: not a res50nodown checkpoint"):
        load_dear(tmp_path / "bad.pth")


# --------------------------------------------------------------------------- data


def _diag_set(root: Path, n: int = 6, size: int = 112) -> Path:
    """Composites whose masked region is white and the rest black; masks beside them."""
    from suites import masks

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    for i in range(n):
        box = masks.sample_box(size, size, random.Random(i))
        m = masks.box_mask((size, size), box)
        Image.merge("RGB", [m, m, m]).save(root / "images" / f"{i:03d}.png")
        m.save(root / "masks" / f"{i:03d}.png")
    return root


def test_dissect_any_registered_cnn(tmp_path):
    """Dissection is not limited to the gated ResNet: NPR's last stage, by its short name."""
    from dear.config import DearConfig
    from dear.pipeline import dissect

    cfg = DearConfig.dear_c(max_batches=2, rad_batch_size=3, crop=64, progress=False, layer="layer2")
    rad = dissect("npr.mini", _diag_set(tmp_path / "diag"), cfg)
    assert rad.layer == "layer2" and rad.detector == "npr.mini" and rad.n_batches == 2
    assert rad.num_channels == 128 and np.isfinite(rad.scores).all() and np.abs(rad.scores).max() > 0


def test_diagnostic_dataset_keeps_image_and_mask_aligned(tmp_path):
    pairs = diagnostic_pairs(_diag_set(tmp_path / "diag"))
    torch.manual_seed(0)
    ds = DiagnosticImages(pairs)
    checked = 0
    for _ in range(5):
        for i in range(len(ds)):
            x, m, valid = ds[i]
            assert x.shape == (3, 96, 96) and m.shape == (1, 96, 96)
            assert valid == bool(m.any()) and set(m.unique().tolist()) <= {0.0, 1.0}
            if valid and not bool(m.all()):
                lum = x.mean(0)
                checked += 1
                assert lum[m[0] > 0].mean() > lum[m[0] == 0].mean()  # white region sits under the mask
    assert checked > 5
    targets = DiagnosticImages(pairs, targets=True)
    torch.manual_seed(3)
    a = [ds[i][2] for i in range(len(ds))]
    torch.manual_seed(3)
    b = [targets[i][1] for i in range(len(ds))]
    assert [float(v) for v in a] == b  # target = 1 exactly when the mask survived the crop


def test_diagnostic_pairs_missing_mask(tmp_path):
    root = _diag_set(tmp_path / "diag", n=2)
    (root / "masks" / "001.png").unlink()
    with pytest.raises(BenchError, match="001.png"):
        diagnostic_pairs(root)


def test_diagnostic_pairs_read_the_official_dear_layout(tmp_path):
    """DEAR's released set: data/train/fake/lsun_inpaint_sd/{stem}_inpaint.png with
    lsun_inpaint_mask/{stem}_mask.png, paired by stem; files of other names are not composites."""
    ours = _diag_set(tmp_path / "ours", n=3)
    root = tmp_path / "data" / "train" / "fake"
    (root / "lsun_inpaint_sd").mkdir(parents=True)
    (root / "lsun_inpaint_mask").mkdir(parents=True)
    for i in range(3):
        (ours / "images" / f"{i:03d}.png").rename(root / "lsun_inpaint_sd" / f"bedroom_{i}_inpaint.png")
        (ours / "masks" / f"{i:03d}.png").rename(root / "lsun_inpaint_mask" / f"bedroom_{i}_mask.png")
    (root / "lsun_inpaint_sd" / "notes.png").write_bytes(b"")
    pairs = diagnostic_pairs(root)
    assert [(a.name, b.name) for a, b in pairs] == [(f"bedroom_{i}_inpaint.png", f"bedroom_{i}_mask.png") for i in range(3)]
    assert all(a.parent.name == "lsun_inpaint_sd" and b.parent.name == "lsun_inpaint_mask" for a, b in pairs)
    x, m, valid = DiagnosticImages(pairs)[0]  # and they feed the dissection data as ours do
    assert x.shape == (3, 96, 96) and m.shape == (1, 96, 96)
    (root / "lsun_inpaint_mask" / "bedroom_1_mask.png").unlink()
    with pytest.raises(BenchError, match=r"lsun_inpaint_mask: no mask for 1 image\(s\), e\.g\. bedroom_1_mask\.png"):
        diagnostic_pairs(root)
    with pytest.raises(BenchError, match=r"data: not a diagnostic set; expected images/ and masks/.*lsun_inpaint_sd/"):
        diagnostic_pairs(tmp_path / "data")


class _Negative:
    """Inverts the colours inside the (hard) mask."""

    name = "negative"

    def inpaint(self, image, mask, seed=0):
        a, m = np.asarray(image), np.asarray(mask)[..., None] > 0
        return Image.fromarray(np.where(m, 255 - a, a))


def test_make_diagnostic_set(tmp_path):
    from dear.inpaint import Inpainter, make_diagnostic_set

    assert isinstance(_Negative(), Inpainter)
    reals = []
    for i in range(3):
        p = tmp_path / "real" / f"r{i}.png"
        p.parent.mkdir(exist_ok=True)
        Image.new("RGB", (96, 64), (200, 10, 10)).save(p)
        reals.append(p)
    pairs = make_diagnostic_set(reals, tmp_path / "diag", _Negative(), seed=5, progress=False)
    again = make_diagnostic_set(reals[::-1], tmp_path / "diag2", _Negative(), seed=5, progress=False)
    assert [p.name for p, _ in pairs] == ["r0.png", "r1.png", "r2.png"]
    for (img, msk), (_, msk2) in zip(pairs, again[::-1]):
        m = np.asarray(Image.open(msk))
        assert np.array_equal(m, np.asarray(Image.open(msk2)))  # mask drawn from the file name, not the order
        assert set(np.unique(m)) == {0, 255} and 0.02 <= (m > 0).mean() <= 0.2
        a = np.asarray(Image.open(img)).astype(int)
        assert a[m > 0, 0].mean() < 150 and (a[m == 0, 0] > 150).mean() > 0.5  # inverted inside, real outside
    assert diagnostic_pairs(tmp_path / "diag") == pairs
    bad = tmp_path / "real" / "broken.png"
    bad.write_bytes(b"not an image")
    assert make_diagnostic_set([*reals, bad], tmp_path / "diag3", _Negative(), seed=5, progress=False) == [
        (tmp_path / "diag3" / d / p.name, tmp_path / "diag3" / m / p.name) for p in reals for d, m in [("images", "masks")]]
    assert "broken.png" in (tmp_path / "diag3" / "failures.csv").read_text()
    with pytest.raises(BenchError, match="broken.png"):
        make_diagnostic_set([bad], tmp_path / "diag4", _Negative(), progress=False)


class _FakeSDPipeline:
    """Stands in for diffusers' inpainting pipeline: returns a flat blue 512 image and blurs masks
    with PIL's GaussianBlur, as `VaeImageProcessor.blur` does."""

    class mask_processor:  # noqa: N801 - the attribute name diffusers uses
        @staticmethod
        def blur(image, blur_factor=4):
            from PIL import ImageFilter

            return image.filter(ImageFilter.GaussianBlur(blur_factor))

    def __init__(self):
        self.calls = []

    def __call__(self, prompt, image, mask_image, generator):
        self.calls.append((prompt, image.size, mask_image.size))
        return type("Out", (), {"images": [Image.new("RGB", image.size, (0, 0, 255))]})()


def test_stable_diffusion_inpainter_composites_at_512(tmp_path):
    """The official order: composite at 512 over the resized real, then resize back, so the
    background too went through the 512 round trip (gen_inpaint_data.py)."""
    from dear.inpaint import StableDiffusionInpainter

    sd = StableDiffusionInpainter.__new__(StableDiffusionInpainter)  # no diffusers, no weights
    sd._pipe, sd.device, sd.size, sd.blur_factor, sd.name = _FakeSDPipeline(), "cpu", 512, 33.0, "sd:fake"
    real = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 200, 3), dtype=np.uint8))
    mask = Image.new("L", (200, 300))
    mask.paste(255, (60, 90, 140, 210))
    out = sd.inpaint(real, mask, seed=3)
    assert out.size == (200, 300) and sd._pipe.calls == [("", (512, 512), (512, 512))]
    a = np.asarray(out).astype(int)
    round_trip = np.asarray(real.resize((512, 512), Image.Resampling.BICUBIC).resize((200, 300), Image.Resampling.BICUBIC)).astype(int)
    assert np.abs(a[140:160, 90:110] - [0, 0, 255]).max() <= 4  # mask centre: the generated pixels (blur sigma 33 at 512)
    corner = (slice(0, 20), slice(0, 20))  # far from the blurred edge: the real, resampled twice
    assert np.abs(a[corner] - round_trip[corner]).max() <= 1
    assert np.abs(a[corner] - np.asarray(real).astype(int)[corner]).mean() > 5  # not the untouched real


def test_mini_generator_inpainter(tmp_path):
    from dear.inpaint import MiniGeneratorInpainter, make_diagnostic_set
    from suites.mini import generators as gens

    if not gens.weights_path(gens.training_generator().name).is_file():
        pytest.skip("AIGI-mini generator weights are not committed yet")
    real = tmp_path / "real.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)).save(real)
    inp = MiniGeneratorInpainter()
    out = inp.inpaint(Image.open(real).convert("RGB"), Image.new("L", (96, 64)))
    assert out.size == (96, 64)
    assert np.array_equal(np.asarray(out), np.asarray(Image.open(real)))  # an empty mask keeps the real
    [(img, msk)] = make_diagnostic_set([real], tmp_path / "diag", inp, progress=False)
    a, b = np.asarray(Image.open(img)).astype(int), np.asarray(Image.open(real)).astype(int)
    m = np.asarray(Image.open(msk)) > 0
    assert np.abs(a - b)[m].mean() > np.abs(a - b)[~m].mean()


def test_registered_specs():
    from bench.registry import detector_spec

    for name, display, folder in (("dear-c", "DEAR-c", "dear_c"), ("dear-r", "DEAR-r", "dear_r")):
        spec = detector_spec(name)
        assert spec.info.display_name == display and spec.info.family == "CNN" and spec.info.input.native
        assert spec.default_weights == "mini"
        off = spec.weight("official")
        assert (off.filename, off.hf_repo, off.hf_filename) == ("model_best.pth", "k-aisi-anti-deepfake/dear-checkpoints", f"{folder}/model_best.pth")
        assert spec.weight("mini").bundled == f"dear:weights/{name}.mini.pth"


# --------------------------------------------------------------------------- end to end


def _fixture_world(root: Path, size: int = 64) -> Path:
    """The AIGI-mini folder layout with a few smooth random images (no generators needed)."""
    from dear.inpaint import make_diagnostic_set

    rng = np.random.default_rng(0)

    def put(rel: str, n: int, offset: float = 0.0) -> list[Path]:
        (root / rel).mkdir(parents=True, exist_ok=True)
        out = []
        for i in range(n):
            small = rng.random((size // 8, size // 8, 3)) * 200 + offset
            im = Image.fromarray(np.clip(small, 0, 255).astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
            im.save(root / rel / f"{i:04d}.png")
            out.append(root / rel / f"{i:04d}.png")
        return out

    reals = put("train/real", 4)
    put("train/fake", 4, 40)
    put("train/recon", 4, 40)
    put("val/real", 2)
    put("val/fake", 2, 40)
    put("test/real", 3)
    put("test/fake/g1", 3, 40)
    (root / "manifest.json").write_text(json.dumps({"generators": [{"name": "g1", "display_name": "G1", "training": True}]}))
    make_diagnostic_set(reals, root / "diag", _Negative(), seed=0, progress=False)
    return root


def _reduced_world(root: Path) -> Path:
    """AIGI-mini's reduced world (suites.mini.world), from the committed generators."""
    from suites.mini import generators as gens
    from suites.mini.world import WorldConfig, build_world

    if not all(gens.weights_path(g.name).is_file() for g in gens.GENERATORS):
        pytest.skip("AIGI-mini generator weights are not committed yet")
    return build_world(root / "world", seed=0, config=WorldConfig.reduced(), progress=False)


TINY = dict(max_batches=3, rad_batch_size=4, batch_size=4, inpaint_batch_size=4, max_epochs=1, patience=1, crop=64,
            progress=False)


def _random_base(path: Path) -> Path:
    torch.manual_seed(0)
    torch.save({"model": build_res50nodown("mini").backbone.state_dict()}, path)  # Corvi/Rajan layout
    return path


@pytest.mark.slow
def test_pipeline_end_to_end_on_reduced_world(tmp_path):
    from bench.registry import create_detector
    from dear.config import DearConfig
    from dear.pipeline import run_dear

    world = _reduced_world(tmp_path)
    base = _random_base(tmp_path / "base.pth")
    res = run_dear(base, tmp_path / "rajan", DearConfig.dear_r(**TINY), world=world, kind="rajan")
    assert res.gate_summary["kept"] == 256 - 2 * int(256 * 0.3)
    assert set(res.timings) == {"load_base", "diagnose", "dissect", "prune", "refine", "save", "total"}
    assert res.refit["steps"] > 0
    rad = RADResult.load(res.rad)
    assert rad.num_channels == 256 and 0 < rad.n_samples <= 12
    det = create_detector("dear-r", path=res.checkpoint)
    assert torch.equal(det.model.gate.gate, torch.as_tensor(load_gate(res.gate)[0]))
    base_state = load_base(base).state_dict()
    for k, v in det.model.state_dict().items():  # only the gate and the head change
        if k != "gate.gate" and ".fc." not in f".{k}":
            assert torch.equal(v, base_state[k]), k
    # the head is the refit's best: the zero head itself when validation never improved on it
    assert bool(det.model.head.weight.abs().sum() > 0) == res.head_learned
    reals = sorted((world / "test" / "real").iterdir())
    logits = det.score([Image.open(p).convert("RGB") for p in reals])
    assert logits.shape == (len(reals),) and np.isfinite(logits).all()


@pytest.mark.slow
def test_analyses_on_fixture_world(tmp_path):
    import pandas as pd

    from dear.analyses import activation_maps, alpha_sensitivity, rad_vs_robustness
    from dear.config import DearConfig
    from dear.pipeline import dissect, load_base_model, prune

    world = _fixture_world(tmp_path / "world")
    base = _random_base(tmp_path / "base.pth")
    cfg = DearConfig.dear_c(**{**TINY, "steps_per_epoch": 1})
    model, kind, _ = load_base_model(base, "corvi")
    rad = dissect(model, world / "diag", cfg, tmp_path / "rad.json")
    model.gate.set_(prune(tmp_path / "rad.json", cfg, tmp_path / "gate.npz"))
    reals = sorted((world / "test" / "real").iterdir())
    out = tmp_path / "analyses"
    df = rad_vs_robustness(model, rad, reals, out, quality=50)
    assert len(df) == 256 and (df["mse"] >= 0).all() and (df["mse"] > 0).any()
    assert df["kept"].sum() == 256 - 2 * int(256 * 0.2)
    info = activation_maps(model, rad, world / "diag", out, n_images=2, originals=world / "train" / "real")
    assert info["channels"]["high"] == int(np.argmax(rad.scores)) and info["channels"]["low"] == int(np.argmin(rad.scores))
    for f in ("rad_vs_robustness.png", "rad_vs_robustness.csv", "rad_vs_robustness.json", "activation_maps.png", "activation_maps.npz"):
        assert (out / f).is_file()

    sens = alpha_sensitivity(base, out / "alpha", alphas=(0.1,), config=cfg, world=world, kind="corvi", rad=tmp_path / "rad.json")
    assert set(sens["model"]) == {f"{base} (base)", "DEAR alpha=0.1"}
    avg = sens[sens["set"] == "avg"]
    assert len(avg) == 2 and avg["auc"].between(0, 100).all()
    assert int(load_gate(out / "alpha" / "alpha_0.1" / "gate.npz")[0].sum()) == 256 - 2 * 25
    assert len(pd.read_csv(out / "alpha" / "alpha_sensitivity.csv")) == len(sens)


def test_evaluate_averages_generator_sets_only(tmp_path):
    """'avg' is the mean over generator sets, as bench.metrics' Avg: an in-the-wild split keeps
    its own rows and gets no average."""
    from bench.metrics import METRIC_COLUMNS
    from dear.analyses import evaluate

    rng = np.random.default_rng(0)
    for rel, offset in (("test/real", 0), ("test/fake/g1", 40), ("test/fake/g2", 80), ("wild/real", 0), ("wild/fake/w1", 60)):
        (tmp_path / rel).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.clip(rng.random((32, 32, 3)) * 150 + offset, 0, 255).astype(np.uint8)).save(tmp_path / rel / f"{i}.png")
    generators = [{"name": g, "display_name": g, "training": g == "g1"} for g in ("g1", "g2")]
    (tmp_path / "manifest.json").write_text(json.dumps({"generators": generators}))
    torch.manual_seed(0)
    df = evaluate(build_res50nodown("mini"), tmp_path, "m", suites=("mini", "mini-wild"))
    assert list(zip(df["suite"], df["set"], df["kind"])) == [
        ("mini", "g1", "generator"), ("mini", "g2", "generator"), ("mini", "avg", "avg"), ("mini-wild", "w1", "wild")]
    gens = df[df["kind"] == "generator"]
    for m in METRIC_COLUMNS:
        assert df[df["set"] == "avg"][m].iloc[0] == pytest.approx(gens[m].mean()), m


def test_refit_probe_structure_and_a_known_answer(tmp_path):
    """Two streams x costs rows; with every channel gated off the features are all zero, so
    any converged head is a constant and its balanced accuracy is exactly 0.5."""
    import pandas as pd

    from dear.analyses import refit_probe
    from dear.config import DearConfig
    from dear.pipeline import load_base_model
    from dear.refine import world_data

    world = _fixture_world(tmp_path / "world")
    model, kind, _ = load_base_model(_random_base(tmp_path / "base.pth"), "corvi")
    data = world_data(world, kind)
    cfg = DearConfig.dear_c(batch_size=4, inpaint_batch_size=4, crop=32)
    df = refit_probe(model, torch.ones(256), data, tmp_path / "probe", batches=2, costs=(1.0, 10.0), config=cfg)
    assert list(df["data"]) == ["main", "main", "main+inpainted", "main+inpainted"]
    assert df["val_bacc"].between(0, 1).all() and (df["n_train"] == [8, 8, 16, 16]).all()
    assert df["inpainted_fake_share"].iloc[2] > 0 and df["inpainted_fake_share"].iloc[:2].isna().all()
    assert len(pd.read_csv(tmp_path / "probe" / "refit_probe.csv")) == 4 and (tmp_path / "probe" / "refit_probe.png").is_file()
    off = refit_probe(model, torch.zeros(256), data, tmp_path / "off", batches=2, costs=(1.0,), config=cfg)
    assert (off["val_bacc"] == 0.5).all()


def test_cli_run_warns_when_the_head_is_not_learned(tmp_path, capsys):
    """`bench dear run` with no refit epoch keeps the zero head: the checkpoint is written and
    the command says, on stderr, that it scores every image 0."""
    import json

    from bench_cli import main

    world = _fixture_world(tmp_path / "world", size=96)
    base = _random_base(tmp_path / "base.pth")
    out = tmp_path / "out"
    assert main(["dear", "run", "--base", str(base), "--kind", "corvi", "--world", str(world), "--out", str(out),
                 "--max-batches", "1", "--max-epochs", "0", "--workers", "1"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out[captured.out.index("{"):])
    assert report["head_learned"] is False and report["gate"]["pruned"] == 2 * int(256 * 0.2)
    assert "never beat the zero head" in captured.err and (out / "model_best.pth").is_file()
    assert json.loads((out / "summary.json").read_text())["config"]["num_workers"] == 1  # data loaded in a worker
    assert RADResult.load(out / "rad.npz").extra["kind"] == "corvi"  # a file base: its --kind is kept for prune


# --------------------------------------------------------------------------- bad input


def test_gate_must_be_zero_or_one(tmp_path):
    """0.5 or NaN would refit a head that load_dear refuses; an all-zero gate keeps nothing."""
    from detectors.head import GateError

    model = build_res50nodown("mini")
    for value in (0.5, float("nan")):
        g = torch.ones(256)
        g[3] = value
        with pytest.raises(GateError, match="exactly 0 or 1"):
            model.gate.set_(g)
        with pytest.raises(PruneError, match=r"g\.npz: gate values must be exactly 0 or 1"):
            load_gate(save_gate(g, tmp_path / "g.npz"))
    assert bool((model.gate.gate == 1).all())  # nothing was written
    with pytest.raises(PruneError, match=r"z\.npz: the gate keeps no channel"):
        load_gate(save_gate(torch.zeros(256), tmp_path / "z.npz"))
    with pytest.raises(GateError, match="128 entries but the model's gated features have 256"):
        model.gate.set_(torch.ones(128))


def test_refine_stage_checks_the_gate_file_and_warns(tmp_path, caplog):
    """A gate of another width is refused naming its file, before any data is read; one made on
    another detector only warns; a checkpoint whose head never beat the zero head warns."""
    from dear.config import DearConfig
    from dear.pipeline import refine_stage
    from dear.refine import world_data

    base = _random_base(tmp_path / "base.pth")
    cfg = DearConfig.dear_c(**{**TINY, "max_epochs": 0})
    narrow = save_gate(bilateral_gate(np.arange(128.0), 0.2, 0.2), tmp_path / "narrow.npz", detector="npr.mini")
    nowhere = world_data(tmp_path / "no-world", "corvi")
    with pytest.raises(PruneError, match=r"narrow\.npz: gate has 128 channels but the model's gated layer has 256"):
        refine_stage(base, narrow, nowhere, cfg)
    world = _fixture_world(tmp_path / "world")
    gate = save_gate(bilateral_gate(np.arange(256.0), 0.2, 0.2), tmp_path / "gate.npz", detector="npr.mini")
    with caplog.at_level("WARNING", logger="dear.pipeline"):
        result = refine_stage(base, gate, world_data(world, "corvi"), cfg, tmp_path / "model_best.pth")
    assert result.best_epoch == 0 and (tmp_path / "model_best.pth").is_file()
    text = caplog.text
    assert "gate.npz was made on npr.mini" in text and "never beat the zero head" in text and "model_best.pth" in text


def test_analyses_refuse_a_rad_of_another_width(tmp_path):
    from dear.analyses import activation_maps, rad_vs_robustness

    path = RADResult(np.arange(128.0), 4, 1, "layer2", "npr.mini").save(tmp_path / "npr_rad.npz")
    rad = RADResult.load(path)
    diag = _diag_set(tmp_path / "diag", n=2, size=48)
    model = build_res50nodown("mini")
    pattern = r"npr_rad\.npz: 128 channels \(dissected from npr\.mini at layer2\) but this model's layer2 has 64"
    with pytest.raises(DissectError, match=pattern):
        activation_maps(model, rad, diag, tmp_path / "maps", n_images=1)
    with pytest.raises(DissectError, match=pattern):
        rad_vs_robustness(model, rad, [diag / "images" / "000.png"], tmp_path / "rob")


@pytest.mark.parametrize("name,content", [
    ("truncated.npz", None), ("text.npz", b"not an archive\n"), ("empty.npz", b""),
    ("list.json", b"[1, 2]"), ("no_n.json", b'{"scores": [1, 2], "n_batches": 1, "layer": "x"}'),
    ("bad_n.json", b'{"scores": [1, 2], "n_samples": "x", "n_batches": 1, "layer": "x"}'),
    ("bad_extra.json", b'{"scores": [1, 2], "n_samples": 1, "n_batches": 1, "layer": "x", "extra": [1]}'),
    ("bad_scores.json", b'{"scores": ["a"], "n_samples": 1, "n_batches": 1, "layer": "x"}'),
    ("binary.json", b"\xff\xfe\x00"),
])
def test_corrupt_rad_files_name_the_file(tmp_path, name, content):
    path = tmp_path / name
    if content is None:
        whole = RADResult(np.arange(64.0), 1, 1, "layer4").save(tmp_path / "whole.npz").read_bytes()
        content = whole[: len(whole) // 2]
    path.write_bytes(content)
    with pytest.raises(DissectError, match=f"{name}: not a RAD file written by bench dear dissect") as info:
        RADResult.load(path)
    assert "allow_pickle" not in str(info.value)


def test_corrupt_gate_files_name_the_file(tmp_path):
    whole = save_gate(torch.ones(8), tmp_path / "whole.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(whole[:40])
    (tmp_path / "text.npz").write_text("gate = 1 1 1\n")
    np.savez(tmp_path / "other.npz", weights=np.ones(3))
    for name in ("cut.npz", "text.npz", "other.npz"):
        with pytest.raises(PruneError, match=f"{name}: not a gate file written by bench dear prune") as info:
            load_gate(tmp_path / name)
        assert "allow_pickle" not in str(info.value)


def test_interrupted_run_keeps_the_previous_set(tmp_path, monkeypatch, caplog):
    """Outputs go to a new <out>/.partial-* folder and replace the old set only once all exist; a run
    stopped in the refit leaves the old files untouched and its own work in the partial folder."""
    from dear import pipeline

    world = _fixture_world(tmp_path / "world", size=96)
    base = _random_base(tmp_path / "base.pth")
    out = tmp_path / "out"
    out.mkdir()
    names = ["rad.npz", "gate.npz", "model_best.pth", "timings.json", "summary.json"]
    for n in names:
        (out / n).write_text(f"old {n}")
    (out / "diag").mkdir()
    (out / "diag" / "old.png").write_text("old")
    cfg = pipeline.DearConfig.dear_c(**{**TINY, "max_epochs": 0})

    def stop(*a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(pipeline, "refine_stage", stop)
        with pytest.raises(KeyboardInterrupt), caplog.at_level("WARNING", logger="dear.pipeline"):
            pipeline.run_dear(base, out, cfg, world=world, kind="corvi")
    assert all((out / n).read_text() == f"old {n}" for n in names) and (out / "diag" / "old.png").is_file()
    (partial,) = out.glob(".partial-*")
    assert (partial / "rad.npz").is_file() and str(partial) in caplog.text

    def diagnose(images, out_dir, *a, **k):  # stands in for the inpainter: a copy of the world's set
        import shutil

        shutil.copytree(world / "diag", out_dir)
        return out_dir

    monkeypatch.setattr(pipeline, "diagnose", diagnose)
    caplog.clear()
    with caplog.at_level("WARNING", logger="dear.pipeline"):
        res = pipeline.run_dear(base, out, cfg, world=world, kind="corvi", inpainter="mini")
    assert f"1 unfinished DEAR run folder(s) ({partial.name})" in caplog.text  # named, never deleted
    __import__("shutil").rmtree(partial)  # the user's call, as the warning says
    assert (res.checkpoint, res.rad, res.gate, res.summary) == (out / "model_best.pth", out / "rad.npz", out / "gate.npz",
                                                                  out / "summary.json")
    assert sorted(p.name for p in out.iterdir()) == sorted([*names, "diag"])  # no partial folder left
    assert not (out / "diag" / "old.png").exists() and len(list((out / "diag" / "images").iterdir())) == 4
    assert json.loads(res.summary.read_text())["data"]["diag"] == str(out / "diag")
    assert RADResult.load(res.rad).data.startswith(f"{out / 'diag'} (")
    load_dear(res.checkpoint)


def test_diagnose_limits_and_stale_files(tmp_path):
    from dear.inpaint import make_diagnostic_set
    from dear.pipeline import diagnose, run_dear

    for bad in (0, -1):
        with pytest.raises(BenchError, match="limit must be at least 1"):
            diagnose(tmp_path / "nowhere", tmp_path / "d", limit=bad)
    with pytest.raises(BenchError, match="diag_limit must be at least 1"):
        run_dear("corvi.mini", tmp_path / "out", diag_limit=0, inpainter="mini")
    reals = []
    for i in range(3):
        reals.append(tmp_path / "real" / f"r{i}.png")
        reals[-1].parent.mkdir(exist_ok=True)
        Image.new("RGB", (64, 48), (200, 10, 10)).save(reals[-1])
    make_diagnostic_set(reals, tmp_path / "diag", _Negative(), progress=False)
    (tmp_path / "diag" / "notes.txt").write_text("mine")
    pairs = make_diagnostic_set(reals[:1], tmp_path / "diag", _Negative(), progress=False)
    assert diagnostic_pairs(tmp_path / "diag") == pairs  # the earlier r1, r2 are gone from images/ and masks/
    assert sorted(p.name for p in (tmp_path / "diag" / "masks").iterdir()) == ["r0.png"]
    assert (tmp_path / "diag" / "notes.txt").is_file()  # not ours: kept


def test_diagnose_keeps_what_is_not_an_earlier_pair_and_never_overwrites_inputs(tmp_path):
    from dear.inpaint import make_diagnostic_set

    real = tmp_path / "real" / "r0.png"
    real.parent.mkdir()
    Image.new("RGB", (64, 48), (200, 10, 10)).save(real)
    own = tmp_path / "diag" / "images" / "mine.png"  # a user's file with no mask beside it
    own.parent.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(own)
    make_diagnostic_set([real], tmp_path / "diag", _Negative(), progress=False)
    assert own.is_file()
    with pytest.raises(BenchError, match="an input image lies in the output folder"):
        make_diagnostic_set([own], tmp_path / "diag", _Negative(), progress=False)
    assert own.is_file() and Image.open(own).size == (8, 8)


def test_path_like_base_that_does_not_exist(tmp_path):
    from bench.api import MissingWeightsError
    from dear.config import DearConfig
    from dear.pipeline import dissect, load_base_model

    for base in ("/nonexist.pth", "weights/x.safetensors", "x.bin"):
        with pytest.raises(MissingWeightsError, match=f"no checkpoint file at {base}"):
            load_base_model(base)
    with pytest.raises(MissingWeightsError, match="no checkpoint file at /nonexist.pt"):
        dissect("/nonexist.pt", tmp_path, DearConfig())
    with pytest.raises(BenchError, match=r"needs --kind corvi or rajan \(kind= in Python\)"):
        load_base_model(_random_base(tmp_path / "base.pth"))
    with pytest.raises(BenchError, match=r"pass --kind \(kind= in Python\)"):
        load_base_model("npr.mini")


def test_masks_not_stored_as_0_255_are_named(tmp_path):
    root = _diag_set(tmp_path / "diag", n=2, size=48)
    grey = np.asarray(Image.open(root / "masks" / "000.png")) // 255 * 100  # 0/100 instead of 0/255
    Image.fromarray(grey.astype(np.uint8)).save(root / "masks" / "000.png")
    alpha = Image.new("RGBA", (48, 48), (0, 0, 0, 0))
    alpha.paste((0, 0, 0, 255), (10, 10, 30, 30))  # the region in the alpha channel only
    alpha.save(root / "masks" / "001.png")
    ds = DiagnosticImages(diagnostic_pairs(root))
    for i, name in enumerate(("000.png", "001.png")):
        with pytest.raises(DissectError, match=f"{name}: no mask pixel above 127; masks must be binary 0/255 L-mode PNGs"):
            ds[i]


def test_ambiguous_layer_suffix_lists_full_names():
    with pytest.raises(DissectError, match=r"'conv1' is ambiguous.*backbone\.conv1, backbone\.layer1\.0\.conv1"):
        rad_scores(build_res50nodown("mini"), [], layer="conv1")


def test_base_kind_is_read_from_registry_names_only(tmp_path):
    """One reading of how a base was trained serves the default alpha and the base loader: a
    registry name says it, a checkpoint file's name does not ("rajan_ft.pth" may be anything)."""
    from dear.config import base_kind, require_kind

    for name, kind in [("corvi", "corvi"), ("corvi.mini", "corvi"), ("Rajan.official", "rajan"),
                       ("rajan-plus.mini", "rajan"), ("corvi-plus", "corvi"), ("dear-r.mini", "rajan"), ("npr.mini", None), ("rajanx", None)]:
        assert base_kind(name) == kind, name
    ckpt = _random_base(tmp_path / "rajan_ft.pth")
    assert base_kind(ckpt) is None and base_kind(str(ckpt)) is None
    assert require_kind(ckpt, "corvi") == "corvi" and require_kind("rajan-plus.mini") == "rajan"
    with pytest.raises(BenchError, match="rajan_ft.pth: a base checkpoint file needs --kind"):
        require_kind(ckpt)
    with pytest.raises(BenchError, match="unknown detector 'corvy'; did you mean 'corvi'"):
        require_kind("corvy.mini", "corvi")  # a typo is named as one, even with --kind


def test_cli_stages_refuse_an_unstated_checkpoint_before_any_work(tmp_path, capsys):
    """`bench dear refine --base file.pth` used to guess the base's training from the file name;
    every stage but dissect now asks for --kind before the world is read or built."""
    from bench_cli import main

    ckpt = _random_base(tmp_path / "rajan_ft.pth")
    missing_world = tmp_path / "no-world"
    for argv in (["refine", "--gate", str(tmp_path / "gate.npz")], ["run"], ["analyze", "robustness"]):
        code = main(["dear", *argv, "--base", str(ckpt), "--world", str(missing_world), "--out", str(tmp_path / "out")])
        assert code == 2 and "rajan_ft.pth: a base checkpoint file needs --kind" in capsys.readouterr().err, argv
    assert not missing_world.exists() and not (tmp_path / "out").exists()
