"""Parameter sweeps: run a function over a grid locally or on a Dask cluster.

:func:`sweep` evaluates ``fn(point, rng)`` at every point of a grid and returns one tidy
:class:`pandas.DataFrame`. The numbers never depend on where or how the sweep ran:

* every point gets its own generator, derived from ``(rng, point)`` only
  (:mod:`~corrlib.companion.sweeps.seeding`), so the result of a point is the same for any
  backend, worker count, chunking and grid order, and adding points to a grid changes no other
  point's numbers;
* a point whose ``fn`` returns a :class:`corrlib.MonteCarloTask` is split into block ranges that
  run as separate tasks and are merged exactly (:mod:`~corrlib.companion.sweeps.evaluate`, the
  block decomposition of the Monte Carlo estimator of (T3)), bit-identical to running the task
  in one piece;
* with ``cache=`` each finished point is written atomically to its own file
  (:mod:`~corrlib.companion.sweeps.cache`), so a rerun or an interrupted sweep resumes from what
  is done; an invalid entry is detected and recomputed, never read.

The other modules of this package: ``grid`` (validation and expansion), ``identity`` (which
code computed a point), ``executors`` (serial, local pool, Dask), ``table`` (the result frame).
"""

from __future__ import annotations

import functools
import os
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..._util import check_choice, check_int, check_kwargs, source_hash, warn_deprecated
from .cache import Entry, SweepCacheWarning, cache_key, cache_path, read_entry, write_entry
from .evaluate import block_ranges, evaluate_point, result_frame, run_chunk
from .executors import BACKENDS, make_executor
from .grid import normalize_grid
from .identity import fn_identity
from .seeding import rng_identity, run_seed_sequence
from .table import assemble

__all__ = ["sweep"]

_OPTIONS = (
    "rng",
    "backend",
    "client",
    "cache",
    "progress",
    "params",
    "fn_version",
    "chunk_blocks",
    "max_workers",
    "mp_context",
)


def _resolve_rng(rng: Any, old: dict[str, Any]) -> np.random.SeedSequence:
    """``rng``, or the deprecated ``seed=`` (one release), as the run's root seed sequence."""
    check_kwargs({k: v for k, v in old.items() if k != "seed"}, _OPTIONS, "sweep")
    if "seed" in old:
        if rng is not None:
            raise TypeError("sweep() got both rng= and its deprecated alias seed=; pass rng= only")
        warn_deprecated("sweep(seed=...)", "sweep(rng=...)", stacklevel=4)
        rng = old["seed"]
    if rng is None:
        raise TypeError(
            "sweep() needs rng= (an int >= 0 or a numpy.random.SeedSequence) that identifies "
            "the run: every point's generator, and the cache key, derive from it"
        )
    return run_seed_sequence(rng)


def _check_options(fn, backend, client, max_workers, mp_context, fn_version) -> None:
    check_choice(backend, "backend", BACKENDS)
    if client is not None and backend != "dask":
        raise ValueError(f"client= is only used with backend='dask'; got backend={backend!r}")
    for name, value in (("max_workers", max_workers), ("mp_context", mp_context)):
        if value is not None and backend != "local":
            raise ValueError(f"{name}= is only used with backend='local'; got backend={backend!r}")
    if not callable(fn):
        raise TypeError(f"fn must be callable fn(point, rng); got {type(fn).__name__}")
    if fn_version is not None and not isinstance(fn_version, str):
        raise TypeError(f"fn_version must be a str; got {type(fn_version).__name__}")


def _cache_dir(cache: str | os.PathLike | None) -> Path | None:
    if cache is None:
        return None
    cache_dir = Path(cache)
    if cache_dir.exists() and not cache_dir.is_dir():
        raise ValueError(f"cache must be a directory; {str(cache_dir)!r} is a file")
    cache_dir.mkdir(parents=True, exist_ok=True)
    return cache_dir


def _read_cache(cache_dir: Path | None, keys: list[str], points: list[dict]) -> list:
    entries: list[Entry | None] = [None] * len(points)
    if cache_dir is None:
        return entries
    for i, key in enumerate(keys):
        path = cache_path(cache_dir, key)
        if not path.exists():
            continue
        try:
            entries[i] = read_entry(path, key)
        except (OSError, ValueError) as exc:
            warnings.warn(
                f"sweep cache entry {path} for point {points[i]!r} is invalid ({exc}); "
                "recomputing it",
                SweepCacheWarning,
                stacklevel=3,
            )
    return entries


