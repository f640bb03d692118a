"""Gaussian expectations <F>_K = E[F(zeta)], zeta ~ N(0, K), in dimension d <= 4.

Method (docs/theory.md section 10). K = Q diag(lam) Q^T is factored by its eigenvalues
(never a bare Cholesky, so singular K works); on its range, of dimension r <= d,
zeta = A xi with xi ~ N(0, I_r). The integral over xi is done in spherical coordinates

    E F = (2 pi)^(-r/2) int_{S^(r-1)} dS(y) int_0^inf F(A rho y) rho^(r-1) e^(-rho^2/2) d rho,

with a Gauss rule for the radial weight rho^(r-1) e^(-rho^2/2) on [0, inf) and, on the
sphere, y = (sin(theta) omega, cos(theta)) with omega on S^(r-2). The theta integral is
split at the points where y crosses a *kink* hyperplane {w . zeta = 0} (ReLU-type
activations), and Gauss-Legendre is used on each piece. For integrands that are
piecewise polynomial between kinks (scale-invariant activations, also after the
Hermite identities of section 4) the rule is exact up to rounding; for smooth (analytic)
integrands it converges exponentially in the number of nodes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
from scipy.special import roots_legendre

__all__ = ["gaussian_expectation", "QuadratureRule", "gaussian_rule", "psd_sqrt"]

_MAX_DIM = 4
# default node counts: radial, theta per panel, and the omega sphere
DEFAULT_ORDER = {"n_radial": 40, "n_theta": 28, "n_phi": 56, "n_beta": 28}
# radial nodes when the rank of K is <= 2 (cheap there): smooth activations of arguments
# with variance ~5-8 need them (40 nodes: 5e-10 and 5e-8 relative in an erf kernel step)
N_RADIAL_LOW_RANK = 80


@lru_cache(maxsize=64)
def _radial_rule(k: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss rule for the weight rho^k exp(-rho^2/2) on [0, inf).

    Recurrence coefficients come from a discretized Stieltjes procedure on a fine
    Gauss-Legendre discretization of [0, R] (the weight is entire, so the
    discretization converges spectrally); nodes and weights from Golub-Welsch.
    Weights sum to int_0^inf rho^k e^(-rho^2/2) d rho = 2^((k-1)/2) Gamma((k+1)/2).
    """
    R = math.sqrt(8.0 * n + 4.0 * k) + 10.0
    # composite Gauss-Legendre on panels of length <= 1 (a single high-order rule loses
    # digits in its weights); extended precision for the recurrence
    n_pan = int(math.ceil(R))
    x, w = leggauss(48)
    edges = np.linspace(0.0, R, n_pan + 1)
    ld = np.longdouble
    h = ld(edges[1] - edges[0])
    t = (edges[:-1, None].astype(ld) + h * (x.astype(ld) + ld(1)) / ld(2)).ravel()
    wt = np.tile(w.astype(ld) * h / ld(2), n_pan) * t**k * np.exp(-t * t / ld(2))
    alpha = np.zeros(n, dtype=ld)
    beta = np.zeros(n, dtype=ld)
    p_prev = np.zeros_like(t)
    p = np.ones_like(t)
    norm_prev = ld(1)
    for j in range(n):
        norm = np.sum(wt * p * p)
        alpha[j] = np.sum(wt * t * p * p) / norm
        beta[j] = norm if j == 0 else norm / norm_prev
        p_next = (t - alpha[j]) * p - (beta[j] if j > 0 else ld(0)) * p_prev
        p_prev, p, norm_prev = p, p_next, norm
        # rescale to avoid overflow; the ratios above are scale invariant
        s = np.sqrt(np.sum(wt * p * p))
        p = p / s
        p_prev = p_prev / s
        norm_prev = norm_prev / (s * s)
    alpha = alpha.astype(float)
    beta = beta.astype(float)
    J = np.diag(alpha) + np.diag(np.sqrt(beta[1:]), 1) + np.diag(np.sqrt(beta[1:]), -1)
    nodes = np.linalg.eigvalsh(J)
    # Christoffel weights 1/sum_j p_j(x)^2 from the orthonormal recurrence (more accurate
    # than squared eigenvector components), in extended precision
    mu0 = 2.0 ** ((k - 1) / 2.0) * math.gamma((k + 1) / 2.0)
    xl = nodes.astype(ld)
    sb = np.sqrt(beta.astype(ld))
    q_prev = np.zeros_like(xl)
    q = np.ones_like(xl)
    acc = np.ones_like(xl)
    for j in range(n - 1):
        q_next = ((xl - ld(alpha[j])) * q - (sb[j] if j > 0 else ld(0)) * q_prev) / sb[j + 1]
        q_prev, q = q, q_next
        acc += q * q
    weights = (ld(mu0) / acc).astype(float)
    return nodes, weights


