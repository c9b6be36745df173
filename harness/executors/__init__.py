"""Where the heavy units of a run execute: in this process, or on a Ray cluster.

The heavy units are *tasks*, pure functions of their inputs whose result is one artifact of
the store (:mod:`harness.store`), named by the same key wherever it is computed:

:class:`ModelTask`
    Training one network (:func:`harness.training.get_or_train`): config, seed, dataset content.
:class:`AnalysisTask`
    One clusterability analysis of a trained network, its null distribution included
    (:func:`harness.cache.cached_clusterability`): weights, K, null, samples, seed.

An executor turns a task into its artifact in the run's store and returns the loaded result:

:class:`LocalExecutor` (:mod:`harness.executors.local`)
    Today's behaviour: the unit runs in the asking process when first asked for (once per
    machine, under the store's lock); null samples in local worker processes.
:class:`RayExecutor` (:mod:`harness.executors.ray`; Ray is imported only when it is used)
    The unit runs on a Ray cluster. A *coordinator* actor on the driver's node schedules
    each key once per run (whichever pytest process asks first, or the plan submitted
    right after collection), installs every finished artifact into the run's store as soon
    as it arrives (so an interrupted run resumes from the store), and answers the tests
    that wait for it. Training asks Ray for ``num_gpus`` GPUs (``train_gpus``); analyses
    and their null samples for one CPU each; the null samples of one analysis are spread
    over the cluster as separate tasks (:func:`harness.workers.map_backend`). Ray retries
    a task whose worker process dies.

Both compute the same numbers: null sample ``i`` is seeded by its index, training by its
config, and every unit runs with fixed thread counts (see :mod:`harness.workers`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from harness.executors.local import LocalExecutor
from harness.executors.ray import RayExecutor, RayOptions, ray_map
from harness.store import Store
from harness.tasks import (
    AnalysisTask,
    Artifact,
    ExecutorUnavailable,
    ModelTask,
    Task,
    dependency_order,
    train_unit,
    training_units,
)

if TYPE_CHECKING:
    from harness.stats import ClusterabilityResult
    from harness.trained_model import TrainedModel

__all__ = [
    "EXECUTORS",
    "AnalysisTask",
    "Artifact",
    "Executor",
    "ExecutorUnavailable",
    "LocalExecutor",
    "ModelTask",
    "RayExecutor",
    "RayOptions",
    "Task",
    "dependency_order",
    "ray_map",
    "train_unit",
    "training_units",
]

#: The executors ``--executor`` accepts.
EXECUTORS = ("local", "ray")


class Executor(Protocol):
    """Where the heavy units run. Every method returns what the local code path returns."""

    name: str
    store: Store

    def submit(self, tasks: Sequence[Task]) -> int:
        """Start computing ``tasks`` (in dependency order) without waiting; how many started."""

    def model(self, task: ModelTask) -> TrainedModel:
        """The trained model of ``task`` (waits for it)."""

    def analysis(self, task: AnalysisTask) -> ClusterabilityResult:
        """The clusterability result of ``task`` (waits for it)."""

    def stats(self) -> dict[str, Any]:
        """What ran where (for the session summary)."""

    def close(self) -> None:
        """Release the executor's resources."""
