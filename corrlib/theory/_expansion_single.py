"""Engine of the single-channel hierarchy (docs/theory.md section 5b, (T19)-(T27)).

One input, one channel: S_l := Sigma^{(l)} is a scalar Markov chain (T3). With K_l the
infinite-width kernel (T7) and the relative fluctuation x_l := S_l / K_l - 1, every moment
E[x_l^p] is a finite series in 1/n, and keeping the terms through n^{-J} closes the recursion on
the moments p <= 2J (T22), (T23). The cumulants kappa_j(S_l), j = 1..J+1, follow by the
moment -> cumulant map in truncated-series arithmetic (T27).

Truncated series are arrays P[..., r, k]: r = degree in x, k = power of the reference 1/n_ref.
Layer l contributes eps_l = rho_l / n_ref with rho_l = n_ref / n_l, so slot k holds every term
with k factors of 1/n; for equal widths rho = 1 and the slots *are* the coefficients of n^{-k}.

Everything here is private to :mod:`corrlib.theory.expansion`; the public entry point is
:func:`corrlib.hierarchy`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy.special import gammaln

from .._util import gauss_legendre

__all__ = [
    "K_MAX",
    "K_MIN",
    "ORDER_MAX",
    "GaussPanelRule",
    "HierarchyWarning",
    "single_channel_series",
    "state_size",
]

ORDER_MAX = 12
"""Largest supported order J.

The relative accuracy of the n^-k coefficient (Hermite path) degrades like ~10^(1.1 k - 16):
measured as the change under a 4x finer quadrature (tanh, sin, gelu, swish at criticality),
<= 1e-9 for k <= 6, <= 2e-8 for k = 8, <= 4e-6 for k = 10, <= 3e-4 for k = 12 and O(1) at
k = 16 (cancellation in the recursion; the tables themselves are exact to ~1e-13 relative).
"""

K_MIN = 1e-250
"""Kernels at or below this count as vanished (sqrt(K) xi and sigma^2 leave the float range)."""

K_MAX = 1e250
"""Kernels above this count as exploded."""

MEMORY_BUDGET = 2**25
"""Bytes of per-layer work arrays held at once; layers are processed in chunks below it."""

TABLE_TOL = 1e-11
"""Target of the quadrature error of each Taylor table (T25), relative to its own size.

