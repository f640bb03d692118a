"""Gaussian expectations <F>_K = E[F(zeta)], zeta ~ N(0, K): a general rule in dimension d <= 4
and a one-dimensional rule that is accurate at every scale.

:func:`gaussian_expectation` / :func:`gaussian_rule` (docs/theory.md section 10). K = Q diag(lam)
Q^T is factored by its eigenvalues (never a bare Cholesky, so singular K works); on its range,
of dimension r <= d, zeta = A xi with xi ~ N(0, I_r). The integral over xi is done in spherical
coordinates

    E F = (2 pi)^(-r/2) int_{S^(r-1)} dS(y) int_0^inf F(A rho y) rho^(r-1) e^(-rho^2/2) d rho,

with a Gauss rule for the radial weight rho^(r-1) e^(-rho^2/2) on [0, inf) and, on the
sphere, y = (sin(theta) omega, cos(theta)) with omega on S^(r-2). The theta integral is
split at the points where y crosses a *kink* hyperplane {w . zeta = 0} (ReLU-type
activations), and Gauss-Legendre is used on each piece. For integrands that are
piecewise polynomial between kinks the rule is exact up to rounding; for smooth (analytic)
integrands it converges exponentially in the number of nodes. (The recursions of
:mod:`corrlib.theory` use the channel engine of :mod:`corrlib.model.channels` instead.)

:func:`normal_expectation` is the one-dimensional workhorse of the single-input quantities
(chi_parallel, chi_perp, the kernel map, the coefficients of (T12)-(T13)): composite
Gauss-Legendre in z on panels split at 0 (kinks), graded geometrically at the activation's own
scale (1) and uniform at the Gaussian's scale sd, refined adaptively until two rules agree, so
it is accurate for any sd from 1e-300 to 1e150.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np

from .._util import check_int, check_kwargs, gauss_legendre, psd_sqrt

__all__ = [
    "MAX_DIM",
    "QuadratureRule",
    "QuadratureWarning",
    "gaussian_expectation",
    "gaussian_rule",
    "kink_rule",
    "normal_expectation",
    "radial_rule",
]

MAX_DIM = 4
_TWO_PI = 2.0 * math.pi
# default node counts: radial, theta per panel, and the omega sphere
DEFAULT_ORDER = {"n_radial": 40, "n_theta": 28, "n_phi": 56, "n_beta": 28}
#: the largest radial order: the Stieltjes discretization loses accuracy above ~300 nodes
#: (measured: the mass of the k = 0 weight is off by 5e-14 at 300, 2e-4 at 340, 0.12 at 400)
MAX_RADIAL = 256
#: upper bounds of the other node counts (beyond them the rule only costs more)
MAX_NODES = 4096
# radial nodes when the rank of K is <= 2 (cheap there): smooth activations of arguments
# with variance ~5-8 need them (40 nodes: 5e-10 and 5e-8 relative in an erf kernel step)
N_RADIAL_LOW_RANK = 80


@lru_cache(maxsize=64)
def radial_rule(k: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss rule for the weight rho^k exp(-rho^2/2) on [0, inf): exact for polynomials in rho
    of degree <= 2n - 1 (n <= ``MAX_RADIAL``). Cached; treat the arrays as read-only.

    Recurrence coefficients come from a discretized Stieltjes procedure on a fine
    Gauss-Legendre discretization of [0, R] (the weight is entire, so the
    discretization converges spectrally); nodes and weights from Golub-Welsch.
    Weights sum to int_0^inf rho^k e^(-rho^2/2) d rho = 2^((k-1)/2) Gamma((k+1)/2).

    Examples
    --------
    >>> x, w = radial_rule(1, 3)
    >>> round(float(w @ x**4), 12)  # int rho^5 e^(-rho^2/2) = 8
    8.0

    Raises
    ------
    ValueError
        For n > ``MAX_RADIAL``: the discretized Stieltjes procedure loses accuracy there
        (measured: the mass of the k = 0 rule is off by 2e-4 at n = 340, 0.12 at 400), so larger
        rules are refused rather than returned wrong.
    """
    k = check_int(k, "k", minimum=0, maximum=4 * MAX_DIM)
    n = check_int(n, "n", minimum=1, maximum=MAX_RADIAL)
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

    Attributes
    ----------
    points : ndarray, shape (P, d)
    weights : ndarray, shape (P,)
    factor : ndarray, shape (d, r)
        The eigenvalue factor A of K = A A^T (r = numerical rank).
    xi : ndarray, shape (P, r)
        The nodes in standard coordinates: ``points = xi @ factor.T``.
    """

    def __init__(self, points: np.ndarray, weights: np.ndarray, xi=None, factor=None):
        self.points = points
        self.weights = weights
        self.xi = xi
        self.factor = factor

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


def _node_counts(r: int, given: dict) -> dict[str, int]:
    """Default node counts for rank r, overridden by the given ones (validated integers)."""
    o = dict(DEFAULT_ORDER)
    if r <= 2:
        o["n_radial"] = N_RADIAL_LOW_RANK
    for key, val in given.items():
        if val is not None:
            o[key] = check_int(
                val, key, minimum=1, maximum=MAX_RADIAL if key == "n_radial" else MAX_NODES
            )
    return o


def _kink_normals(kinks, d: int) -> np.ndarray:
    """The kink hyperplane normals (k, d) from None, "axes" or an array."""
    if kinks is None:
        return np.zeros((0, d))
    if isinstance(kinks, str):
        if kinks != "axes":
            raise ValueError(f"kinks must be None, 'axes' or an array of normals; got {kinks!r}")
        return np.eye(d)
    W = np.asarray(kinks, dtype=float)
    if W.ndim == 1:
        W = W[None, :]
    if W.ndim != 2 or W.shape[1] != d or not np.all(np.isfinite(W)):
        raise ValueError(
            f"kinks must be None, 'axes' or finite normals of shape (k, d={d}); got shape {W.shape}"
        )
    return W


def _distinct_normals(normals: np.ndarray) -> np.ndarray:
    """Non-zero normals, one per hyperplane (duplicates up to sign give the same split)."""
    if not len(normals):
        return normals
    nn = np.linalg.norm(normals, axis=1)
    normals = normals[nn > 1e-12 * max(1.0, float(nn.max()))]
    if not len(normals):
        return normals
    u = normals / np.linalg.norm(normals, axis=1, keepdims=True)
    u = u * np.where(u[:, [0]] < 0, -1.0, 1.0)
    u = np.where(np.abs(u) < 1e-14, 0.0, u)
    _, idx = np.unique(np.round(u, 12), axis=0, return_index=True)
    return normals[np.sort(idx)]


def gaussian_rule(
    K,
    kinks=None,
    *,
    n_radial: int | None = None,
    n_theta: int | None = None,
    n_phi: int | None = None,
    n_beta: int | None = None,
    **unknown,
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
        Node counts (radial Gauss rule, at most ``MAX_RADIAL`` = 256; Gauss-Legendre per theta
        panel; the omega sphere; at most ``MAX_NODES``). Defaults: ``DEFAULT_ORDER``, with
        ``n_radial = N_RADIAL_LOW_RANK`` when the rank of K is <= 2.

    Returns
    -------
    QuadratureRule
        Points of shape (P, d) and weights (P,).

    Raises
    ------
    TypeError
        A node count that is not an integer (``2.7`` is not rounded).
    ValueError
        A node count out of range, K not (d, d) PSD with d <= 4, or malformed kinks.

    Examples
    --------
    >>> import numpy as np
    >>> rule = gaussian_rule(np.eye(2), "axes")
    >>> round(float(rule.expect(lambda z: z[:, 0] ** 2 * (z[:, 1] > 0))), 12)  # E z0^2 1{z1>0}
    0.5
    """
    check_kwargs(unknown, DEFAULT_ORDER, "gaussian_rule")  # a did-you-mean for typos
    K = np.asarray(K, dtype=float)
    A = psd_sqrt(K)
    d, r = A.shape
    if d > MAX_DIM:
        raise ValueError(f"K must be at most {MAX_DIM}x{MAX_DIM}; got {d}x{d}")
    o = _node_counts(r, {"n_radial": n_radial, "n_theta": n_theta, "n_phi": n_phi,
                         "n_beta": n_beta})  # fmt: skip
    W = _kink_normals(kinks, d)
    if r == 0:
        return QuadratureRule(np.zeros((1, d)), np.ones(1), np.zeros((1, 0)), A)
    normals = _distinct_normals(W @ A)  # normals in xi space
    Y, wS = _sphere_rule(r, normals, o["n_theta"], o["n_phi"], o["n_beta"])
    rho, wr = radial_rule(r - 1, o["n_radial"])
    xi = (rho[:, None, None] * Y[None, :, :]).reshape(-1, r)
    w = (wr[:, None] * wS[None, :]).reshape(-1) / (2.0 * np.pi) ** (r / 2.0)
    return QuadratureRule(xi @ A.T, w, xi, A)


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
      with the variance of the arguments; raise ``n_radial`` (at most 256) for larger ones,
      or use :func:`normal_expectation` in one dimension (accurate at every scale).
    - Known limit: for d = 4 with kinks the omega sphere is not split at kink
      intersections, so ReLU products converge slowly: 1e-6 to 1.3e-5 relative with
      the default nodes, ~1e-7 with ``n_phi``, ``n_beta`` doubled. Products of channel
      features (what the recursions need) are exact for ReLU-type activations in
      :func:`corrlib.model.channels.layer_tensors`.

    Examples
    --------
    >>> import numpy as np
    >>> K = np.array([[1.0, 0.5], [0.5, 2.0]])
    >>> round(gaussian_expectation(lambda z: z[:, 0] ** 2 * z[:, 1] ** 2, K), 12)  # 1*2 + 2*0.5^2
    2.5
    """
    if not callable(F):
        raise TypeError("F must be callable: F(points (P, d)) -> values (P, ...)")
    check_kwargs(order, DEFAULT_ORDER, "gaussian_expectation")
    rule = gaussian_rule(K, kinks, **order)
    out = rule.expect(F)
    return float(out) if np.ndim(out) == 0 else out


# ------------------------------------------------------------------------- one dimension


class QuadratureWarning(RuntimeWarning):
    """A quadrature did not reach its stated accuracy (the message gives the measured error)."""


# panels of the one-dimensional rule: truncation of the Gaussian (in sd), and the smallest
# panel of the geometric grading at the activation's own scale (1 in z)
_R_NORMAL = 10.0
_GRADE_FROM = 0.5
_NORMAL_TOL = 1e-13
_NORMAL_ROUNDS = 24
_NORMAL_MAX_PANELS = 50_000


def _initial_panels(sd: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Panels (a, b, owner) on [0, R sd] per sd > 0 (mirrored by the caller): edges at the
    Gaussian's scale (sd, 2 sd, ..., R sd) and at the activation's (0.5, 1, 2, 4, ...)."""
    top = _R_NORMAL * sd
    jmax = int(math.ceil(math.log2(max(float(top.max()), _GRADE_FROM) / _GRADE_FROM))) + 1
    geo = _GRADE_FROM * 2.0 ** np.arange(jmax)
    gauss = sd[:, None] * np.arange(1, int(_R_NORMAL) + 1)
    edges = np.concatenate(
        [np.zeros((len(sd), 1)), gauss, np.broadcast_to(geo, (len(sd), jmax))], axis=1
    )
    edges = np.sort(np.minimum(edges, top[:, None]), axis=1)
    a, b = edges[:, :-1], edges[:, 1:]
    owner = np.broadcast_to(np.arange(len(sd))[:, None], a.shape)
    keep = b > a
    return a[keep], b[keep], owner[keep]


