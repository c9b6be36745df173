"""Thread pinning and worker processes.

Oversubscribed BLAS/OpenMP threads make k-means and eigen-solvers many times slower, so every
process of the harness (the pytest controller, each xdist worker, each null-sampling worker)
pins its thread pools to its share of the machine's cores.

:func:`parallel_map` runs in local worker processes unless a *map backend* is active in this
process (:func:`map_backend`): :mod:`harness.executors` installs one that sends the items to a
Ray cluster, so that null samples and random-init trials spread over its nodes. Items are
seeded by index, so the backend never changes a result.

Progress bars are in :mod:`harness.progress`, the choice of torch device in
:mod:`harness.devices`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: ``backend(fn, items, n_workers, on_result) -> results in input order``: where
#: :func:`parallel_map` sends multi-worker maps instead of local processes.
MapBackend = Callable[[Callable[[Any], Any], list[Any], int, Callable[[Any], object] | None], list[Any]]

_BACKEND: MapBackend | None = None

_THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def available_cores() -> int:
    """Number of cores this process may use (respects affinity masks and cgroups)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def xdist_worker_index() -> int | None:
    """Index of the current pytest-xdist worker (``gw3`` -> 3), or None outside xdist."""
    name = os.environ.get("PYTEST_XDIST_WORKER")
    if not name:
        return None
    match = re.fullmatch(r"gw(\d+)", name)
    return int(match.group(1)) if match else None


def xdist_worker_count() -> int:
    """Number of xdist workers in this run (1 outside xdist)."""
    try:
        return max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    except ValueError:
        return 1


def threads_per_process(n_processes: int | None = None) -> int:
    """Fair share of cores for one of ``n_processes`` concurrent processes (at least 1)."""
    n = n_processes if n_processes is not None else xdist_worker_count()
    return max(1, available_cores() // max(1, n))


def pin_threads(n_threads: int) -> None:
    """Pin torch, BLAS and OpenMP thread pools of this process to ``n_threads``.

    Environment variables are set too, so that child processes and libraries loaded later
    inherit the limit.
    """
    n_threads = max(1, int(n_threads))
    for var in _THREAD_ENV_VARS:
        os.environ[var] = str(n_threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n_threads)
    # torch reads OMP_NUM_THREADS when it is first imported; set it directly only if it is
    # already loaded, so that worker processes that never need torch do not pay its import.
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n_threads)


def _init_worker(n_threads: int) -> None:
    # Ctrl-C in a terminal signals the whole process group. The parent turns it into one
    # line and stops the pool; a worker that also raised KeyboardInterrupt would print its
    # own traceback.
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pin_threads(n_threads)


@contextlib.contextmanager
def map_backend(backend: MapBackend | None) -> Iterator[None]:
    """Within the block, :func:`parallel_map` calls ``backend`` for multi-worker maps.

    ``None`` restores local worker processes. The previous backend is restored on exit
    (also when the block raises).
    """
    global _BACKEND
    previous, _BACKEND = _BACKEND, backend
    try:
        yield
    finally:
        _BACKEND = previous


def set_map_backend(backend: MapBackend | None) -> MapBackend | None:
    """Install ``backend`` for the rest of this process (None: local processes); returns the
    previous one. :func:`map_backend` is the scoped form."""
    global _BACKEND
    previous, _BACKEND = _BACKEND, backend
    return previous


def parallel_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    n_workers: int | None = None,
    on_result: Callable[[R], object] | None = None,
) -> list[R]:
    """Map ``fn`` over ``items`` in ``n_workers`` processes, results in input order.

    ``n_workers`` defaults to this process's share of cores. With one worker (or one item)
    everything runs in-process, which keeps tracebacks simple and avoids start-up cost. Each
    worker pins its threads to ``cores // n_workers`` so the pool never oversubscribes.
    ``fn`` and the items must be picklable (module-level functions, plain data).
    ``on_result(result)`` is called in this process as each result arrives (any order).

    Workers come from loky's reusable executor (shipped with joblib): unlike
    ``multiprocessing``'s spawn and forkserver methods, its workers do not import the
    caller's ``__main__``, so a plain script, a notebook or pytest can call this at top level
    without an ``if __name__ == "__main__":`` guard; and the pool is reused across calls. If
    the pool breaks (a worker killed by the OS, say), the remaining items run in this process
    after a one-line notice on stderr. Within :func:`map_backend` the items go to that
    backend instead (a Ray cluster); one worker still runs in-process.
    """
    items = list(items)
    if n_workers is None:
        n_workers = threads_per_process()
    n_workers = max(1, min(int(n_workers), len(items) or 1))
    if n_workers == 1:
        return [_reported(fn(item), on_result) for item in items]
    if _BACKEND is not None:
        return list(_BACKEND(fn, items, n_workers, on_result))
    from concurrent.futures import FIRST_COMPLETED, wait

    from joblib.externals.loky import get_reusable_executor
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    share = max(1, threads_per_process() // n_workers)
    executor = get_reusable_executor(
        max_workers=n_workers,
        initializer=_init_worker,
        initargs=(share,),
        env={var: str(share) for var in _THREAD_ENV_VARS},
    )
    # At most two tasks per worker in flight: results stream back in order of completion,
    # and an interrupt has little queued work to tear down.
    results: dict[int, R] = {}
    pending: dict[Any, int] = {}
    queue = iter(enumerate(items))
    try:
        for index, item in itertools.islice(queue, 2 * n_workers):
            pending[executor.submit(fn, item)] = index
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                results[pending.pop(future)] = _reported(future.result(), on_result)
            for index, item in itertools.islice(queue, len(done)):
                pending[executor.submit(fn, item)] = index
    except (TerminatedWorkerError, BrokenProcessPool, OSError) as exc:
        print(
            f"harness: worker processes failed ({type(exc).__name__}); running the remaining "
            f"{len(items) - len(results)} task(s) in this process",
            file=sys.stderr,
        )
        for i, item in enumerate(items):
            if i not in results:
                results[i] = _reported(fn(item), on_result)
    except BaseException:
        # Ctrl-C (or an error in fn): kill the workers, then re-raise. loky's manager thread
        # may trip over the work being torn down; what it says then is noise, not news.
        previous = threading.excepthook
        threading.excepthook = _quiet_manager_thread(previous)
        try:
            executor.shutdown(wait=True, kill_workers=True)
        finally:
            threading.excepthook = previous
        raise
    return [results[i] for i in range(len(items))]


def _quiet_manager_thread(previous: Callable[[Any], object]) -> Callable[[Any], object]:
    def hook(args: Any) -> None:
        if args.thread is not None and "ExecutorManager" in type(args.thread).__name__:
            return
        previous(args)

    return hook


def _reported(result: R, on_result: Callable[[R], object] | None) -> R:
    if on_result is not None:
        on_result(result)
    return result


def iter_chunks(seq: list[T], n: int) -> Iterator[list[T]]:
    """Split ``seq`` into ``n`` contiguous chunks of near-equal size (some may be empty)."""
    k, m = divmod(len(seq), n)
    start = 0
    for i in range(n):
        stop = start + k + (1 if i < m else 0)
        yield seq[start:stop]
        start = stop
