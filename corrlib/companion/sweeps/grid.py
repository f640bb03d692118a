"""Sweep grids: validation, expansion to points, and the canonical form that identifies a point.

A grid is either ``{name: values}`` (the cartesian product; the last name varies fastest) or an
explicit list of points ``[{name: value, ...}, ...]``. Values are JSON scalars, so that a point
has one canonical text (:func:`canonical_point`) from which its seed and cache key are derived.
"""

from __future__ import annotations

import itertools
import json
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence, Set
from typing import Any

import numpy as np

from ..._util import FRAME_COLUMNS

__all__ = ["RESERVED_COLUMNS", "SWEEP_COLUMNS", "canonical_point", "normalize_grid"]

#: Columns the sweep appends after the result's own columns.
SWEEP_COLUMNS = ("n_samples", "runtime")

#: Extra columns of result frames (the Monte Carlo frame's ``tail_shape``).
RESULT_EXTRA_COLUMNS = ("tail_shape",)

#: Column names that the returned frame uses for outputs; grid parameters may not use them.
RESERVED_COLUMNS = (
    frozenset(FRAME_COLUMNS) | frozenset(SWEEP_COLUMNS) | frozenset(RESULT_EXTRA_COLUMNS)
)


def _scalar(value: Any, name: str) -> int | float | str | bool | None:
    """Normalize one grid value to a plain Python JSON scalar or raise TypeError/ValueError."""
    if value is None or type(value) in (bool, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str):  # numpy.str_ and other subclasses
        return str(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        v = float(value)
        if math.isnan(v):
            raise ValueError(
                f"grid value for parameter {name!r} is NaN; NaN cannot identify a point"
            )
        return v
    raise TypeError(
        f"grid value for parameter {name!r} must be a hashable scalar (int, float, str, bool "
        f"or None); got {type(value).__name__} {value!r}. Encode compound values as a string "
        "or split them into separate parameters."
    )


def _check_name(name: Any, params: frozenset[str] | None) -> str:
    if not isinstance(name, str) or not name.isidentifier():
        raise TypeError(f"grid parameter names must be str identifiers; got {name!r}")
    if name in RESERVED_COLUMNS:
        raise ValueError(
            f"grid parameter name {name!r} is reserved for output columns "
            f"({', '.join(sorted(RESERVED_COLUMNS))}); rename it"
        )
    if params is not None and name not in params:
        raise ValueError(
            f"unknown grid parameter {name!r}; fn accepts: {', '.join(sorted(params)) or '(none)'}"
        )
    return name


def _axis(grid: Mapping[str, Any], name: str) -> list[Any]:
    values = grid[name]
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(
            f"grid[{name!r}] must be a list of values (e.g. [{values!r}]); "
            f"got {type(values).__name__} {values!r}"
        )
    if isinstance(values, (Set, Mapping)):
        raise TypeError(
            f"grid[{name!r}] must be an ordered collection (list, tuple, range, 1-D "
            f"array); got {type(values).__name__}, whose order is not reproducible"
        )
    if isinstance(values, np.ndarray) and values.ndim != 1:
        raise ValueError(f"grid[{name!r}] must be 1-D; got shape {values.shape}")
    axis = [_scalar(v, name) for v in values]
    if not axis:
        raise ValueError(f"grid[{name!r}] is empty: give at least one value")
    return axis


def _cartesian(grid: Mapping, allowed: frozenset[str] | None) -> tuple[list[str], list[dict]]:
    if not grid:
        raise ValueError("grid is empty: give at least one parameter with at least one value")
    names = [_check_name(k, allowed) for k in grid]
    axes = [_axis(grid, name) for name in names]
    points = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes)]
    return names, points


def _explicit(grid: Sequence, allowed: frozenset[str] | None) -> tuple[list[str], list[dict]]:
    if len(grid) == 0:
        raise ValueError("grid is empty: give at least one point")
    names: list[str] | None = None
    points = []
    for i, raw in enumerate(grid):
        if not isinstance(raw, Mapping):
            raise TypeError(
                f"grid[{i}] must be a mapping of parameter name to value; got {type(raw).__name__}"
            )
        if not raw:
            raise ValueError(f"grid[{i}] is an empty point: give at least one parameter")
        if names is None:
            names = [_check_name(k, allowed) for k in raw]
        elif set(raw) != set(names):
            raise ValueError(
                f"grid[{i}] has parameters {sorted(raw)}, but grid[0] has {sorted(names)}; "
                "all points of an explicit grid must have the same parameters"
            )
        points.append({k: _scalar(raw[k], k) for k in names})
    return list(names or []), points


def normalize_grid(
    grid: Mapping[str, Iterable[Any]] | Sequence[Mapping[str, Any]],
    params: Iterable[str] | None = None,
) -> tuple[list[str], list[dict[str, Any]]]:
    """Validate a grid and expand it to an ordered list of points.

    Parameters
    ----------
    grid : mapping or sequence of mappings
        Either ``{name: values}`` (cartesian product; the last name varies fastest) or an
        explicit list of points ``[{name: value, ...}, ...]`` that all have the same names.
        Names are str identifiers not in :data:`RESERVED_COLUMNS`; values are scalars
        (int, float, str, bool or None; numpy scalars are converted; NaN is rejected).
        Value lists must be non-empty ordered collections (list, tuple, range, 1-D array);
        sets are rejected because their order is not reproducible. Duplicate points are
        rejected.
    params : iterable of str, optional
        The parameter names ``fn`` accepts; any other grid name raises ``ValueError``.

    Returns
    -------
    names : list of str
        Parameter names in grid order (the leading columns of the sweep frame).
    points : list of dict
        The points, in grid order.

    Examples
    --------
    >>> normalize_grid({"n": [64, 128], "act": ["relu"]})
    (['n', 'act'], [{'n': 64, 'act': 'relu'}, {'n': 128, 'act': 'relu'}])
    """
    allowed = None if params is None else frozenset(params)
    if allowed is not None:
        bad = [p for p in allowed if not isinstance(p, str)]
        if bad:
            raise TypeError(f"params must be parameter names (str); got {bad[0]!r}")
    if isinstance(grid, Mapping):
        names, points = _cartesian(grid, allowed)
    elif isinstance(grid, Sequence) and not isinstance(grid, (str, bytes)):
        names, points = _explicit(grid, allowed)
    else:
        raise TypeError(
            "grid must be a mapping {name: values} or a list of points [{name: value}, ...]; "
            f"got {type(grid).__name__}"
        )
    seen: dict[str, int] = {}
    for i, point in enumerate(points):
        key = canonical_point(point)
        if key in seen:
            raise ValueError(f"grid has duplicate point {point!r} (positions {seen[key]} and {i})")
        seen[key] = i
    return names, points


def canonical_point(point: Mapping[str, Any]) -> str:
    """Canonical JSON of a point: sorted keys, no spaces, floats via ``repr``.

    ``1``, ``1.0`` and ``True`` are different points.

    Examples
    --------
    >>> canonical_point({"b": 2.5, "a": "relu"})
    '{"a":"relu","b":2.5}'
    """
    return json.dumps(point, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