def _panel_sums(fns, a, b, sd_own, n: int) -> np.ndarray:
    """Gauss-Legendre with n nodes on each panel [a, b] and its mirror [-b, -a], against the
    N(0, sd^2) density: (len(fns), panels)."""
    x, w = gauss_legendre(n)
    h = 0.5 * (b - a)
    z = (0.5 * (a + b))[:, None] + h[:, None] * x  # (panels, n)
    t = z / sd_own[:, None]
    wz = (h[:, None] * w) * np.exp(-0.5 * t * t) / (sd_own[:, None] * math.sqrt(2.0 * math.pi))
    zz = np.concatenate([z, -z], axis=1)
    ww = np.concatenate([wz, wz], axis=1)
    out = np.empty((len(fns), len(a)))
    with np.errstate(all="ignore"):
        for i, fn in enumerate(fns):
            out[i] = np.sum(np.asarray(fn(zz), dtype=float) * ww, axis=1)
    return out


def normal_expectation(
    fns: Sequence[Callable[[np.ndarray], np.ndarray]], sd, *, name: str = "E f(z)"
) -> np.ndarray:
    """E[f(z)] for z ~ N(0, sd^2), for several f at once, accurate at every scale of sd.

    (T31): composite Gauss-Legendre in z (16 nodes per panel) on [-10 sd, 10 sd], split at 0 (a kink
    of the activation is an edge), with edges at the Gaussian's scale (multiples of sd) and
    geometric ones at the activation's own scale (0.5, 1, 2, 4, ... in z). Every panel is
    checked against a 12-node rule and bisected until the two agree to 1e-13 of the
    integral of |f| (vectorized over all sd). So the result is right for sd from 1e-300 (tanh
    is linear there) to 1e150 (tanh is a sign function there), where a rule in units of sd
    alone would lose the activation's structure (a fixed Gauss rule in z / sd gives
    <tanh'(z)^2> 3e-5 off at sd^2 = 1e3 and 0 from 1e8 on).

    Parameters
    ----------
    fns : sequence of callable
        Vectorized functions of z (ndarray -> ndarray of the same shape).
    sd : float or array_like
        Standard deviations >= 0 (any shape); sd = 0 gives f(0).
    name : str
        What is computed, for the warning message.

    Returns
    -------
    ndarray, shape (len(fns),) + shape of sd

    Raises
    ------
    OverflowError
        If an expectation exceeds float64 (e.g. <relu(z)^4> at sd = 1e100), naming ``name``
        and sd.
    ValueError
        If some f is NaN at the arguments of an sd (naming z); an f that is inf there gives
        the OverflowError.

    Warns
    -----
    QuadratureWarning
        If the panels did not converge (e.g. an oscillating f at sd >> 1), with the measured
        error.

    Examples
    --------
    >>> import numpy as np
    >>> out = normal_expectation([lambda z: z**2, lambda z: 1 - np.tanh(z) ** 2], [1.0, 1e8])
    >>> out.shape, float(out[0, 0]), float(out[0, 1])
    ((2, 2), 1.0, 1e+16)
    >>> bool(abs(out[1, 1] * 1e8 - np.sqrt(2 / np.pi) * 2 / 2) < 1e-12)  # int sech^2 = 2
    True
    """
    sd = np.asarray(sd, dtype=float)
    shape = sd.shape
    s = sd.ravel()
    out = np.zeros((len(fns), s.size))
    zero = s == 0.0
    if np.any(zero):
        with np.errstate(all="ignore"):
            for i, fn in enumerate(fns):
                out[i, zero] = np.asarray(fn(np.zeros(int(zero.sum()))), dtype=float)
    idx = np.flatnonzero(~zero)
    if idx.size:
        out[:, idx] = _adaptive_normal(fns, s[idx], name)
    if not np.all(np.isfinite(out)):
        raise _nonfinite_normal(fns, s, out, name)
    return out.reshape((len(fns),) + shape)


