"""Deprecated import paths of the previous release, kept working for one release.

Before 0.2 the package was flat (``corrlib.kernels``, ``corrlib.stats``, ...). Importing one of
those paths now gives the module at its new home in the architecture (model, theory, exact,
Monte Carlo, companion) with a :class:`DeprecationWarning` that names the new path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

__all__ = ["MOVED_MODULES", "install"]

#: old module path -> new module path
MOVED_MODULES = {
    "corrlib.activations": "corrlib.model.activations",
    "corrlib.network": "corrlib.model.network",
    "corrlib.channels": "corrlib.model.channels",
    "corrlib.gaussian": "corrlib.model.gaussian",
    "corrlib.kernels": "corrlib.theory.kernels",
    "corrlib.recursion": "corrlib.theory.recursion",
    "corrlib.asymptotics": "corrlib.theory.asymptotics",
    "corrlib.sampling": "corrlib.montecarlo.samplers",
    "corrlib.stats": "corrlib.montecarlo.estimators",
    "corrlib.plotting": "corrlib.companion.plotting",
}


def _warn(old: str, stacklevel: int) -> None:
    warnings.warn(
        f"{old} is deprecated and will be removed in corrlib 0.3; import from "
        f"{MOVED_MODULES[old]} (or use the names exported by corrlib)",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serve an old path as a thin module that forwards every attribute to the new module."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED_MODULES:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return None  # a plain module object

    def exec_module(self, module: types.ModuleType) -> None:
        target = importlib.import_module(MOVED_MODULES[module.__name__])
        _warn(module.__name__, stacklevel=6)  # the importing statement, past importlib's frames
        module.__doc__ = f"Deprecated alias of {target.__name__}."
        module.__all__ = list(getattr(target, "__all__", []))
        module.__getattr__ = lambda name: getattr(target, name)
        module.__dir__ = lambda: dir(target)


def install() -> None:
    """Register the finder once (idempotent)."""
    if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())
