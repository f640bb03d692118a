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

Resources
---------
Nothing of size ``n_samples`` is built here: block ranges are generated lazily and at most
``4 * n_jobs`` tasks are in flight. What remains unbounded is run time, so single-machine entry
points check the number of Gaussian draws against :data:`MAX_DRAWS` before starting
(:func:`check_cost`).
"""

from __future__ import annotations

import numbers
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .._util import check_int, default_jobs

__all__ = [
    "DRAWS_PER_SECOND",
    "MAX_DRAWS",
    "block_generator",
    "block_ranges",
    "block_sizes",
    "check_cost",
    "check_n_samples",
    "n_blocks_for",
    "resolve_chunk",
    "resolve_jobs",
    "root_seed_sequence",
    "run_tasks",
]

#: Gaussian variates one call of a single-machine entry point may draw: about 1.4 days of one
#: core at :data:`DRAWS_PER_SECOND`. Larger runs are split into block ranges
#: (:meth:`corrlib.MonteCarloTask.run_blocks`, e.g. by :func:`corrlib.sweep` on a cluster).
MAX_DRAWS = 10**13

#: Order of magnitude of numpy's Gaussian generator on one core (about 11 ns per variate,
#: ``benchmarks/bench_samplers.py``); used only to state a run time in error messages.
DRAWS_PER_SECOND = 1e8


def root_seed_sequence(rng: Any = None) -> np.random.SeedSequence:
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

    Raises
    ------
    TypeError
        For any other type. ``ValueError`` for a negative seed.

    Examples
    --------
    >>> from corrlib.montecarlo import root_seed_sequence
    >>> root_seed_sequence(5).entropy
    5
    """
    if rng is None:
        return np.random.SeedSequence()
    if isinstance(rng, np.random.SeedSequence):
        return rng
    if isinstance(rng, np.random.Generator):
        return np.random.SeedSequence(rng.integers(2**63, size=4))
    if isinstance(rng, numbers.Integral) and not isinstance(rng, (bool, np.bool_)):
        if int(rng) < 0:
            raise ValueError(f"rng must be a non-negative integer seed; got {rng!r}")
        return np.random.SeedSequence(int(rng))
    raise TypeError(
        "rng must be None, a non-negative int seed, a numpy.random.Generator or a "
        f"numpy.random.SeedSequence; got {rng!r} ({type(rng).__name__})"
    )


def block_generator(root: np.random.SeedSequence, i: int) -> np.random.Generator:
    """The generator of block ``i``: spawn key ``root.spawn_key + (i,)``.

    Examples
    --------
    >>> from corrlib.montecarlo.blocks import block_generator, root_seed_sequence
    >>> a = block_generator(root_seed_sequence(1), 3).standard_normal()
    >>> a == block_generator(root_seed_sequence(1), 3).standard_normal()
    True
    """
    seq = np.random.SeedSequence(entropy=root.entropy, spawn_key=tuple(root.spawn_key) + (int(i),))
    return np.random.default_rng(seq)


