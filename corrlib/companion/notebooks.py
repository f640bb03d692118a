"""The companion notebooks: discovery, selection, and their parameters.

A notebook ``NN_name.ipynb`` has one code cell tagged ``parameters`` whose assignments are the
defaults (the paper's values), and may carry quick-profile overrides in its metadata
``metadata["corrlib"]["quick"]``. Parameters given on top of a profile are validated against
those defaults *before anything runs*: an unknown name gets a did-you-mean, a value must have the
type of the default (an int for an int, a list of numbers for a list of numbers, ...), and a
parameter given to a notebook that does not have it is an error.
"""

from __future__ import annotations

import ast
import hashlib
import json
import numbers
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._util import did_you_mean

__all__ = [
    "NOTEBOOK_RE",
    "PROFILES",
    "ParameterError",
    "Plan",
    "default_parameters",
    "discover_notebooks",
    "notebook_source_hash",
    "parse_param",
    "plan_parameters",
    "quick_overrides",
    "read_notebook",
    "select_notebooks",
]

PROFILES = ("paper", "quick")
NOTEBOOK_RE = re.compile(r"^(\d{2})_[A-Za-z0-9_-]+\.ipynb$")


class ParameterError(ValueError):
    """A notebook parameter that cannot be used (unknown name, wrong type, wrong notebook)."""


class _Expression:
    """A parameter default that is not a literal (any value is accepted for it)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


# ------------------------------------------------------------------------------ discovery


def discover_notebooks(notebooks_dir: str | os.PathLike) -> list[Path]:
    """All ``NN_name.ipynb`` files in ``notebooks_dir``, sorted by name (failed copies and
    hidden temporary files excluded)."""
    d = Path(notebooks_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"notebooks folder {d} is not a directory")
    return sorted(p for p in d.iterdir() if p.is_file() and NOTEBOOK_RE.match(p.name))


def select_notebooks(notebooks: Sequence[Path], only: Sequence[str] | None) -> list[Path]:
    """Filter by ``only``: each entry a number (``"03"``/``"3"``) or a stem (``"03_four_point"``,
    optionally with ``.ipynb``)."""
    if not only:
        return list(notebooks)
    chosen: list[Path] = []
    for name in only:
        key = name[: -len(".ipynb")] if name.endswith(".ipynb") else name
        key = Path(key).name
        if key.isdigit():
            hits = [p for p in notebooks if p.name[:2] == f"{int(key):02d}"]
        else:
            hits = [p for p in notebooks if p.stem == key]
        if not hits:
            stems = [p.stem for p in notebooks]
            raise ValueError(
                f"--only {name!r} matches no notebook{did_you_mean(key, stems)}; "
                f"available: {', '.join(stems) or '(none)'}"
            )
        chosen.extend(h for h in hits if h not in chosen)
    return sorted(chosen)


def read_notebook(path: str | os.PathLike) -> dict:
    """The notebook as a dict (plain JSON; no nbformat needed)."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


# ----------------------------------------------------------------------------- parameters


def _parameters_cell(nb: Mapping) -> str:
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get(
            "tags", []
        ):
            src = cell.get("source", "")
            return "".join(src) if isinstance(src, list) else str(src)
    return ""


def default_parameters(nb: Mapping | str | os.PathLike) -> dict[str, Any]:
    """The assignments of the cell tagged ``parameters``: name -> default (a Python value when
    the right-hand side is a literal, else an opaque expression that accepts any value)."""
    if not isinstance(nb, Mapping):
        nb = read_notebook(nb)
    out: dict[str, Any] = {}
    tree = ast.parse(_parameters_cell(nb))
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        for target in targets:
            if isinstance(target, ast.Name):
                try:
                    out[target.id] = ast.literal_eval(value)
                except ValueError:
                    out[target.id] = _Expression(ast.unparse(value))
    return out


def quick_overrides(nb: Mapping) -> dict[str, Any]:
    """``metadata["corrlib"]["quick"]`` of a notebook (a dict; empty if absent)."""
    quick = nb.get("metadata", {}).get("corrlib", {}).get("quick", {})
    if not isinstance(quick, dict):
        raise ValueError('notebook metadata["corrlib"]["quick"] must be a dict parameter -> value')
    return dict(quick)


