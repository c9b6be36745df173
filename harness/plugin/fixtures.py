"""The fixtures the plugin gives every test: the run's settings, and where results go.

``profile``
    The :class:`~harness.profiles.Profile` chosen with ``--profile`` (default ``quick``).
``harness_seed``
    The run's base seed (``--harness-seed``, default 0).
``seed``
    This test's seed: ``--harness-seed`` + crc32(node id), so it is the same whatever the
    number of xdist workers or the order tests run in.
``cluster_method``
    The spectral clustering estimator of every analysis (``--cluster-method``).
``store``
    The artifact :class:`~harness.store.Store` (``--store`` or ``HARNESS_STORE``).
``record``
    ``record(row)`` / ``record(**columns)`` adds one result row (builtin types only).
``figure``
    ``figure(name)``: the path stem of one of this test's figures.
``claim``
    ``claim(text, holds, expected=..., observed=...)`` records one research claim and, in
    profiles that assert claims, fails the test with the numbers when it does not hold.

Rows, claims and figures travel with the test report (``user_properties``, under the keys of
:mod:`harness.plugin.rows`) to the controller, which alone writes the reports
(:mod:`harness.plugin.collector`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from harness.claims.observed import format_observed
from harness.plugin.config import STATE
from harness.plugin.rows import (
    CLAIM_KEY,
    FIGURE_KEY,
    ROW_KEY,
    canonical_nodeid,
    cell_of,
    study_of,
    to_builtin,
)
from harness.profiles import Profile
from harness.seeding import derive_seed
from harness.store import Store

__all__ = ["ClaimFailed"]


class ClaimFailed(AssertionError):
    """A research claim did not hold in the data (the message carries the numbers)."""


@pytest.fixture(scope="session")
def profile(pytestconfig: pytest.Config) -> Profile:
    """The active :class:`~harness.profiles.Profile`."""
    return pytestconfig.stash[STATE].profile


@pytest.fixture(scope="session")
def harness_seed(pytestconfig: pytest.Config) -> int:
    """The run's base seed (``--harness-seed``)."""
    return pytestconfig.stash[STATE].base_seed


@pytest.fixture(scope="session")
def cluster_method(pytestconfig: pytest.Config) -> str:
    """The spectral clustering estimator of every analysis (``--cluster-method``)."""
    return str(pytestconfig.getoption("--cluster-method", default="fast") or "fast")


@pytest.fixture
def seed(request: pytest.FixtureRequest, harness_seed: int) -> int:
    """This test's seed: base seed + crc32(node id)."""
    return derive_seed(harness_seed, canonical_nodeid(request.node.nodeid))


@pytest.fixture(scope="session")
def store(pytestconfig: pytest.Config) -> Store:
    """The artifact store shared by every worker of the run."""
    root = pytestconfig.stash[STATE].store_root
    return Store(root) if root else Store()


@pytest.fixture
def record(request: pytest.FixtureRequest, profile: Profile, seed: int) -> Callable[..., dict]:
    """Record one result row: ``record({"ncut": 8.1}, model_tag="MNIST")``.

    The row gets ``study``, ``test_id``, ``cell`` (:func:`cell_of`), ``profile`` and
    ``test_seed`` (this test's seed) columns unless given. A ``seed`` column, where there is one, is the seed the row's numbers
    came from (a result's ``to_row()`` carries it); it is never filled in from the test.
    Returns the stored row.
    """
    node = request.node

    def _record(row: Mapping[str, Any] | None = None, /, **columns: Any) -> dict:
        merged: dict[str, Any] = {
            "study": study_of(node.nodeid),
            "test_id": canonical_nodeid(node.nodeid),
            "cell": cell_of(node),
            "profile": profile.name,
            "test_seed": seed,
        }
        merged.update(dict(row or {}))
        merged.update(columns)
        clean = {str(k): to_builtin(v, where=f"column {k!r}") for k, v in merged.items()}
        node.user_properties.append((ROW_KEY, clean))
        return clean

    return _record


