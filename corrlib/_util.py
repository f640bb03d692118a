"""Shared helpers: argument validation, PSD matrix algebra, quadrature panels, small utilities.

This is the one home for helpers used by more than one part of corrlib (model, theory, exact,
Monte Carlo, companion). Every validation error reads the same way::

    <name> must be <allowed range>; got <value>

(``TypeError`` for a value of the wrong type, ``ValueError`` for a value out of range).
"""

from __future__ import annotations

import difflib
import hashlib
import math
import numbers
import os
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from scipy import special

__all__ = [
    "FRAME_COLUMNS",
    "binom_logpmf",
    "check_choice",
    "check_int",
    "check_kwargs",
    "check_real",
    "default_jobs",
    "did_you_mean",
    "gauss_legendre",
    "gauss_legendre_panels",
    "parameter_names",
    "pinv_psd",
    "psd_sqrt",
    "source_hash",
    "sqrt_psd_stack",
    "tidy_frame",
    "warn_deprecated",
]


# ------------------------------------------------------------------------------ validation


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_int(
    value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """``value`` as an ``int`` in ``[minimum, maximum]``.

    Raises
    ------
    TypeError
        For a non-integer (``2.7``, ``True``, ``"3"``): integers are never rounded.
    ValueError
        Outside the range.
    """
    allowed = _range_text("an integer", minimum, maximum)
    if not _is_int(value):
        raise TypeError(f"{name} must be {allowed}; got {value!r} ({type(value).__name__})")
    v = int(value)
    if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
        raise ValueError(f"{name} must be {allowed}; got {v!r}")
    return v


def check_real(
    value: Any,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict_min: bool = False,
    strict_max: bool = False,
) -> float:
    """``value`` as a finite ``float`` in the given range (bounds inclusive unless ``strict_*``).

    Raises
    ------
    TypeError
        For a non-real value (complex, str, bool, None).
    ValueError
        For NaN, inf or a value outside the range.
    """
    lo = None if minimum is None else (">" if strict_min else ">=", minimum)
    hi = None if maximum is None else ("<" if strict_max else "<=", maximum)
    parts = [f"{op} {b:g}" for op, b in filter(None, (lo, hi))]
    allowed = "a finite real number" + (" " + " and ".join(parts) if parts else "")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {allowed}; got {value!r} ({type(value).__name__})")
    v = float(value)
    bad = not math.isfinite(v)
    if minimum is not None:
        bad |= v <= minimum if strict_min else v < minimum
    if maximum is not None:
        bad |= v >= maximum if strict_max else v > maximum
    if bad:
        raise ValueError(f"{name} must be {allowed}; got {value!r}")
    return v


def _range_text(kind: str, minimum, maximum) -> str:
    if minimum is not None and maximum is not None:
        return f"{kind} in [{minimum}, {maximum}]"
    if minimum is not None:
        return f"{kind} >= {minimum}"
    if maximum is not None:
        return f"{kind} <= {maximum}"
    return kind


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or an empty string.

    A candidate equal up to case wins (``C_w`` -> ``C_W``), then the closest by difflib.

    Examples
    --------
    >>> did_you_mean("C_w", ["C_W", "C_b"])
    " (did you mean 'C_W'?)"
    >>> did_you_mean("widht", ["width", "depth"])
    " (did you mean 'width'?)"
    """
    cands = sorted(candidates)
    same_case = [c for c in cands if c.lower() == str(name).lower()]
    close = same_case or difflib.get_close_matches(str(name), cands, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_choice(value: Any, name: str, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices``; else a ValueError listing them (with a suggestion)."""
    choices = tuple(choices)
    if value not in choices:
        hint = did_you_mean(value, choices) if isinstance(value, str) else ""
        raise ValueError(
            f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}{hint}"
        )
    return value


def check_kwargs(kwargs: Mapping[str, Any], allowed: Iterable[str], func: str) -> None:
    """Reject unknown keyword arguments of ``func`` with a did-you-mean."""
    allowed = tuple(allowed)
    for key in kwargs:
        if key not in allowed:
            raise TypeError(
                f"{func}() got an unexpected keyword argument {key!r}{did_you_mean(key, allowed)}; "
                f"allowed: {', '.join(allowed) or '(none)'}"
            )


# ------------------------------------------------------------------------ PSD matrix algebra