def parse_param(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` -> (name, value); VALUE is a Python literal, else a string.

    Examples
    --------
    >>> parse_param("widths=[32, 64]"), parse_param("scheduler=tcp://host:8786")
    (('widths', [32, 64]), ('scheduler', 'tcp://host:8786'))
    """
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise ValueError(f"--param expects NAME=VALUE with NAME an identifier; got {text!r}")
    try:
        return name, ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        return name, value


def notebook_source_hash(nb: Mapping) -> str:
    """SHA-256 of what a notebook *is* (cell types and sources), not of what it printed."""
    h = hashlib.sha256()
    for cell in nb.get("cells", []):
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            continue
        src = cell.get("source", "")
        src = "".join(src) if isinstance(src, list) else str(src)
        h.update(cell.get("cell_type", "").encode() + b"\0" + src.encode("utf-8") + b"\0")
    return h.hexdigest()


# ---------------------------------------------------------------------------- validation


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a bool"
    if isinstance(value, numbers.Integral):
        return "an int"
    if isinstance(value, numbers.Real):
        return "a number"
    if isinstance(value, str):
        return "a str"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a dict"
    return f"a {type(value).__name__}"


def _matches(value: Any, default: Any) -> bool:
    """Does ``value`` have the type of ``default`` (recursively for lists)?"""
    if default is None or isinstance(default, _Expression):
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, numbers.Integral):
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if isinstance(default, numbers.Real):
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple)) and all(
            _matches(v, _element_template(default)) for v in value
        )
    if isinstance(default, dict):
        return isinstance(value, dict)
    return isinstance(value, type(default))


def _element_template(default: Sequence) -> Any:
    """What the elements of a list parameter must look like: None (anything) for an empty or
    mixed default; a float for numbers with a float among them; else the first element."""
    kinds = {_kind(d) for d in default}
    if kinds <= {"an int", "a number"} and "a number" in kinds:
        return 0.0
    return default[0] if len(kinds) == 1 else None


def _expected(default: Any) -> str:
    if isinstance(default, (list, tuple)) and default:
        inner = {_kind(d) for d in default}
        if len(inner) == 1:
            word = inner.pop().split(" ", 1)[1]
            return f"a list of {word}s"
    if isinstance(default, float):
        return "a number"
    return _kind(default)


def check_parameter(notebook: str, name: str, value: Any, defaults: Mapping[str, Any]) -> Any:
    """``value`` if it suits the parameter ``name`` of ``notebook``, else :class:`ParameterError`
    (an int given for a float parameter is converted)."""
    if name == "profile":
        raise ParameterError("profile is set with --profile {paper,quick}, not with --param")
    if name not in defaults:
        raise ParameterError(
            f"{notebook} has no parameter {name!r}{did_you_mean(name, defaults)}; its parameters: "
            f"{', '.join(n for n in defaults if n != 'profile')}"
        )
    default = defaults[name]
    if not _matches(value, default):
        raise ParameterError(
            f"parameter {name!r} of {notebook} must be {_expected(default)} like its default "
            f"{default!r}; got {value!r} ({_kind(value)})"
        )
    if isinstance(default, float) and isinstance(value, numbers.Integral):
        return float(value)
    return value


@dataclass
class Plan:
    """What one notebook will run with: the injected parameters (profile overrides and
    ``--param`` values, validated) and all its parameters (defaults with those applied)."""

    path: Path
    injected: dict[str, Any]
    parameters: dict[str, Any]
    source_hash: str


def _check_names(extra: Mapping[str, Any], defaults: Mapping[str, Mapping[str, Any]]) -> None:
    """Every ``--param`` name must be a parameter of every selected notebook."""
    known = {name for d in defaults.values() for name in d if name != "profile"}
    for name in extra:
        if name == "profile":
            raise ParameterError("profile is set with --profile {paper,quick}, not with --param")
        lacking = [stem for stem, d in defaults.items() if name not in d]
        if not lacking:
            continue
        if name not in known:
            raise ParameterError(
                f"unknown parameter {name!r}{did_you_mean(name, known)}: no selected notebook "
                f"({', '.join(defaults)}) has it"
            )
        having = [stem for stem in defaults if stem not in lacking]
        raise ParameterError(
            f"parameter {name!r} is a parameter of {', '.join(having)} but not of "
            f"{', '.join(lacking)}; select the notebooks that have it with --only"
        )


def plan_parameters(
    notebooks: Sequence[Path], profile: str, extra: Mapping[str, Any]
) -> list[Plan]:
    """Validate the profile overrides and ``extra`` for every notebook; raise
    :class:`ParameterError` naming the first problem (nothing has run yet)."""
    if profile not in PROFILES:
        raise ParameterError(f"profile must be one of {PROFILES}; got {profile!r}")
    books = {path.stem: read_notebook(path) for path in notebooks}
    defaults = {stem: default_parameters(nb) for stem, nb in books.items()}
    _check_names(extra, defaults)
    plans = []
    for path in notebooks:
        nb, d = books[path.stem], defaults[path.stem]
        given = dict(quick_overrides(nb)) if profile == "quick" else {}
        given.update(extra)
        injected = {k: check_parameter(path.stem, k, v, d) for k, v in given.items()}
        injected["profile"] = profile
        used = {k: v for k, v in d.items() if not isinstance(v, _Expression)}
        used.update(injected)
        plans.append(Plan(path, injected, used, notebook_source_hash(nb)))
    return plans
