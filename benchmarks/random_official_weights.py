"""Write random-valued checkpoints in the official layouts of SAFE, FerretNet-B, LaDeDa9, DRCT
(ConvNeXt-B and CLIP ViT-L/14) and AIDE, so that `bench speed` can time the full-size networks on a
machine without their official files. The numbers they score are meaningless; their speed is not.

    python benchmarks/random_official_weights.py OUT [--skip aide,drct-clip]
    AIGI_BENCH_WEIGHTS=OUT bench speed --detectors safe.official,ferretnet.official,... --size 256

Sizes on disk: AIDE 3.6 GB, DRCT-CLIP 1.7 GB, DRCT 0.35 GB, the others a few MB.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch


def models() -> dict[str, tuple[str, object]]:
    """detector -> (official file name, a function making the checkpoint object)."""
    from detectors.aide import AIDEModel
    from detectors.drct import DRCTConvNeXt, build_drct_clip
    from detectors.ferretnet import FERRET_ARCHS, FerretNet
    from detectors.ladeda import LaDeDa
    from detectors.safe import SAFENet

    def clip_state() -> dict:
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from official_states import openai_clip_shapes

        shapes = openai_clip_shapes(1024, 24, 14, 16, 768, 12, 768)
        meta = {f"model.model.{k}": torch.empty(s, device="meta") for k, s in shapes.items()} | {"fc.weight": torch.empty(2, 1024, device="meta")}
        return build_drct_clip(meta).state_dict()

    return {
        "safe": ("checkpoint-best.pth", lambda: {"model": SAFENet().state_dict(), "args": argparse.Namespace(model="SAFE")}),
        "ferretnet": ("ferretnet-b-median-3.pth", lambda: {"model": FerretNet(FERRET_ARCHS["B"]).state_dict()}),
        "ladeda": ("WildRF_LaDeDa.pth", lambda: LaDeDa().state_dict()),
        "drct": ("14_acc0.9996.pth", lambda: DRCTConvNeXt().state_dict()),
        "drct-clip": ("13_acc0.9664.pth", clip_state),
        "aide": ("progan_train.pth", lambda: {"model": AIDEModel().state_dict(), "args": argparse.Namespace(model="AIDE")}),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--skip", default="", help="comma-separated detectors to leave out")
    args = p.parse_args()
    torch.manual_seed(0)
    skip = {s for s in args.skip.split(",") if s}
    for name, (filename, make) in models().items():
        if name in skip:
            continue
        target = args.out / name / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.save(make(), target)
        print(f"{target} ({target.stat().st_size / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main()
