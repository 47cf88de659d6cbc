"""Conditions: how images are shown to a detector, and the keys their scores are stored under.

A condition is "original" (the files as they are), a post-processing chain with its seed
("rajan@seed=0,px"), or a suite's stored processed copies. Its key names the chain's canonical
spec, the seed and the seeding scheme, so scores computed another way never share a key.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench import registry
from bench.api import FAKES_ONLY, ORIGINAL, POST_PROCESSED, BenchError, Transform

ORIGINAL_KEY = "original"


@dataclass(frozen=True)
class Condition:
    """One way of showing images to a detector: a store key and a table block name."""

    key: str  # "original", "rajan@seed=0", "rajan@seed=0,fakes-only"
    display: str  # "Original", "Post-processed", or the chain spec for sweep conditions
    spec: str | None = None  # chain spec; None = unprocessed
    fakes_only: bool = False
    copies: bool = False  # images are the suite's pre-processed copies, scored as they are

    @property
    def store_key(self) -> str:
        """Key of the scores in the store. A stored copy is scored unprocessed, so its score is
        an "original" score of other bytes (the sha tells them apart) and is shared as such."""
        return ORIGINAL_KEY if self.copies else self.key


COPIES_KEY = "processed-copies"


SEEDING = "px"  # post-processing seeds come from the decoded pixels (before: the file's sha256, unmarked)


def condition_key(spec: str | None, seed: int, fakes_only: bool = False) -> str:
    """'original', or '<canonical chain name>@seed=<seed>,px[,fakes-only]'; the seeding scheme is
    part of the key, so scores cached under an older scheme are never mistaken for these."""
    if spec is None:
        return ORIGINAL_KEY
    return f"{spec}@seed={seed},{SEEDING}" + (",fakes-only" if fakes_only else "")


def conditions_for(config: Any) -> list[tuple[Condition, Transform | None]]:
    """'Original' always, then 'Post-processed' when asked, then each extra (sweep) spec; with
    `fakes_only` the processed ones are labelled '... (fakes only)'.

    Chains are built here (unknown names fail fast) and named by their canonical `name`
    ('downscale:factor=0.50' -> 'downscale:factor=0.5'), so equal chains share cached scores.
    With `processed_copies`, 'Post-processed' is the suite's stored copies instead of the chain.
    """
    if config.processed_copies and config.post_process:
        raise BenchError("choose one post-processed block: the chain (--post-process) or the stored copies (--processed-copies)")
    if config.fakes_only and not (config.post_process or config.conditions):
        # silently ignoring it would record `fakes_only: true` for a run that processed nothing
        raise BenchError("--fakes-only applies to the post-processing chain: add --post-process "
                         "(stored copies, --processed-copies, are scored as they are)")  # fmt: skip
    out: list[tuple[Condition, Transform | None]] = [(Condition(ORIGINAL_KEY, ORIGINAL), None)]
    if config.processed_copies:
        out.append((Condition(COPIES_KEY, POST_PROCESSED, copies=True), None))
    specs = ([(config.chain, POST_PROCESSED)] if config.post_process else []) + [(c, None) for c in config.conditions or []]
    suffix = FAKES_ONLY if config.fakes_only else ""  # another protocol: tables must say which
    for spec, display in specs:
        transform = registry.create_chain(spec)
        name = transform.name
        out.append((Condition(condition_key(name, config.seed, config.fakes_only), (display or name) + suffix, name,
                              config.fakes_only), transform))
    seen: set[str] = set()
    return [(c, t) for c, t in out if not (c.key in seen or seen.add(c.key))]
