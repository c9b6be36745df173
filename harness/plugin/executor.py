"""Executor glue: where heavy units run (``--executor local|ray``, ``--ray-*``).

The run's executor (:mod:`harness.executors`) is made once per process in
``pytest_configure`` and given to the experiment fixtures as the ``executor`` fixture. Right
after collection the plugin asks every selected test for its forecast (the
``pytest_harness_plan`` hook, which ``fixtures/models.py`` implements) and submits the
union, models first, so that an executor that computes ahead (Ray) starts at once. Under
xdist the controller hands the Ray run's handle to each worker.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from harness.options import check_choice
from harness.plugin.config import STATE, is_worker
from harness.plugin.rows import to_builtin
from harness.profiles import Profile
from harness.store import Store

__all__ = ["executor_summary"]


class _PlanSpec:
    """Hook specifications the harness adds (``pytest_addhooks``)."""

    @pytest.hookspec
    def pytest_harness_plan(
        self, item: pytest.Item, profile: Profile, base_seed: int
    ) -> list[Any]:
        """The heavy tasks (:mod:`harness.executors`) ``item`` will ask for: a forecast.

        Implemented by the experiment fixtures (``fixtures/models.py``); an executor that
        submits ahead (Ray) gets the union of all items' lists, in dependency order, as
        soon as collection ends.
        """
        raise NotImplementedError  # a specification: pluggy never calls this body


_EXECUTOR = pytest.StashKey[Any]()
_EXECUTOR_STATS = pytest.StashKey[dict[str, Any]]()
_RAY_HANDLE = "harness_ray"


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(_PlanSpec)


def pytest_addoption(parser: pytest.Parser) -> None:
    from harness.executors import EXECUTORS

    group = parser.getgroup("harness", "clusterability harness")
    group.addoption(
        "--executor",
        choices=list(EXECUTORS),
        default=None,
        help="where training and null distributions run: local (this machine's processes, "
        "the default; $HARNESS_EXECUTOR) or ray (a Ray cluster: see --ray-address)",
    )
    group.addoption(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="with --executor ray: the cluster's head (host:port from `ray start --head`, "
        "auto, or ray://host:port); default: start Ray on this machine for the session",
    )
    group.addoption(
        "--ray-train-gpus",
        type=float,
        default=None,
        metavar="N",
        help="with --executor ray: GPUs per training task (default: 1 if the cluster has "
        "GPUs, else 0)",
    )
    group.addoption(
        "--ray-log",
        default=None,
        metavar="FILE",
        help="with --executor ray: write one JSON line per task computed (kind, key, node, "
        "seconds, GPUs) to FILE at the end of the session",
    )


def _executor_name(config: pytest.Config) -> str:
    from harness.executors import EXECUTORS

    name = config.getoption("--executor") or os.environ.get("HARNESS_EXECUTOR") or "local"
    try:
        return check_choice("HARNESS_EXECUTOR", name, EXECUTORS)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


@pytest.hookimpl(trylast=True)  # after harness.plugin.config has set up the run's state
def pytest_configure(config: pytest.Config) -> None:
    """The run's executor, in ``config.stash``; a Ray cluster that cannot be reached is a
    usage error here, before the first test."""
    from harness.executors import ExecutorUnavailable, LocalExecutor, RayExecutor, RayOptions

    name = _executor_name(config)
    ray_opts = [o for o in ("--ray-address", "--ray-train-gpus", "--ray-log")
                if config.getoption(o) is not None]
    if name != "ray" and ray_opts:
        raise pytest.UsageError(f"{', '.join(ray_opts)} need(s) --executor ray")
    gpus = config.getoption("--ray-train-gpus")
    if gpus is not None and gpus < 0:
        raise pytest.UsageError(f"--ray-train-gpus must be >= 0, got {gpus:g}")
    root = config.stash[STATE].store_root
    store = Store(root) if root else Store()
    if store.url is None:  # the coordinator runs in another folder: an absolute path
        store = Store(store.root.resolve())
    if name == "local":
        if os.environ.get("HARNESS_DEVICE"):  # checked here, not when the first model trains
            from harness.devices import pick_device

            try:
                pick_device()
            except ValueError as exc:
                raise pytest.UsageError(f"HARNESS_DEVICE: {exc}") from None
        config.stash[_EXECUTOR] = LocalExecutor(store)
        return
    if config.option.collectonly and config.getoption("--ray-address") is None:
        return  # --collect-only computes nothing: no local Ray cluster is started for it
    try:
        if is_worker(config):
            handle = config.workerinput.get(_RAY_HANDLE)  # type: ignore[attr-defined]
            executor = RayExecutor.join(store, handle)
        else:
            options = RayOptions(address=config.getoption("--ray-address"), train_gpus=gpus)
            executor = RayExecutor.start(store, options)
    except ExecutorUnavailable as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[_EXECUTOR] = executor
    if not is_worker(config) and config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistExecutorHooks(executor.handle), "harness-executor-xdist")


class _XdistExecutorHooks:
    """Hands the Ray run's handle to each xdist worker (registered only with xdist)."""

    def __init__(self, handle: Mapping[str, Any]) -> None:
        self.handle = dict(handle)

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[_RAY_HANDLE] = self.handle


