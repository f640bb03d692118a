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
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from ..model.network import Network
from .inputs import check_closed_form, check_k_max, initial_variance

__all__ = [
    "collective_moments",
    "collective_log_moments",
    "output_moments",
    "log_output_moments",
]


# --------------------------------------------------------------------------------------------
# closed forms (T14)-(T16)
# --------------------------------------------------------------------------------------------


def _log_chi2_moments(dof: np.ndarray, k_max: int) -> np.ndarray:
    """log E[(chi^2_dof)^j], j = 0..k_max, shape (len(dof), k_max+1); chi^2_0 = 0."""
    dof = np.asarray(dof, dtype=float)
    # Gamma(a + j)/Gamma(a) = prod_{i<j} (a + i): a product of logs, no gammaln cancellation
    half = dof / 2.0
    out = np.zeros((dof.size, k_max + 1))
    with np.errstate(divide="ignore"):
        for j in range(1, k_max + 1):
            out[:, j] = out[:, j - 1] + math.log(2.0) + np.log(half + (j - 1))
    zero = dof == 0
    out[zero, :] = -np.inf
    out[zero, 0] = 0.0
    return out


def _log_factor_moments(n: int, k_max: int, a_plus: float, a_minus: float, C_W: float):
    """log E[X^k], k = 0..k_max, for X = (C_W/n)(a_+^2 chi2_B + a_-^2 chi2'_{n-B}) (T14).

    Exact finite sums over B ~ Binomial(n, 1/2) and over the split j + (k-j) of the power,
    evaluated in log space. Returns shape (k_max+1,).
    """
    B = np.arange(n + 1)
    logbin = (
        special.gammaln(n + 1.0)
        - special.gammaln(B + 1.0)
        - special.gammaln(n - B + 1.0)
        - n * math.log(2.0)
    )
    logbin -= special.logsumexp(logbin)  # weights sum to 1 to rounding
    mp = _log_chi2_moments(B, k_max)  # (n+1, k+1)
    mm = _log_chi2_moments(n - B, k_max)
    with np.errstate(divide="ignore"):
        la_p = 2.0 * math.log(abs(a_plus)) if a_plus != 0 else -np.inf
        la_m = 2.0 * math.log(abs(a_minus)) if a_minus != 0 else -np.inf
    out = np.empty(k_max + 1)
    for k in range(k_max + 1):
        j = np.arange(k + 1)
        logc = special.gammaln(k + 1.0) - special.gammaln(j + 1.0) - special.gammaln(k - j + 1.0)
        with np.errstate(invalid="ignore"):
            ap = np.where(j > 0, j * la_p, 0.0)
            am = np.where(k - j > 0, (k - j) * la_m, 0.0)
        terms = logbin[:, None] + logc[None, :] + ap + am + mp[:, j] + mm[:, k - j]
        out[k] = special.logsumexp(terms) + k * math.log(C_W / n)
    out[0] = 0.0  # E X^0 = 1 exactly
    return out


def collective_log_moments(net: Network, x, k_max: int, directions=None) -> np.ndarray:
    """log E[(Sigma^{(l-1)})^k] for every layer, exactly (T14), (T16).

    Parameters
    ----------
    net : Network
        Scale-invariant activation; ``C_b = 0`` unless ``directions`` is given.
    x : array_like, shape (n_0,) or (1, n_0)
        The input.
    k_max : int
        Highest power.
    directions : array_like, shape (n_0,) or (1, n_0), optional
        A direction u: then Sigma is the derivative channel's Sigma_dd (any C_b, see module doc).

    Returns
    -------
    ndarray, shape (L+1, k_max+1)
        Entry ``[l-1, k]`` = log E[(Sigma^{(l-1)})^k]; row 0 is the deterministic Sigma^{(0)}.
        ``-inf`` where the moment is 0 (Sigma^{(0)} = 0).
    """
    k_max = check_k_max(k_max)
    a_plus, a_minus = check_closed_form(net, directions, "collective_log_moments")
    s0 = initial_variance(net, x, directions)
    k = np.arange(k_max + 1, dtype=float)
    with np.errstate(divide="ignore"):
        row0 = np.where(k == 0, 0.0, k * math.log(s0) if s0 > 0 else -np.inf)
    cache: dict[int, np.ndarray] = {}
    rows = [row0]
    acc = row0.copy()
    for n in net.hidden_widths:
        if n not in cache:
            cache[n] = _log_factor_moments(n, k_max, a_plus, a_minus, net.C_W)
        acc = acc + cache[n]
        rows.append(acc.copy())
    return np.array(rows)


def _exp_checked(logm: np.ndarray) -> np.ndarray:
    if np.any(logm > np.log(np.finfo(float).max)):
        raise OverflowError(
            "a moment exceeds the float64 range; use corrlib.exact.log_output_moments "
            "(or collective_log_moments) for log-moments"
        )
    return np.exp(logm)


def collective_moments(net: Network, x, k_max: int, directions=None) -> np.ndarray:
    """E[(Sigma^{(l-1)})^k], k = 0..k_max, for every layer, exactly (T14), (T15), (T16).

    Same parameters as :func:`collective_log_moments`. Returns shape (L+1, k_max+1).

    Raises
    ------
    OverflowError
        When a moment exceeds float64; use :func:`collective_log_moments` then.
    """
    return _exp_checked(collective_log_moments(net, x, k_max, directions))


def log_output_moments(net: Network, x, k_max: int, directions=None) -> np.ndarray:
    """log E[z^k], k = 0..k_max, of one output neuron (or of its derivative channel).

    Implements (T14) with (T4): E z^{2k} = (2k-1)!! E[S^k], S = Sigma^{(L)}; odd moments vanish.

    Returns
    -------
    ndarray, shape (k_max+1,)
        log E[z^k]; finite for even k (unless the input is 0), ``-inf`` for odd k
        (E z^k = 0 there). Stays finite for L = 10^4 layers or n = 1.
    """
    k_max = check_k_max(k_max)
    lm = collective_log_moments(net, x, k_max // 2, directions)[-1]
    out = np.full(k_max + 1, -np.inf)
    for k2 in range(0, k_max + 1, 2):
        h = k2 // 2
        # log (2h-1)!! = log (2h)! - h log 2 - log h!
        ldf = special.gammaln(2 * h + 1.0) - h * math.log(2.0) - special.gammaln(h + 1.0)
        out[k2] = ldf + lm[h]
    return out


def output_moments(net: Network, x, k_max: int, directions=None) -> np.ndarray:
    """E[z^k], k = 0..k_max, of one output neuron (or its derivative channel ∂_u z), exactly.

    Implements (T14)-(T16) with (T4). Scale-invariant activations only; ``C_b = 0`` for the
    value channel, any ``C_b`` for a derivative channel (module docstring).

    Parameters
    ----------
    net : Network
    x : array_like, shape (n_0,) or (1, n_0)
    k_max : int
    directions : array_like, shape (n_0,) or (1, n_0), optional

    Returns
    -------
    ndarray, shape (k_max+1,)

    Raises
    ------
    OverflowError
        When a moment exceeds float64: use :func:`log_output_moments`.
    ValueError
        For a non-scale-invariant activation or ``C_b != 0`` on the value channel
        (use :func:`single_input`).
    """
    lm = log_output_moments(net, x, k_max, directions)
    return _exp_checked(lm)
