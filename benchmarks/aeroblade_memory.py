"""Peak memory of one AEROBLADE forward on CPU at a given image size, with a random-weight
Stable Diffusion VAE (the official autoencoders' architecture: diffusers' AutoencoderKL with
block_out_channels 128-256-512-512, two layers per block, a mid-block attention) in the dtype
AEROBLADE uses (float16), plus LPIPS layer 2 on a random VGG16 trunk. Random weights cost the
same memory and time as the real ones, and need no download.

    python benchmarks/aeroblade_memory.py 512 768 1024     # one fresh process per size

Prints, per size, the wall time of the forward and the process's peak RSS. This is what
`detectors.aeroblade.MAX_PIXELS` is set from (README, AEROBLADE section).
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import time


def one(size: int, dtype: str) -> dict:
    import torch
    from diffusers import AutoencoderKL
    from torchvision.models.vgg import cfgs, make_layers

    from bench.registry import detector_spec
    from detectors.aeroblade import AerobladeDetector, DiffusersAutoencoder
    from detectors.distances import LpipsVgg

    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        sample_size=512).to(getattr(torch, dtype))
    features = make_layers(cfgs["D"]).state_dict()
    lins = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate((64, 128, 256, 512, 512))}
    det = AerobladeDetector([DiffusersAutoencoder(vae, "sd-vae-random", "random")], LpipsVgg(2, features, lins),
                            detector_spec("aeroblade").info, "aeroblade.memory", "random", max_pixels=None)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    x = torch.rand(1, 3, size, size)
    t0 = time.perf_counter()
    det.forward(x)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"size": size, "dtype": dtype, "seconds": round(seconds, 1), "peak_rss_gib": round(peak, 2),
            "before_forward_gib": round(base, 2), "threads": torch.get_num_threads()}


def main() -> None:
    args = sys.argv[1:]
    if args and args[0] == "--one":
        print(json.dumps(one(int(args[1]), args[2])))
        return
    dtype = "float16"
    if args and args[0].startswith("--dtype="):
        dtype = args.pop(0).split("=", 1)[1]
    for size in map(int, args or ["512"]):
        out = subprocess.run([sys.executable, __file__, "--one", str(size), dtype], capture_output=True, text=True)
        print(out.stdout.strip() or out.stderr.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
