"""An experiment, not a registered detector: AEROBLADE with the tiny FLUX.2 autoencoder (TAEF2)
as its autoencoder, on the AIGI-mini test suite, next to `aeroblade.mini` (the world's LDM
autoencoder).

TAEF2 (madebyollin/taesd @ 5cccb12dc72074a4be35680c3b108548a7c69978, `taesd.py`, MIT) is a
1.3M-parameter distilled stand-in for FLUX.2's VAE. None of AIGI-mini's generators is TAEF2, so
here it plays a foreign autoencoder. Its decoder is trained to make plausible detail rather than
to reproduce its input, which is what the issue warns about.

The architecture is written from the state-dict shapes of `taef2_encoder.pth` and
`taef2_decoder.pth` (64 channels throughout, 8x down/up, 32 latent channels, the mid blocks with
a GroupNorm "pool" branch): images in [0, 1] in and out, latent scale 1, the decoder starting
with tanh(z/3)*3.

    python benchmarks/aeroblade_taef2.py [--assets ../shared/assets/taef2] [--out results] [--original-only]

It checks the autoencoder first (reconstruction PSNR of a photo), then runs the mini suite with
post-processing and prints the table (run name `aeroblade-taef2`).
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def _conv(n_in: int, n_out: int, **kw) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kw)


class _Clamp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class _Block(nn.Module):
    """Three 3x3 convs with a residual; the mid blocks add a 1x1 bottleneck with GroupNorm."""

    def __init__(self, n: int, pool: bool = False):
        super().__init__()
        self.conv = nn.Sequential(_conv(n, n), nn.ReLU(), _conv(n, n), nn.ReLU(), _conv(n, n))
        self.pool = nn.Sequential(nn.Conv2d(n, 4 * n, 1, bias=False), nn.GroupNorm(4, 4 * n), nn.ReLU(inplace=True),
                                  nn.Conv2d(4 * n, n, 1, bias=False)) if pool else None
        self.fuse = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + x)


def taef2_encoder(latent: int = 32, n: int = 64) -> nn.Sequential:
    down = lambda: _conv(n, n, stride=2, bias=False)  # noqa: E731
    return nn.Sequential(_conv(3, n), _Block(n), down(), _Block(n), _Block(n), _Block(n), down(), _Block(n), _Block(n),
                         _Block(n), down(), _Block(n, True), _Block(n, True), _Block(n, True), _conv(n, latent))


def taef2_decoder(latent: int = 32, n: int = 64) -> nn.Sequential:
    up = lambda: nn.Upsample(scale_factor=2)  # noqa: E731
    conv = lambda: _conv(n, n, bias=False)  # noqa: E731
    return nn.Sequential(_Clamp(), _conv(latent, n), nn.ReLU(), _Block(n, True), _Block(n, True), _Block(n, True), up(),
                         conv(), _Block(n), _Block(n), _Block(n), up(), conv(), _Block(n), _Block(n), _Block(n), up(), conv(),
                         _Block(n), _conv(n, 3))


class Taef2:
    """TAEF2 as a `bench.api.Autoencoder` (deterministic; sides padded to a multiple of 8)."""

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        self.encoder, self.decoder = taef2_encoder().eval(), taef2_decoder().eval()
        digest = hashlib.sha256()
        for module, file in ((self.encoder, "taef2_encoder.pth"), (self.decoder, "taef2_decoder.pth")):
            state = torch.load(folder / file, map_location="cpu", weights_only=True)
            module.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
            digest.update((folder / file).read_bytes())
        self.name, self.fingerprint = "taef2", digest.hexdigest()

    def to(self, device):
        self.encoder.to(device)
        self.decoder.to(device)
        return self

    @torch.inference_mode()
    def reconstruct(self, x: torch.Tensor, seed: int = 1) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % 8, (-w) % 8
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate")
        return self.decoder(self.encoder(x)).clamp(0, 1)[..., :h, :w]


def photo_psnr(ae: Taef2) -> float:
    """Reconstruction PSNR of scikit-image's astronaut (512x512): a sanity check of the wiring."""
    from skimage import data

    x = torch.from_numpy(data.astronaut()).permute(2, 0, 1)[None].float() / 255
    mse = torch.mean((ae.reconstruct(x) - x) ** 2).item()
    return 10 * torch.log10(torch.tensor(1 / mse)).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    here = Path(__file__).resolve().parents[1]
    parser.add_argument("--assets", type=Path, default=here.parent / "shared" / "assets" / "taef2")
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--distance", default="ssimc")
    parser.add_argument("--original-only", action="store_true", help="skip the post-processed block (TAEF2 is slow on CPU)")
    parser.add_argument("--max-per-set", type=int, help="the first N images of each set")
    args = parser.parse_args()

    from bench import registry
    from bench.runner import RunConfig, run

    ae = Taef2(args.assets)
    print(f"TAEF2 loaded strictly: encoder {sum(p.numel() for p in ae.encoder.parameters()):,} and decoder "
          f"{sum(p.numel() for p in ae.decoder.parameters()):,} parameters; astronaut PSNR {photo_psnr(ae):.2f} dB")
    det = registry.create_detector("aeroblade.mini", autoencoders=[ae], distance=args.distance)
    name = "aeroblade-taef2" + ("-original" if args.original_only else "")
    res = run(RunConfig(suite="mini", post_process=not args.original_only, out=args.out, run_name=name,
                        max_per_set=args.max_per_set), detectors=[det])
    print(f"run: {res.run_dir}  (print it with `bench table --run {res.run_dir}`)")


if __name__ == "__main__":
    main()
