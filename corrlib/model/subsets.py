"""Gaussian moment functionals over the value coordinates of a few inputs (docs/theory.md §10).

Every expectation of the recursions (T7), (T10), (T11) is an integral over the values
z = (z_1, ..., z_k) of the k <= 4 distinct inputs it involves; derivative channels are Gaussian
given z and are integrated out analytically by the caller (:mod:`corrlib.model.channels`). What
is left is one of two *moment functionals* of z ~ N(0, K_S):

- ``products``: E[ prod_t f_t(z) * E_eta prod_t (A_t (z, 1) + eta_t) ] for a batch of slot lists
  (f_t = sigma or sigma' of one coordinate; the second factor is the moment of a Gaussian
  eta ~ N(0, Gamma) with a mean linear in z), summed over partial matchings (Isserlis with a mean);
- ``tensors``: T_j = E[ g(z) z^{(x)j} ] for g = prod_i sigma(z_i)^alpha_i sigma'(z_i)^beta_i.

One :class:`SubsetMoments` is built per distinct input subset and layer, in one of three modes:

- ``"orthant"`` (scale-invariant kinked sigma, full-rank K_S): exact, from the truncated moments
  of :mod:`corrlib.model.orthant`;
- ``"nodes"``: a tensor quadrature rule in pivoted-Cholesky coordinates z = L xi (zero pivots
  dropped, so singular K_S works). Smooth sigma: per level the cheapest Gauss-Hermite or
  trapezoid rule that integrates a test family of the activation to 2e-15 at that level's scale
  (calibrated once per activation). Kinked sigma (other than the exact case above): nested
  Gauss-Legendre, each level split at the kink hyperplanes z_j = 0 and at the projections of
  their intersections, so every one-dimensional integrand is analytic between breakpoints;
  activations that are not scale-invariant get panels graded geometrically around the
  breakpoints down to the activation's own scale (also used for smooth sigma at variances
  beyond the calibrated range, and for one input at any scale);
- ``"smoothed"`` (smooth sigma, full-rank K_S, k >= 3): only the input pivoted last depends on
  the last Cholesky variable, so that level is a one-dimensional Gaussian smoothing of sigma,
  tabulated once and interpolated (12-point Lagrange): a four-input integral costs N^3 nodes,
  not N^4.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from .._util import gauss_legendre
from .gaussian import kink_rule
from .orthant import OrthantMoments

__all__ = [
    "MAX_INPUTS",
    "ExactBatch",
    "MomentBatch",
    "NodeMoments",
    "SmoothedBatch",
    "joint_tensor",
    "partial_matchings",
    "pivoted_cholesky",
    "subset_moments",
    "smoothed_eligible",
    "smoothed_key",
]

#: the most distinct inputs one expectation of (T10)/(T11) involves
MAX_INPUTS = 4

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
# relative conditional standard deviation below which a Cholesky level is dropped
_PIVOT_RTOL = 1e-7
# product weights below this fraction of the largest one are pruned (the integrands grow at most
# like |xi|^8 ~ 1e7 where the weights are already < 1e-18)
_PRUNE = 1e-18
# truncation of the trapezoid rules and of the split rules (standard-normal units)
_R_TRUNC = 8.8
# split rules: Gauss-Legendre nodes per piece and the background panel length
_SPLIT_NODES = 16
_SPLIT_PANEL = 2.2
# tabulation step and stencil size of the smoothed last Cholesky level
_SMOOTH_STEP = 0.025
_LAGR = 12
# the calibrated rules cover level scales up to this (standard deviations of sigma's argument)
_CAL_MAX = 6.0
_CAL_SCALES = np.geomspace(1e-3, _CAL_MAX, 46)
_CAL_TOL = 2e-15
# subsets of three or four inputs only enter the four-point function G4 (no Hermite identity
# amplifies their errors): their levels are calibrated to this looser tolerance
_CAL_TOL_G4 = 1e-13
_GH_LADDER = (2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 18, 20, 24, 28, 32, 36, 40, 48, 56, 64, 72,
              80, 96, 112, 128, 160, 200)  # fmt: skip
_TRAP_LADDER = (0.9, 0.8, 0.7, 0.6, 0.55, 0.5, 0.45, 0.4, 0.36, 0.32, 0.29, 0.26, 0.23, 0.2,
                0.18, 0.16, 0.14, 0.12, 0.1, 0.085, 0.07, 0.06)  # fmt: skip
# polar rule of scale-invariant activations on one or two inputs: exact for polynomials of
# degree <= 11 along each ray; Gauss-Legendre in the angle on panels <= pi/2 between kink rays
_POLAR_RADIAL = 6
_POLAR_ANGLE = 24
# eigenvalues below this fraction of the largest are zero (the rank of a polar rule)
_EIG_RTOL = 1e-12
# work arrays of the node-mode products are chunked to about this many entries
_CHUNK = 1 << 21


# ----------------------------------------------------------------------------- factorization


def pivoted_cholesky(K: np.ndarray, rtol: float = _PIVOT_RTOL) -> np.ndarray:
    """``L`` of shape (k, r) with ``K = L L^T``, columns in pivot order.

    The pivot is the coordinate with the largest conditional variance; pivots whose conditional
    standard deviation is below ``rtol`` times the largest standard deviation are dropped, so r
    is the numerical rank. Row p of L is zero after the column where p itself was pivoted.

    Parameters
    ----------
    K : ndarray, shape (k, k)
        Symmetric positive semi-definite.
    rtol : float
        Relative standard-deviation threshold of a pivot.

    Returns
    -------
    ndarray, shape (k, r)

    Examples
    --------
    >>> import numpy as np
    >>> L = pivoted_cholesky(np.array([[1.0, 1.0], [1.0, 1.0]]))  # rank 1
    >>> L.shape, float(L[1, 0])
    ((2, 1), 1.0)
    """
    K = np.asarray(K, dtype=float)
    K = 0.5 * (K + K.T)
    k = K.shape[0]
    # plain floats: k <= 4 here, and per-element numpy calls cost more than the arithmetic
    # (the operations and their order are those of the vectorized form, so the result is the same)
    R = K.tolist()
    dmax = max((R[j][j] for j in range(k)), default=0.0)
    smax = math.sqrt(max(dmax, 0.0))
    thr = (rtol * smax) ** 2
    cols: list[list[float]] = []
    done = [False] * k
    for _ in range(k):
        i, di = -1, -math.inf
        for j in range(k):
            if not done[j] and (R[j][j] > di or i < 0 or R[j][j] != R[j][j]):
                i, di = j, R[j][j]
                if di != di:  # NaN: stop here, as the vectorized argmax did
                    break
        if smax == 0.0 or not (di > thr):
            break
        sq = math.sqrt(di)
        col = [0.0 if done[j] else R[j][i] / sq for j in range(k)]
        col[i] = sq
        cols.append(col)
        R = [[R[a][b] - col[a] * col[b] for b in range(k)] for a in range(k)]
        done[i] = True
        for j in range(k):
            R[i][j] = 0.0
            R[j][i] = 0.0
    return np.ascontiguousarray(np.array(cols).T) if cols else np.zeros((k, 0))


# ------------------------------------------------------------------------------- 1-D rules


@lru_cache(maxsize=64)
def _gh_rule(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Hermite rule for the standard normal density."""
    x, w = np.polynomial.hermite_e.hermegauss(n)
    return x, w * _INV_SQRT_2PI


