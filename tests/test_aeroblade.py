"""AEROBLADE: the 8-bit reconstruction, diffusers autoencoders run as the official code runs
them (on tiny random ones saved to a folder), the max over autoencoders, the offline refusals,
size limits, and `aeroblade.mini` on AIGI-mini's registered autoencoders."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from bench import registry
from bench.api import Autoencoder, BenchError, MissingWeightsError
from bench.runner import RunConfig, run
from detectors import aeroblade as ab
from detectors.distances import Psnr
from detectors.preprocess import to_tensor

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class FixedAutoencoder:
    """An `Autoencoder` that returns x * gain (+ a colour shift): a test double."""

    def __init__(self, gain: float, name: str = "fixed", shift: float = 0.0):
        self.gain, self.shift, self.name, self.fingerprint = gain, shift, name, f"{name}-{gain}-{shift}"

    def reconstruct(self, x, seed=1):
        return (x * self.gain + self.shift).clamp(0, 1)

    def to(self, device):
        return self


def _detector(aes, similarity=None, **kw) -> ab.AerobladeDetector:
    spec = registry.detector_spec("aeroblade")
    return ab.AerobladeDetector(aes, similarity or Psnr(), spec.info, "aeroblade.test", "fp-test", **kw)


def _images(sizes=((32, 40), (32, 40), (24, 24)), seed=0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes]


# --------------------------------------------------------------------------- reconstruction


def test_quantization_is_a_png_save_and_reload():
    """torchvision's to_pil_image truncates x * 255 (float32 and the float16 of the official run)."""
    from torchvision.transforms.functional import to_pil_image

    torch.manual_seed(0)
    for dtype in (torch.float32, torch.float16):
        rec = torch.rand(3, 17, 9).to(dtype)
        rec[0, 0, :3] = torch.tensor([0.999, 1.0, 0.0]).to(dtype)
        via_png = to_tensor(to_pil_image(rec))
        torch.testing.assert_close(ab.quantize_8bit(rec[None])[0], via_png, rtol=0, atol=0)
    assert ab.quantize_8bit(torch.tensor([0.999]))[0] * 255 == 254, "truncated, not rounded"


