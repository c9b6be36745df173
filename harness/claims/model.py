"""What a claim is: the cells it reads, the check it makes, its status per profile.

A claim is a pure function of result rows (a :class:`pandas.DataFrame` with the columns the
experiments record: ``model_tag``, ``phase``, ``n_clusters``, ``null``, ``ncut``,
``null_mean``, ``z``, ``p``, ``is_sig``, ...). :func:`select` finds the rows of one
:class:`Cell`, :func:`cell_values` one column of them, as plain Python values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.calibration import calibration, calibration_command
from harness.claims.observed import parse_observed
from harness.claims.statuses import CI_CLAIMS
from harness.spec import PAPER_K

__all__ = [
    "Cell",
    "Check",
    "Claim",
    "Margins",
    "Measured",
    "Outcome",
    "cell_mean",
    "cell_values",
    "select",
]


@dataclass(frozen=True)
class Cell:
    """One cell of a paper table: a model tag in a phase, clustered with K against a null."""

    tag: str
    phase: str = "pruned"
    null: str = "layer"
    n_clusters: int = PAPER_K

    def label(self) -> str:
        return f"{self.tag} {self.phase} K={self.n_clusters} {self.null}"


@dataclass(frozen=True)
class Outcome:
    """What a claim found: whether it holds, and the numbers it looked at."""

    holds: bool
    observed: Mapping[str, Any]


#: How a claim is checked: rows -> :class:`Outcome` (:mod:`harness.claims.checks`).
Check = Callable[[pd.DataFrame], Outcome]

#: What an outcome's observed numbers say about how near the claim came to failing: observed
#: mapping -> signed margins, the claim holding when every margin is positive. A list holds
#: margins alike (one per instance, or one for a claim about a mean; a calibration follows
#: the smallest), a mapping named margins of different statistics (each median p-value of
#: Table N), each followed on its own. On a scale where they vary roughly normally between
#: seeds (z for significance, log p for a small p-value, p for a large one).
Margins = Callable[[Mapping[str, Any]], "list[float] | dict[str, float]"]


@dataclass(frozen=True)
class Measured:
    """A check with its :data:`Margins`: a calibration asserts a claim only if its margins
    at the calibrated seeds leave little chance of failing at another
    (:mod:`harness.calibration`). Called like the check it wraps."""

    check: Check
    margins: Margins

    def __call__(self, rows: pd.DataFrame) -> Outcome:
        return self.check(rows)


@dataclass(frozen=True)
class Claim:
    """One claim of the paper, as the harness checks it.

    Attributes
    ----------
    id : str
        Stable identifier; the parameter id of the test that asserts it.
    table : str
        The paper's table or section (``"B"``, ``"A"``, ``"H7"``, ``"I"``, ``"lesion"``, ...).
    statement : str
        What the claim says, in one sentence.
    evidence : str
        The paper's evidence for it (counts, means).
    study : str
        The experiment module whose ``test_claim`` asserts it (``experiments/test_<study>.py``).
    cells : tuple of Cell
        The cells whose rows it needs.
    check : callable
        Rows -> :class:`Outcome`.
    status : mapping
        Profile name -> ``("assert" | "xfail" | "record", reason)``; profiles not listed
        assert, except ``smoke`` (records) and ``ci`` (asserts only
        :data:`~harness.claims.statuses.CI_CLAIMS`).
    """

    id: str
    table: str
    statement: str
    evidence: str
    study: str
    cells: tuple[Cell, ...]
    check: Check = field(repr=False, compare=False)
    status: Mapping[str, tuple[str, str]] = field(default_factory=dict, compare=False)

    @property
    def test(self) -> str:
        return f"experiments/test_{self.study}.py::test_claim[{self.id}]"

    def status_at(self, profile: str) -> tuple[str, str]:
        """``(status, reason)`` at a profile.

        In order: a claim the paper leaves open (``record`` in its own statuses) is
        recorded everywhere; ``smoke`` records; ``ci`` asserts
        :data:`~harness.claims.statuses.CI_CLAIMS` and records the rest; a profile with a
        calibration (:mod:`harness.calibration`) takes each claim's status from its verdicts
        at the calibrated seeds (a claim it did not run is recorded); otherwise the claim's
        own status at that profile, else ``assert``.
        """
        own = self.status.get(profile)
        if own is not None and own[0] == "record":
            return own
        if profile == "smoke":
            return ("record", "the smoke profile checks plumbing, not claims")
        measured = calibration(profile)
        entry = measured.get(self.id) if measured is not None else None
        if profile == "ci":
            note = f"; {entry.status(self.observed_margins)[1]}" if entry is not None else ""
            if self.id in CI_CLAIMS:
                return ("assert", f"{CI_CLAIMS[self.id]}{note}")
            return ("record", f"not among the claims the ci profile is sized for{note}")
        if measured is not None:
            if entry is not None:
                return entry.status(self.observed_margins)
            return (
                "record",
                f"not run by the {profile} profile's calibration: `{calibration_command(profile)}`"
                " calibrates it",
            )
        if own is not None:
            return own
        return ("assert", "")

    def margins(self, observed: Mapping[str, Any]) -> list[float] | dict[str, float] | None:
        """The claim's margins on what it observed (:data:`Margins`); None if its check
        measures none (a calibration then goes by the verdicts alone), ``[]`` if what it
        observed lacks the numbers they need."""
        if not isinstance(self.check, Measured):
            return None
        try:
            found = self.check.margins(observed)
            if isinstance(found, Mapping):
                return {str(k): float(v) for k, v in found.items()}
            return [float(v) for v in found]
        except (KeyError, IndexError, TypeError, ValueError):
            return []  # observed numbers of another shape (written before they were measured)

    def observed_margins(self, observed: str) -> list[float] | dict[str, float] | None:
        """:meth:`margins` on the ``observed`` text of a ``claims.csv`` row."""
        return self.margins(parse_observed(observed))

    def evaluate(self, rows: pd.DataFrame) -> Outcome:
        """The claim on ``rows``; a claim whose cells have no rows does not hold."""
        return self.check(rows)


def select(rows: pd.DataFrame, cell: Cell) -> pd.DataFrame:
    """The rows of one cell (columns that a study does not record are not filtered on)."""
    mask = np.ones(len(rows), dtype=bool)
    for column, value in (
        ("model_tag", cell.tag),
        ("phase", cell.phase),
        ("null", cell.null),
        ("n_clusters", cell.n_clusters),
    ):
        if column in rows.columns:
            mask &= (rows[column] == value).to_numpy()
    return rows[mask]


def cell_values(rows: pd.DataFrame, cell: Cell, column: str) -> list[Any]:
    """``column`` of the cell's rows as plain Python values (empty if the rows lack it)."""
    part = select(rows, cell)
    if column not in part.columns:
        return []
    return [v.item() if hasattr(v, "item") else v for v in part[column].tolist()]


def cell_mean(rows: pd.DataFrame, cells: Iterable[Cell], column: str = "ncut") -> float:
    """The mean of ``column`` over the rows of all ``cells`` (NaN if they have none)."""
    found = [float(v) for cell in cells for v in cell_values(rows, cell, column)]
    return float(np.mean(found)) if found else math.nan
