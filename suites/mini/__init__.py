"""AIGI-mini: the embedded default world, built offline from photos that declared dependencies ship.

`ensure_world(seed)` returns the world folder (building it on first use); `build_world` builds it;
`train_generators` retrains the tiny autoencoder "generators" whose weights are committed.
"""
from suites.mini.generators import GENERATORS, GeneratorConfig, load_generator, train_generators
from suites.mini.world import WorldConfig, build_world, ensure_world

__all__ = [
    "GENERATORS", "GeneratorConfig", "WorldConfig", "build_world", "ensure_world", "load_generator", "train_generators",
]