def _save_tiny_autoencoders(root):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    kl = diffusers.AutoencoderKL(block_out_channels=(8, 16), layers_per_block=1, latent_channels=4, norm_num_groups=4,
                                 down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    vq = diffusers.VQModel(block_out_channels=(32, 32), layers_per_block=1, latent_channels=4, norm_num_groups=8,
                           num_vq_embeddings=16, norm_type="spatial",  # MoVQ's; its GroupNorms are 32-grouped
                           down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    kl.save_pretrained(root / "pipe" / "vae")  # a pipeline folder: the AE is its vae/
    vq.save_pretrained(root / "movq-alone")  # an autoencoder folder of its own
    return kl.eval(), vq.eval()


@pytest.fixture(scope="module")
def tiny_aes(tmp_path_factory):
    root = tmp_path_factory.mktemp("aes")
    kl, vq = _save_tiny_autoencoders(root)
    return root, kl, vq


def test_kl_autoencoder_samples_its_latent_per_image(tiny_aes):
    """2x - 1, encode, sample with a CPU generator seeded 1 *per image*, decode, x/2 + 0.5, clamp."""
    root, kl, _ = tiny_aes
    ae = ab.load_diffusers_autoencoder(str(root / "pipe"), torch.float32)
    assert isinstance(ae, Autoencoder) and ae.name.endswith("#vae") and not ae.is_vq and ae.factor == 2
    x = torch.rand(2, 3, 16, 12)
    got = ae.reconstruct(x, seed=1)
    with torch.no_grad():
        dist = kl.encode(x[:1] * 2 - 1).latent_dist
        z = dist.mean + dist.std * torch.randn(dist.mean.shape, generator=torch.Generator().manual_seed(1))
        want = (kl.decode(z).sample / 2 + 0.5).clamp(0, 1)
        torch.testing.assert_close(got[:1], want)
        torch.testing.assert_close(ae.reconstruct(x[1:], seed=1), got[1:])  # the batch does not matter
        assert not torch.allclose(ae.reconstruct(x[:1], seed=2), got[:1]), "a sample, not the mode"
        assert not torch.allclose((kl.decode(dist.mean).sample / 2 + 0.5).clamp(0, 1), want)


def test_vq_autoencoder_decodes_unquantised_and_odd_sizes_are_padded(tiny_aes):
    root, _, vq = tiny_aes
    ae = ab.load_diffusers_autoencoder(str(root / "movq-alone"), torch.float32)
    assert ae.is_vq
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        h = vq.encode(x * 2 - 1).latents
        unquantised = (vq.decode(h, force_not_quantize=True).sample / 2 + 0.5).clamp(0, 1)
        quantised = (vq.decode(h).sample / 2 + 0.5).clamp(0, 1)
    torch.testing.assert_close(ae.reconstruct(x), unquantised)
    assert not torch.allclose(unquantised, quantised)
    odd = torch.rand(1, 3, 15, 13)  # not a multiple of the factor: reflect-padded, cropped back
    assert ae.reconstruct(odd).shape == odd.shape


def test_float16_autoencoders_and_loading_errors(tiny_aes, tmp_path):
    root, _, _ = tiny_aes
    ae = ab.load_diffusers_autoencoder(str(root / "pipe"), torch.float16)
    assert ae.dtype == torch.float16 and ":float16:" in ae.fingerprint
    out = ae.reconstruct(torch.rand(1, 3, 8, 8))
    assert out.dtype == torch.float16 and ab.quantize_8bit(out).dtype == torch.float32
    assert ae.fingerprint != ab.load_diffusers_autoencoder(str(root / "pipe"), torch.float32).fingerprint
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingWeightsError, match="config.json"):
        ab.load_diffusers_autoencoder(str(tmp_path / "empty"))
    with pytest.raises(MissingWeightsError, match="subfolder 'movq'"):
        ab.load_diffusers_autoencoder(f"{root / 'pipe'}#movq")


# --------------------------------------------------------------------------- the detector


def test_score_is_the_best_autoencoder_and_higher_means_reconstructed_better():
    images = _images()
    x = torch.stack([to_tensor(im) for im in images[:2]])
    good, bad = FixedAutoencoder(1.0, "good"), FixedAutoencoder(0.8, "bad")
    both = _detector([bad, good]).forward(x)
    only_bad = _detector([bad]).forward(x)
    torch.testing.assert_close(both, torch.maximum(only_bad, _detector([good]).forward(x)))
    assert (both > only_bad).all(), "the better reconstruction wins"
    torch.testing.assert_close(only_bad, Psnr()(x, ab.quantize_8bit(bad.reconstruct(x))))


def test_batches_are_split_to_bound_memory_and_sizes_are_checked():
    images = _images(((16, 16),) * 4)
    x = torch.stack([to_tensor(im) for im in images])
    ae = FixedAutoencoder(0.9, shift=0.01)
    whole = _detector([ae], max_pixels=None).forward(x)
    torch.testing.assert_close(_detector([ae], max_pixels=2 * 16 * 16).forward(x), whole)
    prep = _detector([ae], max_pixels=300).preprocess()
    with pytest.raises(ab.ImageSizeError, match="18x18 px is above AEROBLADE's limit of 300 pixels"):
        prep(Image.new("RGB", (18, 18)))
    with pytest.raises(ab.ImageSizeError, match=">= 11 px"):
        _detector([ae], ab.similarity_from_name("ssimc")).preprocess()(Image.new("RGB", (10, 30)))


def test_per_image_failures_are_named_and_the_run_completes(tmp_path, folder_suite_dir):
    Image.new("RGB", (64, 64), (90, 20, 20)).save(folder_suite_dir / "real" / "zz_big.png")
    Image.new("RGB", (8, 40), (90, 20, 20)).save(folder_suite_dir / "fake" / "gan" / "zz_thin.png")
    suite = registry.get_suite("folder").load(str(folder_suite_dir))
    det = registry.create_detector("aeroblade.mini", max_pixels=48 * 48)
    res = run(RunConfig(suite="folder", out=tmp_path, workers=0), detectors=[det], suite=suite, progress=False)
    assert res.ok and len(res.scores) == 14
    reasons = {p.rsplit("/", 1)[1]: r for p, r in zip(res.failures["path"], res.failures["reason"])}
    assert "64x64 px is above" in reasons["zz_big.png"] and "8x40 px" in reasons["zz_thin.png"]


# --------------------------------------------------------------------------- weights and tags


def test_official_offline_refuses_naming_the_vgg_file_and_torch_home(offline_weights):
    """No VGG16 trunk anywhere and no network: a clear refusal, never a random trunk."""
    with pytest.raises(MissingWeightsError) as err:
        registry.create_detector("aeroblade.official")
    message = str(err.value)
    assert "vgg16-397923af.pth" in message and "TORCH_HOME" in message
    assert str(offline_weights / "hub" / "checkpoints" / "vgg16-397923af.pth") in message
    with pytest.raises(MissingWeightsError, match="vgg16-397923af.pth"):  # an LPIPS distance on the mini tag too
        registry.create_detector("aeroblade.mini", distance="lpips_vgg_2")


def _vgg_checkpoint(path):
    """torchvision's vgg16-397923af.pth layout: features.{conv index}.weight/bias (random here)
    and a classifier (small stand-ins: the loader ignores it)."""
    from torchvision.models.vgg import cfgs

    g = torch.Generator().manual_seed(0)
    state, cin, i = {}, 3, 0
    for v in cfgs["D"]:
        if v == "M":
            i += 1
            continue
        state[f"features.{i}.weight"] = torch.randn(v, cin, 3, 3, generator=g) * (2 / (9 * cin)) ** 0.5
        state[f"features.{i}.bias"] = torch.zeros(v)
        cin, i = v, i + 2  # conv, ReLU
    for k in (0, 3, 6):
        state[f"classifier.{k}.weight"], state[f"classifier.{k}.bias"] = torch.zeros(2, 2), torch.zeros(2)
    torch.save(state, path)
    return state


def test_lpips_from_torch_hub_cache(offline_weights):
    pytest.importorskip("lpips")
    hub = offline_weights / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    state = _vgg_checkpoint(hub / "vgg16-397923af.pth")
    assert sorted(k for k in state if k.startswith("features.") and k.endswith(".weight")) == sorted(
        f"features.{i}.weight" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28))
    det = registry.create_detector("aeroblade.mini", distance="lpips_vgg_2")
    assert det.similarity.name == "lpips_vgg_2" and det.info.display_name == "AEROBLADE"
    scores = det.score(_images())
    assert np.isfinite(scores).all() and (scores <= 0).all()  # -LPIPS
    assert det.fingerprint != registry.create_detector("aeroblade.mini").fingerprint


