"""The generators of AIGI-mini: tiny convolutional autoencoders trained by this project.

Latent-diffusion images carry the fingerprint of the autoencoder that decodes them, and the
papers' detectors learn that trace (Rajan et al. train on autoencoder reconstructions of real
images). Here each "generator" is such an autoencoder in miniature: it re-synthesises an image
from a compressed latent. The family differs the ways real generators differ:

- latent: factor 4 with 4 channels (LDM's LSUN models use f=4 autoencoders, CompVis/
  latent-diffusion README `lsun_bedrooms-ldm-vq-4`; SD's KL autoencoder has 4 channels) vs
  factor 8 with 16 channels (FLUX.1's autoencoder: ch_mult [1,2,4,4], z_channels=16,
  black-forest-labs/flux `src/flux/util.py`);
- decoder upsampling: nearest + conv (the `Upsample` block of LDM/SD decoders), transposed
  convolution (GAN-era decoders, known for checkerboard artifacts), pixel shuffle;
- a quantised latent: nearest-codebook VQ with the straight-through estimator (VQ-VAE), as in
  the VQ-GAN of aMUSEd (huggingface/open-muse).

Each has 80k-280k parameters, narrow at full resolution and wider deeper in (LDM's channel
schedule), is fully convolutional (any size: padded to its factor, cropped back), and is
trained with L1 on random 64x64 crops of the TRAIN photos only, Adam with a one-cycle schedule
and a fixed seed, single-threaded so a retrain on the same machine reproduces the weights.
Weights: `suites/mini/weights/<name>.safetensors`; the architecture comes from `GENERATORS`.
"""
from __future__ import annotations

import functools
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from bench.api import BenchError, MissingWeightsError
from bench.devices import single_thread
from bench.weights import load_state, save_state
from suites.mini import photos

Upsampling = Literal["nearest", "tconv", "shuffle"]


@dataclass(frozen=True)
class GeneratorConfig:
    """One generator of the world: architecture, training recipe and role."""

    name: str  # folder and file name: "ldm"
    display_name: str  # as printed in tables: "LDM"
    latent_channels: int
    factor: int  # spatial downsampling of the latent: 4 or 8
    upsampling: Upsampling
    codebook: int = 0  # > 0: vector-quantised latent with this many codes
    channels: tuple[int, ...] = (16, 32, 32)  # trunk channels at resolution 1, 1/2, ..., 1/factor
    seed: int = 0
    training: bool = False  # the generator of the training set (the "LDM" of this world)
    steps: int = 500  # Adam steps at full training
    lr: float = 4e-3  # peak of the one-cycle schedule
    description: str = ""


GENERATORS: tuple[GeneratorConfig, ...] = (
    GeneratorConfig("ldm", "LDM", 4, 4, "nearest", seed=1, training=True,
                    description="f=4, 4-channel latent, nearest+conv decoder (LDM-4 style)"),
    GeneratorConfig("flux16", "FLUX-16", 16, 8, "nearest", channels=(16, 32, 48, 64), seed=2, lr=1.5e-3,
                    description="f=8, 16-channel latent (FLUX-style wide latent)"),
    GeneratorConfig("tconv", "TConv", 4, 4, "tconv", seed=3,
                    description="f=4, 4-channel latent, transposed-conv decoder"),
    GeneratorConfig("shuffle", "Shuffle", 4, 4, "shuffle", seed=4,
                    description="f=4, 4-channel latent, pixel-shuffle decoder"),
    GeneratorConfig("vq", "VQ", 4, 4, "nearest", codebook=256, seed=5,
                    description="f=4, vector-quantised latent (256 codes, straight-through)"),
)

TRAIN_CROP = 64
BATCH = 16


def config(name: str) -> GeneratorConfig:
    for g in GENERATORS:
        if g.name == name:
            return g
    raise BenchError(f"unknown generator {name!r}; known: {', '.join(g.name for g in GENERATORS)}")


def training_generator() -> GeneratorConfig:
    return next(g for g in GENERATORS if g.training)


# --------------------------------------------------------------------------- architecture


