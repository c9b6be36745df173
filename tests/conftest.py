"""Runs the unit suite's long tests first.

``--dist loadgroup`` hands tests to the workers in collection order (after the named
groups), so a long ``integration`` test collected last, such as the README blocks,
would run alone at the end while the other worker sits idle. Starting those first
lets the many short tests fill in behind them. The sort is stable: within each kind,
the order is the files' own.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("integration") is None)
