"""corrlib: finite-width correlation functions of random fully connected networks.

Companion to B. Hanin, *Random Fully Connected Neural Networks as Perturbatively Solvable
Hierarchies* (arXiv:2204.01058). Equation tags (T1), (T2), ... refer to ``docs/theory.md``;
``docs/architecture.md`` maps the subpackages:

``corrlib.model``       the network, activations, criticality, Gaussian integrals, channels
``corrlib.theory``      infinite-width kernels, the 1/n recursions, large-depth asymptotics
``corrlib.exact``       exact laws (T14)-(T16) and the single-input lattice solver
``corrlib.montecarlo``  exact-in-law samplers (T3) and streaming estimators
``corrlib.companion``   sweeps, the notebook runner, figure output

The names below are the public API; submodules are imported on first use.
"""

from __future__ import annotations

import importlib as _importlib

from . import _compat

__version__ = "0.2.0.dev0"

# public name -> module that defines it
_API = {
    # the model (T1), (T2), (T8) and Gaussian integrals
    "Activation": "model.activations",
    "get_activation": "model.activations",
    "available_activations": "model.activations",
    "leaky_relu": "model.activations",
    "scale_invariant": "model.activations",
    "Network": "model.network",
    "ChannelLayout": "model.channels",
    "input_kernel": "model.channels",
    "input_with_kernel": "model.network",
    "gaussian_expectation": "model.gaussian",
    "chi_parallel": "model.criticality",
    "chi_perp": "model.criticality",
    "critical_point": "model.criticality",
    "CriticalPoint": "model.criticality",
    # theory: infinite width (T7) and the 1/n recursions (T9)-(T13)
    "infinite_width_kernel": "theory.kernels",
    "finite_width": "theory.recursion",
    "FiniteWidthResult": "theory.recursion",
    # theory: the whole single-input hierarchy to any order in 1/n (T19)-(T27)
    "hierarchy": "theory.expansion",
    "HierarchyResult": "theory.expansion",
    "HierarchyWarning": "theory.expansion",
    # Monte Carlo (T3)
    "sample_collective": "montecarlo.samplers",
    "sample_outputs": "montecarlo.samplers",
    "estimate_cumulants": "montecarlo.estimators",
    "CumulantEstimate": "montecarlo.estimators",
    "MonteCarloTask": "montecarlo.estimators",
    "HeavyTailWarning": "montecarlo.tails",
    # companion: parameter sweeps
    "sweep": "companion.sweeps",
    "SweepCacheWarning": "companion.sweeps",
}

_SUBPACKAGES = ("model", "theory", "exact", "montecarlo", "companion")

__all__ = sorted([*_API, *_SUBPACKAGES, "__version__"])

_compat.install()


def __getattr__(name: str):
    if name in _API:
        value = getattr(_importlib.import_module(f".{_API[name]}", __name__), name)
        globals()[name] = value
        return value
    if name in _SUBPACKAGES:
        module = _importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    old = f"{__name__}.{name}"
    if old in _compat.MOVED_MODULES:  # corrlib.kernels etc.: deprecated module attributes
        return _importlib.import_module(old)
    raise AttributeError(f"module 'corrlib' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
