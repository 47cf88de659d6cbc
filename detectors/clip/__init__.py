"""Detectors on a frozen foundation encoder: the CLIP and ViT rows of DEAR's Table 1.

UFD, ClipDet, RINE, C2P-CLIP and CoDE share one encoder layer and differ in the feature they tap,
the head on top and the preprocessing:

- `catalog`: the registered specs, weight tags and backbones, as data (no torch);
- `backbones`: where a backbone's files are (weights folder, Hub cache, Hub), no torch;
- `encoders`: `Encoder`, one loaded open_clip or transformers image encoder with its feature taps
  (`embed(x, tap=...)`), text tower and fingerprint; `contributions`: the per-head direct
  contributions to the CLS token (Gandelsman et al.);
- `preprocess`: each official pipeline (center-crop, resize-then-crop) and the harmonized one;
- `linear` (UFD, ClipDet, C2P-CLIP, CoDE's logistic head), `rine`, `code` (CoDE's scikit-learn
  heads converted once to safetensors): the heads and their checkpoint loaders;
- `build`: the builders and tiny random models behind the catalog.

Importing this package imports no torch.
"""
