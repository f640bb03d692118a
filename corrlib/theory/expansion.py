"""The whole hierarchy: cumulants of the collective kernel of every order, to any order in 1/n.

:func:`hierarchy` carries the 1/n expansion of docs/theory.md section 5b, (T19)-(T27), to any
order J for one input without directions (one channel, c = 1): every cumulant kappa_j of
Sigma^{(l)}, j = 1..J+1, with all its terms through n^{-J}, at every layer. Order J = 1
reproduces (T10)-(T12) and J = 2 adds (T13). Several channels (c <= 4: several inputs and/or
directions) are available at orders 1 (:func:`corrlib.finite_width`) and 2 (the n^-2 terms of
the mean kernel and of V and the leading third-cumulant tensor, (T33)-(T40)).

Layer convention (as everywhere in corrlib): arrays have a leading axis of length L+1 whose
entry l-1 belongs to z^{(l)}, i.e. to Sigma^{(l-1)}; entry 0 is the deterministic
Sigma^{(0)} = K^{(1)}.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .._util import check_int, check_kwargs, check_real, tidy_frame
from ..model.channels import ChannelLayout, input_kernel
from ..model.network import Network
from ._expansion_multi import MAX_CHANNELS_ORDER2, multi_channel_series
from ._expansion_single import ORDER_MAX, HierarchyWarning, single_channel_series

__all__ = [
    "ORDER_MAX",
    "HierarchyResult",
    "HierarchyWarning",
    "hierarchy",
    "hierarchy_convergence",
    "series_stops",
]


#: several channels: the largest relative change of the n^-2 terms under a coarser rule that
#: passes without a warning (a conservative bound of the quadrature error)
TABLE_TOLERANCE = 1e-3


def _double_factorial_odd(m: int) -> int:
    """(2m-1)!! = (2m)! / (2^m m!)."""
    return math.prod(range(1, 2 * m, 2))


@dataclass(frozen=True, eq=False)
class HierarchyResult:
    """Cumulants of the collective kernel, term by term in 1/n, per layer (from :func:`hierarchy`).

    The j-th joint cumulant of the entries of Sigma^{(l-1)} is the series
    kappa_j = sum_k term(j, k), whose n^{-k} term vanishes for k < j-1 (T27); the series is
    known through n^{-order}. j = 1 is the mean kernel E Sigma, j = 2 the covariance V,
    j = 3 the third cumulant.

    Attributes
    ----------
    net : Network
    layout : ChannelLayout
        Channels (c = m(1+d)); c = 1 for one input without directions.
    order : int
        J: every cumulant is known through n^{-J}; cumulants j = 1..J+1 have a nonzero term.
    K : ndarray, shape (L+1, c, c)
        Infinite-width kernels K^{(l)} (T7).
    n_ref : float
        Reference width of the stored coefficients: the common hidden width, or the harmonic
        mean of unequal widths (so that sum_l 1/n_l = L/n_ref); 1 without hidden layers.
    method : str
        How the Gaussian s-derivatives were taken: ``"scale-invariant"`` (closed form (T26)),
        ``"hermite"`` (natural-unit Hermite identity (T25)), ``"finite_width"`` (several
        channels at order 1, from (T10)-(T11)) or ``"hermite-multi"`` (several channels at
        order 2: the n^-1 terms from (T10)-(T11), the n^-2 terms from (T36)-(T38) with the
        multivariate Hermite identity (T34)).
    table_error : ndarray
        c = 1: refinement estimate of the quadrature error of the Hermite tables (T25),
        relative to the size of each table, shape (J+2, 2J+1) (zeros for the closed forms).
        Several channels: shape (1,), the largest relative change of the n^-2 terms under a
        rule with 1.3 times the step (a conservative bound; 0 at order 1 and for the exact
        rules of scale-invariant activations).

    Examples
    --------
    >>> import corrlib
    >>> from corrlib.theory import hierarchy
    >>> h = hierarchy(corrlib.Network.critical("tanh", width=64, depth=8), [1.0], order=3)
    >>> h.term(3, 2).shape, h.kappa(2).shape, h.coefficients(1).shape
    ((9, 1, 1, 1, 1, 1, 1), (9, 1, 1, 1, 1), (9, 4, 1, 1))
    >>> h.output_cumulants().shape        # kappa_2, kappa_4, kappa_6, kappa_8 of z, per layer
    (9, 4)
    >>> bool(abs(h.output_cumulants()[-1, 1] / (3 * h.V[-1].item()) - 1) < 1e-15)  # (T4)
    True
    """

    net: Network
    layout: ChannelLayout
    order: int
    K: np.ndarray = field(repr=False)
    n_ref: float
    method: str
    table_error: np.ndarray = field(repr=False)
    _coef: dict = field(repr=False)  # j -> (J+1, L+1) + (c, c) * j, units n_ref^-k

    # ----------------------------------------------------------------- validation helpers

    @property
    def depth(self) -> int:
        """L, the number of hidden layers."""
        return self.K.shape[0] - 1

    def _check_j(self, j) -> int:
        return check_int(j, "j", minimum=1, maximum=self.order + 1)

    def _check_k(self, k, name: str = "k") -> int:
        return check_int(k, name, minimum=0, maximum=self.order)

    def _single(self, what: str) -> None:
        if self.layout.c != 1:
            raise ValueError(
                f"{what} needs a single channel (c = 1: one input, no directions); this result "
                f"has c = {self.layout.c} channels"
            )

    # ----------------------------------------------------------------- the series

    def term(self, j: int, k: int) -> np.ndarray:
        """The n^{-k} term of the j-th joint cumulant of the kernel entries (T27).

        Parameters
        ----------
        j : int
            1 <= j <= order + 1 (1: E Sigma, 2: Cov, 3: kappa_3, ...).
        k : int
            0 <= k <= order. Zero for k < j - 1. For unequal widths the term holds every
            contribution with k factors 1/n_l (from any layers).

        Returns
        -------
        ndarray, shape (L+1,) + (c, c) * j
        """
        j, k = self._check_j(j), self._check_k(k)
        return self._coef[j][k] * self.n_ref ** (-k)

    def kappa(self, j: int, order: int | None = None) -> np.ndarray:
        """The partial sum of :meth:`term` (j, k) over k = 0..order (default: all).

        Returns
        -------
        ndarray, shape (L+1,) + (c, c) * j
        """
        j = self._check_j(j)
        J = self.order if order is None else self._check_k(order, "order")
        scale = self.n_ref ** -np.arange(J + 1, dtype=float)
        return np.tensordot(scale, self._coef[j][: J + 1], axes=(0, 0))

    def coefficients(self, j: int) -> np.ndarray:
        """The terms times n^k, for equal hidden widths: kappa_j = sum_k coefficient_k n^-k.

        Computed directly in units of 1/n (no division by n^k), so they do not depend on the
        width at all.

        Returns
        -------
        ndarray, shape (L+1, order+1) + (c, c) * j

        Raises
        ------
        ValueError
            For unequal hidden widths (use :meth:`term`, which carries its 1/n_l factors).
        """
        j = self._check_j(j)
        widths = set(self.net.hidden_widths)
        if len(widths) > 1:
            raise ValueError(
                "coefficients(j) needs equal hidden widths (one coefficient per power of 1/n); "
                f"got widths {self.net.hidden_widths}. Use term(j, k), which carries the 1/n_l "
                "factors of unequal widths"
            )
        return np.moveaxis(self._coef[j], 0, 1).copy()

    # ----------------------------------------------------------------- protocol names

    @property
    def mean(self) -> np.ndarray:
        """E Sigma through n^{-order}, shape (L+1, c, c): E[z_{i;a} z_{i;b}]."""
        return self.kappa(1)

    @property
    def V(self) -> np.ndarray:
        """Cov(Sigma_ab, Sigma_cd) through n^{-order}, shape (L+1, c, c, c, c) (T6)."""
        return self.kappa(2)

    @property
    def T(self) -> np.ndarray | None:
        """kappa_3(Sigma) through n^{-order}, shape (L+1,); None unless c = 1 and order >= 2.

        (kappa_3 starts at n^-2, so at order 1 it has no term.)
        """
        if self.layout.c != 1 or self.order < 2:
            return None
        return self.kappa(3).reshape(-1)

    def normalized_kappa4(self) -> np.ndarray:
        """kappa_4(z_a)/kappa_2(z_a)^2 = 3 V_(aa)(aa) / (E Sigma_aa)^2 per channel, shape (L+1, c).

        Ratio of the partial sums at the full order (T4); at order 1 this differs from
        :meth:`FiniteWidthResult.normalized_kappa4` (3 V/K^2) by O(n^-2).
        """
        idx = np.arange(self.layout.c)
        Vd = self.V[:, idx, idx, idx, idx]
        md = self.mean[:, idx, idx]
        return 3.0 * Vd / md**2

    def normalized_kappa6(self) -> np.ndarray:
        """kappa_6(z)/kappa_2(z)^3 = 15 T / (E Sigma)^3, shape (L+1, 1); c = 1, order >= 2 (T4)."""
        self._single("normalized_kappa6")
        if self.T is None:
            raise ValueError(
                "normalized_kappa6 needs order >= 2 (kappa_3(Sigma) starts at n^-2); got order 1"
            )
        return (15.0 * self.T / self.mean[:, 0, 0] ** 3)[:, None]

    def output_cumulants(self, order: int | None = None) -> np.ndarray:
        """kappa_2m of one output neuron z^{(l)}, m = 1..order+1, at every layer (T4).

        kappa_2m(z) = (2m)!/(2^m m!) kappa_m(Sigma), each kappa_m summed through
        n^{-order} (default: the full order; columns with m - 1 > order are then 0).

        Returns
        -------
        ndarray, shape (L+1, self.order + 1); column m-1 holds kappa_2m.
        """
        self._single("output_cumulants")
        J = self.order if order is None else self._check_k(order, "order")
        out = np.empty((self.depth + 1, self.order + 1))
        for m in range(1, self.order + 2):
            out[:, m - 1] = _double_factorial_odd(m) * self.kappa(m, J).reshape(-1)
        return out

    def to_frame(self):
        """Tidy DataFrame of the partial sums: ``layer, quantity, a, ..., f, value, se, order``.

        One row per partial sum through n^{-order}, for order = 0..self.order: quantity
        ``"mean"`` (from order 0, where it is K), ``"V"`` (from order 1), ``"T"`` (from order
        2) and, for c = 1, ``"kappa<j>_Sigma"`` for j = 4..order+1 (from order j-1).
        Channel indices as in :meth:`FiniteWidthResult.to_frame` (unused ones <NA>; scalars
        have none); with several channels ``"T"`` is the third joint cumulant
        kappa(Sigma_ab, Sigma_cd, Sigma_ef) (:meth:`kappa` (3)) on its unique entries a <= b,
        c <= d, e <= f, (a, b) <= (c, d) <= (e, f). ``se`` is NaN.
        A term is the difference of two consecutive orders; ``order == result.order`` selects
        the full result, and the rows with ``order == 1`` are :func:`corrlib.finite_width`'s
        K + Delta and V.

        Examples
        --------
        >>> import numpy as np, corrlib
        >>> from corrlib.theory import hierarchy
        >>> net = corrlib.Network.uniform("tanh", 32, 2, n_in=2, C_W=1.5, C_b=0.1)
        >>> df = hierarchy(net, np.eye(2), order=2).to_frame()
        >>> t = df[(df.quantity == "T") & (df.order == 2) & (df.layer == 3)]
        >>> len(t), t[["a", "b", "c", "d", "e", "f"]].iloc[-1].tolist()   # c = 2: 10 entries
        (10, [1, 1, 1, 1, 1, 1])
        """
        import pandas as pd

        parts = []
        for k in range(self.order + 1):
            q = {"mean": (self.kappa(1, k), None)}
            if k >= 1:
                q["V"] = (self.kappa(2, k), None)
            if self.layout.c == 1:
                for j in range(3, k + 2):  # kappa_j starts at n^-(j-1)
                    name = "T" if j == 3 else f"kappa{j}_Sigma"
                    q[name] = (self.kappa(j, k).reshape(-1), None)
            elif k >= 2:  # the third-cumulant tensor, six channel indices
                q["T"] = (self.kappa(3, k), None)
            parts.append(tidy_frame(q, order=k))
        df = pd.concat(parts, ignore_index=True)
        df["order"] = df["order"].astype("int64")
        return df

    def __repr__(self) -> str:
        return (
            f"HierarchyResult(order={self.order}, c={self.layout.c}, L={self.depth}, "
            f"n_ref={self.n_ref:g}, method={self.method!r})"
        )


# ------------------------------------------------------------------------------ entry point


def _check_order(order) -> int:
    try:
        return check_int(order, "order", minimum=1, maximum=ORDER_MAX)
    except ValueError as exc:
        if isinstance(order, (int, np.integer)) and order > ORDER_MAX:
            raise ValueError(
                f"{exc} (in float64 the n^-k coefficients lose accuracy like ~10^(1.1k - 16): "
                "measured up to 3e-4 relative at k = 12 and O(1) at k = 16; the 1/n series is "
                "asymptotic, and beyond order ~6 it improves only at L/n < 1)"
            ) from None
        raise


def _as_rows(A):
    """A 1-D array is one row (the API protocol); anything else is passed on as given."""
    if A is None:
        return None
    arr = np.asarray(A) if not isinstance(A, np.ndarray) else A
    return arr[None, :] if arr.ndim == 1 else A


def _reference_width(widths: tuple[int, ...]) -> float:
    if not widths:
        return 1.0
    if len(set(widths)) == 1:
        return float(widths[0])
    return float(len(widths) / sum(1.0 / n for n in widths))  # harmonic mean


def _several_channels(net: Network, X, directions, layout: ChannelLayout, J: int, n_ref: float):
    """Several channels: order 1 is (T10)-(T11) of corrlib.finite_width; order 2 adds the n^-2
    terms of (T36)-(T38) (corrlib/theory/_expansion_multi.py) for c <= 4 channels."""
    if J > 2:
        raise ValueError(
            f"order must be 1 or 2 for several channels; got {J} (c = {layout.c} channels: "
            f"m = {layout.m} inputs, d = {layout.d} directions). Orders above 2 need one input "
            "without directions (c = 1)"
        )
    if J == 2 and layout.c > MAX_CHANNELS_ORDER2:
        raise ValueError(
            f"order 2 with several channels needs c <= {MAX_CHANNELS_ORDER2} channels; got c = "
            f"{layout.c} (m = {layout.m} inputs, d = {layout.d} directions). Use order=1 "
            "(corrlib.finite_width) or fewer inputs/directions"
        )
    from .recursion import finite_width

    fw = finite_width(net, X, directions)
    Vc = fw.V * n_ref
    coef = {1: np.stack([fw.K, fw.Delta * n_ref]), 2: np.stack([np.zeros_like(fw.V), Vc])}
    if J == 1:
        return fw.K, coef, "finite_width", np.zeros(1)
    out = multi_channel_series(net, fw.K, fw.Delta, fw.V, layout, n_ref)
    coef[1] = np.concatenate([coef[1], out["D2"][None]])
    coef[2] = np.concatenate([coef[2], out["V2"][None]])
    coef[3] = np.stack([np.zeros_like(out["T"]), np.zeros_like(out["T"]), out["T"]])
    err = out["table_error"]
    if err > TABLE_TOLERANCE:
        warnings.warn(
            f"hierarchy: the Gaussian tables of the n^-2 terms changed by {err:.2g} (relative) "
            f"under a coarser rule, more than {TABLE_TOLERANCE:g}; the n^-2 terms may be "
            "inaccurate at that level (very large kernel variances?)",
            HierarchyWarning,
            stacklevel=3,
        )
    return fw.K, coef, "hermite-multi", np.array([err])


def hierarchy(net: Network, X, directions=None, order: int = 2, **kwargs) -> HierarchyResult:
    """Every cumulant of the collective kernel through order n^-order in 1/n (T19)-(T27).

    For one input without directions (c = 1), S_l = Sigma^{(l)} is a scalar Markov chain
    (T3). Expanding the conditional mean and cumulants of one step around the infinite-width
    kernel K_l (T20) and averaging over the relative fluctuation x_l = S_l/K_l - 1 gives every
    moment E[x_l^p] as a finite series in 1/n (T21); keeping the terms of total order <= J
    (T23) closes the recursion on p <= 2J, a linear map of a state of 1 + J(J+1) numbers per
    layer (T24). kappa_j(S_l), j = 1..J+1, follow in truncated-series arithmetic (T27).

    Parameters
    ----------
    net : Network
        Hidden widths may differ; the width n_l enters the step l -> l+1.
    X : array_like, shape (m, n_0) or (n_0,)
        The input(s).
    directions : array_like, shape (d, n_0), optional
        Input-derivative directions.
    order : int
        J, 1 <= J <= 12 (``ORDER_MAX``). Several channels: J = 1 or 2 (J = 2 for c <= 4).

    Returns
    -------
    HierarchyResult
        ``term(j, k)``, ``kappa(j, order)``, ``coefficients(j)``, ``output_cumulants()``,
        ``mean`` (L+1, c, c), ``V`` (L+1, c, c, c, c), ``T`` (L+1,), ``to_frame()``.

    Raises
    ------
    TypeError
        ``net`` not a Network; ``order`` not an integer; unknown keyword arguments.
    ValueError
        ``order`` outside [1, 12]; order > 2 with several channels, or order 2 with more than
        4 channels; a kernel that vanished
        (K^{(l)} <= 1e-250, e.g. a zero input with C_b = 0 or a decaying phase run too deep),
        naming the layer.
    OverflowError
        A kernel that exploded (> 1e250) or a coefficient beyond float64, naming the layer.

    Notes
    -----
    *Derivatives, by activation class (inspected through ``act.is_scale_invariant``).*
    Scale-invariant activations a_+ z [z>0] + a_- z [z<0] (relu, leaky relu, linear; any
    C_b): homogeneity gives every Taylor coefficient in closed form (T26), with the cumulants
    of sigma(xi)^2 in rational arithmetic, so vanishing coefficients are exact zeros (the
    ReLU mean has no 1/n term at all). Any other activation (smooth, or with a kink at 0):
    the natural-unit Hermite identity (T25) on Gauss-Legendre panels split at xi = 0, refined
    until every table changes by < 1e-11 of its size (a ``HierarchyWarning`` with the
    estimate otherwise, e.g. for a kink away from 0). No derivative of sigma is used.

    *Accuracy (measured; tests/test_hierarchy.py).* Order 1 reproduces
    :func:`corrlib.finite_width` (K + Delta, V) and order 2 its T to <= 6.1e-14 relative (relu,
    tanh, gelu, swish, erf; unequal widths 5..31). relu, leaky relu and linear with C_b = 0:
    every coefficient through n^-6 equals the exact expansion of (T14) to <= 6.4e-15 relative
    for L <= 64 (and through n^-12, 1e-15). tanh, sin, gelu, swish, critical and off-critical,
    against the lattice solver :func:`corrlib.exact.single_input`: the error of the order-J
    partial sum of kappa_1..kappa_3 falls like n^-(J+1), J = 1..4, n = 128..1024 (gelu, swish:
    256..2048; 93 of 96 fitted slopes observable, all within 0.2 of -(J+1)). tanh at
    criticality, n = 32, L = 16: relative error of Var Sigma 1.6e-1, 1.6e-2, 1.8e-3, 2.8e-4,
    4.8e-5, 6.5e-6 at orders 1..6 (kappa_3: 1.9e-1 at order 2, 3.7e-3 at 4, 1.4e-4 at 6).
    Hermite path: the n^-k coefficient itself is accurate to <= 1e-9 relative for k <= 6, ~1e-8
    at k = 8, ~1e-6 at k = 10, ~1e-4 at k = 12 (float64 cancellation; hence order <= 12). The
    series is asymptotic at fixed L/n: for critical tanh, order J stops improving on order J-1
    for Var Sigma from L/n = 1.75 (J = 6), 2.3 (J = 5), 3.1 (J = 4) at n = 32 and 64 (see
    :func:`hierarchy_convergence`); beyond, use the exact solver.

    *Several channels (c <= 4), order 2 (T33)-(T40).* The n^0 and n^-1 terms are
    :func:`corrlib.finite_width`'s; the n^-2 terms of E Sigma and Cov Sigma and the leading
    third-cumulant tensor come from the expansion of one step in d = Sigma - K with the
    multivariate Hermite identity (T34) (per input subset: relu-type activations on 1-2
    inputs by exact half-line/polar rules, on 3-4 inputs of full rank by exact truncated
    moments of the kink cells (T41), rank-deficient 3-4 inputs by the kink-split rule
    (T42)-(T43); trapezoid rules for smooth ones). Measured (tests/test_hierarchy_multi.py): the
    n^-1 terms recomputed with these tables agree with the engine to <= 1e-7 (typically 1e-10);
    at c = 1 the n^-2 terms equal the single-channel series to 1e-8; for a ReLU value +
    derivative channel they equal the exact (T16) expansion to 1e-10; against the collapsed
    Monte Carlo (tanh, two inputs with C_b = 0.1 and one input with a direction, n = 32 and 64,
    L = 8 and 16) order 2 removes 80-99% of the order-1 miss of V wherever that miss exceeds 10
    standard errors. ``table_error`` bounds the quadrature error of the n^-2 terms (a
    ``HierarchyWarning`` above 1e-3). The range warning (below) covers several channels too.

    *Several channels against stored Monte Carlo at n = 32, 64, 128* (tests/test_hierarchy_mc.py:
    tanh with two inputs, C_W = 2, C_b = 0.1, L = 16; critical tanh and critical gelu with a
    derivative direction, L = 16 and 4). Every entry of V whose order-1 miss exceeds 10
    standard errors at all three widths (12 entries) has 75-99% of that miss removed by
    order 2, and the remainder falls like n^-3 (fitted exponents 2.98 [2.61, 3.48], 2.58
    [2.16, 3.14] and 2.83 [2.50, 3.21] where it is resolved; gelu's remainders are consistent
    with 3 but too small to exclude 2). At n = 128 order 2 is within 4 standard errors of
    every entry of E Sigma and V.

    *Range.* A ``HierarchyWarning`` names the first layer where a partial sum is evidently
    outside the range of the series (E Sigma or Var Sigma <= 0, or the n^-order term at least
    half of the partial sum of kappa_1, kappa_2 or kappa_3). Errors of 10-25% occur before
    that (tanh at L/n = 2, relu at L/n = 1); :func:`hierarchy_convergence` measures them.
    Several channels: the same criteria entry by entry, an entry's size being its
    Cauchy-Schwarz bound (off-diagonal entries may pass through 0): a partial sum
    E Sigma_aa or Var Sigma_ab <= 0, or the n^-order term of E Sigma_ab at least half of
    sqrt(E Sigma_aa E Sigma_bb), or that of Cov(Sigma_ab, Sigma_cd) at least half of
    sqrt(Var Sigma_ab Var Sigma_cd) (kappa_3 has a single term: not compared). The message
    names the entry, the layer and the ratio. Measured (tests/test_hierarchy.py): critical
    gelu with a derivative direction, n = 32, L = 16, is flagged at layer 13 (the n^-2 term
    of E Sigma_11 is 0.58 of it); at the output order 2 gives E Sigma_11 = 0.16 against the
    Monte Carlo 0.73 +- 0.04. The Monte Carlo cases above and those of
    tests/test_hierarchy_mc.py are not flagged. Use :func:`corrlib.estimate_cumulants` there.

    *Cost.* c = 1, order 6, L = 1000: 0.15 s (tanh) and 0.12 s (relu) of CPU; order 12:
    1.3 s (benchmarks/bench_hierarchy.py, on a loaded machine). A layer costs O(J^4);
    memory is bounded by processing layers in chunks.

    Examples
    --------
    ReLU at criticality: E Sigma = K exactly, and Var Sigma/K^2 = (1 + 5/n)^L - 1 (T15), so
    its n^-k coefficient is C(L, k) 5^k:

    >>> import numpy as np, corrlib
    >>> from corrlib.theory import hierarchy
    >>> net = corrlib.Network.critical("relu", width=64, depth=10)
    >>> h = hierarchy(net, np.ones((1, 1)), order=4)
    >>> h.coefficients(1)[-1, :, 0, 0] / h.K[-1, 0, 0]
    array([1., 0., 0., 0., 0.])
    >>> (h.coefficients(2)[-1, :, 0, 0, 0, 0] / h.K[-1, 0, 0] ** 2).round(6).tolist()
    [0.0, 50.0, 1125.0, 15000.0, 131250.0]

    tanh at criticality, n = 32, L = 16: Var Sigma / K^2 order by order (the lattice solver
    :func:`corrlib.exact.single_input` gives 0.2705):

    >>> net = corrlib.Network.critical("tanh", width=32, depth=16)
    >>> h = hierarchy(net, [1.0], order=4)
    >>> [round(float(h.kappa(2, J)[-1, 0, 0, 0, 0] / h.K[-1, 0, 0] ** 2), 4) for J in (1, 2, 3, 4)]
    [0.313, 0.2662, 0.271, 0.2704]

    Two inputs (c = 2) at order 2: order 1 is exactly :func:`corrlib.finite_width`, order 2
    adds the n^-2 terms and the third-cumulant tensor of the kernel entries:

    >>> net = corrlib.Network.uniform("tanh", 32, 3, n_in=2, C_W=2.0, C_b=0.1)
    >>> h = hierarchy(net, np.eye(2), order=2)
    >>> fw = corrlib.finite_width(net, np.eye(2))
    >>> bool(np.allclose(h.kappa(2, 1), fw.V, rtol=1e-12, atol=0))
    True
    >>> h.term(2, 2).shape, h.kappa(3).shape, h.coefficients(1).shape
    ((4, 2, 2, 2, 2), (4, 2, 2, 2, 2, 2, 2), (4, 3, 2, 2))
    """
    check_kwargs(kwargs, ("X", "directions", "order"), "hierarchy")
    if not isinstance(net, Network):
        raise TypeError(f"net must be a corrlib.Network; got {type(net).__name__}")
    J = _check_order(order)
    X, directions = _as_rows(X), _as_rows(directions)
    K1, layout = input_kernel(net, X, directions)
    n_ref = _reference_width(net.hidden_widths)
    if layout.c != 1:
        K, coef, method, table_error = _several_channels(net, X, directions, layout, J, n_ref)
    else:
        widths = np.array(net.hidden_widths, dtype=np.int64)
        r = single_channel_series(
            net.activation, net.C_W, net.C_b, widths, float(K1[0, 0]), J, n_ref
        )
        K = r["K"][:, None, None]
        coef = {j: c.reshape(c.shape + (1, 1) * j) for j, c in r["coefficients"].items()}
        method, table_error = r["method"], r["table_error"]
    # Deliberate parallel: a keyword-argument call of the same shape as the _chain.propagate(...)
    # call in exact/lattice.py and the _Sources(...) call in exact/_chain.py (named arguments of
    # different functions; nothing to share).
    result = HierarchyResult(
        net=net,
        layout=layout,
        order=J,
        K=K,
        n_ref=n_ref,
        method=method,
        table_error=table_error,
        _coef=coef,
    )
    if layout.c == 1:
        _warn_out_of_range(result)
    else:
        _warn_out_of_range_multi(result)
    return result


_NAMES = {1: "E Sigma", 2: "Var Sigma", 3: "kappa_3(Sigma)"}


def _warn_out_of_range(h: HierarchyResult) -> None:
    """Warn when a partial sum is evidently outside the range of the 1/n series.

    Criteria (j = 1, 2, 3, where the series has at least two terms): the partial sum of E Sigma
    or Var Sigma is <= 0, or the last term is at least half the partial sum. This flags the
    gross cases only; errors of 10-25% occur before (measured: tanh at L/n = 2, relu at L/n = 1).
    """
    J = h.order
    for j in (1, 2, 3):
        if J < j:  # a single term: nothing to compare
            continue
        total = h.kappa(j).reshape(h.depth + 1, -1)[:, 0]
        last = h.term(j, J).reshape(h.depth + 1, -1)[:, 0]
        bad = np.abs(last) >= 0.5 * np.abs(total)
        if j <= 2:
            bad |= total <= 0
        bad[0] = False  # Sigma^(0) is deterministic
        if np.any(bad):
            ell = int(np.nonzero(bad)[0][0])
            L_n = ell / h.n_ref
            warnings.warn(
                f"hierarchy: the 1/n series of {_NAMES[j]} is outside its range at layer "
                f"{ell + 1} (after {ell} hidden layers, L/n = {L_n:.3g}): the order-{J} partial "
                f"sum is {total[ell]:.3g} and its last term (n^-{J}) is {last[ell]:.3g}. The "
                "series in 1/n is asymptotic at fixed L/n; use a smaller depth-to-width ratio, "
                "or corrlib.exact.single_input for the exact law",
                HierarchyWarning,
                stacklevel=3,
            )
            return


def _diagonal_sums(total: np.ndarray, j: int) -> np.ndarray:
    """From the partial sums of kappa_j, E Sigma_aa (j = 1, (L+1, c)) or Var Sigma_ab (j = 2,
    (L+1, c, c)): the entries that must be positive."""
    if j == 1:
        return np.diagonal(total, axis1=1, axis2=2)
    c = total.shape[1]
    a, b = np.meshgrid(np.arange(c), np.arange(c), indexing="ij")
    return total[:, a, b, a, b]


def _entry_scales(h: HierarchyResult, j: int) -> tuple[np.ndarray, ...]:
    """Several channels: partial sum, last term, Cauchy-Schwarz scale and diagonal partial sums
    (:func:`_diagonal_sums`) of every entry of kappa_j.

    j = 1: E Sigma_ab, scale sqrt(E Sigma_aa E Sigma_bb); j = 2: Cov(Sigma_ab, Sigma_cd), scale
    sqrt(Var Sigma_ab Var Sigma_cd). The scales use |.| of the diagonal partial sums, so that a
    negative one is measured, not hidden.
    """
    total, last = h.kappa(j), h.term(j, h.order)
    diag = _diagonal_sums(total, j)
    d = np.abs(diag)
    if j == 1:
        scale = np.sqrt(d[:, :, None] * d[:, None, :])
    else:
        scale = np.sqrt(d[:, :, :, None, None] * d[:, None, None, :, :])
    return total, last, scale, diag


def _warn_out_of_range_multi(h: HierarchyResult) -> None:
    """Several channels: warn when a partial sum is evidently outside the range of the series.

    The c = 1 criteria of :func:`_warn_out_of_range` entry by entry, with the size of an entry
    measured by its Cauchy-Schwarz bound (an off-diagonal entry may pass through 0): for
    j = 1 (E Sigma) and j = 2 (Cov Sigma) at order 2, a diagonal partial sum E Sigma_aa or
    Var Sigma_ab <= 0, or the n^-2 term of an entry at least half of
    sqrt(E Sigma_aa E Sigma_bb) (j = 1) or sqrt(Var Sigma_ab Var Sigma_cd) (j = 2). kappa_3
    has a single term for several channels: nothing to compare. The first such layer and its
    worst entry are named. At order 1 only E Sigma = K + Delta has two terms.
    """
    for j in range(1, min(h.order, 2) + 1):
        total, last, scale, diag = _entry_scales(h, j)
        ratio = np.zeros(total.shape)
        np.divide(np.abs(last), scale, out=ratio, where=scale > 0)
        ratio = ratio.reshape(h.depth + 1, -1).max(axis=1)
        bad = (ratio >= 0.5) | np.any(diag.reshape(h.depth + 1, -1) <= 0, axis=1)
        bad[0] = False  # Sigma^(0) is deterministic
        if np.any(bad):
            ell = int(np.nonzero(bad)[0][0])
            _warn_entry(h, j, ell, total[ell], last[ell], scale[ell], diag[ell])
            return


def _entry_name(j: int, idx: tuple[int, ...]) -> str:
    if j == 1:
        return f"E Sigma_{idx[0]}{idx[1]}"
    return f"Cov(Sigma_{idx[0]}{idx[1]}, Sigma_{idx[2]}{idx[3]})"


def _warn_entry(h: HierarchyResult, j: int, ell: int, total, last, scale, diag) -> None:
    """The warning of :func:`_warn_out_of_range_multi` for layer ``ell`` (the arrays at it)."""
    if np.any(diag <= 0):
        a = np.unravel_index(int(np.argmin(diag)), diag.shape)
        idx = (a[0], a[0]) if j == 1 else (a[0], a[1], a[0], a[1])
        what = f"the order-{h.order} partial sum of {_entry_name(j, idx)} is {total[idx]:.3g}"
    else:
        r = np.abs(last) / np.where(scale > 0, scale, np.inf)
        idx = np.unravel_index(int(np.argmax(r)), r.shape)
        what = (
            f"the last term (n^-{h.order}) of {_entry_name(j, idx)} is {last[idx]:.3g}, "
            f"{r[idx]:.2g} of its scale {scale[idx]:.3g} (Cauchy-Schwarz bound; partial "
            f"sum {total[idx]:.3g})"
        )
    warnings.warn(
        f"hierarchy: the 1/n series of {('E Sigma', 'Cov Sigma')[j - 1]} is outside its range at "
        f"layer {ell + 1} (after {ell} hidden layers, L/n = {ell / h.n_ref:.3g}; c = "
        f"{h.layout.c} channels): {what}. The series in 1/n is asymptotic at fixed L/n; use a "
        "smaller depth-to-width ratio, or the Monte Carlo corrlib.estimate_cumulants "
        "(method='collapsed') for these channels",
        HierarchyWarning,
        stacklevel=4,
    )


# ------------------------------------------------------------------------------ convergence


_NORMALIZED = {1: "mean/K", 2: "Var/K^2", 3: "kappa3/K^3"}


def _reference_series(reference, L1: int) -> dict[int, np.ndarray]:
    if hasattr(reference, "cumulants"):
        reference = {j: reference.cumulants(j) for j in (1, 2, 3)}
    if not isinstance(reference, Mapping):
        raise TypeError(
            "reference must be a mapping j -> kappa_j(Sigma) per layer (shape (L+1,)) or have a "
            "cumulants(j) method (e.g. corrlib.exact.single_input); got "
            f"{type(reference).__name__}"
        )
    out = {}
    for j, v in reference.items():
        jj = check_int(j, "reference key j", minimum=1, maximum=3)
        arr = np.asarray(v, dtype=float).reshape(-1)
        if arr.shape != (L1,):
            raise ValueError(
                f"reference[{jj}] must have shape ({L1},) (one value per layer, L+1); got "
                f"{np.shape(v)}"
            )
        out[jj] = arr
    return out


def hierarchy_convergence(result: HierarchyResult, reference, orders=None):
    """Relative error of every partial sum against an exact reference, layer by layer.

    Parameters
    ----------
    result : HierarchyResult
        One channel (c = 1).
    reference : mapping or object with ``cumulants(j)``
        Exact kappa_j(Sigma^{(l-1)}) per layer (shape (L+1,)) for some of j = 1, 2, 3, e.g.
        ``corrlib.exact.single_input(net, X)`` or the closed forms of (T14).
    orders : sequence of int, optional
        Orders to compare (default 1..result.order; j = 3 starts at 2).

    Returns
    -------
    pandas.DataFrame
        Columns ``layer`` (l = 1..L+1), ``depth`` (l - 1, the hidden layers below
        Sigma^{(l-1)}), ``L_over_n`` (depth / n_ref), ``j``, ``quantity`` (``"mean/K"``,
        ``"Var/K^2"``, ``"kappa3/K^3"``), ``order``, ``exact`` and ``partial_sum`` (both
        divided by K^j), ``rel_error`` = |partial_sum/exact - 1|. Layer 1 (deterministic) is
        left out.

    Examples
    --------
    >>> import numpy as np, corrlib
    >>> from corrlib.theory import hierarchy, hierarchy_convergence
    >>> net = corrlib.Network.critical("relu", width=64, depth=8)
    >>> h = hierarchy(net, [1.0], order=3)
    >>> K = h.K[:, 0, 0]
    >>> exact = {2: K**2 * ((1 + 5 / 64) ** np.arange(9) - 1)}   # (T15)
    >>> df = hierarchy_convergence(h, exact)
    >>> df[df.layer == 9].rel_error.round(4).tolist()
    [0.2428, 0.0357, 0.0034]
    """
    import pandas as pd

    if not isinstance(result, HierarchyResult):
        raise TypeError(f"result must be a HierarchyResult; got {type(result).__name__}")
    result._single("hierarchy_convergence")
    L1 = result.depth + 1
    ref = _reference_series(reference, L1)
    if orders is None:
        orders = range(1, result.order + 1)
    orders = [check_int(J, "orders[i]", minimum=1, maximum=result.order) for J in orders]
    K = result.K[:, 0, 0]
    depth = np.arange(L1)
    rows = []
    for j in sorted(ref):
        exact = ref[j] / K**j
        for J in orders:
            if J < j - 1:
                continue
            ps = result.kappa(j, J).reshape(-1) / K**j
            with np.errstate(divide="ignore", invalid="ignore"):
                err = np.abs(ps / exact - 1.0)
            rows.append(
                pd.DataFrame(
                    {
                        "layer": depth[1:] + 1,
                        "depth": depth[1:],
                        "L_over_n": depth[1:] / result.n_ref,
                        "j": j,
                        "quantity": _NORMALIZED[j],
                        "order": J,
                        "exact": exact[1:],
                        "partial_sum": ps[1:],
                        "rel_error": err[1:],
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


def series_stops(frame, floor: float = 0.0):
    """Where each order stops improving on the previous one (from :func:`hierarchy_convergence`).

    For each quantity and order J (> the lowest order present), only depths where order J-1
    is above ``floor`` (the reference's own accuracy) count. ``first`` is the first L/n with
    rel_error(J) >= rel_error(J-1) (isolated early crossings come from sign changes of the
    error); ``stops`` is the smallest L/n from which on order J is never better again (NaN when
    it still improves at the deepest layer).

    Returns
    -------
    pandas.DataFrame
        Columns ``j, quantity, order, first, stops``.

    Examples
    --------
    >>> import numpy as np, corrlib
    >>> from corrlib.theory import hierarchy, hierarchy_convergence, series_stops
    >>> net = corrlib.Network.critical("relu", width=128, depth=16)
    >>> h = hierarchy(net, [1.0], order=3)
    >>> exact = {2: h.K[:, 0, 0] ** 2 * ((1 + 5 / 128) ** np.arange(17) - 1)}   # (T15)
    >>> series_stops(hierarchy_convergence(h, exact))[["order", "stops"]].to_dict("list")
    {'order': [2, 3], 'stops': [nan, nan]}
    """
    import pandas as pd

    floor = check_real(floor, "floor", minimum=0.0)
    out = []
    for (j, quantity), g in frame.groupby(["j", "quantity"], sort=True):
        tab = g.pivot_table(index="L_over_n", columns="order", values="rel_error")
        orders = sorted(tab.columns)
        x = tab.index.to_numpy()
        for Jprev, J in zip(orders[:-1], orders[1:], strict=False):
            prev, cur = tab[Jprev].to_numpy(), tab[J].to_numpy()
            cmp = prev > floor
            worse = (cur >= prev) & cmp
            better = ~worse & cmp
            first = float(x[np.nonzero(worse)[0][0]]) if np.any(worse) else np.nan
            if not np.any(better):
                stops = float(x[np.nonzero(cmp)[0][0]]) if np.any(cmp) else np.nan
            else:
                last = np.nonzero(better)[0][-1]
                stops = np.nan if last == x.size - 1 else float(x[last + 1])
            out.append({"j": j, "quantity": quantity, "order": J, "first": first, "stops": stops})
    return pd.DataFrame(out, columns=["j", "quantity", "order", "first", "stops"])
