"""The public API is pinned, and the package's import structure is what docs/architecture.md says.

- ``dir(corrlib)`` and every public module's ``__all__`` are pinned: adding, removing or renaming a
  public name is a deliberate change of this file;
- every public function and class has a numpy-style docstring with an example that doctest runs;
- imports only go down the layers (_util -> model -> theory / exact / montecarlo -> companion),
  without cycles, and no module imports a private (underscore) name from another module;
- the module paths of the previous release still import, with a DeprecationWarning.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import warnings
from pathlib import Path

import pytest

import corrlib

PACKAGE = Path(corrlib.__file__).resolve().parent

PUBLIC = {
    "corrlib": [
        "Activation",
        "ChannelLayout",
        "CriticalPoint",
        "CumulantEstimate",
        "FiniteWidthResult",
        "HeavyTailWarning",
        "HierarchyResult",
        "HierarchyWarning",
        "MonteCarloTask",
        "Network",
        "SweepCacheWarning",
        "__version__",
        "available_activations",
        "chi_parallel",
        "chi_perp",
        "companion",
        "critical_point",
        "estimate_cumulants",
        "exact",
        "finite_width",
        "gaussian_expectation",
        "get_activation",
        "hierarchy",
        "infinite_width_kernel",
        "input_kernel",
        "input_with_kernel",
        "leaky_relu",
        "model",
        "montecarlo",
        "sample_collective",
        "sample_outputs",
        "scale_invariant",
        "sweep",
        "theory",
    ],
    "corrlib.model": [
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
    ],
    "corrlib.theory": [
        "FiniteWidthResult",
        "HierarchyResult",
        "HierarchyWarning",
        "asymptotics",
        "finite_width",
        "fixed_point",
        "hierarchy",
        "hierarchy_convergence",
        "infinite_width_kernel",
        "iterate_kernel",
        "kernel_map",
        "series_stops",
    ],
    "corrlib.exact": [
        "AccuracyError",
        "OutputDistribution",
        "SingleInputResult",
        "collective_log_moments",
        "collective_moments",
        "log_output_moments",
        "output_distribution",
        "output_moments",
        "single_input",
    ],
    "corrlib.montecarlo": [
        "BlockStats",
        "CumulantEstimate",
        "HeavyTailWarning",
        "MonteCarloTask",
        "estimate_cumulants",
        "root_seed_sequence",
        "sample_collective",
        "sample_outputs",
        "tail_shape",
    ],
    "corrlib.companion": ["SweepCacheWarning", "sweep"],
}

# layer of each top-level part of the package (imports may only go to a lower or equal layer,
# and parts of equal layer other than the same part may not import each other)
LAYER = {"_util": 0, "_compat": 0, "model": 1, "theory": 2, "exact": 2, "montecarlo": 2}
LAYER.update({"companion": 3, "reproduce": 4, "__init__": 4})


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names_are_pinned(module):
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(PUBLIC[module])
    for name in mod.__all__:
        assert getattr(mod, name) is not None, f"{module}.{name} does not resolve"


def test_dir_of_corrlib_lists_exactly_the_public_names():
    public = {n for n in dir(corrlib) if not n.startswith("_")}
    assert public == {n for n in PUBLIC["corrlib"] if not n.startswith("_")}


def _public_objects():
    seen = set()
    for module, names in PUBLIC.items():
        mod = importlib.import_module(module)
        for name in names:
            obj = getattr(mod, name)
            if inspect.ismodule(obj) or name.startswith("__") or id(obj) in seen:
                continue
            if inspect.isclass(obj) and issubclass(obj, Warning):
                continue  # warning classes: a docstring, no example
            seen.add(id(obj))
            yield f"{module}.{name}", obj


# public objects whose example is still to be written (strict xfail: remove a name when its
# docstring gains an example)
EXAMPLE_PENDING: set[str] = set()


def _with_pending(items):
    for qualname, obj in items:
        marks = ()
        if qualname in EXAMPLE_PENDING:
            marks = pytest.mark.xfail(reason="example still to be written", strict=True)
        yield pytest.param(qualname, obj, id=qualname, marks=marks)


@pytest.mark.parametrize("qualname,obj", list(_with_pending(_public_objects())))
def test_public_objects_have_docstrings_with_examples(qualname, obj):
    doc = inspect.getdoc(obj) or ""
    assert doc.strip(), f"{qualname} has no docstring"
    assert ">>>" in doc, f"{qualname}: the docstring has no example that doctest runs"


# ----------------------------------------------------------------------------- import structure


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        yield ".".join(("corrlib", *rel.with_suffix("").parts)), path


def _resolve(importer: str, node: ast.ImportFrom, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(name: str, path: Path):
    """(target module, imported names) of every corrlib import in a module, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            target = _resolve(name, node, is_package)
            if target == "corrlib" or target.startswith("corrlib."):
                yield target, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("corrlib"):
                    yield alias.name, []


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_imports_go_down_the_layers():
    bad = []
    for name, path in _modules():
        src = _part(name)
        for target, names in _imports(name, path):
            dst = _part(target)
            if target == "corrlib" and set(names) <= {"__version__"}:
                continue  # the version string is defined at the top and imports nothing
            if dst == "__init__" and target == "corrlib":
                dst = "__init__"
            if src == dst:
                continue
            if LAYER[dst] > LAYER[src] or (LAYER[dst] == LAYER[src] and src != dst):
                bad.append(f"{name} imports {target}")
    assert not bad, "imports against the layering of docs/architecture.md:\n" + "\n".join(bad)


def test_no_private_name_is_imported_across_modules():
    bad = []
    for name, path in _modules():
        for target, names in _imports(name, path):
            if target == name:
                continue
            for imported in names:
                if imported.startswith("_") and not imported.startswith("__"):
                    try:
                        is_module = importlib.util.find_spec(f"{target}.{imported}") is not None
                    except ModuleNotFoundError:
                        is_module = False
                    if not is_module:
                        bad.append(f"{name}: from {target} import {imported}")
    assert not bad, "private names imported across modules:\n" + "\n".join(bad)


def test_no_import_cycles_between_modules():
    graph = {}
    for name, path in _modules():
        graph[name] = {t for t, _ in _imports(name, path) if t in dict(_modules()) and t != name}
    # a package __init__ re-exporting its children is not a cycle with them
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node, stack):
        state[node] = 1
        for nxt in graph.get(node, ()):
            if node.startswith(nxt + ".") or nxt.startswith(node + "."):
                continue
            if state.get(nxt) == 1:
                cycle.extend([*stack, node, nxt])
                return True
            if state.get(nxt) is None and visit(nxt, [*stack, node]):
                return True
        state[node] = 2
        return False

    for node in graph:
        if state.get(node) is None and visit(node, []):
            break
    assert not cycle, "import cycle: " + " -> ".join(cycle)


# ------------------------------------------------------------------------------ deprecations


@pytest.mark.parametrize(
    "old,new,name",
    [
        ("corrlib.kernels", "corrlib.theory.kernels", "fixed_point"),
        ("corrlib.stats", "corrlib.montecarlo.estimators", "estimate_cumulants"),
        ("corrlib.plotting", "corrlib.companion.plotting", "save_figure"),
        ("corrlib.activations", "corrlib.model.activations", "get_activation"),
    ],
)
def test_old_module_paths_warn_and_forward(old, new, name):
    import sys

    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
        mod = importlib.import_module(old)
    assert getattr(mod, name) is getattr(importlib.import_module(new), name)
    sys.modules.pop(old, None)


def test_public_api_imports_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for module in PUBLIC:
            importlib.import_module(module)