@lru_cache(maxsize=64)
def _trap_rule(h: float) -> tuple[np.ndarray, np.ndarray]:
    """Trapezoid rule with step h on [-R, R] for the standard normal density."""
    M = int(math.floor(_R_TRUNC / h))
    x = h * np.arange(-M, M + 1, dtype=float)
    return x, h * _INV_SQRT_2PI * np.exp(-0.5 * x * x)


@lru_cache(maxsize=8)
def _leg01(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = gauss_legendre(n)
    return 0.5 * (x + 1.0), 0.5 * w


def _family(act, x: np.ndarray, e: float, family: str) -> np.ndarray:
    """Test integrands of the calibration: the worst one-level factors of a tensor rule."""
    f, df = act.f, act.df
    c = 0.4 * e
    with np.errstate(all="ignore"):
        if family == "low":  # at most one feature per input (four-input subsets)
            out = [f(x + c) * f(x - c), df(x + c) * df(x - c), f(x) ** 2, df(x) * x * x]
        else:  # products of two features of one input, times a polynomial
            out = [f(x + c) * f(x - c), df(x + c) * df(x - c), f(x) * df(x) * x,
                   f(x) ** 2 * df(x) ** 2]  # fmt: skip
    return np.nan_to_num(np.stack(out))


class _Calibration:
    """The calibration table of one (activation, family, tolerance), built scale by scale on
    demand (each scale's search starts at the previous scale's choice, so a prefix of the table
    is the same whether or not the larger scales were calibrated)."""

    def __init__(self, act, family: str, tol: float):
        self.act, self.family, self.tol = act, family, tol
        self.xr = 0.02 * np.arange(-500, 501)
        self.wr = 0.02 * _INV_SQRT_2PI * np.exp(-0.5 * self.xr * self.xr)
        cands = [(n, "gh", float(n)) for n in _GH_LADDER]
        cands += [(len(_trap_rule(h)[0]), "trap", h) for h in _TRAP_LADDER]
        cands.sort()
        self.cands = cands
        self.table: list[tuple[str, float]] = []
        self.last = 0

    def upto(self, j: int) -> list[tuple[str, float]]:
        """The table through scale index j (all of it for j >= len(_CAL_SCALES) - 1)."""
        act, family, tol, cands = self.act, self.family, self.tol, self.cands
        while len(self.table) <= min(j, len(_CAL_SCALES) - 1):
            e = _CAL_SCALES[len(self.table)]
            vals = _family(act, e * self.xr, e, family)
            ref = vals @ self.wr
            scale = np.abs(vals) @ self.wr + 1e-300
            choice = len(cands) - 1
            for i in range(self.last, len(cands)):
                _, kind, par = cands[i]
                x, w = _gh_rule(int(par)) if kind == "gh" else _trap_rule(par)
                if np.all(np.abs(_family(act, e * x, e, family) @ w - ref) <= tol * scale):
                    choice = i
                    break
            self.last = choice
            self.table.append(cands[choice][1:])
        return self.table


_CALIBRATION: dict[tuple, _Calibration] = {}
# the same calibrations by activation object (held, so its id is not reused while cached)
_CAL_BY_ID: dict[tuple, tuple] = {}


def _calibration(
    act, family: str, tol: float = _CAL_TOL, upto: int | None = None
) -> list[tuple[str, float]]:
    """Per scale of ``_CAL_SCALES`` the cheapest 1-D rule (("gh", n) or ("trap", h)) that
    integrates the test family g(e xi) against the normal density to ``_CAL_TOL`` relative
    (reference: trapezoid rule with step 0.02 on [-10, 10]). Node counts never decrease with the
    scale. Cached per activation (activations compare by what they compute); only the scales
    through index ``upto`` (default: all) are guaranteed to be in the returned list."""
    upto = len(_CAL_SCALES) - 1 if upto is None else upto
    hit = _CAL_BY_ID.get((id(act), family, tol))
    if hit is not None and hit[0] is act:  # hashing an activation costs more than the lookup
        return hit[1].upto(upto)
    key = (act, family, tol)
    if key not in _CALIBRATION:
        if len(_CALIBRATION) > 64:
            _CALIBRATION.clear()
        _CALIBRATION[key] = _Calibration(act, family, tol)
    if len(_CAL_BY_ID) > 64:
        _CAL_BY_ID.clear()
    _CAL_BY_ID[(id(act), family, tol)] = (act, _CALIBRATION[key])
    return _CALIBRATION[key].upto(upto)


def _rule_for_scale(
    act, e: float, family: str = "full", tol: float = _CAL_TOL
) -> tuple[np.ndarray, np.ndarray]:
    """The calibrated 1-D rule for a level whose variable enters with coefficients <= e."""
    return _rule(_rule_key(act, e, family, tol))


def _rule_key(act, e: float, family: str = "full", tol: float = _CAL_TOL) -> tuple[str, float]:
    """("gh", n) or ("trap", h): which rule :func:`_rule_for_scale` returns."""
    j = min(int(np.searchsorted(_CAL_SCALES, 1.05 * e)), len(_CAL_SCALES) - 1)
    return _calibration(act, family, tol, j)[j]


def _rule(key: tuple[str, float]) -> tuple[np.ndarray, np.ndarray]:
    kind, par = key
    return _gh_rule(int(par)) if kind == "gh" else _trap_rule(par)


@lru_cache(maxsize=256)
def _tensor_rule_of(keys: tuple[tuple[str, float], ...]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_tensor_rule` of the 1-D rules named by ``keys`` (cached, read-only arrays)."""
    X, W = _tensor_rule([_rule(key) for key in keys])
    X.flags.writeable = False
    W.flags.writeable = False
    return X, W


def _tensor_rule(rules: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Pruned tensor product of 1-D rules: points (P, r), weights (P,)."""
    X = np.zeros((1, 0))
    W = np.ones(1)
    for x, w in rules:
        X = np.concatenate([np.repeat(X, len(x), axis=0), np.tile(x, len(W))[:, None]], axis=1)
        W = np.outer(W, w).ravel()
        keep = W > _PRUNE * W.max()
        X, W = X[keep], W[keep]
    return X, W


# ------------------------------------------------------------------------ split rules (kinks)


def _split_normals(Bn: np.ndarray) -> list[np.ndarray]:
    """Breakpoint normals per level for the hyperplanes {b . xi = 0}, b the rows of Bn (k, r).

    Level i holds normals v in R^(i+1) with v[i] != 0: given xi_0..xi_(i-1) the level-i integrand
    is analytic in xi_i between the points xi_i = -(v[:i] . xi_<i) / v[i]. They are the
    hyperplanes whose last non-zero coefficient is at level i and the projections (elimination
    of xi_(i+1)) of pairwise intersections of the hyperplanes of level i+1.
    """
    r = Bn.shape[1]
    levels: list[list[np.ndarray]] = [[] for _ in range(r)]

    def add(v: np.ndarray) -> None:
        nrm = np.linalg.norm(v)
        nz = np.flatnonzero(np.abs(v) > 1e-13 * nrm) if nrm > 0 else []
        if len(nz) == 0:
            return
        lvl = int(nz[-1])
        u = v[: lvl + 1] / nrm
        u = u * np.sign(u[lvl])
        if not any(np.max(np.abs(w - u)) < 1e-12 for w in levels[lvl]):
            levels[lvl].append(u)

    for b in Bn:
        add(np.asarray(b, dtype=float))
    for lvl in range(r - 1, 0, -1):
        for u, v in itertools.combinations(list(levels[lvl]), 2):
            add(v[lvl] * u[:lvl] - u[lvl] * v[:lvl])
    return [np.array(lv).reshape(len(lv), i + 1) for i, lv in enumerate(levels)]


def _grading(width: float) -> np.ndarray:
    """Offsets of graded panel edges around a breakpoint whose integrand varies on ``width``."""
    if not width < _SPLIT_PANEL / 2:
        return np.zeros(0)
    J = int(math.ceil(math.log2(_SPLIT_PANEL / width)))
    offs = width * 2.0 ** np.arange(J)
    return np.concatenate([-offs[::-1], offs])


def _split_rule(L: np.ndarray, graded: bool) -> tuple[np.ndarray, np.ndarray]:
    """Nested rule for xi ~ N(0, I_r), z = L xi, split at every z_j = 0 (and projections).

    Each level is cut at its breakpoints and at a background grid of spacing ``_SPLIT_PANEL`` on
    [-R, R]; with ``graded`` also at geometric offsets around each breakpoint down to the
    activation's own scale (1 in z, i.e. 1 / max_j |L_j,level| in xi). Every piece gets
    ``_SPLIT_NODES`` Gauss-Legendre nodes against the normal density. Returns points in xi
    (P, r) and weights (P,).
    """
    r = L.shape[1]
    normals = _split_normals(L)
    xg, wg = _leg01(_SPLIT_NODES)
    nb = int(math.ceil(2 * _R_TRUNC / _SPLIT_PANEL))
    grid = np.linspace(-_R_TRUNC, _R_TRUNC, nb + 1)
    X = np.zeros((1, 0))
    W = np.ones(1)
    for i in range(r):
        V = normals[i]
        offs = _grading(1.0 / float(np.max(np.abs(L[:, i])))) if graded else np.zeros(0)
        pts = [np.broadcast_to(grid, (len(W), len(grid)))]
        if len(V):
            bp = -(X @ V[:, :i].T) / V[:, i]  # (P, nbp)
            pts.append(bp)
            if len(offs):
                pts.append((bp[:, :, None] + offs).reshape(len(W), -1))
        pts = np.sort(np.clip(np.concatenate(pts, 1), -_R_TRUNC, _R_TRUNC), 1)
        a, b = pts[:, :-1], pts[:, 1:]
        h = b - a
        t = a[..., None] + h[..., None] * xg
        wt = h[..., None] * wg * (_INV_SQRT_2PI * np.exp(-0.5 * t * t))
        pieces = h.shape[1]
        Xn = np.concatenate([np.repeat(X, pieces * _SPLIT_NODES, axis=0), t.reshape(-1, 1)], 1)
        Wn = (W[:, None, None] * wt).reshape(-1)
        keep = Wn > _PRUNE * Wn.max()
        X, W = Xn[keep], Wn[keep]
    return X, W


# ----------------------------------------------------------------------------- polar rules


def _polar_rule(K: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(L, X, W) for z = L xi on one or two inputs: a polar rule in eigen coordinates, exact for
    integrands that are polynomials of degree <= 11 between the kink rays z_i = 0.

    The angle is cut at every kink ray and at the four axes (so every panel is <= pi/2), with
    Gauss-Legendre nodes on each panel; the radius has the Gauss rule of rho^(r-1) e^(-rho^2/2).
    Nearly collinear inputs give nearly coincident rays, but the integrands of the recursion are
    continuous across them (or enter through Hermite identities), so nothing is ill-conditioned.
    """
    lam, Q = np.linalg.eigh(0.5 * (K + K.T))
    keep = lam > _EIG_RTOL * max(float(lam[-1]), 0.0)
    L = Q[:, keep] * np.sqrt(lam[keep])
    r = L.shape[1]
    if r == 0:
        return L, np.zeros((1, 0)), np.ones(1)
    X, W = kink_rule(L, _POLAR_RADIAL, _POLAR_ANGLE)
    return L, X, W


# ----------------------------------------------------------------------- partial matchings


@lru_cache(maxsize=16)
def partial_matchings(n: int) -> tuple[tuple[tuple[int, ...], tuple[tuple[int, int], ...]], ...]:
    """All partial matchings of the slots 0..n-1 as (unmatched slots, pairs).

    E[prod_t (mu_t + eta_t)] for a centred Gaussian eta is the sum over these of
    prod_(s,t) in pairs Cov(eta_s, eta_t) * prod_u in unmatched mu_u (Isserlis with a mean).

    Examples
    --------
    >>> len(partial_matchings(4)), len(partial_matchings(6))
    (10, 76)
    """
    out = []

    def rec(rest, un, pairs):
        if not rest:
            out.append((un, pairs))
            return
        s, tail = rest[0], rest[1:]
        rec(tail, un + (s,), pairs)
        for i, t in enumerate(tail):
            rec(tail[:i] + tail[i + 1 :], un, pairs + ((s, t),))

    rec(tuple(range(n)), (), ())
    return tuple(out)


# ----------------------------------------------------------------- joint moment tensors


def _double_factorial_moment(counts: np.ndarray) -> np.ndarray:
    """prod_l E[omega^counts_l] for independent standard normals: (c-1)!! for even c, else 0."""
    out = np.ones(counts.shape[0])
    for col in counts.T:
        m = np.where(col % 2 == 0, 1.0, 0.0)
        for c in range(2, int(col.max(initial=0)) + 1, 2):
            m = np.where(col >= c, m * (c - 1), m)
        out *= m
    return out


@lru_cache(maxsize=128)
def _joint_table(k: int, ne: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gather table of :func:`joint_tensor`: flat index into concat(T_0..T_n), moment factor."""
    dim = k + ne + 1
    idx = np.indices((dim,) * n).reshape(n, -1).T if n else np.zeros((1, 0), dtype=int)
    isz = idx < k
    u = isz.sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum([k**j for j in range(n + 1)])])
    flat = np.zeros(len(idx), dtype=np.int64)
    for pos in range(n):  # positional base-k number of the z indices, in order
        flat = np.where(isz[:, pos], flat * k + idx[:, pos], flat)
    counts = np.stack([(idx == k + l).sum(axis=1) for l in range(ne)], 1) if ne else None
    mom = _double_factorial_moment(counts) if ne else np.ones(len(idx))
    return offsets[u] + flat, mom


def joint_tensor(Ts: Sequence[np.ndarray], k: int, ne: int, n: int) -> np.ndarray:
    """E[g(z) x^{(x)n}] for x = (z, omega, 1), omega ~ N(0, I_ne) independent of z.

    Parameters
    ----------
    Ts : sequence of ndarray
        T_j = E[g(z) z^{(x)j}] for j = 0..n, each of shape (B,) + (k,) * j (a batch axis B).
    k, ne, n : int
        Dimensions of z and omega, and the order.

    Returns
    -------
    ndarray, shape (B,) + (k + ne + 1,) * n
    """
    gidx, mom = _joint_table(k, ne, n)
    B = Ts[0].shape[0]
    cat = np.concatenate([np.asarray(T).reshape(B, -1) for T in Ts[: n + 1]], axis=1)
    return (cat[:, gidx] * mom).reshape((B,) + (k + ne + 1,) * n)


@lru_cache(maxsize=64)
def _tilde_table(k: int, u: int) -> np.ndarray:
    return _joint_table(k, 0, u)[0]


def _contract_rows(T: np.ndarray, rows: Sequence[np.ndarray]) -> np.ndarray:
    """T (B, d^u) or (d,)*u-shaped with a batch axis, contracted with rows (B, d) each -> (B,)."""
    B = rows[0].shape[0] if rows else T.shape[0]
    out = T.reshape(B, -1)
    for row in rows:
        d = row.shape[1]
        out = np.einsum("bd,bdr->br", row, out.reshape(B, d, -1))
    return out.reshape(B)


# ------------------------------------------------------------------------ subset moments


def _gspec(feat_row: np.ndarray, k: int) -> tuple[tuple[int, int], ...]:
    """(alpha_i, beta_i) per input from feature indices (i: sigma(z_i), k + i: sigma'(z_i))."""
    return tuple((int(np.sum(feat_row == i)), int(np.sum(feat_row == k + i))) for i in range(k))


def _matching_weights(Gd: np.ndarray):
    """(unmatched slots, product of the matched covariances) for every partial matching of the
    last axis' slots whose weight is not identically zero. Gd has shape (..., m, m)."""
    m = Gd.shape[-1]
    for un, pairs in partial_matchings(m):
        c = np.ones(Gd.shape[:-2])
        for p, q in pairs:
            c = c * Gd[..., p, q]
        if not pairs or np.any(c):
            yield un, c


def _eval(fn, z: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.asarray(fn(z), dtype=float)


class MomentBatch:
    """Moment functionals of sigma over the values z ~ N(0, K_b) of a batch of input subsets of
    one size k (docs/theory.md section 10).

    Every functional is expressed in the coordinates xi of a factor z = L xi (xi standard
    normal of dimension r = rank K): coefficient rows over xi are bounded by the standard
    deviations of what they describe, so no rounding is amplified by cond(K).

    Attributes
    ----------
    k, r, nb : int
        Inputs per subset, dimension of xi, number of subsets.
    L : ndarray, shape (nb, k, r)
        The factors.
    n_nodes : int
        Quadrature nodes per subset summed over the batch (0 when exact).
    """

    k: int
    r: int
    nb: int
    L: np.ndarray
    n_nodes: int = 0

    def products(self, feats: np.ndarray, A: np.ndarray, Gam: np.ndarray) -> np.ndarray:
        """E[prod_t f_t(z) * E_eta prod_(t < m) (A_t . xi + eta_t)] for a batch of slot lists.

        The first m slots are derivative channels: factor sigma'(z_i) times the channel's
        coordinate, Gaussian given z with mean A_t . xi and covariance Gam. The other slots are
        value channels (sigma(z_i)) or the constant 1.

        Parameters
        ----------
        feats : ndarray of int, shape (n, s)
            Slot features, the same for every subset: i for sigma(z_i), k + i for
            sigma'(z_i), 2k for the constant 1; the m derivative slots come first.
        A : ndarray, shape (nb, n, m, r)
            Conditional mean of each derivative slot's coordinate as a row over xi.
        Gam : ndarray, shape (nb, n, m, m)
            Conditional covariance of the derivative slots' coordinates.

        Returns
        -------
        ndarray, shape (nb, n)
        """
        raise NotImplementedError

    def tensors(self, gspec: tuple[tuple[int, int], ...], jmax: int) -> list[np.ndarray]:
        """[T_0, ..., T_jmax], T_j = E[g(z) xi^{(x)j}] of shape (nb,) + (r,) * j, for
        g = prod_i sigma(z_i)^alpha_i sigma'(z_i)^beta_i, gspec = ((alpha_i, beta_i), ...)."""
        raise NotImplementedError


class NodeMoments(MomentBatch):
    """One subset with a quadrature rule: nodes xi (P, r), weights (P,), z = L xi.

    The rule: a polar rule (scale-invariant kinked sigma, k <= 2: exact), nested split
    Gauss-Legendre (other kinked sigma, rank-deficient kinked subsets, or smooth sigma beyond
    the calibrated variances), or the calibrated tensor Gauss-Hermite/trapezoid rule.
    """

    def __init__(self, act, Kzz: np.ndarray, L: np.ndarray | None = None):
        self.act = act
        Kzz = 0.5 * (Kzz + Kzz.T)
        self.k = k = Kzz.shape[0]
        self.nb = 1
        kink = bool(act.kink)
        if kink and act.is_scale_invariant and k <= 2:
            L, X, W = _polar_rule(Kzz)
        else:
            L = pivoted_cholesky(Kzz) if L is None else L
            r = L.shape[1]
            scale = float(np.max(np.abs(L))) if r else 0.0
            if r == 0:
                X, W = np.zeros((1, 0)), np.ones(1)
            elif kink or scale > _CAL_MAX:
                X, W = _split_rule(L, graded=not act.is_scale_invariant)
            else:
                tol = _CAL_TOL_G4 if k >= 3 else _CAL_TOL
                X, W = _tensor_rule_of(
                    tuple(_rule_key(act, e, "full", tol) for e in np.max(np.abs(L), axis=0))
                )
        self.r = L.shape[1]
        self.L = L[None]
        self.X, self.W = X, W
        self.Z = X @ L.T
        self.n_nodes = len(W)
        self._rows: dict[int, np.ndarray] = {}
        self._tcache: dict[tuple, list[np.ndarray]] = {}
        self._pow = [np.ones((len(W), 1))]  # xi^{(x)j} at the nodes

    def _feature(self, f: int) -> np.ndarray:
        """Row f of the features at the nodes: sigma(z_f), sigma'(z_(f-k)) or 1 (f = 2k)."""
        if f not in self._rows:
            k = self.k
            if f == 2 * k:
                self._rows[f] = np.ones(len(self.W))
            else:
                self._rows[f] = _eval(self.act.f if f < k else self.act.df, self.Z[:, f % k])
        return self._rows[f]

    def _g(self, feats: np.ndarray) -> np.ndarray:
        F = np.stack([self._feature(f) for f in range(2 * self.k + 1)])
        return np.prod(F[feats], axis=1)

    def products(self, feats, A, Gam):
        n, s = feats.shape
        m = A.shape[2]
        step = max(1, _CHUNK // max(1, (s + m) * len(self.W)))
        out = np.empty((1, n))
        for i in range(0, n, step):
            sl = slice(i, i + step)
            g = self._g(feats[sl])  # (n', P)
            if m:
                mu = A[0, sl] @ self.X.T  # (n', m, P)
                Q = np.zeros_like(g)
                for un, c in _matching_weights(Gam[0, sl]):
                    term = c[:, None]
                    for u in un:
                        term = term * mu[:, u]
                    Q += term
                g = g * Q
            out[0, sl] = g @ self.W
        return out

    def _powers(self, jmax: int) -> list[np.ndarray]:
        """xi^{(x)j} at the nodes, (P, r^j), j = 0..jmax (cached)."""
        pw = self._pow
        while len(pw) <= jmax:
            pw.append((pw[-1][:, :, None] * self.X[:, None, :]).reshape(len(self.W), -1))
        return pw[: jmax + 1]

    def tensors(self, gspec, jmax):
        key = (gspec, jmax)
        if key not in self._tcache:
            wg = self.W.copy()
            for i, (al, be) in enumerate(gspec):
                for _ in range(al):
                    wg = wg * self._feature(i)
                for _ in range(be):
                    wg = wg * self._feature(self.k + i)
            Xp = self._powers((jmax + 1) // 2)
            out = []
            for j in range(jmax + 1):  # sum_p wg xi^{(x)a} (x) xi^{(x)(j-a)}, a = ceil(j/2)
                a = (j + 1) // 2
                T = (Xp[a] * wg[:, None]).T @ Xp[j - a]
                out.append(T.reshape((1,) + (self.r,) * j))
            self._tcache[key] = out
        return self._tcache[key]


class SmoothedBatch(MomentBatch):
    """Full-rank subsets of k >= 3 inputs, smooth sigma: an outer tensor rule over the first
    k-1 Cholesky levels, shared by the batch (per level the calibrated rule of the largest scale
    in the batch), and a tabulated one-dimensional smoothing for the last level.

    Only the input pivoted last, z_l = mu + s xi_k, depends on the last variable, so E over xi_k
    of sigma(z_l)^a sigma'(z_l)^b xi_k^p is a function H(mu) of one variable, tabulated on a
    uniform grid (step ``_SMOOTH_STEP``) over the range of mu and interpolated with ``_LAGR``-point
    Lagrange stencils (H is analytic in a strip at least as wide as the activation's; measured
    interpolation error <= 7e-15 of the integrand's scale): a four-input integral costs N^3 nodes.
    """

    def __init__(self, act, L: np.ndarray):
        self.act = act
        self.nb, self.k, self.r = L.shape
        k, nb = self.k, self.nb
        self.L = L
        self.il = np.argmax(np.abs(L[:, :, k - 1]), axis=1)  # (nb,) input pivoted last
        self.s_last = L[np.arange(nb), self.il, k - 1]
        Lout = L[:, :, : k - 1]
        fam = "low" if k == 4 else "full"
        X, W = _tensor_rule_of(
            tuple(_rule_key(act, e, fam, _CAL_TOL_G4) for e in np.max(np.abs(Lout), axis=(0, 1)))
        )
        self.X, self.W = X, W
        self.Z = np.einsum("pj,bij->bpi", X, Lout)  # z at xi_k = 0; column il holds mu
        self.n_nodes = nb * len(W)
        mu = self.Z[np.arange(nb), :, self.il]  # (nb, P)
        h, half = _SMOOTH_STEP, _LAGR // 2
        lo = float(mu.min()) - (half + 1) * h
        hi = float(mu.max()) + (half + 1) * h
        self._grid = lo + h * np.arange(int(math.ceil((hi - lo) / h)) + 1)
        self._gx, self._gw = _rule_for_scale(act, float(np.max(np.abs(self.s_last))), "full")
        t = (mu - lo) / h
        j0 = np.floor(t).astype(np.int64) - (half - 1)
        tt = t - j0
        tt = np.where(np.abs(tt - np.round(tt)) < 1e-13, tt + 1e-12, tt)
        # barycentric Lagrange weights prod_j (t - j) * lam_i / (t - i), one (nb, P) array per
        # stencil point i (column by column: no (nb, P, LAGR) work arrays, no 3-D gathers)
        diff = [tt - float(i) for i in range(_LAGR)]
        prod = diff[0]
        for d in diff[1:]:
            prod = prod * d
        fac = [math.factorial(i) for i in range(_LAGR)]
        lam = [(-1.0) ** (_LAGR - 1 - i) / (fac[i] * fac[_LAGR - 1 - i]) for i in range(_LAGR)]
        self._lw = [prod * lam[i] / diff[i] for i in range(_LAGR)]
        # flat index of stencil point 0 into the (nb, G) table
        self._lidx = (np.arange(nb)[:, None] * len(self._grid) + j0).ravel()
        self._gvals: dict[int, np.ndarray] = {}
        self._H: dict[tuple[int, int, int], np.ndarray] = {}
        self._rows: dict[int, np.ndarray] = {}

    def _grid_values(self, which: int) -> np.ndarray:
        """sigma (0) or sigma' (1) at grid + s_b xi_r: (nb, G, N_r)."""
        if which not in self._gvals:
            arg = self._grid[None, :, None] + self.s_last[:, None, None] * self._gx
            self._gvals[which] = _eval(self.act.f if which == 0 else self.act.df, arg)
        return self._gvals[which]

    def _Hvals(self, al: int, be: int, p: int) -> np.ndarray:
        """E_xi[sigma^al sigma'^be (mu + s xi) xi^p] at the outer nodes, (nb, P)."""
        key = (al, be, p)
        if key not in self._H:
            g = 1.0
            if al:
                g = g * self._grid_values(0) ** al
            if be:
                g = g * self._grid_values(1) ** be
            table = np.broadcast_to(g, (self.nb, len(self._grid), len(self._gx))) @ (
                self._gw * self._gx**p
            )  # (nb, G)
            flat = np.ascontiguousarray(table).ravel()
            t = [
                flat[self._lidx + i].reshape(self._lw[i].shape) * self._lw[i] for i in range(_LAGR)
            ]
            # the order of numpy's pairwise sum over a last axis of 12 (eight lanes, then the rest)
            acc = ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]))
            for x in t[8:]:
                acc = acc + x
            self._H[key] = acc
        return self._H[key]

    def _feature(self, f: int) -> np.ndarray:
        """Feature row f at the outer nodes, (nb, P) (the last input's value is mu)."""
        if f not in self._rows:
            k = self.k
            if f == 2 * k:
                self._rows[f] = np.ones((self.nb, len(self.W)))
            else:
                self._rows[f] = _eval(self.act.f if f < k else self.act.df, self.Z[:, :, f % k])
        return self._rows[f]

    def products(self, feats, A, Gam):
        nb, n, m = A.shape[:3]
        step = max(1, _CHUNK // max(1, n * (feats.shape[1] + 2 * m + 2) * len(self.W)))
        out = np.empty((nb, n))
        for i in range(0, nb, step):
            sl = slice(i, i + step)
            out[sl] = self._products(sl, feats, A[sl], Gam[sl])
        return out

    def _products(self, sl: slice, feats, A, Gam) -> np.ndarray:
        k, r = self.k, self.r
        nb, n, m = A.shape[:3]
        il = self.il[sl, None, None]
        on_last = (feats[None] == il) | (feats[None] == k + il)  # (nb, n, s)
        fo = np.where(on_last, 2 * k, feats[None])
        al = np.sum(feats[None] == il, axis=2)  # (nb, n)
        be = np.sum(feats[None] == k + il, axis=2)
        used, pos = np.unique(fo, return_inverse=True)
        F = np.stack([self._feature(int(f))[sl] for f in used])  # (nf, nb, P)
        pos = pos.reshape(fo.shape)
        bidx = np.arange(nb)[:, None]
        g = F[pos[:, :, 0], bidx]
        for t in range(1, feats.shape[1]):
            g = g * F[pos[:, :, t], bidx]
        if m == 0:  # no derivative slots: the Gaussian factor is exactly 1
            return (g * self._h_of(sl, al, be)) @ self.W
        a = A[..., : r - 1] @ self.X.T  # (nb, n, m, P): the part at xi_k = 0
        b = A[..., r - 1, None]  # (nb, n, m, 1): coefficient of xi_k
        Q = [np.zeros_like(g) for _ in range(m + 1)]
        for un, c in _matching_weights(Gam):
            poly = [c[..., None]]
            for u in un:
                au, bu = a[:, :, u], b[:, :, u]
                mid = [poly[j] * au + poly[j - 1] * bu for j in range(1, len(poly))]
                poly = [poly[0] * au, *mid, poly[-1] * bu]
            for j, pj in enumerate(poly):
                Q[j] = Q[j] + pj
        acc = np.zeros_like(g)
        for ab in set(zip(al.ravel().tolist(), be.ravel().tolist(), strict=True)):
            sel = ((al == ab[0]) & (be == ab[1]))[..., None]  # (nb, n, 1)
            for j in range(m + 1):
                acc += np.where(sel, Q[j] * self._Hvals(ab[0], ab[1], j)[sl, None, :], 0.0)
        return (g * acc) @ self.W

    def _h_of(self, sl: slice, al: np.ndarray, be: np.ndarray) -> np.ndarray:
        """H(al, be, 0) of each slot list's last-input powers, (nb, n, P) or broadcastable."""
        pairs = set(zip(al.ravel().tolist(), be.ravel().tolist(), strict=True))
        if len(pairs) == 1:
            return self._Hvals(*pairs.pop(), 0)[sl, None, :]
        acc = None
        for ab in pairs:
            sel = ((al == ab[0]) & (be == ab[1]))[..., None]
            term = np.where(sel, self._Hvals(ab[0], ab[1], 0)[sl, None, :], 0.0)
            acc = term if acc is None else acc + term
        return acc


class ExactBatch(MomentBatch):
    """Full-rank subsets, scale-invariant kinked sigma: exact, from the truncated moments of
    :class:`corrlib.model.orthant.OrthantMoments` (batched over the subsets), in the coordinates
    xi = L^-1 z computed directly by the Stein recursion (never by transforming z-moments)."""

    def __init__(self, act, K: np.ndarray, L: np.ndarray):
        self.nb, self.k, self.r = L.shape
        self.K, self.L = K, L
        self.ap, self.am = float(act.a_plus), float(act.a_minus)
        self._z: OrthantMoments | None = None
        self._mixed: OrthantMoments | None = None
        self._tcache: dict[tuple, list[np.ndarray]] = {}

    def _engine(self, mixed: bool) -> OrthantMoments:
        if mixed:
            if self._mixed is None:
                self._mixed = OrthantMoments(self.K, self.L)
            return self._mixed
        if self._z is None:
            self._z = OrthantMoments(self.K)
        return self._z

    def _tensor(self, gspec, u: int) -> np.ndarray:
        """E[g xi^{(x)u}], (nb,) + (k,) * u: sigma^a sigma'^b(z) = z^a (a_-^n + (a_+^n - a_-^n)
        1{z > 0}), n = a + b, expanded over the sub-orthants of the active inputs."""
        ap, am, k = self.ap, self.am, self.k
        alpha_idx: list[int] = []
        nvec = []
        for i, (al, be) in enumerate(gspec):
            alpha_idx += [i] * al
            nvec.append(al + be)
        q = len(alpha_idx) + u
        eng = self._engine(mixed=u > 0)
        out = np.zeros((self.nb,) + (k,) * u)
        active = [i for i in range(k) if nvec[i] > 0]
        sel = (slice(None),) + tuple(alpha_idx) + (slice(k, 2 * k),) * u
        for sub in itertools.product((0, 1), repeat=len(active)):
            coef, A = 1.0, 0
            for i, s in zip(active, sub, strict=True):
                if s:
                    coef *= ap ** nvec[i] - am ** nvec[i]
                    A |= 1 << i
                else:
                    coef *= am ** nvec[i]
            if coef != 0.0:
                out = out + coef * eng.truncated(A, q)[sel]
        return out

    def tensors(self, gspec, jmax):
        key = (gspec, jmax)
        if key not in self._tcache:
            self._tcache[key] = [self._tensor(gspec, j) for j in range(jmax + 1)]
        return self._tcache[key]

    def products(self, feats, A, Gam):
        """Grouped by g; each matching of the derivative slots contracts the moment tensor of
        its unmatched slots with their rows."""
        nb, n, m = A.shape[:3]
        out = np.zeros((nb, n))
        groups: dict[tuple, list[int]] = {}
        for i in range(n):
            groups.setdefault(_gspec(feats[i], self.k), []).append(i)
        for gspec, rows in groups.items():
            rows = np.array(rows)
            Ts = self.tensors(gspec, m)
            for un, c in _matching_weights(Gam[:, rows]):
                T = Ts[len(un)].reshape(nb, 1, -1)
                val = np.broadcast_to(T, (nb, len(rows), T.shape[2])).reshape(nb * len(rows), -1)
                rws = [A[:, rows, t].reshape(nb * len(rows), -1) for t in un]
                out[:, rows] += c * _contract_rows(val, rws).reshape(nb, len(rows))
        return out


def smoothed_eligible(act, L: np.ndarray) -> bool:
    """Whether a full-rank factor L (k x k, k >= 3) goes to a :class:`SmoothedBatch`."""
    return not act.kink and float(np.max(np.abs(L))) <= _CAL_MAX


def smoothed_key(L: np.ndarray) -> tuple[int, ...]:
    """Which calibrated scale each outer level of a :class:`SmoothedBatch` uses for the factor L:
    subsets with equal keys share their node set exactly (no subset pays for another's scale)."""
    e = np.max(np.abs(L[:, :-1]), axis=0)
    return tuple(int(j) for j in np.searchsorted(_CAL_SCALES, 1.05 * e))


def subset_moments(act, Kzz: np.ndarray) -> MomentBatch:
    """The moment engine the channel engine uses for one input subset (a batch of one).

    Parameters
    ----------
    act : Activation
    Kzz : ndarray, shape (k, k)
        Covariance of the values of the subset's k <= 4 inputs (may be singular).

    Returns
    -------
    MomentBatch
        :class:`ExactBatch` (scale-invariant kinked sigma, full rank, k >= 3),
        :class:`SmoothedBatch` (smooth sigma, full rank, k >= 3, variances within the calibrated
        range) or :class:`NodeMoments`.

    Examples
    --------
    >>> import numpy as np, corrlib
    >>> sm = subset_moments(corrlib.get_activation("relu"), np.eye(4))
    >>> v = float(sm.tensors(((1, 0),) * 4, 0)[0][0])  # (E relu z)^4 = (2 pi)^-2
    >>> type(sm).__name__, bool(abs(v - (2 * np.pi) ** -2) < 1e-17)
    ('ExactBatch', True)
    """
    Kzz = 0.5 * (np.asarray(Kzz, dtype=float) + np.asarray(Kzz, dtype=float).T)
    k = Kzz.shape[0]
    if k >= 3:
        L = pivoted_cholesky(Kzz)
        if L.shape[1] == k:
            if act.kink and act.is_scale_invariant:
                return ExactBatch(act, Kzz[None], L[None])
            if smoothed_eligible(act, L):
                return SmoothedBatch(act, L[None])
    return NodeMoments(act, Kzz)