def psd_sqrt(K: np.ndarray, rtol: float = 1e-12, name: str = "K") -> np.ndarray:
    """``A`` of shape (d, r) with ``A A^T = K``, r the numerical rank of the PSD matrix K.

    Eigenvalue based (never a bare Cholesky), so singular K works (docs/theory.md section 3).

    Raises
    ------
    ValueError
        If K is not square, not finite, not symmetric, or has an eigenvalue below
        ``-1e-9 * max|eig|`` (not positive semi-definite).
    """
    K = np.asarray(K, dtype=float)
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise ValueError(f"{name} must be a square (d, d) matrix; got shape {K.shape}")
    if not np.all(np.isfinite(K)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    scale = float(np.max(np.abs(K))) if K.size else 0.0
    if scale == 0.0:
        return np.zeros((K.shape[0], 0))
    if not np.allclose(K, K.T, rtol=1e-10, atol=1e-12 * scale):
        raise ValueError(f"{name} must be symmetric")
    lam, Q = np.linalg.eigh(0.5 * (K + K.T))
    if lam[0] < -1e-9 * lam[-1]:
        raise ValueError(
            f"{name} must be positive semi-definite; smallest eigenvalue {lam[0]:.3g} "
            f"(largest {lam[-1]:.3g})"
        )
    keep = lam > rtol * lam[-1]
    return Q[:, keep] * np.sqrt(lam[keep])


def pinv_psd(K: np.ndarray, rtol: float = 1e-12) -> np.ndarray:
    """Pseudo-inverse of a symmetric PSD matrix (the exact inverse when K is regular).

    Eigenvalues below ``rtol * max eigenvalue`` are treated as zero.
    """
    lam, Q = np.linalg.eigh(0.5 * (K + K.T))
    keep = lam > rtol * max(lam[-1], 0.0)
    return (Q[:, keep] / lam[keep]) @ Q[:, keep].T


def sqrt_psd_stack(S: np.ndarray) -> np.ndarray:
    """``R`` with ``R R^T = S`` for a stack (..., c, c) of symmetric PSD matrices (via eigh).

    Negative rounding-level eigenvalues are clipped to 0; the square root is full (c, c), so
    stacks keep one shape (the Monte Carlo samplers draw rows as ``g R^T``).
    """
    w, Q = np.linalg.eigh(S)
    np.maximum(w, 0.0, out=w)
    return Q * np.sqrt(w)[..., None, :]


# ------------------------------------------------------------------------------- quadrature


@lru_cache(maxsize=32)
def gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on [-1, 1] (cached; treat the arrays as read-only)."""
    from scipy.special import roots_legendre

    x, w = roots_legendre(int(n))
    x.setflags(write=False)
    w.setflags(write=False)
    return x, w


def gauss_legendre_panels(edges: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss-Legendre rule: ``order`` nodes on each panel ``[edges[i], edges[i+1]]``.

    Parameters
    ----------
    edges : ndarray, shape (P+1,)
        Increasing panel edges.
    order : int
        Nodes per panel.

    Returns
    -------
    nodes, weights : ndarray, shape (P * order,)
    """
    x, w = gauss_legendre(order)
    edges = np.asarray(edges, dtype=float)
    a, b = edges[:-1, None], edges[1:, None]
    nodes = (0.5 * (b - a) * x + 0.5 * (b + a)).ravel()
    weights = (0.5 * (b - a) * w).ravel()
    return nodes, weights


# ------------------------------------------------------------------------------ distributions


def binom_logpmf(k: np.ndarray, n: int) -> np.ndarray:
    """log P(B = k) for B ~ Binomial(n, 1/2), normalized so that the weights sum to 1 in float64."""
    from scipy.stats import binom

    out = binom.logpmf(np.asarray(k), int(n), 0.5)
    return out - special.logsumexp(binom.logpmf(np.arange(int(n) + 1), int(n), 0.5))


# ------------------------------------------------------------------------------ environment


def default_jobs() -> int:
    """Default number of worker threads or processes: the CPUs this process may use, at most 2.

    One default for every parallel entry point (Monte Carlo threads, local sweep processes,
    notebook runs), so a laptop and a CI runner behave alike unless asked otherwise.
    """
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 2))


