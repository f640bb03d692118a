"""Monte Carlo: exact-in-law samplers of the collective kernel (T3) and streaming estimators.

Modules: ``blocks`` (seeds, blocks and threads shared by every Monte Carlo routine),
``samplers`` (the collapsed and naive block samplers, :func:`sample_collective`,
:func:`sample_outputs`), ``estimators`` (k-statistics with delta-method errors,
:func:`estimate_cumulants`, :class:`MonteCarloTask`).
"""

from __future__ import annotations

from .blocks import root_seed_sequence
from .estimators import BlockStats, CumulantEstimate, MonteCarloTask, estimate_cumulants
from .samplers import sample_collective, sample_outputs

__all__ = [
    "BlockStats",
    "CumulantEstimate",
    "MonteCarloTask",
    "estimate_cumulants",
    "root_seed_sequence",
    "sample_collective",
    "sample_outputs",
]
