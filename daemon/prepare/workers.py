"""Where a transform's chunks run: local worker processes (the default) or a
Dask cluster's workers (`tether serve --dask ADDRESS`, `tether.serve(dask=client)`).

Both take `submit(function, *args)` and give futures whose `result()` is the
function's, or raises `WorkerDied` when the process running it was lost (a
crash, killed for memory), and both are ended at once when the daemon stops
(`stop_all`): a function that never returns must not keep it running.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from multiprocessing import get_context
from typing import Any

# One core is left to the daemon itself; more than 4 rarely pays for the copies.
LOCAL_WORKERS = max(1, min(4, (os.cpu_count() or 2) - 1))
CONNECT_SECONDS = 30  # to reach a Dask scheduler


class WorkerDied(Exception):  # noqa: N818 - what happened, said as such
    """The process running a chunk was lost."""


class LocalWorkers:
    """Spawned worker processes (not forked: the daemon has gRPC threads),
    each set up by `initializer(*initargs)` when it starts."""

    def __init__(self, count: int = LOCAL_WORKERS, initializer: Callable | None = None,
                 initargs: tuple = ()) -> None:
        with _stderr_lock, _real_stderr():
            self._pool = ProcessPoolExecutor(count, mp_context=get_context("spawn"),
                                             initializer=initializer, initargs=initargs)
            self._pool.submit(int).result()  # spawns them all (a spawn pool starts them at once)
        self.slots = count

    def submit(self, function: Callable, *args: Any) -> _Future:
        return _Future(self._pool.submit(function, *args), BrokenProcessPool)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def kill(self) -> None:
        for process in list(getattr(self._pool, "_processes", {}).values()):
            process.terminate()  # its jobs fail as "worker process died"
        self._pool.shutdown(wait=False, cancel_futures=True)


class DaskWorkers:
    """A Dask cluster's workers, through a client of its scheduler. The owner's
    module is sent to them (`upload_file`) when it is one file; a package
    must be installed on the workers, like tether itself."""

    def __init__(self, address: str, module: str, module_file: str) -> None:
        from distributed import Client

        try:
            self._client = Client(address, timeout=CONNECT_SECONDS, set_as_default=False)
        except OSError as exc:
            raise OSError(f"--dask {address}: cannot reach the Dask scheduler: {exc}") from None
        try:
            if module_file and "." not in module:  # a module inside a package is installed
                self._client.upload_file(module_file)
            self.slots = max(1, sum(self._client.nthreads().values()))
        except BaseException:
            self._client.close()
            raise

    def submit(self, function: Callable, *args: Any) -> _Future:
        from distributed.scheduler import KilledWorker

        # A chunk is tens of MB: scattered to a worker, not put into the task graph.
        data = [self._client.scatter(arg, hash=False) if isinstance(arg, bytes) else arg
                for arg in args]
        return _Future(self._client.submit(function, *data, pure=False), KilledWorker)

    def close(self) -> None:
        self._client.close()

    def kill(self) -> None:
        self._client.close(timeout=2)  # the scheduler cancels what is left


class _Future:
    def __init__(self, future: Any, lost: type[BaseException]) -> None:
        self._future, self._lost = future, lost

    def result(self, timeout: float | None = None) -> Any:
        """Its result (TimeoutError past `timeout` s; WorkerDied if its process was lost)."""
        try:
            return self._future.result(timeout)
        except self._lost:
            raise WorkerDied from None


_live: set[LocalWorkers | DaskWorkers] = set()
_live_lock = threading.Lock()


@contextmanager
def workers(dask: str | None, target: str,
            module_file: str) -> Iterator[LocalWorkers | DaskWorkers]:
    """Workers for one transform (`module:function`), ended when it is done (or
    the daemon stops)."""
    module = target.partition(":")[0]
    started = DaskWorkers(dask, module, module_file) if dask else LocalWorkers()
    with _live_lock:
        _live.add(started)
    try:
        yield started
    finally:
        with _live_lock:
            _live.discard(started)
        started.close()


def stop_all() -> None:
    """End every transform's workers now (the daemon is stopping)."""
    with _live_lock:
        running = list(_live)
    for each in running:
        each.kill()


_stderr_lock = threading.Lock()


@contextmanager
def _real_stderr() -> Iterator[None]:
    """fd 2 as the real stderr while workers are started.

    `tether serve` points fd 2 at a pipe read into logging (gRPC's native
    lines) and, stopping, waits until every holder of that pipe closed it: a
    worker, or multiprocessing's resource tracker (started with the first
    pool, alive till the daemon exits), holding it would delay each stop by
    that wait's 5 s.
    """
    try:
        real = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by something without one
        real = 2
    if real == 2:
        yield
        return
    routed = os.dup(2)
    os.dup2(real, 2)
    try:
        yield
    finally:
        os.dup2(routed, 2)
        os.close(routed)
