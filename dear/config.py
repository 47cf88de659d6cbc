"""DEAR's settings and which bases it starts from; no torch, so `bench dear prune` stays light.

Defaults are the official DEAR-c settings (dahyedahye/dear `configs/corvi_mask_gated.yaml`:
alpha 0.2/0.2, 100 RAD batches of 64, crop 96, batches of 64 + 64, Adam 1e-4, patience 5, delta
1e-3); a Rajan-trained base prunes 0.3/0.3 (`configs/rajan_mask_gated.yaml`). One deliberate
deviation: BatchNorm stays in eval mode during the refit (`freeze_bn=True`), where the official
loop lets its statistics drift; see `detectors.head`.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bench.api import BenchError, MissingWeightsError
from dear.prune import PruneMode, check_alphas

BaseKind = Literal["corvi", "rajan"]
KINDS: tuple[str, ...] = ("corvi", "rajan")
DEFAULT_ALPHA: dict[str, float] = {"corvi": 0.2, "rajan": 0.3}  # per end, configs/{corvi,rajan}_mask_gated.yaml
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors", ".bin")


@dataclass
class DearConfig:
    """Every knob of a DEAR run; stored with its outputs."""

    alpha_low: float = 0.2  # fraction pruned at the low-RAD end
    alpha_high: float = 0.2  # fraction pruned at the high-RAD end
    mode: PruneMode = "count"
    layer: str = "backbone.layer4"
    max_batches: int = 100  # RAD batches (official max_score_batches)
    rad_batch_size: int = 64
    rad_repeats: int | None = None  # passes over a small diag set; None: enough for max_batches
    batch_size: int = 64  # main refit batch (pairs for Rajan)
    inpaint_batch_size: int = 64
    crop: int = 96
    freeze_bn: bool = True  # False: official drift of BN statistics during the refit
    lr: float = 1e-4
    patience: int = 5
    delta: float = 1e-3
    min_lr: float = 1e-6
    max_epochs: int = 1000
    steps_per_epoch: int | None = None
    seed: int = 0
    device: str = "cpu"
    num_workers: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        check_alphas(self.alpha_low, self.alpha_high)  # now, not after the inpainting and RAD stages

    @classmethod
    def for_kind(cls, kind: str, **kw: Any) -> "DearConfig":
        """The official settings for a Corvi- or Rajan-trained base (their alphas), then `kw`."""
        alpha = DEFAULT_ALPHA[kind]
        return cls(**{"alpha_low": alpha, "alpha_high": alpha, **kw})

    @classmethod
    def dear_c(cls, **kw: Any) -> "DearConfig":
        return cls.for_kind("corvi", **kw)

    @classmethod
    def dear_r(cls, **kw: Any) -> "DearConfig":
        return cls.for_kind("rajan", **kw)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def base_kind(base: object) -> BaseKind | None:
    """How a registry-named base was trained ("rajan-plus.mini" -> "rajan"), read from its
    registered `trained_as`; None for anything else, checkpoint files included: a file's name
    does not say how it was trained (that takes `kind`)."""
    if not isinstance(base, (str, os.PathLike)) or Path(base).is_file():
        return None
    from bench.registry import DetectorSpec, detector_spec, split_tag

    try:
        spec = detector_spec(split_tag(str(base))[0].lower())
    except BenchError:
        return None
    kind = spec.trained_as if isinstance(spec, DetectorSpec) else None
    return kind if kind in KINDS else None  # type: ignore[return-value]


def refuse_missing_file(base: str | os.PathLike) -> None:
    """A base that looks like a path is not looked up as a detector name ("/x.pth" would
    otherwise be reported as an unknown detector '/x')."""
    text = str(base)
    if ("/" in text or os.sep in text or text.endswith(CHECKPOINT_SUFFIXES)) and not Path(text).is_file():
        raise MissingWeightsError(f"no checkpoint file at {text}")


def require_kind(base: str | os.PathLike, kind: str | None = None) -> BaseKind:
    """`kind`, else the one `base_kind` reads from the registry; refuses a base DEAR cannot
    start from, and a checkpoint file whose training nobody stated."""
    refuse_missing_file(base)
    if not Path(str(base)).is_file():
        from bench.registry import check_detector_name

        check_detector_name(str(base))  # a typo gets close matches, not advice about --kind
    kind = kind or base_kind(base)
    if kind in KINDS:
        return kind  # type: ignore[return-value]
    if Path(str(base)).is_file():
        raise BenchError(f"{base}: a base checkpoint file needs --kind corvi or rajan (kind= in Python): how it was trained")
    raise BenchError(f"DEAR starts from a Corvi- or Rajan-trained detector, not {base!r}; "
                     "pass --kind (kind= in Python) for other bases")


def default_world(seed: int = 0) -> Path:
    """The AIGI-mini world DEAR runs on by default (built on first use)."""
    from suites.mini.world import ensure_world

    return Path(ensure_world(seed=seed))
