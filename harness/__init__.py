"""Clusterability harness: spectral clusterability of neural networks, re-implemented and extended.

Re-implements the method of Filan, Casper, Hod, Wild, Critch & Russell, "Clusterability in
Neural Networks" (arXiv:2103.03386): build a graph from a trained network's absolute weights,
cluster it spectrally, measure the normalised cut, and compare it with shuffled networks.
"""

from __future__ import annotations

__version__ = "0.1.0"