def _nonfinite_normal(fns, s: np.ndarray, out: np.ndarray, name: str) -> Exception:
    """The error for a non-finite E f(z): a ValueError if some f is NaN at the arguments of
    that sd, else an OverflowError (f or the integral exceeds float64)."""
    i, j = (int(v[0]) for v in np.nonzero(~np.isfinite(out)))
    sd = float(s[j])
    z = np.concatenate([[0.0], np.geomspace(1e-3, _R_NORMAL, 60) * sd])
    z = np.concatenate([-z[::-1], z])
    with np.errstate(all="ignore"):
        val = np.asarray(fns[i](z), dtype=float)
    for bad, what, exc in (
        (np.isnan(val), "NaN", ValueError),
        (np.isinf(val), "inf", OverflowError),
    ):
        if bad.any():
            zb = float(z[bad][np.argmin(np.abs(z[bad]))])
            return exc(
                f"{name}: the integrand is {what} at z = {zb:.6g} (Gaussian standard deviation "
                f"{sd:.6g}); the activation must be defined there and its powers must fit in "
                "float64"
            )
    return OverflowError(
        f"{name}: the Gaussian expectation overflows float64 at standard deviation {sd:.6g} "
        f"(value {float(out[i, j])!r}); the variance is too large for this quantity"
    )