def sweep(
    fn: Callable[[dict[str, Any], np.random.Generator], Any],
    grid: Mapping[str, Iterable[Any]] | Sequence[Mapping[str, Any]],
    *,
    rng: int | np.random.SeedSequence | None = None,
    backend: str = "local",
    client: Any = None,
    cache: str | os.PathLike | None = None,
    progress: bool = True,
    params: Iterable[str] | None = None,
    fn_version: str | None = None,
    chunk_blocks: int | None = None,
    max_workers: int | None = None,
    mp_context: str | None = None,
    **deprecated: Any,
) -> pd.DataFrame:
    """Evaluate ``fn`` at every point of ``grid``; return one tidy frame.

    Parameters
    ----------
    fn : callable ``fn(point, rng)``
        Receives the point as a dict ``{name: value}`` and a :class:`numpy.random.Generator`
        seeded from ``(rng, point)``. Returns a corrlib result (anything with ``to_frame()``,
        e.g. ``estimate_cumulants(..., rng=rng)`` or ``finite_width(...)``), a dict
        ``{quantity: scalar}``, or a :class:`corrlib.MonteCarloTask` (then the sweep runs its
        blocks in chunks, see ``chunk_blocks``; fn is called again for every chunk, so it
        should only build the task, and with equal results). A task's root seed is
        ``root_seed_sequence(rng)`` after fn returns, so returning ``MonteCarloTask(net, X,
        n)`` gives exactly ``estimate_cumulants(net, X, n, rng=rng)`` (T3). For
        ``backend="local"`` fn must be picklable: a module-level ``def``.
    grid : mapping or list of mappings
        ``{name: values}`` (cartesian product, the last name varies fastest) or an explicit
        list of points. Names: str identifiers, not an output column name. Values: int,
        float, str, bool or None. See :func:`normalize_grid` for all the rules.
    rng : int or numpy.random.SeedSequence
        Identifies the run: point ``p`` uses ``point_seed_sequence(rng, p)``. An int ``k`` is
        ``SeedSequence(k)``. (``seed=`` is the deprecated name of this argument, accepted for
        one release with a DeprecationWarning.) A Generator or None is refused, since it could
        not reproduce the numbers or find them in the cache.
    backend : {"local", "dask", "serial"}
        ``"local"``: a process pool on this machine (``max_workers``).
        ``"dask"``: tasks on a ``dask.distributed`` cluster through ``client``.
        ``"serial"``: in this process, one point after the other (debugging; any callable).
        All give bit-identical frames (up to ``runtime``).
    client : distributed.Client, optional
        The client of any Dask cluster (LocalCluster, SSH, Kubernetes, HPC). Default: the
        current default client. Only with ``backend="dask"``.
    cache : path, optional
        Directory of finished points, one file ``<key>.sweep`` per point, written
        atomically. The key hashes the point, ``rng``, fn's identity (``module:qualname``
        and a hash of its source, or ``fn_version``) and the corrlib source
        (:func:`corrlib._util.source_hash`: any change to corrlib starts a fresh cache).
        Points found there are not recomputed; invalid entries trigger a
        :class:`SweepCacheWarning` and are recomputed. Entries are pickles: only use cache
        directories you trust.
    progress : bool
        Show a tqdm progress bar over points.
    params : iterable of str, optional
        Names fn accepts; any other grid name is an error (catches typos).
    fn_version : str, optional
        Replaces the source hash in fn's identity. Bump it when code outside corrlib that fn
        calls changes (the source hash only sees fn's own source).
    chunk_blocks : int, optional
        Blocks per chunk for points that return a Monte Carlo task. Default: split each task
        into as many chunks as there are workers. Does not change any number.
    max_workers : int, optional
        Processes of the local pool; default :func:`corrlib._util.default_jobs`.
    mp_context : str, optional
        Start method of the local pool ("fork", "spawn", "forkserver"); default: the
        platform's. Scripts using spawn/forkserver need the ``if __name__ == "__main__":``
        guard.

    Returns
    -------
    pandas.DataFrame
        One row per point and output quantity, in grid order and then the result's row order.
        Columns: the grid parameters, then the result's columns (for corrlib results
        ``layer, quantity, a, b, c, d, e, f, value, se``; for dicts ``quantity, value, se`` with
        ``se`` NaN), then ``n_samples`` (float; NaN if the result has none) and ``runtime``
        (compute seconds of the point summed over its tasks, as first computed).
        ``frame.attrs`` records ``rng`` (entropy, spawn key, pool size), ``fn``,
        ``corrlib_version``, ``corrlib_source``, ``cache``, ``computed`` and ``from_cache``
        (numbers of points).

    Raises
    ------
    ValueError, TypeError
        Bad grid, rng, backend or options (before anything runs).
    Exception
        Whatever fn raises, with a note naming the point. Points finished before are cached.

    Examples
    --------
    >>> def point(p, rng):
    ...     return {"mean": p["n"] * rng.standard_normal(100).mean()}
    >>> df = sweep(point, {"n": [1, 2]}, rng=7, backend="serial", progress=False)
    >>> df[["n", "quantity"]].values.tolist()
    [[1, 'mean'], [2, 'mean']]
    """
    from ... import __version__

    root = _resolve_rng(rng, deprecated)
    _check_options(fn, backend, client, max_workers, mp_context, fn_version)
    chunk_blocks = (
        None if chunk_blocks is None else check_int(chunk_blocks, "chunk_blocks", minimum=1)
    )
    max_workers = None if max_workers is None else check_int(max_workers, "max_workers", minimum=1)

    names, points = normalize_grid(grid, params)
    fn_id = fn_identity(fn, fn_version)
    rng_id = rng_identity(root)
    source = source_hash()
    keys = [cache_key(p, fn_id, rng_id, source) for p in points]
    cache_dir = _cache_dir(cache)
    entries = _read_cache(cache_dir, keys, points)
    missing = [i for i, e in enumerate(entries) if e is None]
    n_cached = len(points) - len(missing)
    if missing:
        info = {
            "fn": fn_id,
            "rng": rng_id,
            "corrlib_version": __version__,
            "corrlib_source": source,
        }
        recorder = functools.partial(_finish_point, entries, points, keys, cache_dir, info)
        executor = make_executor(backend, client, max_workers, mp_context, fn)
        _compute(executor, fn, points, missing, root, chunk_blocks, recorder, progress, n_cached)

    frame = assemble(names, points, entries)
    frame.attrs.update(
        rng=rng_id,
        fn=fn_id,
        corrlib_version=__version__,
        corrlib_source=source,
        cache=None if cache_dir is None else str(cache_dir),
        computed=len(missing),
        from_cache=n_cached,
    )
    return frame


