"""AIGI-mini: the embedded default world, built offline from photos that declared dependencies ship.

- `layout`: where everything is in a world folder (no heavy imports: the suites read it);
- `world`: `ensure_world(seed)` returns the world folder, building it on first use;
- `generators`: the tiny autoencoder "generators" whose weights are committed, and their training;
- `photos`: the photos from the scikit-image and scikit-learn wheels, split by content.
"""
