"""Block execution shared by the Monte Carlo samplers and estimators: seeds, blocks, threads.

Determinism and parallelism
---------------------------
Samples are produced in *blocks* whose size B depends only on the network, the number of
channels c and the method (see :func:`corrlib.montecarlo.samplers.block_size`), never on
``chunk_size`` or ``n_jobs``. Block i draws from its own generator
``default_rng(SeedSequence(entropy=root.entropy, spawn_key=root.spawn_key + (i,)))``, where
``root = root_seed_sequence(rng)``. Blocks are independent, so they run on a thread pool
(numpy releases the GIL in its random and array kernels) and the result is bit-identical for
any ``chunk_size`` (blocks per task) and any ``n_jobs``.
"""

from __future__ import annotations

import numbers
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .._util import default_jobs

__all__ = [
    "block_generator",
    "block_sizes",
    "check_n_samples",
    "n_blocks_for",
    "resolve_chunk",
    "resolve_jobs",
    "root_seed_sequence",
    "run_tasks",
]


def root_seed_sequence(rng=None) -> np.random.SeedSequence:
    """Normalize ``rng`` to the root :class:`numpy.random.SeedSequence` of a Monte Carlo run.

    Parameters
    ----------
    rng : None, int, numpy.random.Generator or numpy.random.SeedSequence
        ``None``: fresh OS entropy. ``int`` (>= 0): ``SeedSequence(rng)``. ``Generator``:
        ``SeedSequence(rng.integers(2**63, size=4))`` (advances that generator
        deterministically). A ``SeedSequence`` is returned unchanged.

    Returns
    -------
    numpy.random.SeedSequence
    """
    if rng is None:
        return np.random.SeedSequence()
    if isinstance(rng, np.random.SeedSequence):
        return rng
    if isinstance(rng, np.random.Generator):
        return np.random.SeedSequence(rng.integers(2**63, size=4))
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        if int(rng) < 0:
            raise ValueError(f"rng must be a non-negative integer seed; got {rng!r}")
        return np.random.SeedSequence(int(rng))
    raise TypeError(
        "rng must be None, a non-negative int seed, a numpy.random.Generator or a "
        f"numpy.random.SeedSequence; got {type(rng).__name__}"
    )


def block_generator(root: np.random.SeedSequence, i: int) -> np.random.Generator:
    """The generator of block ``i``: spawn key ``root.spawn_key + (i,)``."""
    seq = np.random.SeedSequence(entropy=root.entropy, spawn_key=tuple(root.spawn_key) + (int(i),))
    return np.random.default_rng(seq)


def n_blocks_for(n_samples: int, B: int) -> int:
    return -(-n_samples // B)


def block_sizes(n_samples: int, B: int, start: int, stop: int) -> list[int]:
    """Number of samples in blocks start..stop-1 (the last block may be short)."""
    return [min(B, n_samples - i * B) for i in range(start, stop)]


def resolve_jobs(n_jobs: int | None) -> int:
    if n_jobs is None:
        return default_jobs()
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral) or n_jobs < 1:
        raise ValueError(f"n_jobs must be None or an integer >= 1; got {n_jobs!r}")
    return int(n_jobs)


def resolve_chunk(chunk_size: int | None) -> int:
    if chunk_size is None:
        return 1
    if (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, numbers.Integral)
        or chunk_size < 1
    ):
        raise ValueError(f"chunk_size must be None or an integer >= 1; got {chunk_size!r}")
    return int(chunk_size)


def run_tasks(
    fn: Callable[[int, int], object],
    start: int,
    stop: int,
    chunk_size: int,
    n_jobs: int,
    on_done: Callable[[int], None] | None = None,
    consume: Callable[[object], None] | None = None,
) -> None:
    """Run ``fn(a, b)`` over consecutive block ranges of length ``chunk_size``.

    Results are passed to ``consume`` strictly in range order, as soon as they are ready; at
    most ``4 * n_jobs`` tasks are in flight, so memory stays bounded for any number of blocks.
    ``on_done(number_of_blocks)`` is called after each consumed task (progress bars).
    """
    ranges = [(a, min(a + chunk_size, stop)) for a in range(start, stop, chunk_size)]

    def finish(a: int, b: int, result: object) -> None:
        if consume is not None:
            consume(result)
        if on_done is not None:
            on_done(b - a)

    if n_jobs <= 1 or len(ranges) <= 1:
        for a, b in ranges:
            finish(a, b, fn(a, b))
        return
    window = 4 * n_jobs
    with ThreadPoolExecutor(max_workers=min(n_jobs, len(ranges))) as pool:
        pending: deque = deque()
        todo = iter(ranges)
        for a, b in todo:
            pending.append((a, b, pool.submit(fn, a, b)))
            if len(pending) >= window:
                break
        while pending:
            a, b, fut = pending.popleft()
            finish(a, b, fut.result())
            nxt = next(todo, None)
            if nxt is not None:
                pending.append((*nxt, pool.submit(fn, *nxt)))


def check_n_samples(n_samples) -> int:
    if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral):
        raise TypeError(f"n_samples must be an integer >= 1; got {n_samples!r}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be an integer >= 1; got {n_samples!r}")
    return int(n_samples)
