"""Parameter sweeps: run a function over a grid locally or on a Dask cluster.

:func:`sweep` evaluates ``fn(point, rng)`` at every point of a grid and returns one tidy
:class:`pandas.DataFrame`. The numbers never depend on where or how the sweep ran:

* every point gets its own generator, derived from ``(seed, point)`` only, so the result of
  a point is the same for any backend, worker count, chunking and grid order, and adding
  points to a grid changes no other point's numbers;
* a point whose ``fn`` returns a :class:`corrlib.stats.MonteCarloTask` is split into block
  ranges that run as separate tasks and are merged exactly (the block decomposition of the
  Monte Carlo estimator of (T3)), bit-identical to running the task in one piece;
* with ``cache=`` each finished point is written atomically to its own file, so a rerun or
  an interrupted sweep resumes from what is done; an invalid entry is detected and
  recomputed, never read.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import hashlib
import inspect
import itertools
import json
import marshal
import math
import multiprocessing
import numbers
import os
import pickle
import struct
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..io import atomic_write_bytes

__all__ = ["SweepCacheWarning", "sweep", "point_seed_sequence", "normalize_grid"]

#: Column names that the returned frame uses for outputs; grid parameters may not use them.
RESERVED_COLUMNS = frozenset(
    {"layer", "quantity", "a", "b", "c", "d", "value", "se", "n_samples", "runtime"}
)
_BACKENDS = ("local", "dask", "serial")
_CACHE_MAGIC = b"corrlib-sweep-cache\n"
_CACHE_FORMAT = 1
_CACHE_SUFFIX = ".sweep"


class SweepCacheWarning(UserWarning):
    """A cache entry was unreadable, truncated or did not match its key; it is recomputed."""


# ----------------------------------------------------------------------------- grid


def _scalar(value: Any, name: str) -> int | float | str | bool | None:
    """Normalize one grid value to a plain Python JSON scalar or raise TypeError/ValueError."""
    if value is None or type(value) in (bool, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str):  # numpy.str_ and other subclasses
        return str(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        v = float(value)
        if math.isnan(v):
            raise ValueError(
                f"grid value for parameter {name!r} is NaN; NaN cannot identify a point"
            )
        return v
    raise TypeError(
        f"grid value for parameter {name!r} must be a hashable scalar (int, float, str, bool "
        f"or None); got {type(value).__name__} {value!r}. Encode compound values as a string "
        "or split them into separate parameters."
    )


def _check_name(name: Any, params: frozenset[str] | None) -> str:
    if not isinstance(name, str) or not name.isidentifier():
        raise TypeError(f"grid parameter names must be str identifiers; got {name!r}")
    if name in RESERVED_COLUMNS:
        raise ValueError(
            f"grid parameter name {name!r} is reserved for output columns "
            f"({', '.join(sorted(RESERVED_COLUMNS))}); rename it"
        )
    if params is not None and name not in params:
        raise ValueError(
            f"unknown grid parameter {name!r}; fn accepts: {', '.join(sorted(params)) or '(none)'}"
        )
    return name


def normalize_grid(
    grid: Mapping[str, Iterable[Any]] | Sequence[Mapping[str, Any]],
    params: Iterable[str] | None = None,
) -> tuple[list[str], list[dict[str, Any]]]:
    """Validate a grid and expand it to an ordered list of points.

    Parameters
    ----------
    grid : mapping or sequence of mappings
        Either ``{name: values}`` (cartesian product; the last name varies fastest) or an
        explicit list of points ``[{name: value, ...}, ...]`` that all have the same names.
        Names are str identifiers not in :data:`RESERVED_COLUMNS`; values are scalars
        (int, float, str, bool or None; numpy scalars are converted; NaN is rejected).
        Value lists must be non-empty ordered collections (list, tuple, range, 1-D array);
        sets are rejected because their order is not reproducible. Duplicate points are
        rejected.
    params : iterable of str, optional
        The parameter names ``fn`` accepts; any other grid name raises ``ValueError``.

    Returns
    -------
    names : list of str
        Parameter names in grid order (the leading columns of the sweep frame).
    points : list of dict
        The points, in grid order.
    """
    allowed = None if params is None else frozenset(params)
    if allowed is not None:
        bad = [p for p in allowed if not isinstance(p, str)]
        if bad:
            raise TypeError(f"params must be parameter names (str); got {bad[0]!r}")
    if isinstance(grid, Mapping):
        if not grid:
            raise ValueError("grid is empty: give at least one parameter with at least one value")
        names = [_check_name(k, allowed) for k in grid]
        axes = []
        for name in names:
            values = grid[name]
            if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
                raise TypeError(
                    f"grid[{name!r}] must be a list of values (e.g. [{values!r}]); "
                    f"got {type(values).__name__} {values!r}"
                )
            if isinstance(values, (Set, Mapping)):
                raise TypeError(
                    f"grid[{name!r}] must be an ordered collection (list, tuple, range, 1-D "
                    f"array); got {type(values).__name__}, whose order is not reproducible"
                )
            if isinstance(values, np.ndarray) and values.ndim != 1:
                raise ValueError(f"grid[{name!r}] must be 1-D; got shape {values.shape}")
            axis = [_scalar(v, name) for v in values]
            if not axis:
                raise ValueError(f"grid[{name!r}] is empty: give at least one value")
            axes.append(axis)
        points = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes)]
    elif isinstance(grid, Sequence) and not isinstance(grid, (str, bytes)):
        if len(grid) == 0:
            raise ValueError("grid is empty: give at least one point")
        names = None
        points = []
        for i, raw in enumerate(grid):
            if not isinstance(raw, Mapping):
                raise TypeError(
                    f"grid[{i}] must be a mapping of parameter name to value; "
                    f"got {type(raw).__name__}"
                )
            if not raw:
                raise ValueError(f"grid[{i}] is an empty point: give at least one parameter")
            if names is None:
                names = [_check_name(k, allowed) for k in raw]
            elif set(raw) != set(names):
                raise ValueError(
                    f"grid[{i}] has parameters {sorted(raw)}, but grid[0] has {sorted(names)}; "
                    "all points of an explicit grid must have the same parameters"
                )
            points.append({k: _scalar(raw[k], k) for k in names})
    else:
        raise TypeError(
            "grid must be a mapping {name: values} or a list of points [{name: value}, ...]; "
            f"got {type(grid).__name__}"
        )
    seen: dict[str, int] = {}
    for i, point in enumerate(points):
        key = canonical_point(point)
        if key in seen:
            raise ValueError(f"grid has duplicate point {point!r} (positions {seen[key]} and {i})")
        seen[key] = i
    return list(names), points


def canonical_point(point: Mapping[str, Any]) -> str:
    """Canonical JSON of a point: sorted keys, no spaces, floats via ``repr``.

    ``1``, ``1.0`` and ``True`` are different points.
    """
    return json.dumps(point, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def point_seed_sequence(seed: int, point: Mapping[str, Any]) -> np.random.SeedSequence:
    """The seed sequence of one grid point: depends only on ``seed`` and the point.

    ``SeedSequence(entropy=seed, spawn_key=w)`` with ``w`` the eight big-endian 32-bit words
    of the SHA-256 of :func:`canonical_point`. Neither ``fn``, the corrlib version, the
    backend, nor the other points of the grid enter.
    """
    digest = hashlib.sha256(canonical_point(point).encode("ascii")).digest()
    return np.random.SeedSequence(entropy=seed, spawn_key=struct.unpack(">8I", digest))


# ----------------------------------------------------------------------- fn identity


def _source_hash(obj: Any) -> str | None:
    for target in (obj, type(obj)):
        try:
            src = inspect.getsource(target)
        except (OSError, TypeError):
            continue
        return "src:" + hashlib.sha256(src.encode("utf-8")).hexdigest()
    code = getattr(obj, "__code__", None)
    if code is not None:
        return "code:" + hashlib.sha256(marshal.dumps(code)).hexdigest()
    return None


def fn_identity(fn: Callable, fn_version: str | None = None) -> str:
    """``module:qualname`` of ``fn`` plus a hash of its source (or ``fn_version``).

    :func:`functools.partial` objects add the ``repr`` of their bound arguments.
    """
    target, bound = fn, []
    while isinstance(target, functools.partial):
        bound.append(repr((target.args, sorted(target.keywords.items()))))
        target = target.func
    module = getattr(target, "__module__", None) or type(target).__module__
    qualname = getattr(target, "__qualname__", None) or type(target).__qualname__
    ident = f"{module}:{qualname}"
    if bound:
        ident += "|partial:" + "|".join(reversed(bound))
    if fn_version is not None:
        version = f"version:{fn_version}"
    else:
        version = _source_hash(target) or "unversioned"
    return f"{ident}|{version}"


def _cache_key(point: Mapping[str, Any], fn_id: str, seed: int) -> str:
    from ... import __version__

    material = json.dumps(
        {
            "format": _CACHE_FORMAT,
            "point": canonical_point(point),
            "fn": fn_id,
            "corrlib": __version__,
            "seed": seed,
        },
        sort_keys=True,
    )
    return hashlib.sha256(material.encode("ascii")).hexdigest()


# ---------------------------------------------------------------- point evaluation


def _is_task(obj: Any) -> bool:
    """Chunkable Monte Carlo task: ``n_blocks`` and ``run_blocks`` (see corrlib.stats)."""
    return hasattr(obj, "run_blocks") and hasattr(obj, "n_blocks")


def _root_seed_sequence(rng: np.random.Generator) -> np.random.SeedSequence:
    """Root seed sequence of a task, drawn from the point's generator after ``fn`` ran.

    Same rule as ``corrlib.stats.root_seed_sequence`` so that returning
    ``MonteCarloTask(...)`` gives exactly the numbers of ``estimate_cumulants(..., rng=rng)``.
    """
    from ...montecarlo.blocks import root_seed_sequence

    return root_seed_sequence(rng)


def _result_frame(out: Any) -> tuple[pd.DataFrame, float]:
    """(tidy frame, n_samples) of a corrlib result or a dict of scalars."""
    if hasattr(out, "to_frame"):
        frame = out.to_frame()
        if not isinstance(frame, pd.DataFrame) or "value" not in frame.columns:
            raise TypeError(
                f"{type(out).__name__}.to_frame() must return a DataFrame with a 'value' column"
            )
        frame = frame.reset_index(drop=True)
        if "se" not in frame.columns:
            frame["se"] = np.nan
        n = getattr(out, "n_samples", None)
        n_samples = float(n) if isinstance(n, numbers.Real) and not isinstance(n, bool) else np.nan
        return frame, n_samples
    if isinstance(out, Mapping):
        quantities, values = [], []
        for q, v in out.items():
            if not isinstance(q, str):
                raise TypeError(
                    f"fn returned a dict with non-str key {q!r}; keys are quantity names"
                )
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
                raise TypeError(f"fn returned a non-scalar value for quantity {q!r}: {v!r}")
            quantities.append(q)
            values.append(float(v))
        frame = pd.DataFrame(
            {
                "quantity": pd.Series(quantities, dtype=str),
                "value": np.asarray(values, dtype=np.float64),
                "se": np.full(len(values), np.nan),
            }
        )
        return frame, np.nan
    raise TypeError(
        "fn must return a corrlib result (an object with to_frame()), a MonteCarloTask or a "
        f"dict of scalars; got {type(out).__name__}"
    )


def _task_n_blocks(task: Any) -> int:
    n_blocks = task.n_blocks
    if isinstance(n_blocks, bool) or not isinstance(n_blocks, numbers.Integral):
        raise TypeError(f"task.n_blocks must be an int; got {n_blocks!r}")
    if n_blocks < 1:
        raise ValueError(f"task.n_blocks must be >= 1; got {n_blocks}")
    return int(n_blocks)


def _call_fn(fn: Callable, point: dict[str, Any], seed: int) -> tuple[Any, np.random.Generator]:
    rng = np.random.default_rng(point_seed_sequence(seed, point))
    return fn(dict(point), rng), rng


def _evaluate_point(
    fn: Callable, point: dict[str, Any], seed: int, chunk_blocks: int | None, n_workers: int
) -> tuple:
    """Worker side: run ``fn`` at one point.

    Returns ``("done", frame, n_samples, runtime)``, or ``("task", n_blocks, runtime)`` when
    fn returned a Monte Carlo task that is to be split into several chunks (a task that
    fits in one chunk is run right here).
    """
    t0 = time.perf_counter()
    out, rng = _call_fn(fn, point, seed)
    if _is_task(out):
        n_blocks = _task_n_blocks(out)
        chunk = chunk_blocks or -(-n_blocks // n_workers)
        if chunk < n_blocks:
            return ("task", n_blocks, time.perf_counter() - t0)
        out = out.run_blocks(_root_seed_sequence(rng), 0, n_blocks).result()
    frame, n_samples = _result_frame(out)
    return ("done", frame, n_samples, time.perf_counter() - t0)


def _run_chunk(fn: Callable, point: dict[str, Any], seed: int, start: int, stop: int) -> tuple:
    """Worker side: blocks [start, stop) of the Monte Carlo task fn returns at ``point``.

    fn is called again here (it is cheap when it returns a task) so that only fn, the
    point and the block statistics travel between processes, never the task itself.
    """
    t0 = time.perf_counter()
    task, rng = _call_fn(fn, point, seed)
    if not _is_task(task):
        raise TypeError("fn returned a Monte Carlo task once and something else the next time")
    stats = task.run_blocks(_root_seed_sequence(rng), start, stop)
    return stats, time.perf_counter() - t0


def _block_ranges(n_blocks: int, chunk: int) -> list[tuple[int, int]]:
    return [(s, min(s + chunk, n_blocks)) for s in range(0, n_blocks, chunk)]


# ------------------------------------------------------------------------- backends


class _SerialExecutor:
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


class _PoolExecutor:
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


class _DaskExecutor:
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


def _make_executor(backend, client, max_workers, mp_context, fn):
    if backend == "serial":
        return _SerialExecutor()
    if backend == "local":
        ctx = multiprocessing.get_context(mp_context)
        _check_picklable(fn, ctx)
        return _PoolExecutor(max_workers or os.cpu_count() or 1, ctx)
    if client is None:
        try:
            from distributed import default_client

            client = default_client()
        except (ImportError, ValueError) as exc:
            raise ValueError(
                "backend='dask' needs a dask.distributed Client: pass client=Client(...) "
                "(install with `pip install corrlib[dask]`)"
            ) from exc
    return _DaskExecutor(client)


# ---------------------------------------------------------------------------- cache


@dataclass
class _Entry:
    frame: pd.DataFrame
    n_samples: float
    runtime: float


def _cache_path(cache: Path, key: str) -> Path:
    return cache / f"{key}{_CACHE_SUFFIX}"


def _write_entry(path: Path, key: str, header_info: dict, entry: _Entry) -> None:
    payload = pickle.dumps(
        {"frame": entry.frame, "n_samples": entry.n_samples, "runtime": entry.runtime},
        protocol=4,
    )
    header = dict(header_info)
    header.update(
        format=_CACHE_FORMAT,
        key=key,
        payload_sha256=hashlib.sha256(payload).hexdigest(),
        payload_bytes=len(payload),
    )
    head = json.dumps(header, sort_keys=True).encode("utf-8")
    atomic_write_bytes(path, _CACHE_MAGIC + head + b"\n" + payload)


def _read_entry(path: Path, key: str) -> _Entry:
    """Read and verify one cache entry; raise ValueError(reason) if it is not valid."""
    data = path.read_bytes()
    if not data.startswith(_CACHE_MAGIC):
        raise ValueError("not a corrlib sweep cache entry")
    end = data.find(b"\n", len(_CACHE_MAGIC))
    if end < 0:
        raise ValueError("truncated header")
    try:
        header = json.loads(data[len(_CACHE_MAGIC) : end].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError("unreadable header") from exc
    if not isinstance(header, dict) or header.get("format") != _CACHE_FORMAT:
        raise ValueError("unknown cache format")
    if header.get("key") != key:
        raise ValueError("key does not match the file name")
    payload = data[end + 1 :]
    if len(payload) != header.get("payload_bytes"):
        raise ValueError(
            f"payload has {len(payload)} bytes, header says {header.get('payload_bytes')}"
        )
    if hashlib.sha256(payload).hexdigest() != header.get("payload_sha256"):
        raise ValueError("payload checksum mismatch")
    try:
        obj = pickle.loads(payload)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means recompute
        raise ValueError(f"payload cannot be unpickled ({exc!r})") from exc
    try:
        if not isinstance(obj["frame"], pd.DataFrame):
            raise TypeError("frame is not a DataFrame")
        return _Entry(obj["frame"], float(obj["n_samples"]), float(obj["runtime"]))
    except (TypeError, KeyError, IndexError) as exc:
        raise ValueError(f"payload is not a sweep entry ({exc})") from exc


# ---------------------------------------------------------------------------- sweep


def _check_int(value: Any, name: str, minimum: int, allow_none: bool = True) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def sweep(
    fn: Callable[[dict[str, Any], np.random.Generator], Any],
    grid: Mapping[str, Iterable[Any]] | Sequence[Mapping[str, Any]],
    *,
    seed: int,
    backend: str = "local",
    client: Any = None,
    cache: str | os.PathLike | None = None,
    progress: bool = True,
    params: Iterable[str] | None = None,
    fn_version: str | None = None,
    chunk_blocks: int | None = None,
    max_workers: int | None = None,
    mp_context: str | None = None,
) -> pd.DataFrame:
    """Evaluate ``fn`` at every point of ``grid``; return one tidy frame.

    Parameters
    ----------
    fn : callable ``fn(point, rng)``
        Receives the point as a dict ``{name: value}`` and a :class:`numpy.random.Generator`
        seeded from ``(seed, point)``. Returns a corrlib result (anything with ``to_frame()``,
        e.g. ``estimate_cumulants(..., rng=rng)`` or ``finite_width(...)``), a dict
        ``{quantity: scalar}``, or a :class:`corrlib.stats.MonteCarloTask` (then the sweep
        runs its blocks in chunks, see ``chunk_blocks``; fn is called again for every chunk,
        so it should only build the task, and with equal results). A task's root seed is
        ``root_seed_sequence(rng)`` after fn returns, so returning ``MonteCarloTask(net, X,
        n)`` gives exactly ``estimate_cumulants(net, X, n, rng=rng)`` (T3). For
        ``backend="local"`` fn must be picklable: a module-level ``def``.
    grid : mapping or list of mappings
        ``{name: values}`` (cartesian product, the last name varies fastest) or an explicit
        list of points. Names: str identifiers, not an output column name. Values: int,
        float, str, bool or None. See :func:`normalize_grid` for all the rules.
    seed : int
        Root seed, >= 0. Point ``p`` uses ``point_seed_sequence(seed, p)``.
    backend : {"local", "dask", "serial"}
        ``"local"``: a process pool on this machine (``max_workers``, default all cores).
        ``"dask"``: tasks on a ``dask.distributed`` cluster through ``client``.
        ``"serial"``: in this process, one point after the other (debugging; any callable).
        All give bit-identical frames (up to ``runtime``).
    client : distributed.Client, optional
        The client of any Dask cluster (LocalCluster, SSH, Kubernetes, HPC). Default: the
        current default client. Only with ``backend="dask"``.
    cache : path, optional
        Directory of finished points, one file ``<key>.sweep`` per point, written
        atomically. The key hashes the point, ``seed``, fn's identity (``module:qualname``
        and a hash of its source, or ``fn_version``) and ``corrlib.__version__``. Points found
        there are not recomputed; invalid entries trigger a :class:`SweepCacheWarning` and are
        recomputed. Entries are pickles: only use cache directories you trust.
    progress : bool
        Show a tqdm progress bar over points.
    params : iterable of str, optional
        Names fn accepts; any other grid name is an error (catches typos).
    fn_version : str, optional
        Replaces the source hash in fn's identity. Bump it when code fn calls changes (the
        source hash only sees fn's own source).
    chunk_blocks : int, optional
        Blocks per chunk for points that return a Monte Carlo task. Default: split each task
        into as many chunks as there are workers. Does not change any number.
    max_workers : int, optional
        Processes of the local pool; default ``os.cpu_count()``.
    mp_context : str, optional
        Start method of the local pool ("fork", "spawn", "forkserver"); default: the
        platform's. Scripts using spawn/forkserver need the ``if __name__ == "__main__":``
        guard.

    Returns
    -------
    pandas.DataFrame
        One row per point and output quantity, in grid order and then the result's row order.
        Columns: the grid parameters, then the result's columns (for corrlib results
        ``layer, quantity, a, b, c, d, value, se``; for dicts ``quantity, value, se`` with
        ``se`` NaN), then ``n_samples`` (float; NaN if the result has none) and ``runtime``
        (compute seconds of the point summed over its tasks, as first computed).
        ``frame.attrs`` records ``seed``, ``fn``, ``corrlib_version``, ``cache``, ``computed``
        and ``from_cache`` (numbers of points).

    Raises
    ------
    ValueError, TypeError
        Bad grid, seed, backend or options (before anything runs).
    Exception
        Whatever fn raises, with a note naming the point. Points finished before are cached.
    """
    from ... import __version__

    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0; got {seed!r}")
    seed = int(seed)
    if backend not in _BACKENDS:
        raise ValueError(
            f"backend must be one of {', '.join(map(repr, _BACKENDS))}; got {backend!r}"
        )
    if client is not None and backend != "dask":
        raise ValueError(f"client= is only used with backend='dask'; got backend={backend!r}")
    for name, value in (("max_workers", max_workers), ("mp_context", mp_context)):
        if value is not None and backend != "local":
            raise ValueError(f"{name}= is only used with backend='local'; got backend={backend!r}")
    if not callable(fn):
        raise TypeError(f"fn must be callable fn(point, rng); got {type(fn).__name__}")
    chunk_blocks = _check_int(chunk_blocks, "chunk_blocks", 1)
    max_workers = _check_int(max_workers, "max_workers", 1)
    if fn_version is not None and not isinstance(fn_version, str):
        raise TypeError(f"fn_version must be a str; got {type(fn_version).__name__}")

    names, points = normalize_grid(grid, params)
    fn_id = fn_identity(fn, fn_version)
    keys = [_cache_key(p, fn_id, seed) for p in points]

    cache_dir = None
    if cache is not None:
        cache_dir = Path(cache)
        if cache_dir.exists() and not cache_dir.is_dir():
            raise ValueError(f"cache must be a directory; {str(cache_dir)!r} is a file")
        cache_dir.mkdir(parents=True, exist_ok=True)

    entries: list[_Entry | None] = [None] * len(points)
    if cache_dir is not None:
        for i, key in enumerate(keys):
            path = _cache_path(cache_dir, key)
            if not path.exists():
                continue
            try:
                entries[i] = _read_entry(path, key)
            except (OSError, ValueError) as exc:
                warnings.warn(
                    f"sweep cache entry {path} for point {points[i]!r} is invalid ({exc}); "
                    "recomputing it",
                    SweepCacheWarning,
                    stacklevel=2,
                )
    missing = [i for i, e in enumerate(entries) if e is None]
    n_cached = len(points) - len(missing)

    if missing:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(points), initial=n_cached, desc="sweep", unit="point", disable=not progress
        )
        executor = _make_executor(backend, client, max_workers, mp_context, fn)
        aborted = True
        try:
            _run(
                executor,
                fn,
                points,
                missing,
                seed,
                chunk_blocks,
                entries,
                on_done=functools.partial(
                    _finish_point, entries, points, keys, cache_dir, fn_id, seed, bar
                ),
            )
            aborted = False
        finally:
            executor.close(abort=aborted)
            bar.close()

    frame = _assemble(names, points, entries)
    frame.attrs.update(
        seed=seed,
        fn=fn_id,
        corrlib_version=__version__,
        cache=None if cache_dir is None else str(cache_dir),
        computed=len(missing),
        from_cache=n_cached,
    )
    return frame


def _finish_point(entries, points, keys, cache_dir, fn_id, seed, bar, i, entry) -> None:
    from ... import __version__

    entries[i] = entry
    if cache_dir is not None:
        info = {"point": points[i], "fn": fn_id, "corrlib_version": __version__, "seed": seed}
        _write_entry(_cache_path(cache_dir, keys[i]), keys[i], info, entry)
    bar.update(1)


def _run(executor, fn, points, missing, seed, chunk_blocks, entries, on_done) -> None:
    """Drive the jobs: evaluate points, expand Monte Carlo tasks into chunks, merge."""
    pending: dict[Any, tuple] = {}
    tasks: dict[int, dict] = {}
    for i in missing:
        job = executor.submit(
            _evaluate_point, fn, points[i], seed, chunk_blocks, executor.n_workers
        )
        pending[job] = ("eval", i, None)
    try:
        while pending:
            for fut in executor.wait_any(pending):
                kind, i, j = pending.pop(fut)
                try:
                    out = fut.result()
                except BaseException as exc:
                    if hasattr(exc, "add_note"):
                        exc.add_note(f"(raised by the sweep's fn at grid point {points[i]!r})")
                    raise
                if kind == "eval" and out[0] == "done":
                    _, frame, n_samples, runtime = out
                    on_done(i, _Entry(frame, n_samples, runtime))
                elif kind == "eval":
                    _, n_blocks, runtime = out
                    chunk = chunk_blocks or -(-n_blocks // executor.n_workers)
                    ranges = _block_ranges(n_blocks, chunk)
                    tasks[i] = {"parts": [None] * len(ranges), "runtime": runtime}
                    for k, (start, stop) in enumerate(ranges):
                        job = executor.submit(_run_chunk, fn, points[i], seed, start, stop)
                        pending[job] = ("chunk", i, k)
                else:
                    state = tasks[i]
                    stats, runtime = out
                    state["parts"][j] = stats
                    state["runtime"] += runtime
                    if all(p is not None for p in state["parts"]):
                        t0 = time.perf_counter()
                        merged = functools.reduce(lambda x, y: x.merge(y), state["parts"])
                        frame, n_samples = _result_frame(merged.result())
                        runtime = state["runtime"] + time.perf_counter() - t0
                        del tasks[i]
                        on_done(i, _Entry(frame, n_samples, runtime))
    except BaseException:
        executor.cancel(list(pending))
        raise


def _assemble(names: list[str], points: list[dict], entries: list[_Entry]) -> pd.DataFrame:
    frames = [e.frame for e in entries]
    counts = [len(f) for f in frames]
    for f in frames:
        clash = set(f.columns) & (set(names) | {"n_samples", "runtime"})
        if clash:
            raise ValueError(
                f"fn's result has column(s) {sorted(clash)} that clash with grid parameters or "
                "sweep columns; rename the grid parameter"
            )
    body = pd.concat(frames, ignore_index=True, sort=False) if frames else pd.DataFrame()
    front = {
        name: pd.Series(
            [p[name] for p, n in zip(points, counts, strict=True) for _ in range(n)],
            dtype=_column_dtype([p[name] for p in points]),
        )
        for name in names
    }
    tail = {
        "n_samples": np.repeat([e.n_samples for e in entries], counts).astype(np.float64),
        "runtime": np.repeat([e.runtime for e in entries], counts).astype(np.float64),
    }
    out = pd.concat([pd.DataFrame(front), body.reset_index(drop=True), pd.DataFrame(tail)], axis=1)
    return out


def _column_dtype(values: list[Any]) -> Any:
    """int64 / float64 / bool for homogeneous numeric columns, object otherwise."""
    types = {type(v) for v in values}
    if types == {int}:
        return np.int64 if all(-(2**63) <= v < 2**63 for v in values) else object
    if types <= {int, float} and float in types:
        return np.float64
    if types == {bool}:
        return bool
    if types == {str}:
        return str
    return object
