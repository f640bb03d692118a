"""Monte Carlo: exact-in-law samplers of the collective kernel (T3) and streaming estimators.

Modules: ``blocks`` (seeds, blocks, threads and the cost guard shared by every Monte Carlo
routine), ``samplers`` (the collapsed and naive block samplers, :func:`sample_collective`,
:func:`sample_outputs`), ``estimators`` (k-statistics with delta-method errors and a heavy-tail
diagnostic, :func:`estimate_cumulants`, :class:`MonteCarloTask`), ``tails`` (the heavy-tail
diagnostic: streamed top values, generalized-Pareto tail shapes, :class:`HeavyTailWarning`).
"""

from __future__ import annotations

from .blocks import root_seed_sequence
from .estimators import (
    BlockStats,
    CumulantEstimate,
    HeavyTailWarning,
    MonteCarloTask,
    estimate_cumulants,
)
from .samplers import sample_collective, sample_outputs
from .tails import tail_shape

# Deliberate parallel: estimators.py's __all__ lists most of these names too (each module
# declares its public names; this list is the package's own API, pinned by tests/test_api.py).
__all__ = [
    "BlockStats",
    "CumulantEstimate",
    "HeavyTailWarning",
    "MonteCarloTask",
    "estimate_cumulants",
    "root_seed_sequence",
    "sample_collective",
    "sample_outputs",
    "tail_shape",
]
