"""corrlib: finite-width correlation functions of random fully connected networks.

Companion to B. Hanin, *Random Fully Connected Neural Networks as Perturbatively
Solvable Hierarchies* (arXiv:2204.01058). Equation tags (T1)-(T18) refer to
``docs/theory.md``.

The public API is re-exported here; submodules are imported on first use.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> submodule that defines it
_API = {
    # foundation
    "Activation": "activations",
    "get_activation": "activations",
    "available_activations": "activations",
    "leaky_relu": "activations",
    "scale_invariant": "activations",
    "Network": "network",
    "ChannelLayout": "channels",
    "input_kernel": "channels",
    "gaussian_expectation": "gaussian",
    "infinite_width_kernel": "kernels",
    "chi_parallel": "kernels",
    "chi_perp": "kernels",
    "critical_point": "kernels",
    "CriticalPoint": "kernels",
    # finite width 1/n recursions (T9)-(T13)
    "finite_width": "recursion",
    "FiniteWidthResult": "recursion",
    # Monte Carlo (T3)
    "sample_collective": "sampling",
    "sample_outputs": "sampling",
    "estimate_cumulants": "stats",
    "CumulantEstimate": "stats",
    "MonteCarloTask": "stats",
    # parameter sweeps
    "sweep": "sweep",
    "SweepCacheWarning": "sweep",
}

_SUBMODULES = {
    "activations",
    "network",
    "channels",
    "gaussian",
    "kernels",
    "recursion",
    "asymptotics",
    "exact",
    "sampling",
    "stats",
    "sweep",
    "plotting",
    "reproduce",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str):
    if name in _API:
        module = importlib.import_module(f".{_API[name]}", __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'corrlib' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_API) | _SUBMODULES)