def n_blocks_for(n_samples: int, B: int) -> int:
    """Number of blocks of size ``B`` holding ``n_samples`` samples (the last may be short).

    Examples
    --------
    >>> from corrlib.montecarlo.blocks import n_blocks_for
    >>> n_blocks_for(10, 4)
    3
    """
    return -(-n_samples // B)


def block_sizes(n_samples: int, B: int, start: int, stop: int) -> list[int]:
    """Number of samples in blocks start..stop-1 (the last block may be short).

    Examples
    --------
    >>> from corrlib.montecarlo.blocks import block_sizes
    >>> block_sizes(10, 4, 1, 3)
    [4, 2]
    """
    return [min(B, n_samples - i * B) for i in range(start, stop)]


def block_ranges(start: int, stop: int, chunk_size: int) -> Iterator[tuple[int, int]]:
    """Consecutive ranges ``(a, min(a + chunk_size, stop))`` covering [start, stop), lazily.

    Examples
    --------
    >>> from corrlib.montecarlo.blocks import block_ranges
    >>> list(block_ranges(2, 9, 3))
    [(2, 5), (5, 8), (8, 9)]
    >>> next(block_ranges(0, 10**12, 1))  # nothing of size 10**12 is built
    (0, 1)
    """
    for a in range(start, stop, chunk_size):
        yield a, min(a + chunk_size, stop)


# Deliberate parallel: the Examples below have the shape of check_n_samples's (a good value,
# then the error of a bad one); each public function shows its own doctest.
def resolve_jobs(n_jobs: int | None) -> int:
    """Threads: ``n_jobs``, or :func:`corrlib._util.default_jobs` when None.

    Examples
    --------
    >>> from corrlib.montecarlo.blocks import resolve_jobs
    >>> resolve_jobs(3)
    3
    >>> resolve_jobs(0)
    Traceback (most recent call last):
    ...
    ValueError: n_jobs must be an integer >= 1; got 0
    """
    if n_jobs is None:
        return default_jobs()
    return check_int(n_jobs, "n_jobs", minimum=1)


def resolve_chunk(chunk_size: int | None) -> int:
    """Blocks per thread task: ``chunk_size``, or 1 when None.

    Examples
    --------
    >>> from corrlib.montecarlo.blocks import resolve_chunk
    >>> resolve_chunk(None), resolve_chunk(8)
    (1, 8)
    """
    if chunk_size is None:
        return 1
    return check_int(chunk_size, "chunk_size", minimum=1)


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
    most ``4 * n_jobs`` tasks are in flight and the ranges are generated lazily, so memory stays
    bounded for any number of blocks. ``on_done(number_of_blocks)`` is called after each
    consumed task (progress bars).

    Examples
    --------
    >>> from corrlib.montecarlo.blocks import run_tasks
    >>> seen = []
    >>> run_tasks(lambda a, b: (a, b), 0, 7, 3, 2, consume=seen.append)
    >>> seen
    [(0, 3), (3, 6), (6, 7)]
    """
    ranges = block_ranges(start, stop, chunk_size)
    n_ranges = -(-(stop - start) // chunk_size) if stop > start else 0

    def finish(a: int, b: int, result: object) -> None:
        if consume is not None:
            consume(result)
        if on_done is not None:
            on_done(b - a)

    if n_jobs <= 1 or n_ranges <= 1:
        for a, b in ranges:
            finish(a, b, fn(a, b))
        return
    window = 4 * n_jobs
    with ThreadPoolExecutor(max_workers=min(n_jobs, n_ranges)) as pool:
        pending: deque = deque()
        for a, b in ranges:
            pending.append((a, b, pool.submit(fn, a, b)))
            if len(pending) >= window:
                break
        while pending:
            a, b, fut = pending.popleft()
            finish(a, b, fut.result())
            nxt = next(ranges, None)
            if nxt is not None:
                pending.append((*nxt, pool.submit(fn, *nxt)))


# Deliberate parallel: the Examples below have the shape of resolve_jobs's (a good value, then
# the error of a bad one); each public function shows its own doctest.
def check_n_samples(n_samples: Any, minimum: int = 1) -> int:
    """``n_samples`` as an int >= ``minimum`` (TypeError for a non-integer, never rounded).

    Examples
    --------
    >>> from corrlib.montecarlo.blocks import check_n_samples
    >>> check_n_samples(10)
    10
    >>> check_n_samples(2.5)
    Traceback (most recent call last):
    ...
    TypeError: n_samples must be an integer >= 1; got 2.5 (float)
    """
    return check_int(n_samples, "n_samples", minimum=minimum)


def check_cost(n_samples: int, draws_per_sample: int, func: str, n_jobs: int) -> None:
    """Refuse a run that would draw more than :data:`MAX_DRAWS` Gaussian variates.

    Raises
    ------
    ValueError
        Naming ``n_samples``, the number of draws, a run-time estimate and the cap.

    Examples
    --------
    >>> from corrlib.montecarlo.blocks import check_cost
    >>> check_cost(10**6, 1000, "estimate_cumulants", 2)  # 1e9 draws: fine
    >>> check_cost(10**13, 64, "estimate_cumulants", 2)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: n_samples must be at most 156250000000 for this network ...
    """
    draws = n_samples * draws_per_sample
    if draws <= MAX_DRAWS:
        return
    hours = draws / (DRAWS_PER_SECOND * max(1, n_jobs)) / 3600.0
    raise ValueError(
        f"n_samples must be at most {MAX_DRAWS // draws_per_sample} for this network in one "
        f"{func}() call; got {n_samples}: that is {draws:.3g} Gaussian draws "
        f"({draws_per_sample} per network), about {hours:.3g} hours on {n_jobs} thread(s) at "
        f"~{DRAWS_PER_SECOND:.0e} draws/s per thread, above the cap "
        f"corrlib.montecarlo.blocks.MAX_DRAWS = {MAX_DRAWS:.0e}. Use fewer samples, or split "
        "the run into block ranges with MonteCarloTask(...).run_blocks(root, start, stop) "
        "(corrlib.sweep does this across workers) and merge them with BlockStats.merge."
    )