def _compute(executor, fn, points, missing, root, chunk_blocks, record, progress, n_cached):
    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(points), initial=n_cached, desc="sweep", unit="point", disable=not progress
    )

    def on_done(i: int, entry: Entry) -> None:
        record(i, entry)
        bar.update(1)

    aborted = True
    try:
        _run(executor, fn, points, missing, root, chunk_blocks, on_done)
        aborted = False
    finally:
        executor.close(abort=aborted)
        bar.close()


def _finish_point(entries, points, keys, cache_dir, info, i, entry) -> None:
    entries[i] = entry
    if cache_dir is not None:
        header = {"point": points[i], **info}
        write_entry(cache_path(cache_dir, keys[i]), keys[i], header, entry)


class _Merger:
    """Block statistics of one chunked point, merged in block order when all have arrived."""

    def __init__(self, n_parts: int, runtime: float) -> None:
        self.parts: list[Any] = [None] * n_parts
        self.runtime = runtime

    def add(self, j: int, stats: Any, runtime: float) -> Entry | None:
        self.parts[j] = stats
        self.runtime += runtime
        if any(p is None for p in self.parts):
            return None
        t0 = time.perf_counter()
        merged = functools.reduce(lambda x, y: x.merge(y), self.parts)
        frame, n_samples = result_frame(merged.result())
        return Entry(frame, n_samples, self.runtime + time.perf_counter() - t0)


def _run(executor, fn, points, missing, root, chunk_blocks, on_done) -> None:
    """Drive the jobs: evaluate points, expand Monte Carlo tasks into chunks, merge."""
    pending: dict[Any, tuple] = {}
    mergers: dict[int, _Merger] = {}
    n_workers = executor.n_workers
    for i in missing:
        job = executor.submit(evaluate_point, fn, points[i], root, chunk_blocks, n_workers)
        pending[job] = ("eval", i, None)
    try:
        while pending:
            for fut in executor.wait_any(pending):
                kind, i, j = pending.pop(fut)
                out = _result(fut, points[i])
                if kind == "chunk":
                    entry = mergers[i].add(j, *out)
                    if entry is not None:
                        del mergers[i]
                        on_done(i, entry)
                elif out[0] == "done":
                    on_done(i, Entry(*out[1:]))
                else:  # a Monte Carlo task to split into chunks
                    _, n_blocks, runtime = out
                    ranges = block_ranges(n_blocks, chunk_blocks or -(-n_blocks // n_workers))
                    mergers[i] = _Merger(len(ranges), runtime)
                    for k, (start, stop) in enumerate(ranges):
                        job = executor.submit(run_chunk, fn, points[i], root, start, stop)
                        pending[job] = ("chunk", i, k)
    except BaseException:
        executor.cancel(list(pending))
        raise


def _result(fut: Any, point: dict) -> Any:
    try:
        return fut.result()
    except BaseException as exc:
        if hasattr(exc, "add_note"):
            exc.add_note(f"(raised by the sweep's fn at grid point {point!r})")
        raise
