"""Text interpretation (Gaintseva et al., arXiv 2406.15035, Tables 1-3): a direction in the image
embedding space of a CLIP encoder (an LR probe's weight, a residual vector, a selected head's
probe) is read through the encoder's own text tower: the vocabulary tokens and the phrases (a
user list; the paper used Gandelsman et al.'s) whose text embeddings are nearest by cosine.

Each vocabulary entry is embedded as its own text (start token, the word, end token). Words are
the tokenizer's whole-word entries (BPE tokens ending a word), in id order, which for CLIP's BPE
is roughly frequency order; `vocab_limit` keeps the first ones (embedding all 49k takes a while
on a CPU). Only an encoder in the text space can be read so: a detector's features or a CLIP
tap other than "embed"/"heads" are refused, and so is an encoder loaded without a text tower.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from probes.spec import EncoderSpec, ProbeError


def require_text_space(spec: EncoderSpec, where: str) -> None:
    """Refuse, before any model is loaded, directions that do not live in a text-aligned space."""
    if not spec.is_clip:
        raise ProbeError(f"{where}: encoder {spec.name!r} is vision-only (a detector's penultimate features have no text "
                         "tower), so its directions cannot be read as text; explain needs a clip:<key> encoder")
    if spec.tap not in ("embed", "heads"):
        raise ProbeError(f"{where}: tap {spec.tap!r} is not in the image-text embedding space; fit on tap 'embed' (or 'heads')")


def vocabulary(tokenizer: Any, limit: int | None = None) -> list[str]:
    """Whole words of an open_clip SimpleTokenizer (or any tokenizer with a `decoder` id -> text
    map whose word-final entries end in '</w>'), letters only, in id order, deduplicated."""
    decoder = getattr(tokenizer, "decoder", None)
    if not isinstance(decoder, dict):
        raise ProbeError(f"the text tower's tokenizer ({type(tokenizer).__name__}) exposes no vocabulary (no `decoder` map)")
    words: list[str] = []
    seen: set[str] = set()
    for i in sorted(decoder):
        token = decoder[i]
        if not isinstance(token, str) or not token.endswith("</w>"):
            continue
        word = token[: -len("</w>")]
        if re.fullmatch(r"[a-z]{2,}", word) and word not in seen:
            seen.add(word)
            words.append(word)
            if limit is not None and len(words) >= limit:
                break
    return words


@dataclass
class TextSpace:
    """Unit text embeddings of some texts."""

    texts: list[str]
    vectors: np.ndarray  # (V, E)

    @staticmethod
    def of(encoder: Any, texts: list[str], batch: int = 256) -> "TextSpace":
        import torch

        if not texts:
            raise ProbeError("no texts to embed (an empty phrase list, or a vocabulary with no whole words)")
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch):
                out.append(encoder.text(texts[i : i + batch]).float().cpu().numpy())
        v = np.concatenate(out)
        return TextSpace(list(texts), v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12))

    def nearest(self, direction: np.ndarray, k: int) -> list[tuple[str, float]]:
        d = np.asarray(direction, dtype=np.float64)
        if d.shape[0] != self.vectors.shape[1]:
            raise ProbeError(f"a direction of {d.shape[0]} values cannot be compared with {self.vectors.shape[1]}-d text embeddings")
        cos = self.vectors @ (d / max(np.linalg.norm(d), 1e-12))
        top = np.argsort(-cos, kind="stable")[:k]
        return [(self.texts[i], float(cos[i])) for i in top]


def explain(directions: dict[str, np.ndarray], space: TextSpace, k: int, kind: str) -> pd.DataFrame:
    return pd.DataFrame([{"direction": name, "kind": kind, "rank": r + 1, "text": t, "cosine": round(c, 4)}
                         for name, d in directions.items() for r, (t, c) in enumerate(space.nearest(d, k))])
