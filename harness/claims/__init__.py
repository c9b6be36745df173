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

from harness.claims.statuses import CI_CLAIMS, PAPER_XFAIL, STATUSES

# The rest of the public API, imported on first use (it needs pandas and the paper's values).
_LAZY = {
    **dict.fromkeys(
        ("Cell", "Check", "Claim", "Outcome", "cell_mean", "cell_values", "select"),
        "harness.claims.model",
    ),
    **dict.fromkeys(
        (
            "above_every_shuffle_in_every_instance",
            "all_below_all",
            "column_greater",
            "every_instance_at_least",
            "every_instance_below",
            "last_epoch_lower",
            "lowest_mean",
            "mean_abs_at_least",
            "mean_abs_below",
            "mean_at_least",
            "mean_lower",
            "significant_in_every_instance",
            "significant_in_no_instance",
            "value_within",
        ),
        "harness.claims.checks",
    ),
    **dict.fromkeys(("REGISTRY", "claims_for", "registry"), "harness.claims.catalog"),
}

__all__ = [
    "CI_CLAIMS",
    "Cell",
    "Check",
    "Claim",
    "Outcome",
    "PAPER_XFAIL",
    "REGISTRY",
    "STATUSES",
    "above_every_shuffle_in_every_instance",
    "all_below_all",
    "cell_mean",
    "cell_values",
    "claims_for",
    "column_greater",
    "every_instance_at_least",
    "every_instance_below",
    "last_epoch_lower",
    "lowest_mean",
    "mean_abs_at_least",
    "mean_abs_below",
    "mean_at_least",
    "mean_lower",
    "registry",
    "select",
    "significant_in_every_instance",
    "significant_in_no_instance",
    "value_within",
]


def __getattr__(name: str) -> object:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'harness.claims' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
