"""The model and its Gaussian integrals (docs/theory.md sections 1-3).

Modules: ``activations`` (sigma with its derivatives and analytic data), ``network`` (the random
network (T1)), ``criticality`` (susceptibilities (T8) and critical initializations),
``gaussian`` (quadrature for <F>_K in dimension <= 4), ``channels`` (channel bookkeeping, the
input kernel (T2) and expectations of channel features).
"""

from __future__ import annotations

from .activations import (
    Activation,
    available_activations,
    get_activation,
    leaky_relu,
    scale_invariant,
)
from .channels import ChannelLayout, input_kernel
from .criticality import CriticalPoint, chi_parallel, chi_perp, critical_point
from .gaussian import gaussian_expectation
from .network import Network, input_with_kernel

__all__ = [
    "Activation",
    "ChannelLayout",
    "CriticalPoint",
    "Network",
    "available_activations",
    "chi_parallel",
    "chi_perp",
    "critical_point",
    "gaussian_expectation",
    "get_activation",
    "input_kernel",
    "input_with_kernel",
    "leaky_relu",
    "scale_invariant",
]