@lru_cache(maxsize=4)
def _hash_tree(root: str) -> str:
    h = hashlib.sha256()
    base = Path(root)
    for path in sorted(base.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        h.update(path.relative_to(base).as_posix().encode("utf-8") + b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def source_hash(root: str | os.PathLike | None = None) -> str:
    """SHA-256 of the corrlib source files (``*.py`` under ``root``, default: this package).

    Changes whenever any source file changes: a bug fix invalidates cached results that were
    computed by the old code (the sweep cache key contains it).
    """
    return _hash_tree(str(Path(root) if root is not None else Path(__file__).resolve().parent))


# ------------------------------------------------------------------------------ deprecation


def warn_deprecated(old: str, new: str, *, stacklevel: int = 3) -> None:
    """DeprecationWarning: ``old`` keeps working for one release (removed in 0.3); use ``new``."""
    import warnings

    warnings.warn(
        f"{old} is deprecated and will be removed in corrlib 0.3; use {new}",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


# ------------------------------------------------------------------------------ tidy tables

#: columns of every corrlib result table, in order
FRAME_COLUMNS = ("layer", "quantity", "a", "b", "c", "d", "e", "f", "value", "se")

_CHANNEL_COLUMNS = "abcdef"


def _unique_entries(c: int, rank: int) -> list[np.ndarray]:
    """Channel indices (a, b, ...) of the unique entries of a symmetric tensor of kernel entries.

    ``rank`` pairs (a, b), each with a <= b, listed once up to permutations of the pairs:
    pair indices non-decreasing in the lexicographic order of the pairs (a, b) <= (c, d) <= ...
    """
    iu, ju = np.triu_indices(c)
    P = iu.size
    if rank == 1:
        return [iu, ju]
    if rank == 2:
        I, J = np.triu_indices(P)
        return [iu[I], ju[I], iu[J], ju[J]]
    I, J, K = (g.ravel() for g in np.meshgrid(*[np.arange(P)] * 3, indexing="ij"))
    keep = (I <= J) & (J <= K)
    I, J, K = I[keep], J[keep], K[keep]
    return [iu[I], ju[I], iu[J], ju[J], iu[K], ju[K]]


def tidy_frame(quantities: Mapping[str, tuple[np.ndarray, np.ndarray | None]], **extra: Any):
    """The one table layout of every corrlib result: ``layer, quantity, a, ..., f, value, se``.

    Parameters
    ----------
    quantities : mapping name -> (values, se)
        ``values`` of shape (L+1,) (a scalar per layer, channel indices <NA>), (L+1, c, c)
        (listed on the unique entries a <= b; c..f <NA>), (L+1, c, c, c, c) (unique entries
        a <= b, c <= d, (a, b) <= (c, d) lexicographically; e, f <NA>) or (L+1,) + (c, c) * 3
        (a joint cumulant of three kernel entries: a <= b, c <= d, e <= f and
        (a, b) <= (c, d) <= (e, f)); ``se`` of the same shape or None (NaN).
        Rows come in the order of the mapping, then by layer, then by channel indices.
    **extra
        Further columns with one value for every row (e.g. ``order=2``), appended after ``se``.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`FRAME_COLUMNS` then ``extra``. ``layer`` is the pre-activation index
        l = 1..L+1 (int64), channel indices a..f are Int64 (<NA> where the quantity has fewer).

    Examples
    --------
    >>> import numpy as np
    >>> from corrlib._util import tidy_frame
    >>> T = np.arange(64.0).reshape(1, 2, 2, 2, 2, 2, 2)  # one layer, c = 2
    >>> df = tidy_frame({"T": (T, None)})
    >>> len(df), list(df.columns[2:8])                  # 3 pairs -> C(3 + 2, 3) = 10 entries
    (10, ['a', 'b', 'c', 'd', 'e', 'f'])
    """
    import pandas as pd

    parts = []
    for name, (values, se) in quantities.items():
        values = np.asarray(values, dtype=float)
        se = np.full(values.shape, np.nan) if se is None else np.asarray(se, dtype=float)
        L1 = values.shape[0]
        if values.ndim == 1:
            idx: list[np.ndarray] = []
            vals, ses = values[:, None], se[:, None]
        elif values.ndim in (3, 5, 7) and len(set(values.shape[1:])) == 1:
            idx = _unique_entries(values.shape[1], (values.ndim - 1) // 2)
            vals, ses = values[(slice(None), *idx)], se[(slice(None), *idx)]
        else:
            raise ValueError(f"quantity {name!r} has unsupported shape {values.shape}")
        k = vals.shape[1]
        cols = {"layer": np.repeat(np.arange(1, L1 + 1), k), "quantity": name}
        for i, col in enumerate(_CHANNEL_COLUMNS):
            if i < len(idx):
                cols[col] = pd.array(np.tile(idx[i], L1), dtype="Int64")
            else:
                cols[col] = pd.array([pd.NA] * (L1 * k), dtype="Int64")
        cols["value"] = vals.ravel()
        cols["se"] = ses.ravel()
        parts.append(pd.DataFrame(cols))
    df = pd.concat(parts, ignore_index=True)
    df["layer"] = df["layer"].astype("int64")
    for key, value in extra.items():
        df[key] = value
    return df


# ------------------------------------------------------------------------------ signatures


def parameter_names(func: Any) -> tuple[str, ...]:
    """The names ``func`` accepts as keywords, in the order of its signature.

    The ``allowed`` list of :func:`check_kwargs` for a function with a ``**kwargs`` catch-all,
    read from the signature itself so that it cannot drift from it (``*args`` and ``**kwargs``
    are not names; positional-only parameters are not keywords).

    Examples
    --------
    >>> def f(net, X=None, *, rng=None, **kwargs): ...
    >>> parameter_names(f)
    ('net', 'X', 'rng')
    """
    import inspect

    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    params = inspect.signature(func).parameters.values()
    return tuple(p.name for p in params if p.kind in keyword)
