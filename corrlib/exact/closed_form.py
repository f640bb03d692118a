"""Closed-form moments of the scale-invariant class: (T14), (T15), (T16) with (T4).

For ``sigma(z) = a_+ z [z>0] + a_- z [z<0]`` and ``C_b = 0`` the collective kernel of one input
is a product of independent factors (T14), so every moment is an exact finite binomial sum,
evaluated in log space.

Derivative channels and ``C_b``
-------------------------------
For a direction ``u`` the derivative channel obeys ``Sigma_dd^{(l)} = Sigma_dd^{(l-1)} X_l`` with
the *same* factor law as (T14), for every scale-invariant activation and **any** ``C_b >= 0``:
conditional on layer ``l-1`` the pairs ``(z_j, dz_j)`` are i.i.d. centred Gaussians, so the map
``(z_j, dz_j) -> (-z_j, -dz_j)`` preserves their law and ``(dz_j)^2``; hence the gate
``[z_j > 0]`` (which selects ``a_+^2`` or ``a_-^2`` in ``sigma'(z_j)^2``) is a fair coin
independent of ``(dz_j)^2 = Sigma_dd^{(l-1)} xi_j^2`` (T16). Biases do not enter derivatives.
So :func:`collective_moments`, :func:`output_moments` and :func:`log_output_moments` accept
``C_b != 0`` when ``directions`` is given, and require ``C_b = 0`` for the value channel.

Cost
----
``O(k_max^2 n)`` per distinct hidden width n for leaky activations (both slopes nonzero and
different), ``O(k_max n)`` otherwise. Requests above about 2e8 terms raise a ValueError that
names the cost instead of running for minutes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import special

from .._util import binom_logpmf
from ..model.network import Network
from .inputs import (
    check_closed_form,
    check_closed_form_cost,
    check_k_max,
    initial_log_variance,
    resolve_X,
)

__all__ = [
    "collective_moments",
    "collective_log_moments",
    "output_moments",
    "log_output_moments",
]

_LOG2 = math.log(2.0)
_LOG_FMAX = math.log(np.finfo(float).max)


# --------------------------------------------------------------------------------------------
# the factor law (T14)
# --------------------------------------------------------------------------------------------


def _log_chi2_moments(dof: np.ndarray, k_max: int) -> np.ndarray:
    """log E[(chi^2_dof)^j], j = 0..k_max, shape (len(dof), k_max+1); chi^2_0 = 0."""
    half = np.asarray(dof, dtype=float) / 2.0
    # Gamma(a + j)/Gamma(a) = prod_{i<j} (a + i): a sum of logs, no gammaln cancellation
    with np.errstate(divide="ignore"):
        steps = _LOG2 + np.log(half[:, None] + np.arange(k_max)[None, :])
    out = np.concatenate([np.zeros((half.size, 1)), np.cumsum(steps, axis=1)], axis=1)
    zero = half == 0
    out[zero, 1:] = -np.inf
    return out


def log_factor_moments(n: int, k_max: int, a_plus: float, a_minus: float, C_W: float) -> np.ndarray:
    """log E[X^k], k = 0..k_max, for X = (C_W/n)(a_+^2 chi2_B + a_-^2 chi2'_{n-B}) (T14).

    Exact finite sums over B ~ Binomial(n, 1/2) and over the split j + (k-j) of the power,
    evaluated in log space. Returns shape (k_max+1,); ``-inf`` where E X^k = 0.
    """
    ap2, am2 = float(a_plus) ** 2, float(a_minus) ** 2
    shift = np.arange(k_max + 1) * math.log(C_W / n)
    if ap2 == am2:  # X = (C_W a^2/n) chi2_n
        out = _log_chi2_moments(np.array([n]), k_max)[0] + np.arange(k_max + 1) * math.log(ap2)
        return out + shift
    B = np.arange(n + 1)
    logbin = binom_logpmf(B, n)
    if am2 == 0.0 or ap2 == 0.0:  # one-sided: X = (C_W a^2/n) chi2_B
        a2 = max(ap2, am2)
        # (k+1, n+1) contiguous: numpy sums a contiguous axis pairwise (~1 ulp, not ~sqrt(n))
        terms = np.ascontiguousarray((logbin[:, None] + _log_chi2_moments(B, k_max)).T)
        out = special.logsumexp(terms, axis=1) + np.arange(k_max + 1) * math.log(a2)
        out[0] = 0.0
        return out + shift
    mp = _log_chi2_moments(B, k_max)  # (n+1, k+1)
    mm = _log_chi2_moments(n - B, k_max)
    la_p, la_m = math.log(ap2), math.log(am2)
    out = np.empty(k_max + 1)
    for k in range(k_max + 1):
        j = np.arange(k + 1)
        logc = special.gammaln(k + 1.0) - special.gammaln(j + 1.0) - special.gammaln(k - j + 1.0)
        terms = logbin[:, None] + logc[None, :] + j * la_p + (k - j) * la_m + mp[:, j]
        out[k] = special.logsumexp(terms + mm[:, k - j])
    out[0] = 0.0  # E X^0 = 1 exactly
    return out + shift


def log_raw_moment_recursion(
    a_plus: float,
    a_minus: float,
    C_W: float,
    C_b: float,
    widths: Sequence[int],
    log_S0: float,
    k_max: int = 3,
) -> np.ndarray:
    """log E[S_l^k], k = 0..k_max, l = 0..L, for the scale-invariant chain with any C_b >= 0.

    ``S_l = C_b + X_l S_{l-1}`` with the factor X_l of (T14) independent of S_{l-1}, so
    ``E S_l^k = sum_i C(k, i) C_b^{k-i} E[X_l^i] E[S_{l-1}^i]`` (all terms positive, summed in
    log space). With C_b = 0 this is (T14) itself. Shape (L+1, k_max+1).
    """
    k = np.arange(k_max + 1)
    cache: dict[int, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):  # log_S0 = -inf for a zero input
        row = np.where(k == 0, 0.0, k * log_S0)
        log_cb = math.log(C_b) if C_b > 0 else -math.inf
    if C_b == 0.0:
        return _product_law(row, widths, k_max, a_plus, a_minus, C_W)
    rows = [row]
    for n in widths:
        if n not in cache:
            cache[n] = log_factor_moments(int(n), k_max, a_plus, a_minus, C_W)
        lx = cache[n] + row
        new = np.empty(k_max + 1)
        for kk in range(k_max + 1):
            i = np.arange(kk + 1)
            logc = (
                special.gammaln(kk + 1.0) - special.gammaln(i + 1.0) - special.gammaln(kk - i + 1.0)
            )
            with np.errstate(invalid="ignore"):
                cb = np.where(kk - i > 0, (kk - i) * log_cb, 0.0)
            new[kk] = special.logsumexp(logc + cb + lx[i])
        row = new
        rows.append(row.copy())
    return np.array(rows)


def _product_law(row0: np.ndarray, widths, k_max: int, a_plus, a_minus, C_W) -> np.ndarray:
    """(T14): log E S_l^k = log E S_0^k + sum_{l' <= l} log E X_{l'}^k, summed so that the
    rounding stays at a few ulp of the result at any depth (counts of each distinct width
    times its log-moment, or a compensated running sum for many distinct widths)."""
    distinct = sorted({int(n) for n in widths})
    if not distinct:
        return row0[None, :]
    lf = np.array([log_factor_moments(n, k_max, a_plus, a_minus, C_W) for n in distinct])
    pos = {n: j for j, n in enumerate(distinct)}
    idx = np.array([pos[int(n)] for n in widths])
    if len(distinct) <= 64:
        onehot = np.zeros((len(widths) + 1, len(distinct)))
        onehot[np.arange(1, len(widths) + 1), idx] = 1.0
        with np.errstate(invalid="ignore"):
            return row0[None, :] + np.cumsum(onehot, axis=0) @ lf
    out = np.empty((len(widths) + 1, k_max + 1))
    out[0] = row0
    acc, comp = np.zeros(k_max + 1), np.zeros(k_max + 1)  # Kahan summation
    for ell, j in enumerate(idx, start=1):
        y = lf[j] - comp
        t = acc + y
        comp = (t - acc) - y
        acc = t
        out[ell] = row0 + acc
    return out


# --------------------------------------------------------------------------------------------
# public closed forms (T14)-(T16)
# --------------------------------------------------------------------------------------------


def _prepare(net: Any, X: Any, k_max: Any, kwargs: dict, func: str) -> tuple[Any, int]:
    X = resolve_X(X, kwargs, func, ("X", "k_max", "directions"), stacklevel=5)
    if k_max is None:
        raise TypeError(f"{func}() missing required argument 'k_max' (the highest power)")
    return X, check_k_max(k_max)


# Deliberate parallel: the signature and docstring Parameters of collective_moments,
# log_output_moments and output_moments below are the same; each public function keeps its own
# typed signature and documentation (help() shows one at a time); the shared argument handling
# is _prepare.
def collective_log_moments(
    net: Network, X: Any = None, k_max: int | None = None, directions: Any = None, **kwargs: Any
) -> np.ndarray:
    """log E[(Sigma^{(l-1)})^k] for every layer, exactly (T14), (T16).

    Parameters
    ----------
    net : Network
        Scale-invariant activation; ``C_b = 0`` unless ``directions`` is given.
    X : array_like, shape (1, n_0) or (n_0,)
        The input (any finite norm: Sigma^{(0)} is handled in log space).
    k_max : int
        Highest power, >= 0.
    directions : array_like, shape (1, n_0) or (n_0,), optional
        A direction u: then Sigma is the derivative channel's Sigma_dd (any C_b, see module doc).

    Returns
    -------
    ndarray, shape (L+1, k_max+1)
        Entry ``[l-1, k]`` = log E[(Sigma^{(l-1)})^k]; row 0 is the deterministic Sigma^{(0)}.
        ``-inf`` where the moment is 0 (Sigma^{(0)} = 0).

    Raises
    ------
    ValueError
        For a non-scale-invariant activation, ``C_b != 0`` on the value channel, or a
        ``k_max`` whose cost exceeds the cap (module docstring).

    Examples
    --------
    ReLU at C_W = 2, (T15): E Sigma = Sigma^{(0)} and E Sigma^2 = Sigma^{(0)2} prod (1 + 5/n_l).

    >>> import numpy as np, corrlib
    >>> from corrlib.exact import collective_log_moments
    >>> net = corrlib.Network.uniform("relu", 10, 3, C_W=2.0)
    >>> lm = collective_log_moments(net, [[1.0]], 2)
    >>> lm.shape
    (4, 3)
    >>> bool(np.allclose(np.exp(lm[:, 1]), 2.0, rtol=1e-14))
    True
    >>> bool(np.isclose(np.exp(lm[3, 2]), 4.0 * 1.5**3, rtol=1e-14))
    True
    """
    X, k_max = _prepare(net, X, k_max, kwargs, "collective_log_moments")
    a_plus, a_minus = check_closed_form(net, directions, "collective_log_moments")
    check_closed_form_cost(net, k_max, "collective_log_moments")
    log_s0 = initial_log_variance(net, X, directions)
    return log_raw_moment_recursion(a_plus, a_minus, net.C_W, 0.0, net.hidden_widths, log_s0, k_max)


def _exp_checked(logm: np.ndarray, what: str) -> np.ndarray:
    bad = np.argwhere(logm > _LOG_FMAX)
    if bad.size:
        where = tuple(int(i) for i in bad[0])
        raise OverflowError(
            f"{what} at index {where} exceeds the float64 range (log = "
            f"{float(logm[where]):.1f}); use corrlib.exact.log_output_moments "
            "(or collective_log_moments) for log-moments"
        )
    return np.exp(logm)


# Deliberate parallel: signature and docstring Parameters as collective_log_moments above (each
# public function keeps its own; the shared argument handling is _prepare).
def collective_moments(
    net: Network, X: Any = None, k_max: int | None = None, directions: Any = None, **kwargs: Any
) -> np.ndarray:
    """E[(Sigma^{(l-1)})^k], k = 0..k_max, for every layer, exactly (T14), (T15), (T16).

    Parameters
    ----------
    net : Network
        Scale-invariant activation; ``C_b = 0`` unless ``directions`` is given.
    X : array_like, shape (1, n_0) or (n_0,)
    k_max : int
    directions : array_like, shape (1, n_0) or (n_0,), optional

    Returns
    -------
    ndarray, shape (L+1, k_max+1)
        Row ``l-1`` belongs to layer l (row 0: Sigma^{(0)}, deterministic).

    Raises
    ------
    OverflowError
        When a moment exceeds float64 (the message names the layer row and the power); use
        :func:`collective_log_moments` then.

    Examples
    --------
    Linear network, C_W = 1: Sigma^{(l)} = Sigma^{(l-1)} chi2_n / n (T14), so
    E Sigma^2 = Sigma^{(0)2} (1 + 2/n) per layer.

    >>> import corrlib
    >>> from corrlib.exact import collective_moments
    >>> net = corrlib.Network.uniform("linear", 4, 2)
    >>> print(collective_moments(net, [[1.0]], 2)[:, 2])
    [1.   1.5  2.25]
    """
    X, k_max = _prepare(net, X, k_max, kwargs, "collective_moments")
    return _exp_checked(
        collective_log_moments(net, X, k_max, directions), "E[(Sigma^(l-1))^k] at [l-1, k]"
    )


# Deliberate parallel: signature and docstring Parameters as collective_log_moments above and
# output_moments below (each public function keeps its own; the shared handling is _prepare).
def log_output_moments(
    net: Network, X: Any = None, k_max: int | None = None, directions: Any = None, **kwargs: Any
) -> np.ndarray:
    """log E[z^k], k = 0..k_max, of one output neuron (or of its derivative channel).

    Implements (T14) with (T4): E z^{2k} = (2k-1)!! E[S^k], S = Sigma^{(L)}; odd moments
    vanish. Stays finite for L = 10^4 layers or n = 1.

    Parameters
    ----------
    net : Network
    X : array_like, shape (1, n_0) or (n_0,)
    k_max : int
    directions : array_like, shape (1, n_0) or (n_0,), optional

    Returns
    -------
    ndarray, shape (k_max+1,)
        log E[z^k]; finite for even k (unless the input is 0), ``-inf`` for odd k
        (E z^k = 0 there).

    Examples
    --------
    ReLU, n = 1, L = 10^4 at C_W = 2: E z^4 / (E z^2)^2 = 3 * 6^L (T15), far beyond float64.

    >>> import math, corrlib
    >>> from corrlib.exact import log_output_moments
    >>> net = corrlib.Network.uniform("relu", 1, 10_000, C_W=2.0)
    >>> lm = log_output_moments(net, [[1.0]], 4)
    >>> round(float(lm[4] - 2 * lm[2] - math.log(3)) / 10_000, 12) == round(math.log(6), 12)
    True
    """
    X, k_max = _prepare(net, X, k_max, kwargs, "log_output_moments")
    lm = collective_log_moments(net, X, k_max // 2, directions)[-1]
    h = np.arange(k_max // 2 + 1)
    # log (2h-1)!! = log (2h)! - h log 2 - log h!
    ldf = special.gammaln(2 * h + 1.0) - h * _LOG2 - special.gammaln(h + 1.0)
    out = np.full(k_max + 1, -np.inf)
    out[0::2] = ldf + lm
    return out


# Deliberate parallel: signature and docstring Parameters as log_output_moments and
# collective_moments above (each public function keeps its own; the shared handling is _prepare).
def output_moments(
    net: Network, X: Any = None, k_max: int | None = None, directions: Any = None, **kwargs: Any
) -> np.ndarray:
    """E[z^k], k = 0..k_max, of one output neuron (or its derivative channel ∂_u z), exactly.

    Implements (T14)-(T16) with (T4). Scale-invariant activations only; ``C_b = 0`` for the
    value channel, any ``C_b`` for a derivative channel (module docstring).

    Parameters
    ----------
    net : Network
    X : array_like, shape (1, n_0) or (n_0,)
    k_max : int
    directions : array_like, shape (1, n_0) or (n_0,), optional

    Returns
    -------
    ndarray, shape (k_max+1,)
        E z^k; exactly 0 for odd k.

    Raises
    ------
    OverflowError
        When a moment exceeds float64: use :func:`log_output_moments`.
    ValueError
        For a non-scale-invariant activation or ``C_b != 0`` on the value channel
        (use :func:`single_input`).

    Examples
    --------
    (T15): ReLU at C_W = 2, n = 64, L = 8: E z^2 = Sigma^{(0)} and
    E z^4 / (E z^2)^2 = 3 (1 + 5/64)^8.

    >>> import numpy as np, corrlib
    >>> from corrlib.exact import output_moments
    >>> net = corrlib.Network.uniform("relu", 64, 8, C_W=2.0)
    >>> m = output_moments(net, [[1.0]], 4)
    >>> print(m[2], m[3])
    2.0 0.0
    >>> bool(np.isclose(m[4] / m[2] ** 2, 3 * (1 + 5 / 64) ** 8, rtol=1e-13))
    True
    """
    X, k_max = _prepare(net, X, k_max, kwargs, "output_moments")
    lm = log_output_moments(net, X, k_max, directions)
    return _exp_checked(lm, "E[z^k] at [k]")