@lru_cache(maxsize=16)
def leggauss(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on [-1, 1] (O(n) Newton iterations, cached)."""
    x, w = roots_legendre(n)
    return x, w


@lru_cache(maxsize=16)
def _leggauss01(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = leggauss(n)
    return 0.5 * (x + 1.0), 0.5 * w


def psd_sqrt(K: np.ndarray, rtol: float = 1e-12, name: str = "K") -> np.ndarray:
    """A (d, r) with A A^T = K, r = numerical rank of the PSD matrix K (eigenvalue based).

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
        raise ValueError(f"{name} must be finite")
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


class QuadratureRule:
    """Nodes ``points`` (P, d) and weights (P,) with sum_p w_p F(points_p) ~ E F(zeta).

    Built by :func:`gaussian_rule`; reusable for many integrands of the same K.
    """

    def __init__(self, points: np.ndarray, weights: np.ndarray):
        self.points = points
        self.weights = weights

    def __len__(self) -> int:
        return len(self.weights)

    def expect(self, F: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """sum_p w_p F(points_p); F maps (P, d) to (P,) or (P, ...)."""
        vals = np.asarray(F(self.points), dtype=float)
        if vals.shape[:1] != (len(self.weights),):
            raise ValueError(
                f"F must return an array whose first axis has the number of points "
                f"({len(self.weights)}); got shape {vals.shape}"
            )
        return np.tensordot(self.weights, vals, axes=(0, 0))


def _pick_pole(normals: np.ndarray, r: int) -> np.ndarray:
    """A unit vector as far from every kink hyperplane as a few fixed candidates allow."""
    cand = np.random.default_rng(12345).standard_normal((64, r))
    cand = np.vstack([np.eye(r)[::-1], cand])
    cand /= np.linalg.norm(cand, axis=1, keepdims=True)
    if len(normals) == 0:
        return cand[0]
    nn = normals / np.linalg.norm(normals, axis=1, keepdims=True)
    score = np.min(np.abs(cand @ nn.T), axis=1)
    return cand[int(np.argmax(score))]


def _sphere_rule(
    r: int, normals: np.ndarray, n_theta: int, n_phi: int, n_beta: int
) -> tuple[np.ndarray, np.ndarray]:
    """Points Y (P, r) on S^(r-1) and weights (sum = |S^(r-1)|), split at kinks."""
    if r == 1:
        return np.array([[1.0], [-1.0]]), np.array([1.0, 1.0])
    # orthonormal basis with the pole last
    pole = _pick_pole(normals, r)
    basis = np.linalg.qr(np.column_stack([pole, np.eye(r)]))[0][:, :r]
    if basis[:, 0] @ pole < 0:
        basis[:, 0] *= -1
    B = np.column_stack([basis[:, 1:], basis[:, 0]])  # columns: omega-coordinates, then pole
    nrm = normals @ B  # normals in the (omega..., pole) coordinates
    # omega rule on S^(r-2)
    if r == 2:
        om = np.array([[1.0], [-1.0]])
        wom = np.array([1.0, 1.0])
    elif r == 3:
        # The theta-integrated integrand is smooth in phi except at the meridians through
        # intersections of two kink circles (directions n_i x n_j): split there.
        cuts = []
        for i in range(len(nrm)):
            for j in range(i + 1, len(nrm)):
                v = np.cross(nrm[i], nrm[j])
                if np.hypot(v[0], v[1]) > 1e-12 * max(1.0, np.linalg.norm(v)):
                    cuts.append(np.arctan2(v[1], v[0]) % (2.0 * np.pi))
                    cuts.append((np.arctan2(v[1], v[0]) + np.pi) % (2.0 * np.pi))
        if cuts:
            cuts = np.unique(np.round(np.asarray(cuts), 14))
            edges = np.concatenate([cuts, [cuts[0] + 2.0 * np.pi]])
            xg, wg = _leggauss01(n_theta)
            a, b = edges[:-1], edges[1:]
            phi = (a[:, None] + (b - a)[:, None] * xg).reshape(-1)
            wom = ((b - a)[:, None] * wg).reshape(-1)
        else:
            phi = 2.0 * np.pi * (np.arange(n_phi) + 0.5) / n_phi
            wom = np.full(n_phi, 2.0 * np.pi / n_phi)
        om = np.column_stack([np.cos(phi), np.sin(phi)])
    elif r == 4:
        tb, wb = leggauss(n_beta)  # t = cos(beta)
        phi = 2.0 * np.pi * (np.arange(n_phi) + 0.5) / n_phi
        st = np.sqrt(1.0 - tb**2)
        om = np.column_stack(
            [
                np.repeat(st, n_phi) * np.tile(np.cos(phi), n_beta),
                np.repeat(st, n_phi) * np.tile(np.sin(phi), n_beta),
                np.repeat(tb, n_phi),
            ]
        )
        wom = np.repeat(wb, n_phi) * (2.0 * np.pi / n_phi)
    else:  # pragma: no cover - guarded by the caller
        raise ValueError(f"dimension {r} > {_MAX_DIM} is not supported")
    n_om = len(wom)
    # kink crossings theta*(omega) in (0, pi)
    # Besides the kink crossings, theta is always cut at pi/2: a single Gauss-Legendre
    # panel over [0, pi] resolves smooth integrands only to ~1e-5 in d = 3, 4 (erf of
    # arguments with variance ~4); panels of length <= pi/2 reach ~1e-11.
    fixed = np.tile([0.0, 0.5 * np.pi, np.pi], (n_om, 1))
    if len(nrm):
        th = np.arctan2(-nrm[:, -1][None, :], om @ nrm[:, :-1].T) % np.pi  # (n_om, k)
        edges = np.sort(np.concatenate([fixed, th], 1), 1)
    else:
        edges = fixed
    x, w = _leggauss01(n_theta)
    a, b = edges[:, :-1], edges[:, 1:]  # (n_om, panels)
    theta = a[..., None] + (b - a)[..., None] * x  # (n_om, panels, n_theta)
    wt = (b - a)[..., None] * w * np.sin(theta) ** (r - 2)
    s, c = np.sin(theta), np.cos(theta)
    Y = np.concatenate([s[..., None] * om[:, None, None, :], c[..., None]], axis=-1)
    W = wt * wom[:, None, None]
    Y = Y.reshape(-1, r) @ B.T
    return Y, W.reshape(-1)


def gaussian_rule(
    K,
    kinks=None,
    *,
    n_radial: int | None = None,
    n_theta: int | None = None,
    n_phi: int | None = None,
    n_beta: int | None = None,
) -> QuadratureRule:
    """A quadrature rule for zeta ~ N(0, K), d <= 4, split at kink hyperplanes.

    Parameters
    ----------
    K : array_like, shape (d, d)
        Positive semi-definite covariance; singular K is allowed.
    kinks : None, "axes" or array_like of shape (k, d)
        Normals w of hyperplanes {w . zeta = 0} across which the integrand may be
        non-smooth (ReLU kinks at zeta_i = 0: ``"axes"``).
    n_radial, n_theta, n_phi, n_beta : int, optional
        Node counts (radial Gauss rule; Gauss-Legendre per theta panel; the omega sphere).
        Defaults: ``DEFAULT_ORDER``, with ``n_radial = N_RADIAL_LOW_RANK`` when the rank
        of K is <= 2.

    Returns
    -------
    QuadratureRule
    """
    K = np.asarray(K, dtype=float)
    A = psd_sqrt(K)
    d, r = A.shape
    if d > _MAX_DIM:
        raise ValueError(f"K must be at most {_MAX_DIM}x{_MAX_DIM}; got {d}x{d}")
    o = dict(DEFAULT_ORDER)
    if r <= 2:
        o["n_radial"] = N_RADIAL_LOW_RANK
    for key, val in (
        ("n_radial", n_radial),
        ("n_theta", n_theta),
        ("n_phi", n_phi),
        ("n_beta", n_beta),
    ):
        if val is not None:
            if int(val) < 1:
                raise ValueError(f"{key} must be >= 1; got {val}")
            o[key] = int(val)
    if r == 0:
        return QuadratureRule(np.zeros((1, d)), np.ones(1))
    if kinks is None:
        W = np.zeros((0, d))
    elif isinstance(kinks, str):
        if kinks != "axes":
            raise ValueError(f"kinks must be None, 'axes' or an array of normals; got {kinks!r}")
        W = np.eye(d)
    else:
        W = np.asarray(kinks, dtype=float)
        if W.ndim == 1:
            W = W[None, :]
        if W.ndim != 2 or W.shape[1] != d or not np.all(np.isfinite(W)):
            raise ValueError(
                f"kinks must be None, 'axes' or finite normals of shape (k, d={d}); "
                f"got shape {W.shape}"
            )
    normals = W @ A  # normals in xi space
    if len(normals):
        nn = np.linalg.norm(normals, axis=1)
        normals = normals[nn > 1e-12 * max(1.0, float(nn.max()))]
        # drop duplicates (up to sign): they give the same split
        if len(normals):
            u = normals / np.linalg.norm(normals, axis=1, keepdims=True)
            u = u * np.where(u[:, [0]] < 0, -1.0, 1.0)
            u = np.where(np.abs(u) < 1e-14, 0.0, u)
            _, idx = np.unique(np.round(u, 12), axis=0, return_index=True)
            normals = normals[np.sort(idx)]
    Y, wS = _sphere_rule(r, normals, o["n_theta"], o["n_phi"], o["n_beta"])
    rho, wr = _radial_rule(r - 1, o["n_radial"])
    xi = (rho[:, None, None] * Y[None, :, :]).reshape(-1, r)
    w = (wr[:, None] * wS[None, :]).reshape(-1) / (2.0 * np.pi) ** (r / 2.0)
    return QuadratureRule(xi @ A.T, w)


def gaussian_expectation(
    F: Callable[[np.ndarray], np.ndarray],
    K,
    kinks=None,
    **order,
) -> np.ndarray | float:
    """E[F(zeta)] for zeta ~ N(0, K), K a d x d PSD matrix, d <= 4.

    The notation <F>_K of (T7)-(T13).

    Parameters
    ----------
    F : callable
        Vectorized over a trailing axis of size d: maps an array (P, d) of points to
        (P,) or (P, ...) values (several integrands at once).
    K : array_like, shape (d, d)
        Covariance; may be singular (equal inputs, zero directions).
    kinks : None, "axes" or array_like (k, d)
        Hyperplanes {w . zeta = 0} where F may have a kink or jump; the rule is split
        there. Use ``"axes"`` for products of ReLU-type functions of the coordinates.
    **order
        Node counts ``n_radial``, ``n_theta``, ``n_phi``, ``n_beta`` (see :func:`gaussian_rule`).

    Returns
    -------
    float or ndarray
        Shape ``()`` or the trailing shape of F's output.

    Notes
    -----
    Accuracy with the default nodes (measured, tests/test_gaussian.py):

    - polynomials (Isserlis) to rounding, any d <= 4 and any rank;
    - piecewise polynomials split at their kinks (ReLU-type products) to ~1e-12 relative
      for d <= 3 (in d = 3 the sphere is also split at intersections of kink planes);
    - smooth integrands (tanh, erf, gelu, ...): rank of K <= 2 to ~1e-11 relative for
      variances up to 30 (e.g. 1-d <erf'(z)^2>_K: 6e-12 at K = 30); d = 3, 4 to ~1e-11
      for variances <= 4 (worst 4.5e-13 measured on erf products). The error grows
      with the variance of the arguments; raise ``n_radial`` for larger ones.
    - Known limit: for d = 4 with kinks the omega sphere is not split at kink
      intersections, so ReLU products converge slowly: 1e-6 to 1.3e-5 relative with
      the default nodes, ~1e-7 with ``n_phi``, ``n_beta`` doubled.

    Examples
    --------
    >>> import numpy as np
    >>> K = np.array([[1.0, 0.5], [0.5, 2.0]])
    >>> round(gaussian_expectation(lambda z: z[:, 0] ** 2 * z[:, 1] ** 2, K), 12)  # 1*2 + 2*0.5^2
    2.5
    """
    if not callable(F):
        raise TypeError("F must be callable: F(points (P, d)) -> values (P, ...)")
    rule = gaussian_rule(K, kinks, **order)
    out = rule.expect(F)
    return float(out) if np.ndim(out) == 0 else out


# ---------------------------------------------------------------------------
# Expectations of channel features (docs/theory.md sections 2-4)
# ---------------------------------------------------------------------------


def _partial_pairings(mu: list[np.ndarray], gamma: np.ndarray) -> np.ndarray:
    """E[prod_j (mu_j + eta_j)] for eta ~ N(0, gamma), mu_j arrays of equal shape.

    Expansion over partial pairings (Isserlis with a mean), by the recursion
    E[prod_S] = mu_s E[prod_{S-s}] + sum_{k in S-s} gamma_{sk} E[prod_{S-s-k}].
    """
    q = len(mu)
    memo: dict[int, np.ndarray | float] = {0: 1.0}

    def rec(mask: int):
        if mask in memo:
            return memo[mask]
        s = (mask & -mask).bit_length() - 1
        rest = mask & ~(1 << s)
        val = mu[s] * rec(rest)
        k_mask = rest
        while k_mask:
            k = (k_mask & -k_mask).bit_length() - 1
            k_mask &= k_mask - 1
            if gamma[s, k] != 0.0:
                val = val + gamma[s, k] * rec(rest & ~(1 << k))
        memo[mask] = val
        return val

    return rec((1 << q) - 1)


class ChannelExpectation:
    """Expectations <prod_a phi_a(zeta) prod_i (l_i . zeta)>_K over channel vectors.

    phi_a = sigma(zeta_a) for a value channel and sigma'(zeta_val(a)) zeta_a for a
    derivative channel (T2). Derivative coordinates enter polynomially given the
    value coordinates and are integrated out exactly (conditional Gaussian moments),
    so the quadrature runs only over the value coordinates of the distinct inputs a
    term involves (at most 4), split at the axes (docs/theory.md section 10).

    Parameters
    ----------
    activation : Activation
    K : ndarray, shape (c, c)
        Covariance of the channel vector zeta.
    layout : ChannelLayout
    **order
        Quadrature node counts passed to :func:`gaussian_rule`.
    """

    def __init__(self, activation, K: np.ndarray, layout, **order):
        self.act = activation
        self.K = np.asarray(K, dtype=float)
        self.layout = layout
        self.order = order
        self._inp = layout.input
        self._isval = layout.is_value
        self._cache: dict[tuple[int, ...], tuple] = {}

    def _setup(self, inputs: tuple[int, ...]):
        """Rule over the value coordinates of ``inputs`` and the conditional law of the rest."""
        if inputs in self._cache:
            return self._cache[inputs]
        if len(inputs) > _MAX_DIM:
            raise ValueError(
                f"a term involves {len(inputs)} distinct inputs; at most {_MAX_DIM} are supported"
            )
        zc = list(inputs)  # value channel index of input alpha is alpha
        dc = [a for a in range(self.layout.c) if not self._isval[a] and self._inp[a] in inputs]
        Kzz = self.K[np.ix_(zc, zc)]
        rule = gaussian_rule(Kzz, "axes", **self.order)
        Z = rule.points
        if dc:
            Kdz = self.K[np.ix_(dc, zc)]
            Kdd = self.K[np.ix_(dc, dc)]
            B = Kdz @ np.linalg.pinv(Kzz, rcond=1e-12, hermitian=True)
            C = Kdd - B @ Kdz.T
            C = 0.5 * (C + C.T)
        else:
            B = np.zeros((0, len(zc)))
            C = np.zeros((0, 0))
        sig = self.act.f(Z)
        dsig = self.act.df(Z)
        out = (rule, zc, dc, B, C, sig, dsig)
        self._cache[inputs] = out
        return out

    def expect(self, channels, linear=None) -> float:
        """<prod_{a in channels} phi_a prod_i (linear[i] . zeta)>_K.

        Parameters
        ----------
        channels : sequence of int
            Channel indices a (repeats allowed).
        linear : array_like, shape (q, c), optional
            Coefficient rows of linear forms in zeta (Hermite identities, (T10)-(T11)).
        """
        return float(self.expect_many([(tuple(channels), linear)])[0])

    def expect_many(self, terms) -> np.ndarray:
        """Vector of :meth:`expect` values for ``terms`` = [(channels, linear or None), ...].

        Terms are grouped by the set of inputs they involve, so one quadrature rule
        serves many entries.
        """
        c = self.layout.c
        groups: dict[tuple[int, ...], list[int]] = {}
        prepared = []
        for t, (chans, lin) in enumerate(terms):
            chans = tuple(int(a) for a in chans)
            L = np.zeros((0, c)) if lin is None else np.atleast_2d(np.asarray(lin, dtype=float))
            if L.shape[1:] != (c,):
                raise ValueError(f"linear forms must have shape (q, c={c}); got {L.shape}")
            used = set(self._inp[list(chans)].tolist()) if chans else set()
            nz = np.flatnonzero(np.any(L != 0.0, axis=0))
            used |= set(self._inp[nz].tolist())
            key = tuple(sorted(used))
            groups.setdefault(key, []).append(t)
            prepared.append((chans, L))
        out = np.empty(len(terms))
        for key, idx in groups.items():
            if not key:  # constant term: no channel and no linear form
                for t in idx:
                    out[t] = 1.0
                continue
            rule, zc, dc, B, C, sig, dsig = self._setup(key)
            zpos = {a: i for i, a in enumerate(zc)}
            dpos = {a: i for i, a in enumerate(dc)}
            Z = rule.points
            vals = np.empty((len(rule), len(idx)))
            for col, t in enumerate(idx):
                chans, L = prepared[t]
                f = np.ones(len(rule))
                lin_a, lin_b = [], []  # Z-part and D-part of each linear factor
                for a in chans:
                    if self._isval[a]:
                        f = f * sig[:, zpos[int(a)]]
                    else:
                        f = f * dsig[:, zpos[int(self._inp[a])]]
                        e = np.zeros(len(dc))
                        e[dpos[a]] = 1.0
                        lin_a.append(np.zeros(len(zc)))
                        lin_b.append(e)
                for row in L:
                    lin_a.append(row[zc])
                    lin_b.append(row[dc] if dc else np.zeros(0))
                if lin_a:
                    Amat = np.array(lin_a) + np.array(lin_b) @ B  # means are Amat @ z
                    Bmat = np.array(lin_b)
                    gamma = Bmat @ C @ Bmat.T if len(dc) else np.zeros((len(lin_a),) * 2)
                    mu = list((Z @ Amat.T).T)
                    f = f * _partial_pairings(mu, gamma)
                vals[:, col] = f
            out[idx] = rule.weights @ vals
        return out
