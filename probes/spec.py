"""Which frozen encoder a probe reads, as data (no torch): carried by every manifest, so a later
step (a fit, the `clip-lr` detector, text interpretation) rebuilds the same encoder.

Two kinds (Gaintseva et al., arXiv 2406.15035 use CLIP ViT-B/16 and ViT-L/14; offline the
project's own detectors stand in):
- `clip:<backbone key>`: a CLIP-family encoder (`detectors.clip.load_encoder`), taps "embed" (the
  projected image embedding, the default and the only one in the text space), "mean" (the mean
  over all tokens of the last hidden state, before the final LayerNorm: the paper's appendix
  "mean pooling") and "heads" (every attention head's direct contribution to the embedding,
  Gandelsman et al. 2024, flattened L x H x E);
- a registered detector name (`corvi.mini`) whose model is a `bench.api.LinearHeadModel`: its
  frozen penultimate features (`pooled`, the vector its linear head reads), tap "pooled".
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bench.api import BenchError

CLIP_TAPS = ("embed", "mean", "heads")
DETECTOR_TAPS = ("pooled",)


class ProbeError(BenchError):
    """Bad input to a probe step: the message names the file or option and the problem."""


@dataclass(frozen=True)
class EncoderSpec:
    """An encoder and its tap. `backbone` is a weights file or folder for a CLIP key (the
    detectors' `backbone=`), None to look it up as they do."""

    name: str  # "clip:openai-vit-l-14" or "corvi.mini"
    tap: str
    backbone: str | None = None

    @property
    def is_clip(self) -> bool:
        return self.name.startswith("clip:")

    @property
    def key(self) -> str:
        """The backbone key of a CLIP encoder, the detector name otherwise."""
        return self.name.split(":", 1)[1] if self.is_clip else self.name

    @property
    def slug(self) -> str:
        """A file-name and weight-tag part: "corvi-mini", "clip-openai-vit-l-14" (+ tap when not the default)."""
        base = self.name.replace(":", "-").replace(".", "-")
        return base if self.tap in ("embed", "pooled") else f"{base}-{self.tap}"

    @property
    def in_text_space(self) -> bool:
        """Whether features live in the space of the encoder's text embeddings."""
        return self.is_clip and self.tap == "embed"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: dict[str, Any], where: str = "manifest") -> "EncoderSpec":
        try:
            return encoder_spec(data["name"], data["tap"], data.get("backbone"))
        except (KeyError, TypeError):
            raise ProbeError(f"{where}: no encoder record (name, tap)") from None


def encoder_spec(name: str, tap: str | None = None, backbone: str | None = None) -> EncoderSpec:
    """Check `name` and `tap` (default: "embed" for CLIP, "pooled" for a detector) without
    building anything; unknown names fail with close matches."""
    if name.startswith("clip:"):
        from detectors.clip.catalog import BACKBONES  # data only: no torch

        key = name.split(":", 1)[1]
        if key not in BACKBONES:
            from bench.api import did_you_mean

            raise ProbeError(f"unknown CLIP backbone {key!r}{did_you_mean(key, BACKBONES)}; known: {', '.join(BACKBONES)}")
        tap = tap or "embed"
        taps = CLIP_TAPS
    else:
        from bench import registry

        registry.check_detector_name(name)
        if backbone is not None:
            raise ProbeError(f"--backbone applies to clip:<key> encoders, not to the detector {name!r}")
        tap = tap or "pooled"
        taps = DETECTOR_TAPS
    if tap not in taps:
        raise ProbeError(f"encoder {name!r} has no tap {tap!r}; its taps: {', '.join(taps)}")
    return EncoderSpec(name, tap, str(backbone) if backbone is not None else None)
