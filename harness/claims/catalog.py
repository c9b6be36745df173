"""The registry: every claim of the paper by id, and which study asserts which.

Built once from the builders of each family (:mod:`~harness.claims.derived`,
:mod:`~harness.claims.orderings`, :mod:`harness.activations.claims`,
:mod:`~harness.claims.extra`), with the paper profile's expected failures
(:data:`~harness.claims.statuses.PAPER_XFAIL`) added to their statuses.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

from harness.activations.claims import activation_claims
from harness.claims.derived import derived_claims, learns_claims, lesion_claims
from harness.claims.extra import extra_claims
from harness.claims.model import Claim
from harness.claims.orderings import cnn_ordering_claims, ordering_claims, random_init_claims
from harness.claims.statuses import PAPER_XFAIL
from harness.paper import paper_values

__all__ = ["REGISTRY", "claims_for", "observed_margins", "open_claims", "registry"]


@lru_cache(maxsize=1)
def registry() -> dict[str, Claim]:
    """Every claim, by id (derived from the paper's tables, then the hand-written ones).

    Raises
    ------
    AssertionError
        If two claims share an id.
    """
    rows = paper_values()
    claims = [
        *derived_claims(rows),
        *ordering_claims(),
        *cnn_ordering_claims(),
        *random_init_claims(),
        *lesion_claims(rows),
        *learns_claims(rows),
        *activation_claims(rows),
        *extra_claims(),  # Tables E, N
    ]
    out: dict[str, Claim] = {}
    for claim in claims:
        if claim.id in out:
            raise AssertionError(f"duplicate claim id {claim.id}")
        status = dict(claim.status)
        if claim.id in PAPER_XFAIL:
            status.setdefault("paper", ("xfail", PAPER_XFAIL[claim.id]))
        out[claim.id] = replace(claim, status=status)
    return out


#: Every claim by id: :func:`registry`, built at import.
REGISTRY = registry()


def claims_for(study: str) -> list[str]:
    """Ids of the claims asserted by ``experiments/test_<study>.py``, in registry order."""
    return [c.id for c in REGISTRY.values() if c.study == study]


def observed_margins(claim_id: str, observed: str) -> list[float] | dict[str, float] | None:
    """The margins of claim ``claim_id`` on the ``observed`` text of a ``claims.csv`` row
    (:meth:`~harness.claims.model.Claim.observed_margins`); None for a claim not in the
    registry or whose check measures none."""
    claim = REGISTRY.get(claim_id)
    return claim.observed_margins(observed) if claim is not None else None


def open_claims(profile: str) -> set[str]:
    """Ids of the claims recorded at ``profile`` whatever a calibration says: the paper's
    mixed cells (their own status there is ``record``)."""
    return {c.id for c in REGISTRY.values() if c.status.get(profile, ("",))[0] == "record"}