Converged tables differ from their refinement by rounding only (<= 1e-12 relative measured for
J <= 12), so this flags quadrature that has not converged (e.g. a kink away from 0).
"""


class HierarchyWarning(RuntimeWarning):
    """A hierarchy result is less accurate than usual: quadrature of the Taylor tables not
    converged, or partial sums outside the range of the 1/n series."""


HierarchyWarning.__module__ = "corrlib.theory"  # its public home


# ------------------------------------------------------------------------------ errors


def _vanish_error(ell: int, K: float) -> ValueError:
    return ValueError(
        f"the kernel vanished at layer {ell}: K^({ell}) (infinite-width variance of z^({ell}), "
        f"i.e. of Sigma^({ell - 1})) = {K:.3g} <= {K_MIN:g}; the hierarchy expands S/K - 1 "
        "around K > 0 and cannot be evaluated there (a zero input with C_b = 0, or a decaying "
        "phase run too deep: reduce the depth or move C_W towards criticality)"
    )


def _explode_error(ell: int, K: float) -> OverflowError:
    return OverflowError(
        f"the kernel exploded at layer {ell}: K^({ell}) (infinite-width variance of z^({ell})) "
        f"= {K:.3g} (not finite or > {K_MAX:g}); reduce the depth or C_W"
    )


def _check_kernel(ell: int, k: float) -> None:
    if not math.isfinite(k) or k > K_MAX:
        raise _explode_error(ell, k)
    if not k > K_MIN:
        raise _vanish_error(ell, k)


# ------------------------------------------------------------------------------ combinatorics


def _weight_mask(R: int, J: int) -> np.ndarray:
    """mask[r, k] = (k + ceil(r/2) <= J): the (x-degree, order) slots that can reach n^{-J}.

    E[x^r] = O(n^{-ceil(r/2)}) (T22), so a term x^r n^{-k} of a polynomial that is later
    averaged over x contributes at order >= k + ceil(r/2); the mask is closed under products
    (T23). Shape (R+1, J+1).
    """
    r = np.arange(R + 1)[:, None]
    k = np.arange(J + 1)[None, :]
    return (k + (r + 1) // 2) <= J


def state_index(J: int) -> list[tuple[int, int]]:
    """Slots (p, k) of the moment state: ceil(p/2) <= k <= J for 1 <= p <= 2J, and (0, 0)."""
    idx = [(0, 0)]
    for p in range(1, 2 * J + 1):
        for k in range((p + 1) // 2, J + 1):
            idx.append((p, k))
    return idx


def state_size(J: int) -> int:
    """Number of entries of the moment state at order J: 1 + J (J + 1)."""
    return 1 + J * (J + 1)


# ------------------------------------------------------------------------------ quadrature


@dataclass(frozen=True)
class GaussPanelRule:
    """Gauss-Legendre panels on [-T, 0] and [0, T] against the standard normal density.

    Attributes
    ----------
    xi : ndarray, shape (N,)
        Nodes (N = 2 * panels * q); 0 is a panel edge, so a kink of sigma at 0 is integrated
        exactly.
    w : ndarray, shape (N,)
        Weights including phi(xi): sum_j w_j F(xi_j) ~ E F(xi).
    H : ndarray, shape (R+1, N)
        Natural-unit Hermite weights H[r, j] = w_j He_2r(xi_j) / (2^r r!), so that
        sum_j H[r, j] F(sqrt(K) xi_j) = (K^r / r!) d^r/ds^r E F(sqrt(s) xi) at s = K   (T25).
    panels, q : int
        Panels per half-line and nodes per panel.
    T : float
        Truncation |xi| <= T.
    """

    xi: np.ndarray
    w: np.ndarray
    H: np.ndarray
    panels: int
    q: int
    T: float

    @classmethod
    def build(cls, R: int, panels: int = 8, q: int = 24, T: float | None = None) -> GaussPanelRule:
        """Rule for the Hermite orders He_0 .. He_2R.

        The default truncation solves T^(2R+2) phi(T) = 1e-22: the tail of the highest weight
        times a quadratically growing F is negligible in natural units.
        """
        if T is None:
            p = 2 * R + 2
            T = 10.0
            for _ in range(50):
                T = math.sqrt(2.0 * (p * math.log(T) + 50.0))
        x, wl = gauss_legendre(q)
        edges = np.linspace(0.0, T, panels + 1)
        a, b = edges[:-1, None], edges[1:, None]
        pos = (0.5 * (b - a) * x + 0.5 * (b + a)).ravel()
        wpos = (0.5 * (b - a) * wl).ravel()
        xi = np.concatenate([-pos[::-1], pos])
        w = np.concatenate([wpos[::-1], wpos]) * np.exp(-0.5 * xi * xi) / math.sqrt(2.0 * math.pi)
        # normalized probabilists' Hermite t_k = He_k / sqrt(k!): no overflow at any order
        t_prev = np.zeros_like(xi)
        t = np.ones_like(xi)
        H = np.empty((R + 1, xi.size))
        H[0] = w
        for k in range(2 * R):
            t_prev, t = t, (xi * t - math.sqrt(k) * t_prev) / math.sqrt(k + 1.0)
            if (k + 1) % 2 == 0:
                r = (k + 1) // 2
                # He_2r / (2^r r!) = t_2r sqrt((2r)!) / (2^r r!)
                scale = math.exp(0.5 * gammaln(2 * r + 1.0) - r * math.log(2.0) - gammaln(r + 1.0))
                H[r] = w * t * scale
        return cls(xi=xi, w=w, H=H, panels=panels, q=q, T=float(T))

    def refined(self) -> GaussPanelRule:
        """Twice the panels and a longer truncation (for the error estimate)."""
        return GaussPanelRule.build(self.H.shape[0] - 1, 2 * self.panels, self.q, self.T + 2.0)


def _sigma_sq(act, z: np.ndarray) -> np.ndarray:
    v = np.asarray(act.f(z), dtype=float)
    if v.shape != z.shape:
        v = np.broadcast_to(v, z.shape)
    return v * v


def _kernel_sequence(act, C_W: float, C_b: float, K0: float, L: int, rule) -> np.ndarray:
    """K_0 = K0, K_l = C_b + C_W E sigma(sqrt(K_{l-1}) xi)^2 (T7); shape (L+1,)."""
    K = np.empty(L + 1)
    K[0] = K0
    si = bool(act.is_scale_invariant)
    A2 = 0.5 * (float(act.a_plus) ** 2 + float(act.a_minus) ** 2) if si else 0.0
    for i in range(1, L + 1):
        k = K[i - 1]
        _check_kernel(i, k)
        if si:
            K[i] = C_b + C_W * A2 * k
        else:
            with np.errstate(over="ignore", invalid="ignore"):
                K[i] = C_b + C_W * float(rule.w @ _sigma_sq(act, math.sqrt(k) * rule.xi))
    _check_kernel(L + 1, K[L])
    return K


# ------------------------------------------------------------------------------ step polynomials


def _poly_mul_x(a: np.ndarray, b: np.ndarray, deg: int) -> np.ndarray:
    """Product of x-polynomials a (B, Ra+1) and b (B, Rb+1), truncated at degree ``deg``."""
    out = np.zeros((a.shape[0], deg + 1))
    for r1 in range(min(a.shape[1] - 1, deg) + 1):
        n = min(b.shape[1], deg + 1 - r1)
        if n > 0:
            out[:, r1 : r1 + n] += a[:, r1 : r1 + 1] * b[:, :n]
    return out


def _scale_invariant_cumulants(a_plus: float, a_minus: float, nmax: int) -> np.ndarray:
    """kappa_i(sigma(xi)^2), i = 0..nmax, for sigma = a_+ z [z>0] + a_- z [z<0] (T26).

    From E sigma(xi)^{2a} = (a_+^{2a} + a_-^{2a}) / 2 (2a-1)!! in exact rational arithmetic
    (the slopes enter with the exact binary values of the floats).
    """
    ap2, am2 = Fraction(float(a_plus)) ** 2, Fraction(float(a_minus)) ** 2
    mom = [Fraction(1)]
    for a in range(1, nmax + 1):
        mom.append((ap2**a + am2**a) / 2 * math.prod(range(1, 2 * a, 2)))
    kap = [Fraction(0)] * (nmax + 1)
    for n in range(1, nmax + 1):
        s = mom[n]
        for m in range(1, n):
            s -= math.comb(n - 1, m - 1) * kap[m] * mom[n - m]
        kap[n] = s
    return np.array([float(k) for k in kap])


def _step_polys_scale_invariant(act, C_W: float, K: np.ndarray, J: int):
    """A(x) (B, R+1) and kappa^Y_i(x) (J+2, B, R+1) in closed form (T26).

    sigma(sqrt(s) xi)^2 = s sigma(xi)^2, so with s = K (1 + x) and Y = C_W sigma^2 / K':
    A(x) = (C_W K A_2 / K') x and kappa_i(Y | x) = (C_W K / K')^i c_i (1 + x)^i.
    """
    R = 2 * J
    Kin, Kout = K[:-1], K[1:]
    B = Kin.size
    c = _scale_invariant_cumulants(act.a_plus, act.a_minus, J + 1)
    beta = C_W * Kin / Kout
    A = np.zeros((B, R + 1))
    A[:, 1] = beta * c[1]
    kap = np.zeros((J + 2, B, R + 1))
    for i in range(2, J + 2):
        coef = beta**i * c[i]
        for r in range(min(i, 2 * (J + 1 - i)) + 1):
            kap[i, :, r] = coef * math.comb(i, r)
    return A, kap


def _centered_tables(act, C_W: float, K: np.ndarray, J: int, rule: GaussPanelRule) -> np.ndarray:
    """lam[a, b, r] = (K^r/r!) d^r/ds^r E[(Y - ybar)^a] at s = K_b (T25), a = 0..J+1.

    Y = C_W sigma(sqrt(s) xi)^2 / K'_b and ybar = E[Y] at s = K_b (same rule). Shape
    (J+2, B, 2J+1); entries beyond the needed x-degree (2J for a = 1, 2(J+1-a) for a >= 2) are 0.
    """
    Kin, Kout = K[:-1], K[1:]
    B = Kin.size
    R = 2 * J
    lam = np.zeros((J + 2, B, R + 1))
    lam[0, :, 0] = 1.0
    chunk = max(1, 200_000 // rule.xi.size)
    for s0 in range(0, B, chunk):
        sl = slice(s0, min(B, s0 + chunk))
        z = np.sqrt(Kin[sl])[:, None] * rule.xi[None, :]
        with np.errstate(over="ignore", invalid="ignore"):
            Y = (C_W / Kout[sl])[:, None] * _sigma_sq(act, z)
        if not np.all(np.isfinite(Y)):
            bad = s0 + int(np.nonzero(~np.all(np.isfinite(Y), axis=1))[0][0])
            raise OverflowError(
                f"sigma(z)^2 overflowed at layer {bad + 1} on the quadrature nodes "
                f"(|z| <= {math.sqrt(Kin[bad]) * rule.T:.3g}, K = {Kin[bad]:.3g}); the Taylor "
                "tables of the hierarchy need finite Gaussian moments of sigma^2"
            )
        Z = Y - (Y @ rule.w)[:, None]
        F = np.ones_like(Z)
        for a in range(1, J + 2):
            F = F * Z
            deg = R if a == 1 else 2 * (J + 1 - a)
            lam[a, sl, : deg + 1] = F @ rule.H[: deg + 1].T
        lam[1, sl, 0] = 0.0  # centred: E[Y - ybar] = 0 at x = 0
    return lam


def _step_polys_general(act, C_W: float, K: np.ndarray, J: int, rule: GaussPanelRule):
    """A(x) and kappa^Y_i(x) from the natural-unit Hermite tables (T20), (T25)."""
    R = 2 * J
    lam = _centered_tables(act, C_W, K, J, rule)
    A = lam[1].copy()
    A[:, 0] = 0.0  # A(0) = m(K)/K' - 1 = 0 exactly
    degs = [0, R] + [2 * (J + 1 - i) for i in range(2, J + 2)]
    # moments of the centred Y -> cumulants (i >= 2 are shift invariant), as x-polynomials
    kap = np.zeros((J + 2, K.size - 1, R + 1))
    kapl: list[np.ndarray] = [lam[0], lam[1]]
    for n in range(2, J + 2):
        d = degs[n]
        acc = lam[n][:, : d + 1].copy()
        for m in range(1, n):
            acc -= math.comb(n - 1, m - 1) * _poly_mul_x(kapl[m], lam[n - m], d)
        kapl.append(acc)
        kap[n, :, : d + 1] = acc
    return A, kap


def _select_rule(act, C_W: float, C_b: float, K0: float, L: int, J: int, tol: float):
    """Kernel sequence and a rule whose Taylor tables are converged to ``tol`` (natural units).

    The error estimate of table a is max |table_a(rule) - table_a(refined rule)| over up to 24
    layers (all when L <= 24; else the extremes of K and quantiles), relative to
    max(1, max |E (Y - ybar)^a|); panels are doubled until every table meets ``tol``.
    """
    rule = GaussPanelRule.build(2 * J)
    while True:
        K = _kernel_sequence(act, C_W, C_b, K0, L, rule)
        if L <= 24:
            sel = np.arange(L)
        else:
            srt = np.argsort(K[:-1])
            sel = np.unique(
                np.concatenate([srt[np.linspace(0, L - 1, 22).astype(int)], [0, L - 1]])
            )
        Kpair = np.empty(2 * sel.size)
        Kpair[0::2], Kpair[1::2] = K[sel], K[sel + 1]
        ref = rule.refined()
        t0 = _centered_tables(act, C_W, Kpair, J, rule)[:, 0::2]
        t1 = _centered_tables(act, C_W, Kpair, J, ref)[:, 0::2]
        err = np.max(np.abs(t1 - t0), axis=1)  # (J+2, 2J+1)
        scale = np.maximum(1.0, np.max(np.abs(t1[:, :, 0]), axis=1))  # (J+2,)
        rel = err / scale[:, None]
        if float(np.max(rel)) <= tol:
            return K, rule, rel
        if rule.panels >= 256:
            warnings.warn(
                f"hierarchy: the Hermite quadrature of the Taylor tables (T25) did not converge: "
                f"relative error estimate {np.max(rel):.2e} > {tol:.1e} with {rule.panels} "
                "panels per half-line (a kink of sigma away from 0, or sigma^2 not of "
                "polynomial growth?); the coefficients carry errors of about that relative "
                "size. corrlib.exact.single_input gives the exact law without derivatives",
                HierarchyWarning,
                stacklevel=4,
            )
            return K, rule, rel
        rule = ref


# ------------------------------------------------------------------------------ moment transfer


def _conditional_moments(A, kap, rho, J: int) -> np.ndarray:
    """Q[b, p, r, k]: E[x'^p | x] as x-polynomials with series coefficients (T21).

    Conditional cumulants of x' given x: kappa_1 = A(x) (slot 0), kappa_i = eps^{i-1}
    kappa^Y_i(x) (slot i-1, times rho^{i-1}); moments by Q_q = sum_i C(q-1, i-1) kappa_i Q_{q-i},
    truncated with the weight mask (T23). Shape (B, 2J+1, 2J+1, J+1).
    """
    B = A.shape[0]
    R = P = 2 * J
    mask = _weight_mask(R, J)
    Q = np.zeros((B, P + 1, R + 1, J + 1))
    Q[:, 0, 0, 0] = 1.0
    # Toeplitz form of each conditional cumulant:
    # (T @ prev)[r, k] = sum_r2 kappa[r - r2] prev[r2, k]
    r_idx = np.arange(R + 1)
    diff = r_idx[:, None] - r_idx[None, :]
    lower = diff >= 0
    toep: list[np.ndarray | None] = [None]
    for i in range(1, J + 2):
        kp = A if i == 1 else kap[i] * (rho ** (i - 1))[:, None]
        rmax = 2 * (J - (i - 1))  # higher x-degrees cannot survive the mask in slot >= i-1
        T = kp[:, np.where(lower, diff, 0)] * lower
        toep.append(T[:, : rmax + 1, : rmax + 1])
    for q in range(1, P + 1):
        acc = np.zeros((B, R + 1, J + 1))
        for i in range(1, min(q, J + 1) + 1):
            sh = i - 1
            T = toep[i]
            n = T.shape[1]
            acc[:, :n, sh:] += math.comb(q - 1, i - 1) * (T @ Q[:, q - i, :n, : J + 1 - sh])
        Q[:, q] = acc * mask
    return Q


def _transfer_matrices(Q: np.ndarray, J: int) -> np.ndarray:
    """G[b] (S, S) with M_new = G[b] @ M_old on the flattened moment state (T24)."""
    idx = state_index(J)
    p = np.array([i[0] for i in idx])
    k = np.array([i[1] for i in idx])
    dk = k[:, None] - k[None, :]
    valid = dk >= 0
    G = Q[:, p[:, None], p[None, :], np.where(valid, dk, 0)]
    G *= valid
    return G


def _propagate(A, kap, rho, J: int) -> np.ndarray:
    """The moment state of x_l for l = 0..L, shape (L+1, S); chunked over layers (T24)."""
    L = A.shape[0]
    S = state_size(J)
    per_layer = 8 * (S * S + 2 * (2 * J + 1) ** 2 * (J + 1) + (J + 1) * (2 * J + 1) ** 2)
    chunk = max(1, MEMORY_BUDGET // per_layer)
    state = np.zeros((L + 1, S))
    state[0, 0] = 1.0
    m = state[0].copy()
    for s0 in range(0, L, chunk):
        sl = slice(s0, min(L, s0 + chunk))
        G = _transfer_matrices(_conditional_moments(A[sl], kap[:, sl], rho[sl], J), J)
        for i in range(G.shape[0]):
            m = G[i] @ m
            state[s0 + i + 1] = m
    return state


def _series_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Truncated product of series along the last axis (same length)."""
    n = a.shape[-1]
    out = np.zeros(np.broadcast_shapes(a.shape, b.shape))
    for k1 in range(n):
        out[..., k1:] += a[..., k1 : k1 + 1] * b[..., : n - k1]
    return out


def _cumulants_from_moments(mu: np.ndarray, nmax: int) -> np.ndarray:
    """kappa_n, n = 1..nmax, from raw moments mu[..., p, k] (series in the last axis)."""
    kap = np.zeros(mu.shape[:-2] + (nmax + 1, mu.shape[-1]))
    for n in range(1, nmax + 1):
        acc = mu[..., n, :].copy()
        for m in range(1, n):
            acc -= math.comb(n - 1, m - 1) * _series_mul(kap[..., m, :], mu[..., n - m, :])
        kap[..., n, :] = acc
    return kap


# ------------------------------------------------------------------------------ entry point


def single_channel_series(
    act, C_W: float, C_b: float, widths: np.ndarray, K0: float, J: int, n_ref: float
) -> dict:
    """All cumulants kappa_j(Sigma^{(l-1)}), j = 1..J+1, through n^{-J} (T19)-(T27).

    Parameters
    ----------
    act : Activation
        Scale-invariant activations (``act.is_scale_invariant``) use homogeneity (T26); all
        others the Hermite identity (T25) on Gauss-Legendre panels split at 0.
    C_W, C_b : float
        Validated variances.
    widths : ndarray of int, shape (L,)
        Hidden widths n_1..n_L; n_l enters the step Sigma^{(l-1)} -> Sigma^{(l)}.
    K0 : float
        Sigma^{(0)} = K^{(1)}.
    J : int
        The order, 1 <= J <= ORDER_MAX (validated by the caller).
    n_ref : float
        Reference width of the series slots.

    Returns
    -------
    dict with ``coefficients`` (dict j -> ndarray (J+1, L+1): the n_ref^{-k} coefficient of
    kappa_j at every layer, exactly 0 for k < j-1), ``K`` (L+1,), ``moments``
    (L+1, 2J+1, J+1) (coefficients of E[x^p]), ``method`` ("scale-invariant" or "hermite"),
    ``rule`` (GaussPanelRule or None) and ``table_error`` ((J+2, 2J+1), relative to the size of
    each table).
    """
    L = int(widths.size)
    rho = n_ref / widths.astype(float)
    rho[widths == n_ref] = 1.0
    table_err = np.zeros((J + 2, 2 * J + 1))
    rule = None
    if act.is_scale_invariant:
        K = _kernel_sequence(act, C_W, C_b, K0, L, None)
        A, kap = _step_polys_scale_invariant(act, C_W, K, J)
        method = "scale-invariant"
    elif L == 0:
        K = _kernel_sequence(act, C_W, C_b, K0, 0, None)
        A, kap = np.zeros((0, 2 * J + 1)), np.zeros((J + 2, 0, 2 * J + 1))
        method = "hermite"
    else:
        K, rule, table_err = _select_rule(act, C_W, C_b, K0, L, J, TABLE_TOL)
        A, kap = _step_polys_general(act, C_W, K, J, rule)
        method = "hermite"
    state = _propagate(A, kap, rho, J)
    idx = state_index(J)
    moments = np.zeros((L + 1, 2 * J + 1, J + 1))
    moments[:, [t[0] for t in idx], [t[1] for t in idx]] = state
    kx = _cumulants_from_moments(moments, J + 1)  # (L+1, J+2, J+1)
    coefficients = {}
    for j in range(1, J + 2):
        with np.errstate(over="ignore", invalid="ignore"):
            c = kx[:, j, :].T * K[None, :] ** j  # (J+1, L+1)
        c[: j - 1] = 0.0  # kappa_j = O(n^{-(j-1)}) exactly (T27)
        if j == 1:
            c[0] = K
        bad = ~np.all(np.isfinite(c), axis=0)
        if np.any(bad):
            ell = int(np.nonzero(bad)[0][0]) + 1
            raise OverflowError(
                f"the n^-k coefficients of kappa_{j}(Sigma^({ell - 1})) overflow float64 at "
                f"layer {ell} (K = {K[ell - 1]:.3g}); lower the order or the depth"
            )
        coefficients[j] = c
    return {
        "coefficients": coefficients,
        "K": K,
        "moments": moments,
        "method": method,
        "rule": rule,
        "table_error": table_err,
    }
