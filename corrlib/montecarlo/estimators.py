"""Streaming Monte Carlo estimators of the cumulants of the collective kernel (T2)-(T6).

For every layer l = 1..L+1 the estimator returns, from independent samples of Sigma^{(l-1)}:

- ``mean``  E Sigma_ab                        (estimates K + Delta, (T7), (T11)),
- ``V``     Cov(Sigma_ab, Sigma_cd)           (estimates V, (T9), (T10)),
- ``T``     kappa_3(Sigma) when c = 1          (estimates T, (T13)),

each with a standard error and a heavy-tail diagnostic. Output cumulants follow from these by
(T4)-(T6) (Rao-Blackwellization: Sigma^{(L)} carries all the randomness of the output law).

Estimators and standard errors
------------------------------
Unbiased k-statistics: the sample mean, the sample covariance with divisor N-1 and
``k_3 = N^2 / ((N-1)(N-2)) m_3``. Standard errors use the **delta method** (first-order
asymptotic variances) from moments estimated in the same pass:

- ``se(mean_ab) = sqrt(k_2(Sigma_ab) / N)``;
- ``se(V_(ab)(cd)) = sqrt((mu_22 - mu_11^2) / N)`` with ``mu_22 = E[(u-Eu)^2 (w-Ew)^2]``,
  ``mu_11 = Cov(u, w)``, ``u = Sigma_ab``, ``w = Sigma_cd``;
- ``se(T) = sqrt((mu_6 - mu_3^2 - 6 mu_4 mu_2 + 9 mu_2^3) / N)`` (central moments mu_k).

The covariances of the estimators that the normalized cumulants need are kept as well:
``Cov(mean_aa, V_(aa)(aa)) = mu_3(Sigma_aa)/N`` (exact for the unbiased sample variance; the
streamed sums hold sum x_a^3 as the diagonal of sum x_i^2 x_j) and, for c = 1,
``Cov(mean, T) = (mu_4 - 3 mu_2^2)/N`` (first order).

Heavy tails
-----------
Every estimate is the average of a *summand* (Sigma for ``mean``, a product of two deviations
for ``V``, a cube for ``T``), and its standard error is valid only when that summand has a
finite variance, i.e. a generalized-Pareto tail shape below 1/2. The shape is measured on the
sample itself in the same streaming pass (the top values of every entry, merged exactly) and
reported as a 99% lower confidence bound per layer and entry in ``mean_tail``, ``V_tail``,
``T_tail`` and the ``tail_shape`` column of :meth:`CumulantEstimate.to_frame`; where it reaches
1/2 a
:class:`HeavyTailWarning` names the quantity, the layers and the shape, and recommends the exact
laws of :mod:`corrlib.exact` (docs/theory.md section 10). The derivation of the threshold and of
the bound is in :mod:`corrlib.montecarlo.tails`.

Streaming and determinism
-------------------------
Nothing of size n_samples is kept. Each block of samples (see
:func:`corrlib.montecarlo.samplers.block_size`) is reduced to *shifted power sums* per layer: with
``x = Sigma_unique - r`` (the c(c+1)/2 entries a <= b, r a per-layer reference point),
``N, sum x_i, sum x_i x_j, sum x_i^2 x_j, sum x_i^2 x_j^2`` (and ``sum x^5, sum x^6`` for c = 1),
and to its top values (above). The reference r is the mean of a small pilot run drawn from its
own child seed (spawn key ``root.spawn_key + (2**32 - 1,)``), so every worker computes the same r
without communication and the sums stay well conditioned. Block sums are combined along a fixed
binary tree over block indices (a node's sums = left child + right child); :class:`BlockStats`
keeps the canonical dyadic decomposition of its block range, so ranges computed anywhere, in any
order, merged in range order, give bit-identical estimates for any ``chunk_size``, ``n_jobs`` or
split (contract with :func:`corrlib.sweep`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._util import check_kwargs, parameter_names, tidy_frame
from ..model.network import Network, validate_inputs

# Deliberate parallel: the same names as samplers.py imports from .blocks; both modules drive
# the seeds, blocks, threads and cost guard of blocks.py (an import list declares, it holds no
# logic to share).
from .blocks import (
    block_generator,
    block_sizes,
    check_cost,
    check_n_samples,
    n_blocks_for,
    resolve_chunk,
    resolve_jobs,
    root_seed_sequence,
    run_tasks,
)
from .samplers import check_method, draws_per_sample, make_plan, run_block
from .tails import (
    TAIL_LIMIT,
    HeavyTailWarning,
    block_tails,
    layer_tail_bounds,
    merge_tails,
    tail_count,
)

# Deliberate parallel: montecarlo/__init__.py re-exports most of these names in its own
# __all__ (each module declares its public names; the package's list is its own API).
__all__ = [
    "BlockStats",
    "CumulantEstimate",
    "HeavyTailWarning",
    "MonteCarloTask",
    "estimate_cumulants",
    "heavy_tail_messages",
]

PILOT_KEY = 2**32 - 1
PILOT_SAMPLES = 16

# block results whose top values are merged at once
_TAIL_BATCH = 8


# ---------------------------------------------------------------------------------------------
# result object


@dataclass(frozen=True, eq=False)
class CumulantEstimate:
    """Monte Carlo estimates of the cumulants of Sigma^{(l-1)}, l = 1..L+1 (T2)-(T6).

    Attributes
    ----------
    mean : ndarray, shape (L+1, c, c)
        Sample mean of Sigma^{(l-1)} (estimates K^{(l)} + Delta^{(l)}).
    V : ndarray, shape (L+1, c, c, c, c)
        Unbiased sample covariance Cov(Sigma_ab, Sigma_cd) (estimates V^{(l)}).
    T : ndarray, shape (L+1,) or None
        Unbiased third cumulant k_3 of Sigma when c = 1 (estimates T^{(l)}), else None.
    mean_se, V_se, T_se : ndarray or None
        Delta-method standard errors, same shapes.
    n_samples : int
    method : str
        ``"collapsed"`` or ``"naive"``.
    mean_tail, V_tail, T_tail : ndarray or None
        Heavy-tail diagnostic, same shapes as the estimates: the 99% lower confidence bound of
        the generalized-Pareto tail shape of each estimate's summand
        (:mod:`corrlib.montecarlo.tails`). Where it is >= 1/2 the summand's variance is
        infinite by the sample's own tail and the standard error is not valid. NaN where not
        measured.
    mean_V_cov : ndarray, shape (L+1, c), or None
        Cov(mean_aa, V_(aa)(aa)) = mu_3(Sigma_aa)/N, for :meth:`normalized_kappa4_se`.
    mean_T_cov : ndarray, shape (L+1,), or None
        Cov(mean, T) = (mu_4 - 3 mu_2^2)/N when c = 1, for :meth:`normalized_kappa6_se`.

    Examples
    --------
    >>> import corrlib
    >>> net = corrlib.Network.uniform("relu", 32, 2, C_W=2.0)
    >>> est = corrlib.estimate_cumulants(net, [[1.0]], 2000, rng=0)
    >>> est.mean.shape, est.V.shape, est.T.shape
    ((3, 1, 1), (3, 1, 1, 1, 1), (3,))
    >>> bool(abs(est.mean[-1, 0, 0] - 2.0) < 4 * est.mean_se[-1, 0, 0])  # E Sigma = 2 (T15)
    True
    >>> bool(est.T_tail[-1] < 0.5)  # light tails: the standard errors hold
    True
    """

    mean: np.ndarray
    V: np.ndarray
    T: np.ndarray | None
    mean_se: np.ndarray
    V_se: np.ndarray
    T_se: np.ndarray | None
    n_samples: int
    method: str = "collapsed"
    mean_tail: np.ndarray | None = None
    V_tail: np.ndarray | None = None
    T_tail: np.ndarray | None = None
    mean_V_cov: np.ndarray | None = None
    mean_T_cov: np.ndarray | None = None

    @property
    def n_layers(self) -> int:
        """L+1, the number of layers l = 1..L+1."""
        return self.mean.shape[0]

    @property
    def c(self) -> int:
        """Number of channels."""
        return self.mean.shape[1]

    def _diagonal(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        idx = np.arange(self.c)
        m = self.mean[:, idx, idx]
        V = self.V[:, idx, idx, idx, idx]
        return m, V, self.mean_se[:, idx, idx], self.V_se[:, idx, idx, idx, idx]

    def normalized_kappa4(self) -> np.ndarray:
        """kappa_4/kappa_2^2 of one output neuron per channel: 3 V_(aa)(aa)/mean_aa^2 (T4), (T6).

        Returns
        -------
        ndarray, shape (L+1, c)
            NaN (with a warning) where mean_aa = 0.

        Examples
        --------
        >>> import corrlib
        >>> net = corrlib.Network.uniform("relu", 32, 2, C_W=2.0)
        >>> est = corrlib.estimate_cumulants(net, [[1.0]], 2000, rng=0)
        >>> est.normalized_kappa4().shape  # exact (T15): 3((1 + 5/32)^2 - 1) = 1.01
        (3, 1)
        """
        m, V, _, _ = self._diagonal()
        return _ratio(3.0 * V, m**2, "normalized_kappa4", "mean_aa")

    def normalized_kappa4_se(self) -> np.ndarray:
        """Joint delta-method standard error of :meth:`normalized_kappa4`, shape (L+1, c).

        For r = 3 V/m^2 with m = mean_aa, V = V_(aa)(aa):
        ``Var r = 9 [Var V/m^4 + 4 V^2 Var m/m^6 - 4 V Cov(m, V)/m^5]``, with
        ``Cov(m, V) = mu_3(Sigma_aa)/N`` (:attr:`mean_V_cov`). Valid where ``V_tail`` < 1/2.

        Examples
        --------
        >>> import corrlib
        >>> net = corrlib.Network.uniform("relu", 32, 2, C_W=2.0)
        >>> est = corrlib.estimate_cumulants(net, [[1.0]], 2000, rng=0)
        >>> r, se = est.normalized_kappa4()[-1, 0], est.normalized_kappa4_se()[-1, 0]
        >>> bool(abs(r - 3 * ((1 + 5 / 32) ** 2 - 1)) < 4 * se)
        True
        """
        if self.mean_V_cov is None:
            raise ValueError("normalized_kappa4_se needs mean_V_cov (from estimate_cumulants)")
        m, V, sm, sV = self._diagonal()
        cov = self.mean_V_cov
        with np.errstate(divide="ignore", invalid="ignore"):
            var = sV**2 / m**4 + 4.0 * V**2 * sm**2 / m**6 - 4.0 * V * cov / m**5
        return np.where(m == 0, np.nan, 3.0 * np.sqrt(np.clip(var, 0.0, None)))

    def normalized_kappa6(self) -> np.ndarray:
        """kappa_6/kappa_2^3 of one output neuron: 15 T/mean^3 (T4), (T13). c = 1 only.

        Returns
        -------
        ndarray, shape (L+1, 1)

        Raises
        ------
        ValueError
            When c > 1 (T is estimated for a single channel only).

        Examples
        --------
        >>> import corrlib
        >>> net = corrlib.Network.uniform("relu", 32, 2, C_W=2.0)
        >>> corrlib.estimate_cumulants(net, [[1.0]], 2000, rng=0).normalized_kappa6().shape
        (3, 1)
        """
        T = self._need_T("normalized_kappa6")
        m = self.mean[:, 0, 0]
        return _ratio(15.0 * T, m**3, "normalized_kappa6", "mean")[:, None]

    def normalized_kappa6_se(self) -> np.ndarray:
        """Joint delta-method standard error of :meth:`normalized_kappa6`, shape (L+1, 1).

        For r = 15 T/m^3 (m = mean, T = k_3 of Sigma), with the influence functions
        ``m: x - mu`` and ``T: (x-mu)^3 - mu_3 - 3 mu_2 (x-mu)`` of the two estimators,
        ``Var T = (mu_6 - mu_3^2 - 6 mu_4 mu_2 + 9 mu_2^3)/N`` (``T_se**2``),
        ``Var m = mu_2/N`` (``mean_se**2``), ``Cov(m, T) = (mu_4 - 3 mu_2^2)/N``
        (:attr:`mean_T_cov`), all from the streamed power sums, and

        ``Var r = 225 [Var T/m^6 - 6 T Cov(m, T)/m^7 + 9 T^2 Var m/m^8]``.

        Valid where ``T_tail`` < 1/2.

        Examples
        --------
        >>> import corrlib
        >>> net = corrlib.Network.uniform("relu", 32, 2, C_W=2.0)
        >>> est = corrlib.estimate_cumulants(net, [[1.0]], 2000, rng=0)
        >>> bool(est.normalized_kappa6_se()[-1, 0] > 0)
        True
        """
        T = self._need_T("normalized_kappa6_se")
        if self.mean_T_cov is None or self.T_se is None:
            raise ValueError("normalized_kappa6_se needs mean_T_cov (from estimate_cumulants)")
        m, sm, sT, cov = self.mean[:, 0, 0], self.mean_se[:, 0, 0], self.T_se, self.mean_T_cov
        with np.errstate(divide="ignore", invalid="ignore"):
            var = sT**2 / m**6 - 6.0 * T * cov / m**7 + 9.0 * T**2 * sm**2 / m**8
        return np.where(m == 0, np.nan, 15.0 * np.sqrt(np.clip(var, 0.0, None)))[:, None]

    def _need_T(self, func: str) -> np.ndarray:
        if self.T is None:
            raise ValueError(
                f"{func} needs a single channel (c = 1: one input, no directions); "
                f"this estimate has c = {self.c}"
            )
        return self.T

    def to_frame(self):
        """Tidy :class:`pandas.DataFrame` (:func:`corrlib._util.tidy_frame`) with a tail column.

        Columns ``layer, quantity, a, b, c, d, e, f, value, se, tail_shape``. ``layer`` is the
        pre-activation index l = 1..L+1. Quantities: ``"mean"`` (a <= b), ``"V"`` (unique
        entries a <= b, c <= d, (a,b) <= (c,d) lexicographically) and, when c = 1, ``"T"``
        (channel indices <NA>). ``tail_shape`` is the heavy-tail diagnostic of each row (the
        lower bound of its summand's tail shape; the se is not valid where it is >= 1/2).

        Examples
        --------
        >>> import corrlib
        >>> net = corrlib.Network.uniform("tanh", 16, 2)
        >>> df = corrlib.estimate_cumulants(net, [[1.0]], 500, rng=0).to_frame()
        >>> list(df.columns)
        ['layer', 'quantity', 'a', 'b', 'c', 'd', 'e', 'f', 'value', 'se', 'tail_shape']
        >>> df.groupby("quantity").size().to_dict()
        {'T': 3, 'V': 3, 'mean': 3}
        """
        values = {"mean": (self.mean, self.mean_se), "V": (self.V, self.V_se)}
        tails = {"mean": self.mean_tail, "V": self.V_tail}
        if self.T is not None:
            values["T"] = (self.T, self.T_se)
            tails["T"] = self.T_tail
        shapes = {
            k: (np.full(v[0].shape, np.nan) if tails[k] is None else tails[k], None)
            for k, v in values.items()
        }
        tail = tidy_frame(shapes)["value"].to_numpy()
        return tidy_frame(values, tail_shape=tail)


def _ratio(num: np.ndarray, den: np.ndarray, name: str, what: str) -> np.ndarray:
    """num/den, NaN with a warning naming ``name`` and the layers where den = 0."""
    bad = den == 0
    out = np.where(bad, np.nan, num / np.where(bad, 1.0, den))
    if bad.any():
        layers = sorted({int(i) + 1 for i in np.argwhere(bad)[:, 0]})
        warnings.warn(
            f"{name}: {what} = 0 at layers l = {layers}; the ratio is undefined there (NaN)",
            RuntimeWarning,
            stacklevel=3,
        )
    return out


def _flagged(tail: np.ndarray | None) -> np.ndarray | None:
    if tail is None:
        return None
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(tail, nan=-np.inf) >= TAIL_LIMIT


_DESCRIPTIONS = {
    "mean": ("mean", "E Sigma_ab", "mean_se"),
    "V": ("V", "Cov(Sigma_ab, Sigma_cd)", "V_se"),
    "T": ("T", "kappa_3(Sigma)", "T_se"),
}


def heavy_tail_messages(est: CumulantEstimate) -> list[str]:
    """One message per quantity whose summand's tail shape reaches :data:`TAIL_LIMIT` somewhere.

    Examples
    --------
    >>> import corrlib
    >>> from corrlib.montecarlo.estimators import heavy_tail_messages
    >>> est = corrlib.estimate_cumulants(corrlib.Network.uniform("tanh", 8, 2), [[1.0]], 500,
    ...                                  rng=0)
    >>> heavy_tail_messages(est)  # tanh is bounded
    []
    """
    out = []
    for key, tail in (("mean", est.mean_tail), ("V", est.V_tail), ("T", est.T_tail)):
        bad = _flagged(tail)
        if bad is None or not bad.any():
            continue
        name, what, se_name = _DESCRIPTIONS[key]
        layers = np.flatnonzero(bad.reshape(bad.shape[0], -1).any(axis=1)) + 1
        worst = np.unravel_index(int(np.nanargmax(np.where(bad, tail, -np.inf))), tail.shape)
        first = np.argwhere(bad)[0]
        where = "" if tail.ndim == 1 else f" (entry {tuple(int(i) for i in first[1:])})"
        out.append(
            f"Monte Carlo {name} = {what} has a heavy-tailed summand at {layers.size} of "
            f"{bad.shape[0]} layers, l = {_ranges(layers)}: the generalized-Pareto tail shape "
            f"of its summand is at least {float(tail[tuple(first)]):.3g} at layer "
            f"l = {int(first[0]) + 1}{where} and at least {float(tail[worst]):.3g} at "
            f"l = {int(worst[0]) + 1} (99% lower confidence bounds; >= 1/2 means infinite "
            f"variance by the sample's own tail), so {se_name} there is not a valid standard "
            f"error and the estimate may be far from the truth (N = {est.n_samples}). Use the "
            "exact laws: corrlib.exact.collective_moments (scale-invariant activation with "
            "C_b = 0, or a derivative channel) or corrlib.exact.single_input (one input, any "
            "activation). The diagnostic per entry is in the estimate's *_tail arrays and in "
            "to_frame()['tail_shape']."
        )
    return out


def _ranges(layers: np.ndarray) -> str:
    """'1..3, 7' for [1, 2, 3, 7]."""
    parts, start, prev = [], int(layers[0]), int(layers[0])
    for v in [int(v) for v in layers[1:]] + [None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(f"{start}" if start == prev else f"{start}..{prev}")
        if v is not None:
            start = prev = v
    return ", ".join(parts)


def _warn_heavy_tails(est: CumulantEstimate, stacklevel: int) -> None:
    for msg in heavy_tail_messages(est):
        warnings.warn(msg, HeavyTailWarning, stacklevel=stacklevel + 1)


# ---------------------------------------------------------------------------------------------
# per-block power sums and their deterministic merge


def _unique_index(c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(iu, ju) of the entries a <= b and P (c, c) mapping (a, b) to the unique index."""
    iu, ju = np.triu_indices(c)
    P = np.empty((c, c), dtype=int)
    P[iu, ju] = np.arange(iu.size)
    P[ju, iu] = np.arange(iu.size)
    return iu, ju, P


def _n_fields(c: int) -> int:
    p = c * (c + 1) // 2
    return 1 + p + 3 * p * p + (2 if c == 1 else 0)


def _layer_sums(x: np.ndarray, c: int) -> np.ndarray:
    """Shifted power sums of one layer: x (B, p) -> flat vector (see module docstring)."""
    B, p = x.shape
    if c == 1:
        v = x[:, 0]
        v2 = v * v
        v3 = v2 * v
        return np.array(
            [B, v.sum(), v2.sum(), v3.sum(), (v2 * v2).sum(), (v3 * v2).sum(), (v3 * v3).sum()]
        )
    x2 = x * x
    out = np.empty(_n_fields(c))
    out[0] = B
    out[1 : 1 + p] = x.sum(axis=0)
    k = 1 + p
    # einsum without BLAS: reproducible independent of BLAS threading
    out[k : k + p * p] = np.einsum("bi,bj->ij", x, x, optimize=False).ravel()
    k += p * p
    out[k : k + p * p] = np.einsum("bi,bj->ij", x2, x, optimize=False).ravel()
    k += p * p
    out[k : k + p * p] = np.einsum("bi,bj->ij", x2, x2, optimize=False).ravel()
    return out


def _combine(nodes: list) -> list:
    """Canonical dyadic decomposition: merge adjacent sibling nodes (level, index, sums)."""
    stack: list = []
    for node in nodes:
        stack.append(node)
        while len(stack) >= 2:
            (l1, i1, s1), (l2, i2, s2) = stack[-2], stack[-1]
            if l1 == l2 and i1 % 2 == 0 and i2 == i1 + 1:
                stack[-2:] = [(l1 + 1, i1 // 2, s1 + s2)]
            else:
                break
    return stack


@dataclass(eq=False)
class BlockStats:
    """Mergeable power sums of blocks ``start..stop-1`` of a :class:`MonteCarloTask` (picklable).

    Attributes
    ----------
    start, stop : int
        Block range covered.
    n_blocks, n_samples, c, method
        Of the whole task.
    shift : ndarray, shape (L+1, p)
        Reference point r of the shifted sums (identical for every range of a task).
    nodes : list of (level, index, sums (L+1, F))
        Canonical dyadic decomposition of [start, stop).
    tails : ndarray, shape (L+1, p, 2, M+1), or None
        The M+1 largest deviations above and below the pilot median per layer and entry
        (unordered; padded with -inf), M = :func:`~corrlib.montecarlo.tails.tail_count`
        (n_samples); merged as a set (:mod:`corrlib.montecarlo.tails`).

    Examples
    --------
    Two halves of a task, merged, give the estimate of the whole run bit for bit:

    >>> import corrlib
    >>> from corrlib.montecarlo import root_seed_sequence
    >>> task = corrlib.MonteCarloTask(corrlib.Network.uniform("relu", 8, 2), [[1.0]], 5000)
    >>> root = root_seed_sequence(7)
    >>> half = task.n_blocks // 2
    >>> left, right = task.run_blocks(root, 0, half), task.run_blocks(root, half, task.n_blocks)
    >>> (left.start, left.stop == right.start, right.stop == task.n_blocks, half > 0)
    (0, True, True, True)
    >>> whole = task.run_blocks(root, 0, task.n_blocks).result()
    >>> bool((left.merge(right).result().V == whole.V).all())
    True
    """

    start: int
    stop: int
    n_blocks: int
    n_samples: int
    c: int
    method: str
    shift: np.ndarray
    nodes: list = field(default_factory=list)
    tails: np.ndarray | None = None

    def merge(self, other: BlockStats) -> BlockStats:
        """Statistics of the union of adjacent ranges (requires ``other.start == self.stop``)."""
        if not isinstance(other, BlockStats):
            raise TypeError(f"other must be a BlockStats; got {type(other).__name__}")
        if other.start != self.stop:
            raise ValueError(
                "other.start must equal self.stop (adjacent ranges); "
                f"got {other.start} != {self.stop}"
            )
        same_tails = (self.tails is None) == (other.tails is None) and (
            self.tails is None or self.tails.shape == other.tails.shape
        )
        if (
            (self.n_blocks, self.n_samples, self.c) != (other.n_blocks, other.n_samples, other.c)
            or not np.array_equal(self.shift, other.shift)
            or not same_tails
        ):
            raise ValueError("other must come from the same MonteCarloTask and root seed")
        tails = None if self.tails is None else merge_tails(self.tails, other.tails)
        return BlockStats(
            self.start,
            other.stop,
            self.n_blocks,
            self.n_samples,
            self.c,
            self.method,
            self.shift,
            _combine(list(self.nodes) + list(other.nodes)),
            tails,
        )

    def result(self) -> CumulantEstimate:
        """Fold the sums (in block order) into a :class:`CumulantEstimate`.

        Requires the full range ``[0, n_blocks)``. Warns with :class:`HeavyTailWarning` where a
        standard error is not valid (module docstring).
        """
        est = self._estimate()
        _warn_heavy_tails(est, stacklevel=2)
        return est

    def _estimate(self) -> CumulantEstimate:
        if self.start != 0 or self.stop != self.n_blocks:
            raise ValueError(
                f"result() needs the full block range [0, {self.n_blocks}); "
                f"this BlockStats covers [{self.start}, {self.stop})"
            )
        total = self.nodes[0][2]
        for node in self.nodes[1:]:
            total = total + node[2]
        return _estimate_from_sums(total, self.shift, self.c, self.method, self.tails)


def _central(raw: list, a: np.ndarray, k: int) -> np.ndarray:
    """k-th central moment from raw moments raw[j] = E x^j about the sample mean a."""
    return sum(math.comb(k, j) * raw[j] * (-a) ** (k - j) for j in range(k + 1))


def _estimate_from_sums(sums, shift, c, method, tails=None) -> CumulantEstimate:
    L1 = sums.shape[0]
    iu, ju, P = _unique_index(c)
    p = iu.size
    N = float(sums[0, 0])
    n_samples = int(round(N))
    s1 = sums[:, 1 : 1 + p]
    k = 1 + p
    s11 = sums[:, k : k + p * p].reshape(L1, p, p)
    k += p * p
    s21 = sums[:, k : k + p * p].reshape(L1, p, p)
    k += p * p
    s22 = sums[:, k : k + p * p].reshape(L1, p, p)
    a = s1 / N
    mean_p = shift + a
    E11 = s11 / N
    aa = a[:, :, None] * a[:, None, :]
    C = E11 - aa  # central, divisor N
    Vp = C * (N / (N - 1))
    var = np.maximum(np.diagonal(Vp, axis1=1, axis2=2), 0.0)
    mean_se_p = np.sqrt(var / N)
    E21 = s21 / N  # E[x_i^2 x_j]
    E12 = np.swapaxes(E21, 1, 2)  # E[x_i x_j^2]
    Eii = np.diagonal(E11, axis1=1, axis2=2)
    ai, aj = a[:, :, None], a[:, None, :]
    mu22 = (
        s22 / N
        - 2 * aj * E21
        - 2 * ai * E12
        + aj**2 * Eii[:, :, None]
        + ai**2 * Eii[:, None, :]
        + 4 * aa * E11
        - 3 * aa**2
    )
    Vp_se = np.sqrt(np.maximum(mu22 - C**2, 0.0) / N)
    # third central moment of every entry from the diagonal of sum x_i^2 x_j (= sum x_i^3)
    mu3_p = np.diagonal(E21, axis1=1, axis2=2) - 3 * a * Eii + 2 * a**3
    diag = P[np.arange(c), np.arange(c)]

    mean = mean_p[:, P]
    mean_se = mean_se_p[:, P]
    V = Vp[:, P[:, :, None, None], P[None, None, :, :]]
    V_se = Vp_se[:, P[:, :, None, None], P[None, None, :, :]]
    T = T_se = mean_T_cov = T_tail = None
    xi = layer_tail_bounds(tails, L1, p)
    mean_tail = xi[:, P]
    V_tail = 2.0 * np.fmax(xi[:, P][:, :, :, None, None], xi[:, P][:, None, None, :, :])
    if c == 1:
        raw = [np.ones(L1)] + [sums[:, j] / N for j in (1, 2, 3, 4, 5, 6)]
        a1 = a[:, 0]
        m2, m3, m4, m6 = (_central(raw, a1, kk) for kk in (2, 3, 4, 6))
        T = m3 * (N * N / ((N - 1) * (N - 2))) if N > 2 else np.full(L1, np.nan)
        T_se = np.sqrt(np.maximum(m6 - m3**2 - 6 * m4 * m2 + 9 * m2**3, 0.0) / N)
        mean_T_cov = (m4 - 3 * m2**2) / N
        T_tail = 3.0 * xi[:, 0]
    return CumulantEstimate(
        mean,
        V,
        T,
        mean_se,
        V_se,
        T_se,
        n_samples,
        method,
        mean_tail=mean_tail,
        V_tail=V_tail,
        T_tail=T_tail,
        mean_V_cov=mu3_p[:, diag] / N,
        mean_T_cov=mean_T_cov,
    )


# ---------------------------------------------------------------------------------------------
# the task


@dataclass(frozen=True, eq=False, init=False)
class MonteCarloTask:
    """A picklable Monte Carlo run, executable in block ranges (contract with corrlib.sweep).

    ``MonteCarloTask(net, X, n).run_blocks(root_seed_sequence(rng), 0, task.n_blocks)
    .result()`` equals ``estimate_cumulants(net, X, n, rng=rng)`` bit for bit; ranges may be run
    anywhere and merged with :meth:`BlockStats.merge`.

    Parameters
    ----------
    net : Network
    X : array_like, shape (m, n_0)
        Validated first (:func:`corrlib.model.network.validate_inputs`).
    n_samples : int
        >= 3.
    directions : array_like, shape (d, n_0), optional
    method : {"collapsed", "naive"}
    **kwargs
        None accepted: an unknown keyword raises TypeError with a did-you-mean.

    Examples
    --------
    >>> import corrlib
    >>> from corrlib.montecarlo import root_seed_sequence
    >>> task = corrlib.MonteCarloTask(corrlib.Network.uniform("tanh", 8, 2), [[1.0]], 3000)
    >>> root = root_seed_sequence(1)
    >>> a, b = task.run_blocks(root, 0, 1), task.run_blocks(root, 1, task.n_blocks)
    >>> est = a.merge(b).result()
    >>> bool((est.V == corrlib.estimate_cumulants(task.net, [[1.0]], 3000, rng=1).V).all())
    True
    """

    net: Network
    X: np.ndarray
    n_samples: int
    directions: np.ndarray | None = None
    method: str = "collapsed"

    def __init__(
        self,
        net: Network,
        X: Any,
        n_samples: int,
        directions: Any = None,
        method: str = "collapsed",
        **kwargs: Any,
    ) -> None:
        X, U = validate_inputs(net, X, directions)
        check_kwargs(kwargs, ("net", "X", "n_samples", "directions", "method"), "MonteCarloTask")
        n = check_n_samples(n_samples, minimum=3)
        check_method(method)
        for name, value in (
            ("net", net),
            ("X", X),
            ("n_samples", n),
            ("directions", U),
            ("method", method),
        ):
            object.__setattr__(self, name, value)

    def _plan(self):
        return make_plan(self.net, self.X, self.directions, self.method)

    @property
    def block_size(self) -> int:
        """Samples per block (depends on the network, c and the method only)."""
        return self._plan().block

    @property
    def n_blocks(self) -> int:
        """Number of blocks."""
        return n_blocks_for(self.n_samples, self.block_size)

    @property
    def n_draws(self) -> int:
        """Gaussian variates the whole task draws (its cost; see ``blocks.MAX_DRAWS``)."""
        return self.n_samples * draws_per_sample(self._plan())

    def shift(self, root: np.random.SeedSequence) -> np.ndarray:
        """The per-layer reference point r (L+1, p): the mean of a small collapsed pilot run."""
        return self._pilot(root)[0]

    def _pilot(self, root: np.random.SeedSequence) -> tuple[np.ndarray, np.ndarray]:
        """(mean, median) per layer and unique entry of a 16-sample collapsed pilot run."""
        plan = make_plan(self.net, self.X, self.directions, "collapsed")
        iu, ju, _ = _unique_index(plan.c)
        S = np.empty((self.net.depth + 1, PILOT_SAMPLES, iu.size))

        def visit(k, Sk):
            S[k] = Sk[:, iu, ju]

        run_block(plan, block_generator(root, PILOT_KEY), PILOT_SAMPLES, visit)
        return S.mean(axis=1), np.median(S, axis=1)

    def run_blocks(
        self,
        root: np.random.SeedSequence,
        start: int,
        stop: int,
        *,
        n_jobs: int | None = None,
        chunk_size: int | None = None,
        on_done=None,
    ) -> BlockStats:
        """Power sums and top values of blocks ``start..stop-1`` generated from ``root``.

        Parameters
        ----------
        root : numpy.random.SeedSequence
            See :func:`corrlib.montecarlo.root_seed_sequence`.
        start, stop : int
            0 <= start <= stop <= n_blocks (an empty range gives an empty BlockStats).
        n_jobs, chunk_size : int, optional
            Threads and blocks per thread task; they do not change the result.
        on_done : callable, optional
            Called with the number of finished blocks (progress bars).
        """
        if not isinstance(root, np.random.SeedSequence):
            raise TypeError(f"root must be a numpy.random.SeedSequence; got {type(root).__name__}")
        nb = self.n_blocks
        if not (0 <= start <= stop <= nb):
            raise ValueError(
                f"need 0 <= start <= stop <= n_blocks={nb}; got start={start}, stop={stop}"
            )
        jobs, chunk = resolve_jobs(n_jobs), resolve_chunk(chunk_size)
        plan = self._plan()
        c, B = plan.c, plan.block
        iu, ju, _ = _unique_index(c)
        shift, centre = self._pilot(root)
        L1 = self.net.depth + 1
        n_samples = self.n_samples
        m = tail_count(n_samples, 2 * L1 * iu.size)
        k_top = m + 1 if m else 0
        empty_tails = np.full((L1, iu.size, 2, k_top), -np.inf)

        def one_block(i: int, size: int) -> tuple[np.ndarray, np.ndarray]:
            sums = np.empty((L1, _n_fields(c)))
            tails = np.empty((L1, iu.size, 2, k_top))

            def visit(k, S):
                s = S[:, iu, ju]
                sums[k] = _layer_sums(s - shift[k], c)
                if k_top:
                    block_tails(s - centre[k], tails[k])

            with np.errstate(over="ignore", invalid="ignore"):
                run_block(plan, block_generator(root, i), size, visit)
            if not np.all(np.isfinite(sums)):
                raise self._sums_overflow(i, c)
            return sums, tails

        def task(a: int, b: int) -> tuple[list, np.ndarray]:
            nodes, tails = [], []
            for i, s in zip(range(a, b), block_sizes(n_samples, B, a, b), strict=True):
                sums, t = one_block(i, s)
                nodes.append((0, i, sums))
                tails.append(t)
            return _combine(nodes), merge_tails(*tails)

        state: dict = {"nodes": [], "tails": [empty_tails]}

        def consume(part: tuple[list, np.ndarray]) -> None:
            # fold in range order as results arrive: O(log n_blocks) nodes kept; top values
            # are merged in batches of _TAIL_BATCH parts (fewer partitions, same set)
            state["nodes"] = _combine(state["nodes"] + part[0])
            state["tails"].append(part[1])
            if len(state["tails"]) > _TAIL_BATCH:
                state["tails"] = [merge_tails(*state["tails"])]

        run_tasks(task, start, stop, chunk, jobs, on_done, consume)
        tails = merge_tails(*state["tails"])
        return BlockStats(start, stop, nb, n_samples, c, self.method, shift, state["nodes"], tails)

    def _sums_overflow(self, block: int, c: int) -> OverflowError:
        net = self.net
        return OverflowError(
            f"Monte Carlo overflow: power sums of Sigma up to order {6 if c == 1 else 4} "
            f"are not finite in block {block} for C_W={net.C_W}, depth L={net.depth}, "
            f"activation {net.activation.name!r} (heavy tails or an exploding phase); "
            "use a smaller depth or C_W, or the exact laws in corrlib.exact."
        )


# ---------------------------------------------------------------------------------------------
# public entry point


# Deliberate parallel: same leading parameters as samplers.sample_collective and
# samplers.sample_outputs (each public function keeps its own typed signature, shown by help()).
def estimate_cumulants(
    net: Network,
    X: Any,
    n_samples: int,
    directions: Any = None,
    method: str = "collapsed",
    rng: Any = None,
    *,
    progress: bool = False,
    n_jobs: int | None = None,
    chunk_size: int | None = None,
    **kwargs: Any,
) -> CumulantEstimate:
    """Streaming Monte Carlo estimates of mean, covariance and third cumulant of Sigma (T2)-(T6).

    Samples Sigma^{(l-1)}, l = 1..L+1, by (T3) (``method="collapsed"``) or by the full network
    (``method="naive"``) in blocks, reduces each block to power sums and top values, and returns
    unbiased k-statistics with delta-method standard errors and a heavy-tail diagnostic (see
    the module docstring). Equal, bit for bit, to ``MonteCarloTask(net, X, n_samples,
    directions, method).run_blocks(root_seed_sequence(rng), 0, n_blocks).result()``. Memory is
    O(1) in ``n_samples``.

    Parameters
    ----------
    net : Network
    X : array_like, shape (m, n_0)
        Inputs, validated first (:func:`corrlib.model.network.validate_inputs`).
    n_samples : int
        >= 3; at most ``blocks.MAX_DRAWS`` Gaussian draws in total.
    directions : array_like, shape (d, n_0), optional
    method : {"collapsed", "naive"}
    rng : None, int, numpy.random.Generator or numpy.random.SeedSequence
    progress : bool, keyword-only
        Show a ``tqdm.auto`` progress bar over blocks (works in JupyterLab).
    n_jobs : int, optional
        Threads (default :func:`corrlib._util.default_jobs`); does not change the result.
    chunk_size : int, optional
        Blocks per thread task (default 1); does not change the result.
    **kwargs
        None accepted: an unknown keyword raises TypeError with a did-you-mean.

    Returns
    -------
    CumulantEstimate
        ``mean`` (L+1, c, c), ``V`` (L+1, c, c, c, c), ``T`` (L+1,) or None, their ``*_se`` and
        ``*_tail``.

    Warns
    -----
    HeavyTailWarning
        For each quantity whose summand's measured tail shape is >= 1/2 at some layer (its
        standard error is not valid there); names the layers and the shape, and recommends
        :func:`corrlib.exact.collective_moments` / :func:`corrlib.exact.single_input`.

    Raises
    ------
    OverflowError
        When Sigma or its power sums overflow (exploding phase, extreme tails).
    ValueError, TypeError
        For bad arguments (naming them), or a run above ``blocks.MAX_DRAWS`` draws.

    Examples
    --------
    >>> import corrlib
    >>> net = corrlib.Network.uniform("relu", 64, 2, C_W=2.0)
    >>> est = corrlib.estimate_cumulants(net, [[1.0]], 4000, rng=0)
    >>> exact_var = 2.0**2 * ((1 + 5 / 64) ** 2 - 1)  # (T14): Var S = S0^2 (prod E X^2 - 1)
    >>> bool(abs(est.V[-1, 0, 0, 0, 0] - exact_var) < 4 * est.V_se[-1, 0, 0, 0, 0])
    True
    """
    X, directions = validate_inputs(net, X, directions)
    check_kwargs(kwargs, parameter_names(estimate_cumulants), "estimate_cumulants")
    task = MonteCarloTask(net, X, n_samples, directions, method)
    root = root_seed_sequence(rng)
    jobs, chunk = resolve_jobs(n_jobs), resolve_chunk(chunk_size)
    check_cost(task.n_samples, task.n_draws // task.n_samples, "estimate_cumulants", jobs)
    if not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"progress must be True or False; got {progress!r}")
    nb = task.n_blocks
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=nb, desc=f"Monte Carlo ({method})", unit="block")
    try:
        stats = task.run_blocks(
            root,
            0,
            nb,
            n_jobs=jobs,
            chunk_size=chunk,
            on_done=None if bar is None else bar.update,
        )
    finally:
        if bar is not None:
            bar.close()
    est = stats._estimate()
    _warn_heavy_tails(est, stacklevel=2)
    return est