def _adaptive_normal(fns, s: np.ndarray, name: str) -> np.ndarray:
    a, b, own = _initial_panels(s)
    total = np.zeros((len(fns), s.size))
    scale = np.zeros((len(fns), s.size))
    for _ in range(_NORMAL_ROUNDS):
        q16 = _panel_sums(fns, a, b, s[own], 16)
        q12 = _panel_sums(fns, a, b, s[own], 12)
        absint = np.stack([scale[i] + np.bincount(own, np.abs(q16[i]), s.size)
                           for i in range(len(fns))])  # fmt: skip
        with np.errstate(invalid="ignore"):
            diff = np.abs(q16 - q12)
            # a panel whose sum is not finite cannot be refined: it is kept (the caller raises)
            bad = np.any(diff > _NORMAL_TOL * absint[:, own] + 1e-300, axis=0)
        bad &= np.all(np.isfinite(q16), axis=0)
        done = ~bad if 2 * bad.sum() <= _NORMAL_MAX_PANELS else np.ones_like(bad)
        for i in range(len(fns)):
            total[i] += np.bincount(own[done], q16[i, done], s.size)
            scale[i] += np.bincount(own[done], np.abs(q16[i, done]), s.size)
        if not bad.any():
            return total
        if done.all():
            break
        m = 0.5 * (a[bad] + b[bad])
        a, b, own = (np.concatenate([a[bad], m]), np.concatenate([m, b[bad]]),
                     np.concatenate([own[bad], own[bad]]))  # fmt: skip
    else:
        for i in range(len(fns)):
            total[i] += np.bincount(own, _panel_sums(fns, a, b, s[own], 16)[i], s.size)
    err = float(np.max(diff[:, bad] / np.maximum(absint[:, own[bad]], 1e-300)))
    warnings.warn(
        f"{name}: the one-dimensional Gaussian quadrature did not converge (largest panel "
        f"discrepancy {err:.2g} of the integral of |f|, sd up to {float(s.max()):.3g}); the "
        "integrand oscillates on a scale the panels cannot resolve at this variance",
        QuadratureWarning,
        stacklevel=3,
    )
    return total


