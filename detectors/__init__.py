"""Detector families, one module each, and what training them shares.

- `catalog`, `free_catalog`: every built-in detector as data (names, weight tags, builders); no torch;
- `resnet` (Corvi, Rajan, Corvi+, Rajan+), `npr`: the families' networks, checkpoint loaders, builders;
- `aeroblade` (with `distances`: LPIPS, PSNR, SSIM, MS-SSIM) and `warpad` (with `wavelets`: Haar):
  the training-free detectors;
- `preprocess`: test-time preprocessing; `augment`, `data`, `fit`: the training toolbox
  (augmentations, folders and loaders, the loop and early stopping);
- `head`: the one linear-head refit on a frozen backbone (Stay-Positive, DEAR, probes) and the
  feature gate; `gates`: gate validity in numpy;
- `mini`: the recipes of the bundled AIGI-mini weights; `decomposition`: Stay-Positive's eq. 1.
"""
