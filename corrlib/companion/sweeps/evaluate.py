"""Evaluation of one grid point, on whatever worker runs it.

``fn(point, rng)`` returns a corrlib result (anything with ``to_frame()``), a dict of scalars,
or a chunkable Monte Carlo task (``n_blocks`` and ``run_blocks``, see
:class:`corrlib.montecarlo.estimators.MonteCarloTask`). A task is run here when it fits in one
chunk; otherwise the driver splits its blocks into chunks (:func:`run_chunk`) and merges the
block statistics exactly, in block order, so the numbers equal a run in one piece (T3).
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from ...montecarlo.blocks import root_seed_sequence
from .seeding import point_seed_sequence

__all__ = [
    "block_ranges",
    "evaluate_point",
    "is_task",
    "result_frame",
    "run_chunk",
    "task_n_blocks",
]


def is_task(obj: Any) -> bool:
    """Chunkable Monte Carlo task: ``n_blocks`` and ``run_blocks``."""
    return hasattr(obj, "run_blocks") and hasattr(obj, "n_blocks")


def _frame_of_result(out: Any) -> tuple[pd.DataFrame, float]:
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


def _frame_of_dict(out: Mapping) -> pd.DataFrame:
    quantities, values = [], []
    for q, v in out.items():
        if not isinstance(q, str):
            raise TypeError(f"fn returned a dict with non-str key {q!r}; keys are quantity names")
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
            raise TypeError(f"fn returned a non-scalar value for quantity {q!r}: {v!r}")
        quantities.append(q)
        values.append(float(v))
    return pd.DataFrame(
        {
            "quantity": pd.Series(quantities, dtype=str),
            "value": np.asarray(values, dtype=np.float64),
            "se": np.full(len(values), np.nan),
        }
    )


def result_frame(out: Any) -> tuple[pd.DataFrame, float]:
    """(tidy frame, n_samples) of a corrlib result or a dict of scalars."""
    if hasattr(out, "to_frame"):
        return _frame_of_result(out)
    if isinstance(out, Mapping):
        return _frame_of_dict(out), np.nan
    raise TypeError(
        "fn must return a corrlib result (an object with to_frame()), a MonteCarloTask or a "
        f"dict of scalars; got {type(out).__name__}"
    )


def task_n_blocks(task: Any) -> int:
    """``task.n_blocks`` checked to be an int >= 1."""
    n_blocks = task.n_blocks
    if isinstance(n_blocks, bool) or not isinstance(n_blocks, numbers.Integral):
        raise TypeError(f"task.n_blocks must be an int; got {n_blocks!r}")
    if n_blocks < 1:
        raise ValueError(f"task.n_blocks must be >= 1; got {n_blocks}")
    return int(n_blocks)


def block_ranges(n_blocks: int, chunk: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(n_blocks)`` in chunks of ``chunk`` blocks."""
    return [(s, min(s + chunk, n_blocks)) for s in range(0, n_blocks, chunk)]


def _call_fn(
    fn: Callable, point: dict[str, Any], root: np.random.SeedSequence
) -> tuple[Any, np.random.Generator]:
    rng = np.random.default_rng(point_seed_sequence(root, point))
    return fn(dict(point), rng), rng


def evaluate_point(
    fn: Callable,
    point: dict[str, Any],
    root: np.random.SeedSequence,
    chunk_blocks: int | None,
    n_workers: int,
) -> tuple:
    """Worker side: run ``fn`` at one point.

    Returns ``("done", frame, n_samples, runtime)``, or ``("task", n_blocks, runtime)`` when
    fn returned a Monte Carlo task that is to be split into several chunks (a task that
    fits in one chunk is run right here). A task's root seed is ``root_seed_sequence(rng)``
    drawn after fn returns, the rule of ``estimate_cumulants(..., rng=rng)``.
    """
    t0 = time.perf_counter()
    out, rng = _call_fn(fn, point, root)
    if is_task(out):
        n_blocks = task_n_blocks(out)
        chunk = chunk_blocks or -(-n_blocks // n_workers)
        if chunk < n_blocks:
            return ("task", n_blocks, time.perf_counter() - t0)
        out = out.run_blocks(root_seed_sequence(rng), 0, n_blocks).result()
    frame, n_samples = result_frame(out)
    return ("done", frame, n_samples, time.perf_counter() - t0)


def run_chunk(
    fn: Callable, point: dict[str, Any], root: np.random.SeedSequence, start: int, stop: int
) -> tuple:
    """Worker side: blocks [start, stop) of the Monte Carlo task fn returns at ``point``.

    fn is called again here (it is cheap when it returns a task) so that only fn, the
    point and the block statistics travel between processes, never the task itself.
    """
    t0 = time.perf_counter()
    task, rng = _call_fn(fn, point, root)
    if not is_task(task):
        raise TypeError("fn returned a Monte Carlo task once and something else the next time")
    stats = task.run_blocks(root_seed_sequence(rng), start, stop)
    return stats, time.perf_counter() - t0