# ------------------------------------------------------------------ kink-split rules (T41)-(T43)

#: Gauss-Legendre nodes per simplex coordinate for a spherical simplex of edge pi/2 (r >= 3):
#: measured relative error <= 5e-14 on truncated moments of order 4 (tests/test_hierarchy_multi.py)
KINK_ANGLE_NODES = 16


def _kink_normals_unit(L: np.ndarray) -> np.ndarray:
    """Unit normals of the distinct hyperplanes {L_i . xi = 0} (rows of L, zeros dropped)."""
    N = _distinct_normals(np.asarray(L, dtype=float))
    return N / np.linalg.norm(N, axis=1, keepdims=True) if len(N) else N


def _candidate_rays(P: np.ndarray) -> np.ndarray:
    """Unit rays (both signs) on r - 1 of the planes with normals P (k, r) at once."""
    r = P.shape[1]
    subs = np.array(list(itertools.combinations(range(len(P)), r - 1)))
    _, sv, vt = np.linalg.svd(P[subs])  # (ns, r-1, r): the null vector is the last row
    ok = sv[:, -1] > 1e-9 * sv[:, 0]
    v = vt[ok, -1, :]
    return np.concatenate([v, -v])


@lru_cache(maxsize=8)
def _simplex_rule(r: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Barycentric nodes (n^(r-1), r) and weights (sum 1/(r-1)!) on the standard simplex
    {t >= 0, sum t = 1} (collapsed Gauss-Legendre coordinates, Jacobian included)."""
    x, w = gauss_legendre(n)
    x, w = 0.5 * (x + 1.0), 0.5 * w
    T = np.ones((1, 1))  # columns: the remaining mass, then the coordinates so far
    W = np.ones(1)
    for _ in range(r - 1):
        rem = T[:, 0]
        ti = rem[:, None] * x[None, :]
        W = (W[:, None] * w[None, :] * rem[:, None]).ravel()  # dt_k = rem dx_k
        T = np.column_stack(
            [(rem[:, None] - ti).ravel(), np.repeat(T[:, 1:], n, axis=0), ti.ravel()]
        )
    return T, W


def _fan(pts: np.ndarray, axis: np.ndarray) -> list[np.ndarray]:
    """Simplices (columns) of the convex cone spanned by the unit rays pts (k, r), all within
    pi/2 of axis: the hull of their central projection, fanned from the first ray."""
    from scipy.spatial import ConvexHull, QhullError

    r = pts.shape[1]
    basis = np.linalg.svd(axis[None, :])[2][1:]  # orthonormal basis of axis^perp
    chart = (pts / (pts @ axis)[:, None]) @ basis.T
    try:
        hull = ConvexHull(chart)
    except (QhullError, ValueError):  # a flat (measure-zero) piece
        return []
    apex = int(hull.vertices[0])
    return [pts[[apex, *f]].T for f in hull.simplices if apex not in f and len(set(f)) == r - 1]


def _cell_simplices(N: np.ndarray, r: int, skip) -> np.ndarray:
    """Unit generators (ns, r, r) of spherical simplices tiling the cells of the arrangement of
    the kink hyperplanes (normals N) within the 2^r orthants (T41); cells where ``skip`` says
    the integrand vanishes are left out."""
    E = np.eye(r)
    cand = _candidate_rays(np.concatenate([E, N]))
    tol = 1e-12
    base = np.array(list(itertools.product((1.0, -1.0), repeat=r)))
    cells = np.array(list(itertools.product((1.0, -1.0), repeat=len(N))))
    in_base = np.all((cand[None] * base[:, None]) >= -tol, axis=2)  # (nb, nc)
    in_cell = np.all(((cand @ N.T)[None] * cells[:, None]) >= -tol, axis=2)  # (ncell, nc)
    out = []
    for s in range(len(cells)):
        pts = cand[in_cell[s]]
        if len(pts) < r:
            continue
        inner = pts.mean(axis=0)
        if np.linalg.norm(inner) < 1e-12 or (skip is not None and skip(inner[None])[0]):
            continue
        for b in range(len(base)):
            sel = in_cell[s] & in_base[b]
            if sel.sum() < r:
                continue
            pts = np.unique(np.round(cand[sel], 14), axis=0)
            out += _fan(pts, base[b] / math.sqrt(r))
    return np.array(out).reshape(-1, r, r)


def _sphere_simplices(N: np.ndarray, r: int, n_angle: int, skip) -> tuple[np.ndarray, np.ndarray]:
    """Directions (P, r) on S^(r-1) and weights (sum |S^(r-1)| over the cells kept), r >= 3.

    Each simplex is the central projection of a flat simplex V t (sum t = 1):
    dS = |det V| dt / |V t|^r (T42). Its Gauss-Legendre order falls with its widest edge theta
    as log(rho(pi/2)) / log(rho(theta)) (rho: the Bernstein ellipse through the nearest zero
    of |V t|^2 on an edge), so small pieces cost few nodes."""
    cones = _cell_simplices(N, r, skip)
    if not len(cones):
        return np.zeros((0, r)), np.zeros(0)
    gram = np.einsum("sik,sil->skl", cones, cones)
    cmin = np.clip(gram.min(axis=(1, 2)), -1.0, 1.0 - 1e-16)
    y = 2.0 * np.sqrt(np.maximum(0.5 / (1.0 - cmin) - 0.25, 0.0))  # zero of |Vt|^2 at +-iy
    lrho = np.log(y + np.sqrt(y * y + 1.0))
    n = np.ceil(n_angle * math.log(1.0 + math.sqrt(2.0)) / np.maximum(lrho, 1e-3))
    n = np.clip(n, 4, n_angle).astype(int)
    Ys, Ws = [], []
    for k in np.unique(n):
        V = cones[n == k]
        T, wt = _simplex_rule(r, int(k))
        Y = np.einsum("sij,tj->sti", V, T)
        ny = np.linalg.norm(Y, axis=2)
        det = np.abs(np.linalg.det(V))
        Ys.append((Y / ny[..., None]).reshape(-1, r))
        Ws.append((det[:, None] * wt[None, :] / ny**r).reshape(-1))
    return np.concatenate(Ys), np.concatenate(Ws)


def kink_rule(L, n_radial: int, n_angle: int = 24, skip=None) -> tuple[np.ndarray, np.ndarray]:
    """A rule for xi ~ N(0, I_r), r <= 4, split at the kink hyperplanes {L_i . xi = 0} (T41).

    For integrands that are polynomials of degree <= 2 n_radial - 1 along every ray and
    piecewise polynomial between the kinks (products of scale-invariant activations and their
    derivatives, times Hermite polynomials): the radial Gauss rule of rho^(r-1) e^(-rho^2/2) is
    exact, and the angular rule converges exponentially in ``n_angle`` (T42)-(T43). r = 1: the
    two half-lines; r = 2: the circle cut at every kink ray and at the axes (panels <= pi/2),
    Gauss-Legendre on each; r = 3, 4: every cell of the kink arrangement intersected with every
    coordinate orthant (a convex cone of edges <= pi/2, its rays found by intersecting r - 1 of
    the planes), fanned into spherical simplices, each the central projection of a flat simplex
    with a collapsed Gauss-Legendre rule of <= n_angle^(r-1) nodes.

    Parameters
    ----------
    L : array_like, shape (m, r)
        Rows: the kink normals in xi coordinates (z = L xi, kinks at z_i = 0); rank r.
    n_radial : int
        Radial Gauss nodes (<= ``MAX_RADIAL``).
    n_angle : int
        Gauss-Legendre nodes per angular panel (r = 2) or per simplex coordinate (r >= 3, for
        a simplex of edge pi/2; smaller ones get fewer).
    skip : callable, optional
        r >= 3: maps interior points (k, r) of cells to a bool mask, True where the integrand
        vanishes on the whole cell (the cell gets no nodes; the weights then sum to less than 1).

    Returns
    -------
    X : ndarray, shape (P, r)
    W : ndarray, shape (P,)
        Weights summing to 1 (a probability rule).

    Examples
    --------
    >>> import numpy as np
    >>> L = np.array([[1.0, 0.2, 0.0], [0.3, 1.0, 0.1], [0.0, 0.5, 1.0]])
    >>> X, W = kink_rule(L, 5, 20)
    >>> round(float(W.sum()), 12), round(float(W @ X[:, 0] ** 8), 8)  # E xi_1^8 = 105
    (1.0, 105.0)
    """
    L = np.atleast_2d(np.asarray(L, dtype=float))
    r = L.shape[1]
    if r == 0:
        return np.zeros((1, 0)), np.ones(1)
    if r == 1:
        rho, w = radial_rule(0, n_radial)
        return np.concatenate([rho, -rho])[:, None], np.concatenate([w, w]) / math.sqrt(_TWO_PI)
    rho, wr = radial_rule(r - 1, n_radial)
    if r == 2:
        rays = np.arctan2(L[:, 0], -L[:, 1]) % math.pi  # direction of {L_i . xi = 0}
        rays = rays[np.linalg.norm(L, axis=1) > 0]
        cuts = np.sort(np.concatenate([rays, rays + math.pi, 0.5 * math.pi * np.arange(4)]))
        cuts = np.append(cuts, cuts[0] + 2.0 * math.pi)
        xg, wg = _leggauss01(n_angle)
        a, b = cuts[:-1], cuts[1:]
        phi = (a[:, None] + (b - a)[:, None] * xg).ravel()
        Y = np.stack([np.cos(phi), np.sin(phi)], 1)
        wY = ((b - a)[:, None] * wg).ravel()
    else:
        Y, wY = _sphere_simplices(_kink_normals_unit(L), r, n_angle, skip)
    X = (rho[:, None, None] * Y[None]).reshape(-1, r)
    W = (wr[:, None] * wY[None, :]).ravel() / _TWO_PI ** (0.5 * r)
    keep = W > 0
    return X[keep], W[keep]
