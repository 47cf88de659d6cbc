"""AEROBLADE (Ricker, Lukovnikov and Fischer, CVPR 2024): a training-free detector that asks
how well the autoencoder of a latent diffusion model reconstructs an image. A generated image
came out of such a decoder, so the autoencoder reconstructs it better than a real photo.

Facts from jonasricker/aeroblade @ 50fc2b22c929fdc481757adc4bc81bf98d36f9fc:
- `scripts/run_aeroblade.py`: the autoencoders default to the VAEs of
  `CompVis/stable-diffusion-v1-1` and `stabilityai/stable-diffusion-2-base` and the MoVQ of
  `kandinsky-community/kandinsky-2-1`; the distance defaults to `lpips_vgg_2`; seed 1.
- `src/aeroblade/image.py` `compute_reconstructions`: images are read as float in [0, 1] at their
  own size (no resize, no crop), cast to the autoencoder's dtype (float16; the SD pipelines of
  diffusers 0.25.1 have no `upcast_vae`), mapped to 2x - 1, encoded, the latent *sampled* with a
  CPU `torch.Generator().manual_seed(1)` (diffusers `retrieve_latents`; MoVQ's latent is
  deterministic), decoded (MoVQ with `force_not_quantize=True`), mapped back with x/2 + 0.5,
  clamped, and saved as 8-bit PNG by torchvision's `to_pil_image` (which truncates x * 255) to be
  read back before the distance. The 8-bit quantisation is part of what is measured, so it is
  kept here (`quantize_8bit`).
- `src/aeroblade/distances.py`: LPIPS layer 2 (`detectors.distances`), negated;
  `src/aeroblade/high_level_funcs.py` `compute_distances`: the maximum of the negated distances
  over the autoencoders, i.e. minus the smallest distance. `experiments/01_detect.py` scores with
  it as is: **higher = more likely generated**. That is this detector's score. It is not a
  calibrated logit (`calibrated=False`: tables print '-' for its accuracies), only its ranking
  (AUC, AP) means something.

Deviations, each forced by the harness or by missing pieces:
- the noise of a sampled latent is drawn per image from a generator seeded 1, so a score does not
  depend on the batch or the order (the official generator is seeded once per folder and advanced
  across batches; its first image gets exactly our noise);
- images whose sides are not multiples of a diffusers autoencoder's factor (8) are padded
  (reflect, bottom/right) and the reconstruction cropped back; without it the decoder returns a
  smaller image (328x328 for 333x333) and the official LPIPS step fails on the shape mismatch.
  AIGI-mini's autoencoders pad the same way;
- LPIPS maps are averaged in float32 (the official stores them as float16 first);
- images above `max_pixels` are refused one by one (bounded memory), and a batch is split so that
  no forward holds more than `max_pixels` pixels.

`aeroblade.mini` runs the method offline on AIGI-mini, whose generators are autoencoders
(`suites.mini.generators`), reached through the autoencoder registry (`mini:ldm`) rather than by
import, since detectors may not import suites. See `detectors.free_catalog` for its choices.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from bench import registry
from bench.api import Autoencoder, BenchError, Detector, DetectorInfo, MissingWeightsError
from bench.weights import load_state, resolve, resolve_tag, sha256_file, state_digest
from detectors.distances import Similarity, needs_lpips_weights, similarity_from_name
from detectors.preprocess import pixels, to_unit

DEFAULT_DISTANCE = "lpips_vgg_2"
MINI_DISTANCE = "ssimc"
SEED = 1
# Largest image (pixels) scored; a batch is also split so that no forward holds more. On CPU an
# SD VAE in float16 plus LPIPS layer 2 peaks at 1.07 GiB + 1.44 GiB per megapixel (measured at
# 256, 512 and 1024 px squares, linear: `benchmarks/aeroblade_memory.py`), so 24 GiB hold about
# 16 MP (4000x4000); 12 MP (a 4000x3000 photo, ~18.4 GiB) leaves room for the data loaders.
MAX_PIXELS = 12_000_000
DISTANCE_LABELS = {"lpips_vgg_2": "LPIPS-2", "psnr": "PSNR", "ssimc": "SSIM", "ssim": "SSIM-Y", "ms_ssim": "MS-SSIM"}
LPIPS_PACKAGE_HINT = "pip install lpips (or pip install -e '.[aeroblade]')"


class ImageSizeError(BenchError):
    """An image this detector cannot score at its size; the run records it and goes on."""


# --------------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class AerobladeInput:
    """PIL RGB -> (3, H, W) uint8 pixels at native resolution; `AerobladeDetector.prepare` makes
    them float in [0, 1] on the device, as AEROBLADE reads images (ToTensor), in a quarter of the
    bytes between the loader and the device. Refuses, one image at a time, what the distance
    cannot score or memory cannot hold."""

    min_side: int = 1
    max_pixels: int | None = MAX_PIXELS

    def __call__(self, image: Image.Image) -> torch.Tensor:
        w, h = image.size
        if min(w, h) < self.min_side:
            raise ImageSizeError(f"{w}x{h} px: the distance needs both sides >= {self.min_side} px")
        if self.max_pixels is not None and w * h > self.max_pixels:
            raise ImageSizeError(f"{w}x{h} px is above AEROBLADE's limit of {self.max_pixels:,} pixels "
                                 "(create_detector(..., max_pixels=None) lifts it, memory permitting)")
        return pixels(image)


def quantize_8bit(reconstruction: torch.Tensor) -> torch.Tensor:
    """What saving with torchvision's `to_pil_image` and reading back gives: x * 255 truncated
    to uint8 (in the reconstruction's own dtype), then / 255 as float32."""
    return reconstruction.clamp(0, 1).mul(255).to(torch.uint8).to(torch.float32).div_(255)


# --------------------------------------------------------------------------- diffusers autoencoders


class DiffusersAutoencoder:
    """A diffusers `AutoencoderKL` or `VQModel` as a `bench.api.Autoencoder`, run the way
    AEROBLADE's `compute_reconstructions` runs it."""

    def __init__(self, model: Any, name: str, fingerprint: str | None = None):
        self.model = model.eval().requires_grad_(False)
        self.name = name
        self.dtype = next(model.parameters()).dtype
        self.is_vq = hasattr(model, "quantize")
        self.factor = 2 ** (len(model.config.block_out_channels) - 1)
        self.fingerprint = fingerprint or state_digest(model.state_dict())

    def to(self, device: Any) -> "DiffusersAutoencoder":
        self.model.to(device)
        return self

    def reconstruct(self, x: torch.Tensor, seed: int = SEED) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.factor, (-w) % self.factor
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate")
        images = x.to(self.dtype) * 2.0 - 1.0
        encoded = self.model.encode(images)
        if hasattr(encoded, "latent_dist"):  # KL: a sample, its noise per image from a CPU generator
            generators = [torch.Generator().manual_seed(seed) for _ in range(len(images))]
            latents = encoded.latent_dist.sample(generator=generators)
        else:  # VQ: the encoder's latent as it is
            latents = encoded.latents
        decode_dtype = next(self.model.post_quant_conv.parameters()).dtype
        if self.is_vq:
            rec = self.model.decode(latents.to(decode_dtype), force_not_quantize=True, return_dict=False)[0]
        else:
            rec = self.model.decode(latents.to(decode_dtype), return_dict=False)[0]
        return (rec / 2 + 0.5).clamp(0, 1)[..., :h, :w]


def _diffusers_classes() -> tuple[Any, Any]:
    try:
        from diffusers import AutoencoderKL, VQModel
    except ImportError as exc:
        raise BenchError(f"AEROBLADE's autoencoders are loaded with diffusers, which is not installed ({exc}); "
                         "pip install -e '.[aeroblade]'") from None
    return AutoencoderKL, VQModel


def load_diffusers_autoencoder(reference: str, dtype: torch.dtype = torch.float16) -> DiffusersAutoencoder:
    """A Hub id ("CompVis/stable-diffusion-v1-1") or a local diffusers folder, optionally
    "<id or folder>#<subfolder>". A pipeline's autoencoder is its `vae/` (KL) or `movq/` (VQ)
    subfolder; a folder with its own config.json is an autoencoder itself. Hub ids load as the
    official code loads them: float16, the "fp16" variant except for Kandinsky 2."""
    AutoencoderKL, VQModel = _diffusers_classes()
    source, _, subfolder = reference.partition("#")
    folder = Path(source).expanduser()
    local = folder.is_dir()
    if not subfolder:
        if local:
            subfolder = next((s for s in ("", "vae", "movq") if (folder / s / "config.json").is_file()), None)
            if subfolder is None:
                raise MissingWeightsError(f"AEROBLADE autoencoder {reference!r}: {folder} holds no config.json, vae/ or movq/")
        else:
            subfolder = "movq" if "kandinsky-2" in source else "vae"
    if local:
        config_file = folder / subfolder / "config.json"
        if not config_file.is_file():
            raise MissingWeightsError(f"AEROBLADE autoencoder {reference!r}: no {config_file} (subfolder {subfolder!r})")
        is_vq = json.loads(config_file.read_text()).get("_class_name") == "VQModel"
    else:
        is_vq = subfolder == "movq"
    cls = VQModel if is_vq else AutoencoderKL
    variant = "fp16" if not local and dtype == torch.float16 and "kandinsky-2" not in source else None
    try:
        model = cls.from_pretrained(str(folder) if local else source, subfolder=subfolder or None, torch_dtype=dtype,
                                    use_safetensors=True, variant=variant)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        where = (f"download it once with `huggingface-cli download {source} --include '{subfolder}/*'` "
                 "(it goes to the Hugging Face cache, $HF_HOME) or pass a local diffusers folder") if not local else "check the folder"
        raise MissingWeightsError(f"AEROBLADE autoencoder {reference!r} ({cls.__name__}, subfolder {subfolder or '.'!r}) "
                                  f"could not be loaded: {first}. To use it offline, {where}.") from None
    name = f"{source}#{subfolder}" if subfolder else source
    return DiffusersAutoencoder(model, name, f"{name}:{str(dtype).removeprefix('torch.')}:{state_digest(model.state_dict())}")


def load_autoencoder(reference: str, dtype: torch.dtype = torch.float16, path: str | os.PathLike | None = None) -> Autoencoder:
    """A registered autoencoder ("mini:ldm"; `path` overrides its weights file) or a diffusers one."""
    if registry.is_autoencoder_reference(reference):
        return registry.get_autoencoder(reference, **({"path": path} if path is not None else {}))
    return load_diffusers_autoencoder(reference, dtype)


# --------------------------------------------------------------------------- LPIPS weights


def lpips_linear_layers() -> tuple[dict[str, torch.Tensor], str]:
    """The lpips package's `weights/v0.1/vgg.pth` (its linear layers) and its sha256, found
    without importing lpips."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        raise MissingWeightsError(f"AEROBLADE's LPIPS needs the linear layers that ship with the lpips package: {LPIPS_PACKAGE_HINT}")
    file = Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1" / "vgg.pth"
    if not file.is_file():
        raise MissingWeightsError(f"{file}: missing from the installed lpips package; reinstall it ({LPIPS_PACKAGE_HINT})")
    return load_state(file), sha256_file(file)


def vgg16_features(file: str | os.PathLike) -> dict[str, torch.Tensor]:
    """`features.*` of torchvision's VGG16 ImageNet checkpoint (`vgg16-397923af.pth`, a raw state
    dict), keys without the prefix; the classifier is not needed."""
    state = load_state(file)
    features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    if not features:
        raise MissingWeightsError(f"{file}: no 'features.*' keys; expected torchvision's vgg16-397923af.pth")
    return features


# --------------------------------------------------------------------------- detector


class AerobladeDetector(Detector):
    """Score = max over autoencoders of similarity(x, 8-bit AE(x)); higher = more likely generated."""

    def __init__(self, autoencoders: Sequence[Autoencoder], similarity: Similarity, info: DetectorInfo, weights: str,
                 fingerprint: str, *, seed: int = SEED, max_pixels: int | None = MAX_PIXELS):  # fmt: skip
        if not autoencoders:
            raise BenchError("AEROBLADE needs at least one autoencoder")
        self.autoencoders, self.similarity = list(autoencoders), similarity.eval()
        self.info, self.weights, self.fingerprint = info, weights, fingerprint
        self.seed, self.max_pixels = seed, max_pixels

    def preprocess(self) -> AerobladeInput:
        return AerobladeInput(self.similarity.min_side, self.max_pixels)

    def prepare(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 pixels -> float in [0, 1] (ToTensor's scaling); float input is taken as it is."""
        return to_unit(batch)

    def to(self, device: str) -> "AerobladeDetector":
        super().to(device)
        for ae in self.autoencoders:
            ae.to(device)
        self.similarity.to(device)
        return self

    def _score(self, x: torch.Tensor) -> torch.Tensor:
        # channels-last: the autoencoders' narrow full-resolution convolutions and the SSIM
        # window run 1.6x and 2.8x faster on CPU (a 1024x1024 image), same numbers to 1e-6
        x = x.contiguous(memory_format=torch.channels_last)
        best = None
        for ae in self.autoencoders:
            similarity = self.similarity(x, quantize_8bit(ae.reconstruct(x, self.seed))).float()
            best = similarity if best is None else torch.maximum(best, similarity)
        return best

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        per_image = batch.shape[-2] * batch.shape[-1]
        step = max(1, (self.max_pixels or per_image * len(batch)) // per_image)
        return torch.cat([self._score(batch[i : i + step].float()) for i in range(0, len(batch), step)])


def _fingerprint(autoencoders: Sequence[Autoencoder], distance: str, distance_digests: Sequence[str], seed: int) -> str:
    parts = {"method": "aeroblade-v1", "distance": distance, "distance_weights": list(distance_digests),
             "autoencoders": sorted(ae.fingerprint for ae in autoencoders), "seed": seed, "quantize": "uint8-truncate"}
    return "aeroblade:" + hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


_DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}


