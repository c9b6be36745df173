"""What defines an analysis of a trained network's weights.

:data:`PAPER_K` is the paper's number of clusters, named once here.
"""

from __future__ import annotations

__all__ = ["PAPER_K"]

#: The paper's number of clusters (K = 12), the default of every analysis.
PAPER_K = 12
