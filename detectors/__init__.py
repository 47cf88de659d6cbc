"""Detector families, one module each; they reach the harness through entry points.

Kept free of imports so the CLI can read `MINI_DETECTORS` without loading torch.
"""

# The detectors trained on AIGI-mini, in training order: a Stay-Positive head (-plus) is
# refit on the base trained before it.
MINI_DETECTORS = ("corvi", "rajan", "npr", "corvi-plus", "rajan-plus")