def _conv(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Conv2d:
    # reflect padding: a tiny, briefly trained net with zero padding paints a frame on every image
    return nn.Conv2d(cin, cout, k, stride, padding=(k - 1) // 2 if stride == 1 else 1, padding_mode="reflect")


class _Up(nn.Module):
    """x2 upsampling of a decoder, in one of three styles real decoders use."""

    def __init__(self, cin: int, cout: int, kind: Upsampling):
        super().__init__()
        self.kind = kind
        if kind == "nearest":
            self.conv = _conv(cin, cout)
        elif kind == "tconv":
            self.conv = nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)
        elif kind == "shuffle":
            self.conv = _conv(cin, 4 * cout)
        else:
            raise ValueError(f"unknown upsampling {kind!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "nearest":
            return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        if self.kind == "tconv":
            return self.conv(x)
        return F.pixel_shuffle(self.conv(x), 2)


class VectorQuantizer(nn.Module):
    """Nearest-code quantisation with the straight-through gradient (van den Oord et al. 2017)."""

    def __init__(self, codes: int, dim: int, beta: float = 0.25):
        super().__init__()
        self.codebook = nn.Parameter(torch.randn(codes, dim) * 0.1)
        self.beta = beta

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        d = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.t() + self.codebook.pow(2).sum(1)[None])
        return d.argmin(1).view(z.shape[0], z.shape[2], z.shape[3])

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.codebook[self.indices(z)].permute(0, 3, 1, 2)
        loss = F.mse_loss(q, z.detach()) + self.beta * F.mse_loss(z, q.detach())
        return z + (q - z).detach(), loss


class ConvAutoencoder(nn.Module):
    """Encoder to a (latent_channels, H/f, W/f) latent, decoder back to RGB in [-1, 1]."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        if cfg.factor not in (4, 8):
            raise ValueError(f"{cfg.name}: factor must be 4 or 8")
        self.cfg = cfg
        # Channel schedule as in LDM's autoencoder: narrow at full resolution, wider deeper in.
        levels = int(math.log2(cfg.factor))
        chans = cfg.channels
        if len(chans) != levels + 1:
            raise ValueError(f"{cfg.name}: {levels + 1} channel counts needed for factor {cfg.factor}")
        w = chans[-1]
        enc: list[nn.Module] = [_conv(3, chans[0]), nn.SiLU()]
        for i in range(levels):
            enc += [_conv(chans[i], chans[i + 1], 4, stride=2), nn.SiLU(), _conv(chans[i + 1], chans[i + 1]), nn.SiLU()]
        enc += [_conv(w, cfg.latent_channels, 1)]
        self.encoder = nn.Sequential(*enc)
        self.quantizer = VectorQuantizer(cfg.codebook, cfg.latent_channels) if cfg.codebook else None
        dec: list[nn.Module] = [_conv(cfg.latent_channels, w), nn.SiLU(), _conv(w, w), nn.SiLU()]
        for i in reversed(range(levels)):
            dec += [_Up(chans[i + 1], chans[i], cfg.upsampling), nn.SiLU(), _conv(chans[i], chans[i]), nn.SiLU()]
        dec += [_conv(chans[0], 3)]
        self.decoder = nn.Sequential(*dec)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction and auxiliary (VQ) loss; x is (B, 3, H, W) in [-1, 1], H, W % f == 0."""
        z = self.encode(x)
        aux = x.new_zeros(())
        if self.quantizer is not None:
            z, aux = self.quantizer(z)
        return self.decode(z), aux

    def forward(self, x: torch.Tensor, quantize: bool = True) -> torch.Tensor:
        """Reconstruct any size: pad to a multiple of the factor (at least 2x it, so the
        deepest reflect-padded conv has room), crop back. `quantize=False` decodes the VQ
        generator's latent unquantised (diffusers' `force_not_quantize`, which AEROBLADE uses)."""
        h, w = x.shape[-2:]
        f = self.cfg.factor
        ph, pw = max(2 * f, h + (-h) % f) - h, max(2 * f, w + (-w) % f) - w
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        y = self.forward_train(x)[0] if quantize else self.decode(self.encode(x))
        return y[..., :h, :w]


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- image helpers


def to_tensor(image: Image.Image, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """PIL RGB -> (1, 3, H, W) float in [-1, 1]."""
    a = np.asarray(image.convert("RGB"), dtype=np.float64 if dtype == torch.float64 else np.float32)
    return torch.from_numpy(a).permute(2, 0, 1)[None].div(127.5).sub(1.0)


def to_image(x: torch.Tensor) -> Image.Image:
    """(1, 3, H, W) or (3, H, W) in [-1, 1] -> PIL RGB, rounded to 8 bits."""
    a = x.reshape(3, *x.shape[-2:]).add(1.0).mul(127.5).round().clamp(0, 255)
    return Image.fromarray(a.to(torch.uint8).permute(1, 2, 0).numpy(), "RGB")


@torch.inference_mode()
def generate(model: ConvAutoencoder, image: Image.Image) -> Image.Image:
    """The generator's re-synthesis of `image`, same size, 8-bit RGB, in the model's dtype."""
    return to_image(model(to_tensor(image, next(model.parameters()).dtype)))


def psnr(a: Image.Image, b: Image.Image) -> float:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    mse = float(np.mean((x - y) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


# --------------------------------------------------------------------------- weights


def bundled_weights_dir() -> Path:
    """The committed generator weights, inside the installed package (not bench.weights'
    user cache, which holds downloaded detector weights)."""
    return Path(__file__).parent / "weights"


def weights_path(name: str, directory: str | Path | None = None) -> Path:
    return Path(directory or bundled_weights_dir()) / f"{config(name).name}.safetensors"


TRAIN_COMMAND = "bench world train-generators"


def load_generator(name: str, directory: str | Path | None = None, dtype: torch.dtype = torch.float64) -> ConvAutoencoder:
    """The trained generator `name` in eval mode, from `directory` (default: committed weights).

    Generation runs in float64 by default: float32 convolutions sum in an order that depends on
    the CPU's vector units (AVX2, AVX-512, none), which moved some 8-bit output pixels by one
    level between machines, hence other files, other hashes and other post-processing draws.
    In float64 the same weights give the same 8-bit image on every CPU tried (ATen's DEFAULT,
    AVX2 and AVX512 kernels: `benchmarks/world_determinism.py`)."""
    return load_generator_file(name, weights_path(name, directory), dtype)


def load_generator_file(name: str, path: str | Path, dtype: torch.dtype = torch.float32) -> ConvAutoencoder:
    """The generator `name`'s architecture with the weights of the file `path`, in eval mode
    and in `dtype` (float32 for reconstructions as a detector's autoencoder; the world's own
    generation asks for float64 through `load_generator`)."""
    cfg = config(name)
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(
            f"generator {name!r}: no weights at {path}. Train them with `{TRAIN_COMMAND} --out {path.parent}`"
        )
    model = ConvAutoencoder(cfg)
    try:
        model.load_state_dict(load_state(path))
    except RuntimeError as exc:
        raise MissingWeightsError(
            f"generator {name!r}: {path} does not match its architecture ({exc}); retrain with `{TRAIN_COMMAND} --out {path.parent}`"
        ) from exc
    return model.to(dtype).eval()


class WorldAutoencoder:
    """A generator of the world as a `bench.api.Autoencoder`: images in [0, 1] in and out,
    what AEROBLADE's `mini:<name>` autoencoders are. The world's fakes are exactly such
    reconstructions (`generate`), so AEROBLADE's premise holds here by construction."""

    def __init__(self, model: ConvAutoencoder, name: str, fingerprint: str, quantize: bool = False):
        self.model, self.name, self.quantize = model.eval(), name, quantize
        self.fingerprint = fingerprint + ("" if not quantize or model.quantizer is None else "+quantized")

    def reconstruct(self, x: torch.Tensor, seed: int = 1) -> torch.Tensor:
        """Deterministic (no sampled latent), so `seed` is unused."""
        with torch.inference_mode():
            return self.model(x * 2.0 - 1.0, quantize=self.quantize).add(1.0).div(2.0).clamp(0.0, 1.0)

    def to(self, device: torch.device | str) -> "WorldAutoencoder":
        self.model.to(device)
        return self


def world_autoencoder(name: str, path: str | Path | None = None, *, quantize: bool = False) -> WorldAutoencoder:
    """The generator `name` (weights from `path`, default the committed file) as an autoencoder.

    `quantize=False` (default) decodes the VQ generator's latent without the codebook, as
    AEROBLADE decodes Kandinsky's MoVQ (`force_not_quantize=True`); the other four have no
    quantiser."""
    from bench.weights import sha256_file

    file = Path(path) if path is not None else weights_path(name)
    return WorldAutoencoder(load_generator_file(name, file), f"mini:{config(name).name}", sha256_file(file), quantize)


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainReport:
    name: str
    params: int
    steps: int
    seconds: float
    bytes: int
    val_psnr: float  # dB, mean over the fixed val crops
    path: str

    def to_json(self) -> dict:
        return asdict(self)


COLOUR_WEIGHT = 2.0  # colour photos are drawn twice as often as gray ones: colour is what is hard


@functools.lru_cache(maxsize=1)
def _train_tensors() -> tuple[tuple[torch.Tensor, ...], tuple[float, ...]]:
    """The TRAIN photos at full and half size, as [-1, 1] tensors, with sampling weights."""
    tensors, weights = [], []
    for name in photos.SPLITS["train"]:
        full = photos.load_photo(name)
        for scale in (1.0, 0.5):
            im = full if scale == 1.0 else full.resize(
                (round(full.width * scale), round(full.height * scale)), Image.Resampling.LANCZOS)
            tensors.append(to_tensor(im)[0])
            weights.append(1.0 if photos.photo(name).gray else COLOUR_WEIGHT)
    return tuple(tensors), tuple(weights)


def _batches(steps: int, seed: int) -> Iterator[torch.Tensor]:
    """`steps` batches of random 64x64 crops (random horizontal flip), drawn from `seed` only."""
    tensors, weights = _train_tensors()
    rng = random.Random(seed)
    for _ in range(steps):
        crops = []
        for t in rng.choices(tensors, weights, k=BATCH):
            y = rng.randint(0, t.shape[1] - TRAIN_CROP)
            x = rng.randint(0, t.shape[2] - TRAIN_CROP)
            c = t[:, y : y + TRAIN_CROP, x : x + TRAIN_CROP]
            crops.append(c.flip(-1) if rng.random() < 0.5 else c)
        yield torch.stack(crops)


def val_crops(n: int = 24, seed: int = 0) -> list[Image.Image]:
    """A fixed set of crops of the VAL photos, for PSNR reports."""
    rng = random.Random(seed)
    return [photos.sample_crop("val", photos.REGIONS[i % 2], rng).image() for i in range(n)]


def mean_psnr(model: ConvAutoencoder, images: Sequence[Image.Image]) -> float:
    return float(np.mean([psnr(im, generate(model, im)) for im in images]))


def train_one(cfg: GeneratorConfig, steps: int | None = None, seed: int = 0, progress: bool = True) -> ConvAutoencoder:
    """Train one generator deterministically (single thread, fixed seeds)."""
    steps = cfg.steps if steps is None else steps
    with single_thread():
        torch.manual_seed(cfg.seed * 1000 + seed)
        model = ConvAutoencoder(cfg)
        data = _batches(steps, seed=cfg.seed * 1000 + seed)
        if model.quantizer is not None:  # start the codebook on encoder outputs: no dead codes at step 0
            with torch.no_grad():
                first = next(_batches(1, seed=cfg.seed * 1000 + seed + 1))
                z = model.encode(first).permute(0, 2, 3, 1).reshape(-1, cfg.latent_channels)
                g = torch.Generator().manual_seed(cfg.seed)
                model.quantizer.codebook.copy_(z[torch.randperm(len(z), generator=g)[: cfg.codebook]])
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(steps, 1), pct_start=0.1)
        from tqdm.auto import tqdm

        model.train()
        for x in tqdm(data, total=steps, desc=f"train {cfg.name}", disable=not progress, leave=False):
            y, aux = model.forward_train(x)
            loss = F.l1_loss(y, x) + aux
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
    return model.eval()


def _train_worker(args: tuple[str, int | None, int]) -> tuple[dict[str, torch.Tensor], float]:
    name, steps, seed = args
    t0 = time.perf_counter()
    model = train_one(config(name), steps, seed, progress=False)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, time.perf_counter() - t0


def train_generators(
    out_dir: str | Path | None = None,
    steps: int | None = None,
    names: Sequence[str] | None = None,
    seed: int = 0,
    progress: bool = True,
    workers: int | None = None,
) -> list[TrainReport]:
    """Train the generators (all by default) and save `<out_dir>/<name>.safetensors`.

    `steps=None` uses each config's full step count; a small value (e.g. 20) gives quick,
    poor generators for CI. `out_dir=None` writes the committed weights folder. Each generator
    trains single-threaded (reproducible bits); `workers` processes (default: one per core, at
    most 2) train several at once, which does not change the result.
    """
    out = Path(out_dir) if out_dir is not None else bundled_weights_dir()
    cfgs = [config(n) for n in names] if names else list(GENERATORS)
    workers = workers or min(2, os.cpu_count() or 1, len(cfgs))
    jobs = [(c.name, steps, seed) for c in cfgs]
    from tqdm.auto import tqdm

    bar = tqdm(total=len(cfgs), desc="train generators", unit="gen", disable=not progress)
    if workers > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            results = []
            for r in pool.map(_train_worker, jobs):
                results.append(r)
                bar.update()
    else:
        results = []
        for job in jobs:
            results.append(_train_worker(job))
            bar.update()
    bar.close()
    reports = []
    vals = val_crops()
    for cfg, (state, seconds) in zip(cfgs, results):
        path = weights_path(cfg.name, out)
        save_state(state, path)
        model = load_generator(cfg.name, out)
        with single_thread():
            score = mean_psnr(model, vals)
        reports.append(TrainReport(cfg.name, num_params(model), cfg.steps if steps is None else steps,
                                   round(seconds, 1), path.stat().st_size, round(score, 2), str(path)))
        if progress:
            r = reports[-1]
            print(f"{r.name}: {r.params} params, {r.steps} steps, {r.seconds:.1f} s, {r.bytes} B, val PSNR {r.val_psnr:.2f} dB")
    return reports
