"""`clip-lr`, a fitted probe as a registered detector, described as data (no torch): the paper's
"CLIP + LR" (Gaintseva et al., arXiv 2406.15035), on whichever encoder it was fitted.

Tags name the encoder and the training generator (`clip-lr.corvi-mini-ldm`), one per probe that
`bench probe fit --install` writes to `$AIGI_BENCH_WEIGHTS/clip-lr/<tag>.safetensors` (+ .json);
any such tag resolves, so the spec declares tags found in that folder on top of its default
`local` tag. No tag is `.mini` or `.official`: a probe never joins a default run.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.api import DetectorInfo, InputPolicy, WeightSpec
from bench.registry import DetectorSpec

NAME = "clip-lr"
WHERE = ("written by `bench probe fit ... --install` (probes.lr: the paper's logistic regression on frozen embeddings); "
         "or pass any probe file with path=")


def probe_weight(tag: str) -> WeightSpec:
    return WeightSpec(tag, f"{tag}.safetensors", where=f"A probe {WHERE}.")


@dataclass(frozen=True)
class ProbeSpec(DetectorSpec):
    """A DetectorSpec whose tags are the probe files installed in its weights folder."""

    def weight(self, tag: str) -> WeightSpec:
        return probe_weight(tag)


def _spec() -> ProbeSpec:
    info = DetectorInfo(NAME, "CLIP-LR", "CLIP", True, InputPolicy(), "Logistic regression without intercept on a frozen "
                        "encoder's embedding (Gaintseva et al., arXiv 2406.15035), fitted by `bench probe fit`.")
    return ProbeSpec(info, "probes.detector:build", (probe_weight("local"), *map(probe_weight, _installed())), "local", None,
                     "probes.detector:tiny")


def _installed() -> list[str]:
    """Tags of the probe files in the weights folder now (a glob: no torch), for `bench list`."""
    from bench.weights import weights_dir

    folder = Path(weights_dir()) / NAME
    tags = [p.name.removesuffix(".safetensors") for p in folder.glob("*.safetensors")] if folder.is_dir() else []
    return sorted(t for t in tags if t != "local")


clip_lr = _spec()
