"""The Ray executor: each unit runs once per run on a Ray cluster.

Ray itself is imported only when this executor is used (:meth:`RayExecutor.start`,
:meth:`RayExecutor.join`, :func:`ray_map`): the harness runs without it. Functions that run
on Ray workers are module-level, so that Ray pickles them by reference.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

__all__ = ["NAMESPACE", "RayExecutor", "RayOptions", "ray_map"]

#: Ray namespace of the harness's actors.
NAMESPACE = "clusterability-harness"

# Environment variables forwarded to the cluster's worker processes of a run: the harness's
# own settings and the store's credentials and fsspec configuration.
_FORWARDED_ENV_PREFIXES = ("HARNESS_", "FSSPEC_", "AWS_", "GOOGLE_", "AZURE_")


@dataclass(frozen=True)
class RayOptions:
    """How a run uses a Ray cluster.

    Attributes
    ----------
    address : str or None
        ``host:port`` of a running cluster's head (``ray start --head`` prints it), ``auto``
        for the cluster this machine belongs to, ``ray://host:port`` for Ray Client (then
        the store must be a URL both sides reach), or None to start a Ray instance on this
        machine for the session.
    train_gpus : float or None
        GPUs each training task asks for; None: 1 if the cluster has GPUs, else 0.
    train_cpus, analysis_cpus : float
        CPUs each training / analysis task asks for (null-sample tasks ask for one).
    max_retries : int
        How often Ray re-runs a task whose worker process died.
    object_store_memory : int or None
        Bytes of object store when starting a local instance (None: Ray's default).
    num_cpus : int or None
        CPUs of a local instance (None: this process's cores).
    """

    address: str | None = None
    train_gpus: float | None = None
    train_cpus: float = 1
    analysis_cpus: float = 1
    max_retries: int = 3
    object_store_memory: int | None = None
    num_cpus: int | None = None


def _require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ExecutorUnavailable(
            "--executor ray needs Ray: pip install 'clusterability-harness[ray]'"
        ) from None
    return ray


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """One clear error if nothing listens at ``host:port`` (Ray itself would wait minutes)."""
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise ExecutorUnavailable(
            f"--ray-address {address!r} is not host:port, ray://host:port or auto"
        )
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout):
            pass
    except OSError as exc:
        raise ExecutorUnavailable(
            f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); start one "
            "with `ray start --head` and pass the address it prints, or leave out "
            "--ray-address to start Ray on this machine"
        ) from None


def _forwarded_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.startswith(_FORWARDED_ENV_PREFIXES)}
    env["HARNESS_PROGRESS"] = "0"
    return env


def _runtime_env() -> dict[str, Any]:
    # The driver's copy of the harness runs on the workers: results cannot depend on which
    # version a node has installed.
    import harness

    return {"py_modules": [str(Path(harness.__file__).parent)], "env_vars": _forwarded_env()}


def _connect(options: RayOptions, store: Store, *, namespace: str = NAMESPACE) -> bool:
    """Connect this process to Ray (starting a local instance if no address); returns
    whether this call initialised Ray (and so should shut it down)."""
    ray = _require_ray()
    address = options.address
    if address and address.startswith("ray://") and store.url is None:
        raise ExecutorUnavailable(
            f"with a Ray Client address ({address}) the workers cannot reach the folder "
            f"store {store.location}; pass --store with a URL both sides reach "
            "(s3://bucket/prefix, gs://..., file:///shared/path)"
        )
    if ray.is_initialized():
        return False
    if address and address != "auto":
        _check_reachable(address)
    kwargs: dict[str, Any] = {
        "namespace": namespace,
        "log_to_driver": False,
        "logging_level": "WARNING",
    }
    if address:
        kwargs["address"] = address
    else:
        from harness.workers import available_cores

        # "local": always a new instance of our own, even when another Ray cluster runs on
        # this machine (ray.init() with no address would join that one, and then refuses
        # num_cpus).
        kwargs.update(
            address="local",
            num_cpus=options.num_cpus or available_cores(),
            include_dashboard=False,
            object_store_memory=options.object_store_memory,
        )
    try:
        ray.init(runtime_env=_runtime_env(), **kwargs)
    except Exception as exc:  # Ray raises many types; the user needs one line
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ExecutorUnavailable(
            f"cannot connect to Ray at {address or 'a new local instance'}: "
            f"{type(exc).__name__}: {first}"
        ) from None
    return True


# Ray-side functions: module-level so that Ray pickles them by reference.


def _where() -> dict[str, Any]:
    import ray

    context = ray.get_runtime_context()
    return {"node": context.get_node_id(), "pid": os.getpid(), "gpus": list(ray.get_gpu_ids())}


_MAP_NODES: list[str] = []


def _ray_call(fn: Callable[[Any], Any], item: Any) -> tuple[Any, str]:
    """A map item on a Ray worker: one thread, as in local worker processes."""
    import ray

    from harness.workers import pin_threads

    pin_threads(1)
    return fn(item), ray.get_runtime_context().get_node_id()


def ray_map(
    fn: Callable[[Any], Any],
    items: list[Any],
    n_workers: int,
    on_result: Callable[[Any], object] | None,
) -> list[Any]:
    """A :data:`harness.workers.MapBackend` on Ray: one CPU task per item, input order kept."""
    ray = _require_ray()
    del n_workers  # Ray schedules as many as the cluster has CPUs for
    remote = ray.remote(num_cpus=1, max_retries=3)(_ray_call).options(name="harness.map")
    refs = [remote.remote(fn, item) for item in items]
    index = {ref: i for i, ref in enumerate(refs)}
    results: list[Any] = [None] * len(items)
    pending = list(refs)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                value, node = ray.get(ref)
                _MAP_NODES.append(node)
                results[index[ref]] = value
                if on_result is not None:
                    on_result(value)
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    return results


def _execute(task: Task, *dependencies: Artifact, threads: int, n_workers: int | None,
             data_dir: str | None) -> Artifact:
    """A task on a Ray worker: into a scratch store, out as an :class:`Artifact`.

    ``data_dir`` is the driver's data folder: used where it exists (a node of the same
    machine or with a shared file system), unless ``HARNESS_DATA_DIR`` is set; other nodes
    use their own (fetched and verified by sha256). The dataset's content hash is part of
    the model's key, which :meth:`ModelTask.build` checks.
    """
    from harness.workers import map_backend, pin_threads

    started = time.perf_counter()
    if data_dir and "HARNESS_DATA_DIR" not in os.environ and Path(data_dir).is_dir():
        os.environ["HARNESS_DATA_DIR"] = data_dir
    pin_threads(threads)
    _MAP_NODES.clear()
    with tempfile.TemporaryDirectory(prefix="harness-task-") as tmp:
        scratch = Store(tmp)
        for dep in dependencies:
            scratch.install_files(dep.kind, dep.key, dep.files)
        with map_backend(ray_map):
            path = task.build(scratch, n_workers=n_workers)
        files = scratch.export_files(path)
        meta_info = scratch.read_meta(path).get("info", {})
    info = {
        **_where(),
        "seconds": round(time.perf_counter() - started, 3),
        "device": meta_info.get("device") if isinstance(meta_info, dict) else None,
        "map_nodes": sorted(set(_MAP_NODES)),
        "map_tasks": len(_MAP_NODES),
    }
    return Artifact(task.kind, task.key, files, info)


def _execute_unit(unit: list[ModelTask], *, threads: int, data_dir: str | None) -> tuple[Artifact, ...]:
    """A training unit on a Ray worker (one GPU task): its members, one artifact each."""
    from harness.workers import pin_threads

    started = time.perf_counter()
    if data_dir and "HARNESS_DATA_DIR" not in os.environ and Path(data_dir).is_dir():
        os.environ["HARNESS_DATA_DIR"] = data_dir
    pin_threads(threads)
    with tempfile.TemporaryDirectory(prefix="harness-unit-") as tmp:
        scratch = Store(tmp)
        models = train_unit(unit, scratch)
        files = [scratch.export_files(model.path) for model in models]
        devices = [model.info.get("device") for model in models]
    seconds = round(time.perf_counter() - started, 3)
    return tuple(
        Artifact(task.kind, task.key, member_files,
                 {**_where(), "seconds": seconds, "device": device, "unit": len(unit),
                  "map_nodes": [], "map_tasks": 0})
        for task, member_files, device in zip(unit, files, devices, strict=True)
    )


class _Coordinator:
    """The run's scheduler (a Ray actor on the driver's node): each key once, stored at once.

    Every pytest process of the run (the controller and each xdist worker) talks to this one
    actor, so a key asked for by several of them, or planned and then asked for, is computed
    once. Finished artifacts are installed into the run's store as they arrive.
    """

    def __init__(self, store: Store, options: RayOptions, train_gpus: float, n_workers: int,
                 data_dir: str | None) -> None:
        import ray

        self.store = store
        self.data_dir = data_dir
        self.lock = asyncio.Lock()
        self.options = options
        self.train_gpus = train_gpus
        self.n_workers = n_workers
        decorate: Any = ray.remote  # Ray's stubs do not type keyword-only task arguments
        self.remote: Any = decorate(_execute)
        self.remote_unit: Any = decorate(_execute_unit)
        self.units: dict[str, tuple[ModelTask, ...]] = {}
        self.refs: dict[str, Any] = {}
        self.results: dict[str, asyncio.Future[tuple[str, Any]]] = {}
        self.planned: set[str] = set()
        self.asked: set[str] = set()
        self.stored_before: set[str] = set()
        self.records: list[dict[str, Any]] = []

    async def submit(self, tasks: list[Task], planned: bool = True) -> int:
        for unit in training_units(tasks):
            if len(unit) > 1:
                self.units.update((task.key, unit) for task in unit)
        started = 0
        for task in dependency_order(tasks):
            if planned:
                self.planned.add(task.key)
            started += await self._start(task)
        return started

    async def ensure(self, task: Task) -> tuple[str, Any]:
        """Wait until ``task``'s artifact is in the store: ``("ok", None)`` or ``("error", exc)``."""
        self.asked.add(task.key)
        await self._start(task)
        future = self.results.get(task.key)
        return ("ok", None) if future is None else await asyncio.shield(future)

    def stats(self) -> dict[str, Any]:
        return {
            "planned": len(self.planned),
            "asked": len(self.asked),
            "asked_and_planned": len(self.asked & self.planned),
            "already_stored": len(self.stored_before),
            "computed": len(self.records),
            "nodes": sorted({r["node"] for r in self.records}),
            "tasks": list(self.records),
            "train_gpus": self.train_gpus,
        }

    async def _start(self, task: Task) -> int:
        """Submit ``task`` unless it is known or stored; 1 if submitted."""
        if task.key in self.results or task.key in self.stored_before:
            return 0
        async with self.lock:  # two callers of one key must not both submit it
            return await self._start_locked(task)

    async def _start_locked(self, task: Task) -> int:
        import ray

        if task.key in self.results or task.key in self.stored_before:
            return 0
        if await asyncio.to_thread(self.store.exists, task.kind, task.payload):
            self.stored_before.add(task.key)
            return 0
        dependencies = []
        for dep in task.dependencies:
            await self._start_locked(dep)
            ref = self.refs.get(dep.key)
            if ref is None:  # stored (now or before): ship the stored copy
                path = await asyncio.to_thread(
                    self.store.get_or_create, dep.kind, dep.payload, _must_exist(dep)
                )
                files = await asyncio.to_thread(self.store.export_files, path)
                ref = ray.put(Artifact(dep.kind, dep.key, files))
            dependencies.append(ref)
        if isinstance(task, ModelTask) and task.key in self.units:
            return await self._start_unit(self.units[task.key])
        if isinstance(task, ModelTask):
            resources = {"num_cpus": self.options.train_cpus, "num_gpus": self.train_gpus}
        else:
            resources = {"num_cpus": self.options.analysis_cpus, "num_gpus": 0}
        ref = self.remote.options(
            name=f"harness.{task.kind}", max_retries=self.options.max_retries,
            retry_exceptions=False, **resources,
        ).remote(
            task, *dependencies,
            threads=max(1, int(resources["num_cpus"])),
            n_workers=None if isinstance(task, ModelTask) else self.n_workers,
            data_dir=self.data_dir,
        )
        self.refs[task.key] = ref
        self.results[task.key] = asyncio.ensure_future(self._collect(task, ref))
        return 1

    async def _start_unit(self, unit: tuple[ModelTask, ...]) -> int:
        """Submit the members of ``unit`` not yet known or stored as one task (one GPU)."""
        todo = []
        for member in unit:
            if member.key in self.results or member.key in self.stored_before:
                continue
            if await asyncio.to_thread(self.store.exists, member.kind, member.payload):
                self.stored_before.add(member.key)
                continue
            todo.append(member)
        if not todo:
            return 0
        refs = self.remote_unit.options(
            name="harness.ensemble", max_retries=self.options.max_retries,
            retry_exceptions=False, num_returns=len(todo),
            num_cpus=self.options.train_cpus, num_gpus=self.train_gpus,
        ).remote(todo, threads=max(1, int(self.options.train_cpus)), data_dir=self.data_dir)
        refs = refs if len(todo) > 1 else [refs]
        for member, ref in zip(todo, refs, strict=True):
            self.refs[member.key] = ref
            self.results[member.key] = asyncio.ensure_future(self._collect(member, ref))
        return len(todo)

    async def _collect(self, task: Task, ref: Any) -> tuple[str, Any]:
        try:
            artifact: Artifact = await ref
            await asyncio.to_thread(
                self.store.install_files, artifact.kind, artifact.key, artifact.files
            )
        except Exception as exc:  # the waiting test raises it
            return ("error", exc)
        finally:
            # Stored now: later dependants get the stored copy; the object can be freed.
            self.refs.pop(task.key, None)
        self.records.append(
            {"kind": task.kind, "key": task.key, "planned": task.key in self.planned,
             **artifact.info}
        )
        return ("ok", None)


