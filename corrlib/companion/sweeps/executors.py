"""Where the jobs of a sweep run: in this process, a local process pool, or a Dask cluster.

All three adapters offer the same four operations (``submit``, ``wait_any``, ``cancel``,
``close``) and ``n_workers``, so the driver does not know which one it uses. Since every point
carries its own seed, the choice never changes a number.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import pickle
import sys
from collections.abc import Callable, Iterable
from typing import Any

from ..._util import default_jobs

__all__ = ["BACKENDS", "DaskExecutor", "PoolExecutor", "SerialExecutor", "make_executor"]

BACKENDS = ("local", "dask", "serial")


class SerialExecutor:
    """Runs submitted jobs lazily, one per ``wait_any``, in this process."""

    n_workers = 1

    def __init__(self) -> None:
        self._jobs: dict[cf.Future, tuple] = {}

    def submit(self, func: Callable, *args: Any) -> cf.Future:
        fut: cf.Future = cf.Future()
        self._jobs[fut] = (func, args)
        return fut

    def wait_any(self, futures: Iterable[cf.Future]) -> set:
        fut = next(iter(futures))
        func, args = self._jobs.pop(fut)
        try:
            fut.set_result(func(*args))
        except Exception as exc:
            fut.set_exception(exc)
        return {fut}

    def cancel(self, futures: Iterable[cf.Future]) -> None:
        for fut in futures:
            self._jobs.pop(fut, None)

    def close(self, abort: bool = False) -> None:
        self._jobs.clear()


class PoolExecutor:
    """A :class:`concurrent.futures.ProcessPoolExecutor` on this machine."""

    def __init__(self, max_workers: int, mp_context: Any) -> None:
        self.n_workers = max_workers
        self._pool = cf.ProcessPoolExecutor(max_workers=max_workers, mp_context=mp_context)

    def submit(self, func: Callable, *args: Any) -> cf.Future:
        return self._pool.submit(func, *args)

    def wait_any(self, futures: Iterable[cf.Future]) -> set:
        return cf.wait(list(futures), return_when=cf.FIRST_COMPLETED).done

    def cancel(self, futures: Iterable[cf.Future]) -> None:
        for fut in futures:
            fut.cancel()

    def close(self, abort: bool = False) -> None:
        if abort:  # an error or Ctrl-C: do not wait for the points still running
            procs = getattr(self._pool, "_processes", None) or {}
            for proc in list(procs.values()):
                proc.terminate()
        self._pool.shutdown(wait=not abort, cancel_futures=True)


class DaskExecutor:
    """Jobs on a ``dask.distributed`` cluster through its client."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.n_workers = max(1, sum(client.nthreads().values()))

    def submit(self, func: Callable, *args: Any) -> Any:
        return self._client.submit(func, *args, pure=False)

    def wait_any(self, futures: Iterable[Any]) -> set:
        from distributed import wait

        return set(wait(list(futures), return_when="FIRST_COMPLETED").done)

    def cancel(self, futures: Iterable[Any]) -> None:
        futures = list(futures)
        if futures:
            self._client.cancel(futures)

    def close(self, abort: bool = False) -> None:
        pass


def _check_picklable(fn: Callable, mp_context: Any) -> None:
    try:
        pickle.dumps(fn)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        raise TypeError(
            f"backend='local' runs fn in worker processes, so fn must be picklable; {fn!r} is "
            f"not ({exc}). Define fn with a module-level `def` (not a lambda or a nested "
            "function), or use backend='serial'."
        ) from exc
    main = sys.modules.get("__main__")
    if (
        getattr(fn, "__module__", None) == "__main__"
        and not hasattr(main, "__file__")
        and mp_context.get_start_method() != "fork"
    ):
        raise TypeError(
            f"fn {fn!r} is defined interactively (in __main__ without a file), which worker "
            f"processes started with {mp_context.get_start_method()!r} cannot import. Move it "
            "into a module (a .py file) and import it, or use backend='serial'."
        )


def _default_client() -> Any:
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError) as exc:
        raise ValueError(
            "backend='dask' needs a dask.distributed Client: pass client=Client(...) "
            "(install with `pip install corrlib[dask]`)"
        ) from exc


def make_executor(
    backend: str, client: Any, max_workers: int | None, mp_context: str | None, fn: Callable
) -> SerialExecutor | PoolExecutor | DaskExecutor:
    """The executor of ``backend`` (``max_workers`` default: :func:`corrlib._util.default_jobs`)."""
    if backend == "serial":
        return SerialExecutor()
    if backend == "local":
        ctx = multiprocessing.get_context(mp_context)
        _check_picklable(fn, ctx)
        return PoolExecutor(max_workers or default_jobs(), ctx)
    return DaskExecutor(client if client is not None else _default_client())
