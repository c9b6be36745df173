"""The pytest plugin: profiles, seeds, thread pinning, result rows, claims and reports.

Loaded by the project's ``conftest.py`` (``pytest_plugins = ["harness.plugin", ...]``). Like
pytest's own ``_pytest/``, it is cut into plugin modules, one concern each, that pytest
registers as plugins of their own (each is named in this module's ``pytest_plugins``, which
pytest reads when it registers this one):

:mod:`harness.plugin.config`
    Options, profile, base seed, store and reports folders, thread pinning; everything a
    user can get wrong is one line and exit status 4 before the first test. The profile
    decides what is collected.
:mod:`harness.plugin.fixtures`
    The fixtures experiments use: ``profile``, ``harness_seed``, ``seed``, ``cluster_method``,
    ``store``, ``record``, ``figure``, ``claim``.
:mod:`harness.plugin.collector`
    On the controller: rows and claims in, ``reports/<study>.csv|md``, ``claims.csv`` and the
    rest of the reports out, and the terminal summary.
:mod:`harness.plugin.executor`
    Where heavy units run (``--executor``, ``--ray-*``), the ``executor`` fixture, and the
    forecast submitted right after collection.

:mod:`harness.plugin.rows` defines what a result row is (builtin values only, keyed by the
canonical node id). This package is the only part of ``harness`` that imports pytest.

Threads: every process (the controller with ``-n 0``, or each xdist worker) pins torch, BLAS
and OpenMP to ``cores // workers`` threads in ``pytest_configure``.
"""

from __future__ import annotations

from harness.plugin.fixtures import ClaimFailed
from harness.plugin.rows import CLAIM_KEY, ROW_KEY, canonical_nodeid, cell_of, to_builtin

__all__ = ["CLAIM_KEY", "ROW_KEY", "ClaimFailed", "canonical_nodeid", "cell_of", "to_builtin"]

pytest_plugins = [
    "harness.plugin.config",
    "harness.plugin.fixtures",
    "harness.plugin.collector",
    "harness.plugin.executor",
]