def build(spec: Any, weights: str | None = None, *, path: str | os.PathLike | None = None, device: str = "cpu",
          autoencoders: Sequence[str | Autoencoder] | None = None, distance: str | None = None, dtype: str = "float16",
          vgg_path: str | os.PathLike | None = None, seed: int = SEED, max_pixels: int | None = MAX_PIXELS) -> AerobladeDetector:
    """The builder of `aeroblade` (`detectors.free_catalog`).

    - `aeroblade.official`: the official autoencoders and `lpips_vgg_2`; `path` is the VGG16 file;
    - `aeroblade.mini`: AIGI-mini's `mini:ldm` and `ssimc`; `path` is the LDM generator's file;
    - `autoencoders`: Hub ids, local diffusers folders ("<folder>[#subfolder]"), registered
      autoencoders ("mini:vq") or `bench.api.Autoencoder` objects, replacing the tag's; `distance`: any name of
      `detectors.distances.NAMES`; `dtype`: of the diffusers autoencoders (official: float16);
      `vgg_path`: the VGG16 file for an LPIPS distance under the mini tag.
    """
    tag, file, _ = resolve_tag(spec, weights, path)
    mini = tag == "mini"
    distance = distance or (MINI_DISTANCE if mini else DEFAULT_DISTANCE)
    lpips_weights, digests = None, []
    if needs_lpips_weights(distance):
        vgg_file = file if tag == "official" else resolve(spec.name, spec.weight("official"), vgg_path)
        lins, lin_digest = lpips_linear_layers()
        lpips_weights = (vgg16_features(vgg_file), lins)
        digests = [sha256_file(vgg_file), lin_digest]
    similarity = similarity_from_name(distance, lpips_weights)
    if dtype not in _DTYPES:
        raise BenchError(f"aeroblade: dtype {dtype!r}; choose one of {', '.join(_DTYPES)}")
    if autoencoders is None:
        refs = spec_autoencoders(tag)  # the mini tag's one file is its one autoencoder's weights
        aes = [load_autoencoder(ref, _DTYPES[dtype], path=file if mini and len(refs) == 1 else None) for ref in refs]
    else:
        aes = [load_autoencoder(ref, _DTYPES[dtype]) if isinstance(ref, str) else ref for ref in autoencoders]
    # the distance names the row when it is not the paper's ("AEROBLADE-SSIM"); the weight tag is
    # added by the runner's row label ("AEROBLADE-SSIM (mini)"), as for every detector
    suffix = "" if distance == DEFAULT_DISTANCE else "-" + DISTANCE_LABELS.get(distance, distance)
    info = dataclasses.replace(spec.info, display_name=spec.info.display_name + suffix)
    det = AerobladeDetector(aes, similarity, info, f"{spec.name}.{tag}", _fingerprint(aes, distance, digests, seed),
                            seed=seed, max_pixels=max_pixels)
    return det.to(device)


def spec_autoencoders(tag: str) -> tuple[str, ...]:
    """The autoencoders a weight tag stands for."""
    from detectors.free_catalog import AEROBLADE_AUTOENCODERS

    return AEROBLADE_AUTOENCODERS[tag]
