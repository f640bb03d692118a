"""Parameter sweeps locally or on a Dask cluster (see :func:`sweep` and docs/sweeps.md).

One concept per module: ``grid`` (validation, expansion, canonical points), ``seeding`` (the
run's seed and one generator per point), ``identity`` (which code computed a point),
``evaluate`` (one point, or one chunk of a Monte Carlo task, on a worker), ``executors``
(serial, local process pool, Dask), ``cache`` (the file format and its key), ``table`` (the
result frame) and ``driver`` (:func:`sweep`, which ties them together).
"""

from __future__ import annotations

from .cache import SweepCacheWarning
from .driver import sweep
from .grid import RESERVED_COLUMNS, normalize_grid
from .seeding import point_seed_sequence

__all__ = [
    "RESERVED_COLUMNS",
    "SweepCacheWarning",
    "normalize_grid",
    "point_seed_sequence",
    "sweep",
]