@pytest.fixture
def figure(request: pytest.FixtureRequest, pytestconfig: pytest.Config) -> Callable[[str], Path]:
    """Path stem of a figure of this test: ``figure("null")``.

    Gives ``<reports>/figures/<study>/<test>__<name>`` (pass it to a ``harness.report.plot_*``
    function, which adds the extensions). Each test writes only its own figures, atomically;
    the controller drops figures of the run's studies that this run did not draw again.
    """
    from harness.report import figure_stem

    node = request.node
    reports_dir = pytestconfig.stash[STATE].reports_dir

    def _figure(name: str) -> Path:
        nodeid = canonical_nodeid(node.nodeid)
        stem = figure_stem(reports_dir, study_of(nodeid), nodeid, name)
        stem.parent.mkdir(parents=True, exist_ok=True)
        node.user_properties.append((FIGURE_KEY, str(stem)))
        return stem

    return _figure


@pytest.fixture
def claim(request: pytest.FixtureRequest, profile: Profile) -> Callable[..., bool]:
    """Check a research claim; fail the test with the numbers when it does not hold.

    Two forms:

    ``claim(claim_id, rows)``
        A claim of the registry (:mod:`harness.claims`), evaluated on ``rows`` (a DataFrame
        or a list of row dicts). Its status at this profile decides what happens: asserted
        (fails the test when it does not hold), expected-to-fail with its reason (strict: a
        claim that unexpectedly holds fails the run, so the xfail gets removed), or recorded
        with its reason (mixed cells of the paper; the smoke profile).
    ``claim(text, holds, expected=..., observed=..., xfail=None)``
        An ad-hoc claim of your own experiment, asserted unless the profile records only.

    Every claim becomes a row of ``reports/claims.csv`` with its verdict.
    """
    node = request.node
    record_only = bool(request.config.getoption("--record-claims", default=False))

    def _finish(entry: dict[str, Any], status: str, reason: str) -> bool:
        holds = bool(entry["holds"])
        if status == "record" or not profile.assert_claims or record_only:
            verdict = "recorded"
        elif status == "xfail":
            verdict = "xpass" if holds else "xfail"
        else:
            verdict = "pass" if holds else "fail"
        entry.update(verdict=verdict, note=reason, status=status)
        node.user_properties.append((CLAIM_KEY, entry))
        text = f"[{entry['claim_id']}] {entry['claim']}" if entry.get("claim_id") else entry["claim"]
        if verdict == "fail":
            raise ClaimFailed(
                f"claim does not hold: {text}\n  expected: {entry['expected']}\n"
                f"  observed: {entry['observed']}"
            )
        if verdict == "xfail":
            pytest.xfail(f"{text}: {reason} (observed {entry['observed']})")
        if verdict == "xpass":
            raise ClaimFailed(
                f"claim marked expected-to-fail now holds: {text} ({reason}); "
                f"observed {entry['observed']}. Remove the xfail."
            )
        return holds

    def _claim(
        text: str,
        holds: Any,
        *,
        expected: Any = "",
        observed: Any = "",
        xfail: str | None = None,
    ) -> bool:
        from harness.claims import REGISTRY

        base = {
            "study": study_of(node.nodeid),
            "test_id": canonical_nodeid(node.nodeid),
            "profile": profile.name,
        }
        if text in REGISTRY and not isinstance(holds, bool):
            import pandas as pd

            entry = REGISTRY[text]
            rows = holds if isinstance(holds, pd.DataFrame) else pd.DataFrame(list(holds))
            outcome = entry.evaluate(rows)
            status, reason = entry.status_at(profile.name)
            record = {
                **base,
                "claim_id": entry.id,
                "table": entry.table,
                "claim": entry.statement,
                "expected": entry.evidence,
                "observed": format_observed(dict(outcome.observed)),
                "holds": bool(outcome.holds),
            }
            return _finish(record, status, reason)
        record = {
            **base,
            "claim_id": "",
            "table": "",
            "claim": text,
            "expected": format_observed(expected),
            "observed": format_observed(observed),
            "holds": bool(holds),
        }
        return _finish(record, "xfail" if xfail is not None else "assert", xfail or "")

    return _claim