def _must_exist(task: Task) -> Callable[[Path], None]:
    def build(directory: Path) -> None:
        raise ExecutorUnavailable(f"{task!r} vanished from the store while in use")

    return build


class RayExecutor:
    """Units run on a Ray cluster, scheduled once per run by a coordinator actor.

    Create it with :meth:`start` in the session's main process (it connects, or starts a
    local Ray instance, and creates the coordinator), and with :meth:`join` in other
    processes of the same run (pytest-xdist workers), passing :attr:`handle`.

    While open, :func:`harness.workers.parallel_map` in this process also runs on the
    cluster (random-init trials, say).
    """

    name = "ray"

    def __init__(self, store: Store, coordinator: Any, handle: dict[str, Any], *,
                 owner: bool, initialised: bool) -> None:
        from harness.workers import set_map_backend

        self.store = store
        self.handle = handle
        self._coordinator = coordinator
        self._owner = owner
        self._initialised = initialised
        self._previous_backend = set_map_backend(ray_map)
        self._closed = False

    @classmethod
    def start(cls, store: Store, options: RayOptions | None = None) -> RayExecutor:
        """Connect to (or start) Ray and create the run's coordinator.

        Raises
        ------
        ExecutorUnavailable
            Ray is not installed, the cluster cannot be reached, or the settings conflict.
        """
        options = options or RayOptions()
        initialised = _connect(options, store)
        ray = _require_ray()
        try:
            resources = ray.cluster_resources()
            gpus = options.train_gpus
            if gpus is None:
                gpus = 1.0 if resources.get("GPU", 0) >= 1 else 0.0
            if gpus > resources.get("GPU", 0):
                raise ExecutorUnavailable(
                    f"training asks for {gpus:g} GPU(s) per task but the Ray cluster has "
                    f"{resources.get('GPU', 0):g}; lower --ray-train-gpus"
                )
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            name = f"coordinator-{uuid.uuid4().hex[:12]}"
            here = ray.get_runtime_context().get_node_id()
            n_workers = max(2, int(resources.get("CPU", 2)))
            from harness.data.storage import resolve_data_dir

            coordinator = (
                ray.remote(_Coordinator)
                .options(
                    name=name, namespace=NAMESPACE, num_cpus=0, max_concurrency=1000,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False),
                )
                .remote(store, options, float(gpus), n_workers, str(resolve_data_dir()))
            )
            ray.get(coordinator.stats.remote())  # fail here, not in the first test
        except BaseException:
            if initialised:
                ray.shutdown()
            raise
        # Plain data: xdist sends it to its workers.
        handle = {"address": ray.get_runtime_context().gcs_address, "coordinator": name}
        return cls(store, coordinator, handle, owner=True, initialised=initialised)

    @classmethod
    def join(cls, store: Store, handle: Mapping[str, Any]) -> RayExecutor:
        """Join the run whose main process created ``handle`` (an xdist worker does)."""
        ray = _require_ray()
        initialised = False
        if not ray.is_initialized():
            ray.init(
                address=handle["address"], namespace=NAMESPACE, log_to_driver=False,
                logging_level="WARNING", runtime_env=_runtime_env(),
            )
            initialised = True
        coordinator = ray.get_actor(handle["coordinator"], namespace=NAMESPACE)
        return cls(store, coordinator, dict(handle), owner=False, initialised=initialised)

    def submit(self, tasks: Sequence[Task]) -> int:
        ray = _require_ray()
        return int(ray.get(self._coordinator.submit.remote(list(tasks))))

    def _ensure(self, task: Task) -> None:
        ray = _require_ray()
        status, value = ray.get(self._coordinator.ensure.remote(task))
        if status == "error":
            cause = getattr(value, "as_instanceof_cause", None)
            raise (cause() if callable(cause) else value)

    def model(self, task: ModelTask) -> TrainedModel:
        from harness.training import get_or_train

        self._ensure(task)
        return get_or_train(task.config, store=self.store)  # now a read

    def analysis(self, task: AnalysisTask) -> ClusterabilityResult:
        self._ensure(task)
        return task.run(self.store, self.model(task.model))  # now a read

    def stats(self) -> dict[str, Any]:
        ray = _require_ray()
        stats: dict[str, Any] = ray.get(self._coordinator.stats.remote())
        return {"executor": self.name, **stats}

    def close(self) -> None:
        """Restore local maps; the main process also stops the coordinator and a Ray
        instance it started."""
        if self._closed:
            return
        self._closed = True
        from harness.workers import set_map_backend

        set_map_backend(self._previous_backend)
        ray = sys.modules.get("ray")
        if ray is None or not ray.is_initialized():
            return
        if self._owner:
            try:
                ray.kill(self._coordinator)
            except Exception:  # already gone with its node
                pass
        if self._initialised:
            ray.shutdown()
