"""Clusterability harness: spectral clusterability of neural networks, re-implemented and extended.

Re-implements the method of Filan, Casper, Hod, Wild, Critch & Russell, "Clusterability in
Neural Networks" (arXiv:2103.03386): build a graph from a trained network's absolute weights,
cluster it spectrally, measure the normalised cut, and compare it with shuffled networks.
"""

from __future__ import annotations

import os

# OpenMP threads that spin-wait for work make torch many times slower whenever the cores are
# shared (xdist workers, null-sampling pools, other jobs): measured here 40 s instead of 3 s
# for one MNIST epoch on a loaded 2-core machine. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

# The public API, imported on first use so that `import harness` stays light (no torch).
_LAZY = {
    "clusterability": "harness.analysis",
    "load_weights": "harness.analysis",
    "ClusterabilityResult": "harness.stats",
    "AnalysisSpec": "harness.spec",
    "PAPER_K": "harness.spec",
    "save_weights": "harness.weight_files",
    "random_mlp_weights": "harness.random_init",
    "activation_test": "harness.activations",
    "ActivationResult": "harness.activations",
    "correlation_pictures": "harness.activations",
    "clusterability_penalty": "harness.regulariser",
    "normalize_weights_": "harness.regulariser",
}


__all__ = sorted(_LAZY)


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
