"""The registry of the paper's claims: what each says, the paper's evidence, how it is checked.

A claim is a pure function of result rows (a :class:`pandas.DataFrame` with the columns the
experiments record: ``model_tag``, ``phase``, ``n_clusters``, ``null``, ``ncut``,
``null_mean``, ``z``, ``p``, ``is_sig``, ...). The experiments compute the rows a claim needs
(with the same code that writes the tables) and assert :meth:`Claim.evaluate` on them, so the
same function that holds on our data fails on a table that contradicts the paper
(``tests/test_claims.py`` feeds it such tables).

Most claims are derived from the paper's tables (``harness/paper/paper_values.csv``), one per
cell whose pattern over the paper's instances is clear-cut (:mod:`~harness.claims.derived`);
orderings between cells and claims the tables do not count are written by hand
(:mod:`~harness.claims.orderings`, :mod:`~harness.claims.extra`,
:mod:`harness.activations.claims`).

Each claim has a status per profile: ``assert`` (the default), ``xfail`` with the reason and
its evidence (a claim we believe fails at that scale), or ``record`` with the reason (mixed
cells; the smoke profile). The ``ci`` profile asserts only :data:`CI_CLAIMS`, chosen to hold
robustly on its small models; each says why.

Modules: :mod:`~harness.claims.model` (:class:`Cell`, :class:`Claim`, :class:`Outcome`,
selecting rows), :mod:`~harness.claims.checks` (the check families),
:mod:`~harness.claims.statuses` (:data:`CI_CLAIMS`, :data:`PAPER_XFAIL`; imports nothing, so
profiles and pytest workers read them without pandas), :mod:`~harness.claims.catalog`
(:data:`REGISTRY`, :func:`registry`, :func:`claims_for`). Everything but the statuses is
imported on first use: ``from harness.claims import CI_CLAIMS`` does not import pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from harness.claims.statuses import CI_CLAIMS, PAPER_XFAIL, STATUSES

if TYPE_CHECKING:  # the names imported on first use (below), for type checkers
    from harness.claims.catalog import REGISTRY, claims_for, registry
    from harness.claims.checks import lowest_mean, mean_lower
    from harness.claims.model import Cell, Check, Claim, Outcome, cell_values, select

# The rest of the public API, imported on first use (it needs pandas and the paper's values);
# the check families are in harness.claims.checks.
_LAZY = {
    **dict.fromkeys(("REGISTRY", "claims_for", "registry"), "harness.claims.catalog"),
    **dict.fromkeys(("lowest_mean", "mean_lower"), "harness.claims.checks"),
    **dict.fromkeys(
        ("Cell", "Check", "Claim", "Outcome", "cell_values", "select"), "harness.claims.model"
    ),
}

__all__ = [
    "CI_CLAIMS",
    "PAPER_XFAIL",
    "REGISTRY",
    "STATUSES",
    "Cell",
    "Check",
    "Claim",
    "Outcome",
    "cell_values",
    "claims_for",
    "lowest_mean",
    "mean_lower",
    "registry",
    "select",
]


def __getattr__(name: str) -> object:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'harness.claims' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
