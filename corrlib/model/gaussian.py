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

from .._util import gauss_legendre, psd_sqrt

__all__ = ["MAX_DIM", "QuadratureRule", "gaussian_expectation", "gaussian_rule"]

MAX_DIM = 4
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
    x, w = gauss_legendre(48)
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
def _leggauss01(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = gauss_legendre(n)
    return 0.5 * (x + 1.0), 0.5 * w


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
        tb, wb = gauss_legendre(n_beta)  # t = cos(beta)
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
        raise ValueError(f"dimension {r} > {MAX_DIM} is not supported")
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


def gaussian_rule(  # noqa: C901 (split in the channel engine rework)
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
    if d > MAX_DIM:
        raise ValueError(f"K must be at most {MAX_DIM}x{MAX_DIM}; got {d}x{d}")
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