def pytest_report_header(config: pytest.Config) -> list[str]:
    executor = config.stash.get(_EXECUTOR, None)
    if executor is None or executor.name == "local":
        return []
    return [f"harness: executor={executor.name} cluster={executor.handle.get('address')}"]


@pytest.fixture(scope="session")
def executor(pytestconfig: pytest.Config) -> Any:
    """The run's :mod:`harness.executors` executor (``--executor``), over the run's store."""
    return pytestconfig.stash[_EXECUTOR]


def pytest_collection_finish(session: pytest.Session) -> None:
    """Submit everything the selected tests will ask for, models first: executors that
    compute ahead start on it; the local one only learns the training units (models that
    train together as one ensemble), when it trains ensembles."""
    executor = session.config.stash.get(_EXECUTOR, None)
    if executor is None or not session.items:
        return
    if session.config.option.collectonly:  # nothing will wait for the results
        return
    if not session.config.hook.pytest_harness_plan.get_hookimpls():
        return  # no fixtures that plan (a study outside experiments/): nothing to forecast
    # After the check above (a study whose plugins plan nothing stops there): the local
    # executor's answer imports torch to look for CUDA.
    if executor.name == "local" and not getattr(executor, "wants_plan", False):
        return
    state = session.config.stash[STATE]
    tasks: list[Any] = []
    for item in session.items:
        for found in item.ihook.pytest_harness_plan(
            item=item, profile=state.profile, base_seed=state.base_seed
        ):
            tasks.extend(found or [])
    if tasks:
        from harness.executors import dependency_order

        executor.submit(dependency_order(tasks))


def executor_summary(config: pytest.Config) -> str | None:
    """The session summary's line about a cluster executor: what it computed, and where
    (None for the local executor, and on xdist workers)."""
    executor = config.stash.get(_EXECUTOR, None)
    if executor is None or executor.name == "local" or is_worker(config):
        return None
    stats = config.stash.get(_EXECUTOR_STATS, None) or _executor_stats(config)
    if not stats:
        return None
    return (
        f"harness: executor {executor.name}: {stats['computed']} task(s) computed on "
        f"{len(stats['nodes'])} node(s), {stats['already_stored']} already stored; forecast "
        f"{stats['planned']}, asked for {stats['asked']} ({stats['asked_and_planned']} forecast)"
    )


def _executor_stats(config: pytest.Config) -> dict[str, Any]:
    executor = config.stash.get(_EXECUTOR, None)
    if executor is None or executor.name == "local":
        return {}
    try:
        stats: dict[str, Any] = executor.stats()
    except Exception:  # the cluster went away: nothing to report, the run already knows
        return {}
    config.stash[_EXECUTOR_STATS] = stats
    return stats


def pytest_unconfigure(config: pytest.Config) -> None:
    executor = config.stash.get(_EXECUTOR, None)
    if executor is None:
        return
    log = config.getoption("--ray-log", default=None)
    if log and not is_worker(config):
        import json

        from harness.files import atomic_write_text

        stats = config.stash.get(_EXECUTOR_STATS, None) or _executor_stats(config)
        lines = [json.dumps(to_builtin(task)) for task in stats.get("tasks", [])]
        atomic_write_text(Path(log), "".join(f"{line}\n" for line in lines))
    executor.close()
