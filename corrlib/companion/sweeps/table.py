"""Assembly of the sweep's table: grid columns, the results' rows, then ``n_samples, runtime``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .cache import Entry
from .grid import SWEEP_COLUMNS

__all__ = ["assemble"]


def assemble(names: list[str], points: list[dict], entries: list[Entry]) -> pd.DataFrame:
    """One frame: for each point (grid order) its result rows, with the point's parameters in
    front and ``n_samples``, ``runtime`` behind.

    Raises
    ------
    ValueError
        If a result has a column named like a grid parameter or a sweep column.
    """
    frames = [e.frame for e in entries]
    counts = [len(f) for f in frames]
    for f in frames:
        clash = set(f.columns) & (set(names) | set(SWEEP_COLUMNS))
        if clash:
            raise ValueError(
                f"fn's result has column(s) {sorted(clash)} that clash with grid parameters or "
                "sweep columns; rename the grid parameter"
            )
    body = pd.concat(frames, ignore_index=True, sort=False) if frames else pd.DataFrame()
    front = {
        name: pd.Series(
            [p[name] for p, n in zip(points, counts, strict=True) for _ in range(n)],
            dtype=_column_dtype([p[name] for p in points]),
        )
        for name in names
    }
    tail = {
        "n_samples": np.repeat([e.n_samples for e in entries], counts).astype(np.float64),
        "runtime": np.repeat([e.runtime for e in entries], counts).astype(np.float64),
    }
    return pd.concat([pd.DataFrame(front), body.reset_index(drop=True), pd.DataFrame(tail)], axis=1)


def _column_dtype(values: list[Any]) -> Any:
    """int64 / float64 / bool for homogeneous numeric columns, object otherwise."""
    types = {type(v) for v in values}
    if types == {int}:
        return np.int64 if all(-(2**63) <= v < 2**63 for v in values) else object
    if types <= {int, float} and float in types:
        return np.float64
    if types == {bool}:
        return bool
    if types == {str}:
        return str
    return object
