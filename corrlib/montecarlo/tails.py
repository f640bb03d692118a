"""Heavy-tail diagnostic of the Monte Carlo estimators: streamed top values, tail shapes.

Why
---
Every estimate of :func:`corrlib.estimate_cumulants` is the average of a *summand* h over the
N samples (Sigma itself for ``mean``, a product of two deviations for ``V``, a cube for
``T``). Its standard error is ``sqrt(Var h / N)``, and the z-test against a true value is normal
only when Var h is finite (central limit theorem). If the tail of h decays like a power with
generalized-Pareto shape xi_h, P(|h| > t) ~ t^(-1/xi_h), then E|h|^q is finite exactly for
q < 1/xi_h: for **xi_h >= 1/2** Var h is infinite, the sum is attracted to a non-Gaussian stable
law, the sample variance does not converge and the stated standard error says nothing (for
xi_h >= 1 not even the mean converges). That is the threshold :data:`TAIL_LIMIT` = 1/2; it
comes from the theory, not from tuning.

What is measured
----------------
For each layer and each entry Sigma_ab, the ``M + 1`` largest deviations above and below a
centre c_ab are kept (c_ab: the median of a 16-sample pilot run, the same for every block; the
far tail does not depend on it), with ``M = min(N/5, 3 sqrt(N), 1000)``, the tail size of
Pareto-smoothed importance sampling (Vehtari et al., JMLR 25 (2024) 72), lowered for very many
layers x entries so that the lists hold at most 8 MiB (:func:`tail_count`; memory stays O(1) in
N). The top values of a
union are the top values of the parts' top values, so blocks are merged exactly, as a set:
bit-identical for any chunking, thread count or split. The shape xi of each side is the
Zhang-Stephens estimate (Technometrics 51 (2009) 316) for its M exceedances over its (M+1)-th
largest deviation; its asymptotic standard error is (1 + xi)/sqrt(M).

The summands are functions of |Sigma_ab - c_ab|, whose top values come from one side or both. A
side counts only if it reaches into the other side's top M (its largest deviation exceeds the
other's (M+1)-th largest): a far-out but small tail, such as the rare negative values of an
off-diagonal derivative entry, does not decide, and a bounded side (Sigma_aa >= 0) does not
blur the fit of the other, as it would in a fit of |Sigma_ab - c_ab| itself. xi_ab is the
larger shape of the sides that count.

The diagnostic is the **one-sided 99% lower confidence bound** ``xi - z (1 + xi)/sqrt(M)``,
``z = 2.326`` (alpha = 0.01, :data:`TAIL_ALPHA`): a warning states that the sample itself shows
the tail to be heavy, not that a noisy estimate crossed the line. A product of k factors with
tail shapes up to xi has tail shape up to k xi (the comonotone worst case; for one factor,
|x|^k has shape k xi exactly), so the summands get ``mean: xi_ab``,
``V_(ab)(cd): 2 max(xi_ab, xi_cd)``, ``T: 3 xi``.

By (T3) the samples of Sigma^{(l)} are drawn from those of Sigma^{(l-1)}: a layer whose sample
misses the tail that carries its moments passes that on (a ReLU network that has died in every
sample shows Sigma = 0 +- 0 although E Sigma = Sigma^{(0)}). So the bound of layer l is the
largest one measured at layers 1..l. Values <= 0 mean a light or bounded tail; NaN means not
measured (N < 100, or no spread among the top values, as for the deterministic Sigma^{(0)}).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "TAIL_ALPHA",
    "TAIL_LIMIT",
    "TAIL_MAX",
    "TAIL_MIN",
    "HeavyTailWarning",
    "block_tails",
    "layer_tail_bounds",
    "merge_tails",
    "tail_count",
    "tail_shape",
]

#: summand tail shape at or above which a standard error is not valid (infinite variance)
TAIL_LIMIT = 0.5
#: one-sided level of the lower confidence bound that is compared with TAIL_LIMIT
TAIL_ALPHA = 0.01
_TAIL_Z = 2.3263478740408408  # scipy.stats.norm.isf(TAIL_ALPHA)
#: most exceedances used per tail fit
TAIL_MAX = 1000
#: fewest exceedances for a tail fit (N >= 100)
TAIL_MIN = 20
_TAIL_FLOATS = 2**20  # top values kept per block result, at most (8 MiB)


class HeavyTailWarning(UserWarning):
    """A Monte Carlo estimate's standard error is not valid: its summand has a heavy tail.

    Issued by :func:`corrlib.estimate_cumulants` (and :meth:`corrlib.montecarlo.BlockStats.result`)
    when the lower confidence bound of the tail shape of a quantity's summand reaches
    :data:`TAIL_LIMIT` = 1/2 (infinite variance; module docstring). The message names the
    quantity, the layers and the measured shape, and recommends the exact laws of
    :mod:`corrlib.exact`.
    """


def tail_count(n_samples: int, n_series: int = 1) -> int:
    """Exceedances M per tail fit: ``min(N // 5, floor(3 sqrt(N)), 1000, 2**20 // n_series)``.

    ``n_series`` is the number of top-value lists kept (2 per layer and entry), so the
    diagnostic holds at most 2**20 float64 (8 MiB) per block result whatever N. Returns 0 (no
    diagnostic) when M would be below 20 (N < 100).

    Examples
    --------
    >>> from corrlib.montecarlo.tails import tail_count
    >>> tail_count(100), tail_count(10_000), tail_count(10**7), tail_count(40)
    (20, 300, 1000, 0)
    >>> tail_count(10**7, n_series=2 * 101 * 36)  # 100 layers, c = 8 channels
    144
    """
    m = min(n_samples // 5, math.isqrt(9 * n_samples), TAIL_MAX, _TAIL_FLOATS // max(n_series, 1))
    return m if m >= TAIL_MIN else 0


def _gpd_shape(exc: np.ndarray) -> float:
    """Zhang-Stephens posterior-mean shape xi of positive exceedances, sorted ascending."""
    y = exc / exc[-1]  # xi is scale invariant; keeps 1/y finite
    n = y.size
    m = 30 + math.isqrt(n)
    j = np.arange(1, m + 1, dtype=float)
    q1 = y[max(int(n / 4 + 0.5) - 1, 0)]
    theta = 1.0 + (1.0 - np.sqrt(m / (j - 0.5))) / (3.0 * q1)
    with np.errstate(divide="ignore", invalid="ignore"):
        xi = np.log1p(-theta[:, None] * y).mean(axis=1)
        loglik = n * (np.log(-theta / xi) - xi - 1.0)
    loglik = np.where(np.isfinite(loglik), loglik, -np.inf)
    w = np.exp(loglik - loglik.max())
    theta_hat = float(np.sum(theta * w) / np.sum(w))
    return float(np.log1p(-theta_hat * y).mean())


def _shape_of_top(top: np.ndarray) -> tuple[float, int]:
    """(xi, number of exceedances) of the values ``top`` (any order) over their smallest."""
    top = np.sort(top[np.isfinite(top)])
    if top.size < TAIL_MIN + 1:
        return math.nan, 0
    exc = top[1:] - top[0]
    exc = exc[exc > 0]
    if exc.size < TAIL_MIN:
        return math.nan, 0
    return _gpd_shape(exc), int(exc.size)


def tail_shape(x: Any, n_tail: int | None = None) -> float:
    """Generalized-Pareto shape xi of the upper tail of a sample (Zhang & Stephens 2009).

    The fit uses the ``n_tail`` exceedances over the ``(n_tail + 1)``-th largest value. A power
    tail P(X > t) ~ t^(-1/xi) has moments of order < 1/xi only; xi <= 0 means a light or bounded
    tail. This is the per-entry measurement of the heavy-tail diagnostic (module docstring);
    the asymptotic standard error of the estimate is about (1 + xi)/sqrt(n_tail).

    Parameters
    ----------
    x : array_like, shape (N,)
        Finite sample.
    n_tail : int, optional
        Exceedances used; default :func:`tail_count` (N).

    Returns
    -------
    float
        NaN when fewer than 20 exceedances are available or the top values have no spread.

    Examples
    --------
    >>> import numpy as np
    >>> from corrlib.montecarlo import tail_shape
    >>> g = np.random.default_rng(0)
    >>> round(tail_shape(g.pareto(2.0, 100_000)), 1)  # Pareto(alpha=2): xi = 1/2
    0.5
    >>> tail_shape(g.standard_normal(100_000)) < 0.1  # Gaussian: xi = 0
    True
    """
    arr = np.asarray(x, dtype=float).ravel()
    m = tail_count(arr.size) if n_tail is None else int(n_tail)
    if m < TAIL_MIN or m + 1 > arr.size:
        return math.nan
    return _shape_of_top(np.partition(arr, arr.size - m - 1)[arr.size - m - 1 :])[0]


def block_tails(dev: np.ndarray, out: np.ndarray) -> None:
    """Top-k deviations above and below 0 per column: dev (B, p) -> out (p, 2, k).

    ``out[:, 0]`` holds the k largest values of dev, ``out[:, 1]`` those of -dev (unordered;
    -inf padded when B < k).

    Examples
    --------
    >>> import numpy as np
    >>> from corrlib.montecarlo.tails import block_tails
    >>> out = np.empty((1, 2, 2))
    >>> block_tails(np.array([[3.0], [-5.0], [1.0], [0.5]]), out)
    >>> np.sort(out[0, 0]).tolist(), np.sort(out[0, 1]).tolist()
    ([1.0, 3.0], [-0.5, 5.0])
    """
    B = dev.shape[0]
    k = out.shape[-1]
    kk = min(k, B)
    if kk < k:
        out[..., kk:] = -np.inf
    part = np.partition(dev, sorted({kk - 1, B - kk}), axis=0)
    top, bottom = out[:, 0, :kk], out[:, 1, :kk]
    top[...] = part[B - kk :].T
    np.negative(part[:kk].T, out=bottom)
    top += 0.0  # turns -0.0 into 0.0: canonical bits for a set merged in any order
    bottom += 0.0


def merge_tails(*parts: np.ndarray) -> np.ndarray:
    """Top-k of the union of the parts along the last axis, k = parts[0].shape[-1].

    A set operation: exact, and independent of the order and grouping of the parts (the
    returned values are unordered).

    Examples
    --------
    >>> import numpy as np
    >>> from corrlib.montecarlo.tails import merge_tails
    >>> np.sort(merge_tails(np.array([1.0, 7.0]), np.array([5.0, -np.inf]))).tolist()
    [5.0, 7.0]
    """
    k = parts[0].shape[-1]
    if k == 0 or len(parts) == 1:
        return parts[0]
    both = np.concatenate(parts, axis=-1)
    return np.partition(both, both.shape[-1] - k, axis=-1)[..., -k:]


def _entry_bound(up: np.ndarray, down: np.ndarray) -> float:
    """Lower confidence bound of xi for one entry from its two sides' top deviations."""
    bound = math.nan
    sides = (up[np.isfinite(up)], down[np.isfinite(down)])
    for side, other in (sides, sides[::-1]):
        if side.size == 0 or (other.size and side.max() <= other.min()):
            continue  # this side does not reach into the other side's top values
        xi, m = _shape_of_top(side)
        if m:
            bound = np.fmax(bound, xi - _TAIL_Z * max(1.0 + xi, 0.0) / math.sqrt(m))
    return float(bound)


def layer_tail_bounds(tails: np.ndarray | None, n_layers: int, p: int) -> np.ndarray:
    """Lower confidence bound of xi per layer and entry, shape (L+1, p) (module docstring).

    ``tails`` has shape (L+1, p, 2, M+1) (top deviations above and below the centre); each
    side that counts gives ``xi - z (1 + xi)/sqrt(M)``, an entry takes the larger, and a layer
    the running maximum over layers 1..l (NaN where nothing was measured).

    Examples
    --------
    >>> import numpy as np
    >>> from corrlib.montecarlo.tails import block_tails, layer_tail_bounds
    >>> g = np.random.default_rng(0)
    >>> dev = np.stack([np.zeros(10_000), g.pareto(1.0, 10_000)], axis=1)  # layers 0, 1
    >>> tails = np.empty((2, 2, 301))
    >>> block_tails(dev, tails.reshape(2, 2, 301))  # (p=2 columns) as layers, one entry each
    >>> bounds = layer_tail_bounds(tails[:, None], 2, 1)  # Pareto(1): xi = 1
    >>> bool(np.isnan(bounds[0, 0])), bool(0.5 < bounds[1, 0] < 1.0)
    (True, True)
    """
    out = np.full((n_layers, p), np.nan)
    if tails is None or tails.shape[-1] == 0:
        return out
    for ell in range(n_layers):
        for i in range(p):
            out[ell, i] = _entry_bound(tails[ell, i, 0], tails[ell, i, 1])
    return np.fmax.accumulate(out, axis=0)