def test_mini_uses_the_registered_ldm_autoencoder():
    det = registry.create_detector("aeroblade.mini")
    assert [ae.name for ae in det.autoencoders] == ["mini:ldm"] and det.similarity.name == "ssimc"
    assert det.info.display_name == "AEROBLADE-SSIM" and not det.info.calibrated
    assert det.weights == "aeroblade.mini"
    assert det.fingerprint == registry.create_detector("aeroblade.mini").fingerprint
    other = registry.create_detector("aeroblade.mini", autoencoders=["mini:ldm", "mini:vq"])
    assert other.fingerprint != det.fingerprint and len(other.autoencoders) == 2
    assert registry.create_detector("aeroblade.mini", distance="psnr").info.display_name == "AEROBLADE-PSNR"


def test_world_autoencoders_are_registered_and_match_the_generators():
    from suites.mini import generators as gens

    ae = registry.get_autoencoder("mini:ldm")
    assert isinstance(ae, Autoencoder) and ae.name == "mini:ldm" and len(ae.fingerprint) == 64
    image = _images(((40, 56),))[0]
    x = to_tensor(image)[None]
    # the world's fakes are the generator's output rounded to 8 bits; AEROBLADE truncates
    fake = to_tensor(gens.generate(gens.load_generator("ldm"), image))[None]
    assert (ab.quantize_8bit(ae.reconstruct(x)) - fake).abs().max() <= 1 / 255 + 1e-6
    vq, vq_q = registry.get_autoencoder("mini:vq"), registry.get_autoencoder("mini:vq", quantize=True)
    assert not torch.allclose(vq.reconstruct(x), vq_q.reconstruct(x)), "force_not_quantize's analogue"
    assert vq.fingerprint != vq_q.fingerprint
    with pytest.raises(BenchError, match="unknown generator 'sd'"):
        registry.get_autoencoder("mini:sd")
    with pytest.raises(registry.UnknownNameError, match="unknown autoencoder 'minni'"):
        registry.get_autoencoder("minni:ldm")
    assert registry.is_autoencoder_reference("mini:ldm") and not registry.is_autoencoder_reference("CompVis/sd")
