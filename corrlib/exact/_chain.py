"""Lattice solver for the single-input collective Markov chain (docs/theory.md section 10).

For one input, Sigma^{(l)} =: S_l is a scalar Markov chain (T3):
``S_l = C_b + (C_W/n_l) sum_{i<=n_l} sigma(sqrt(S_{l-1}) xi_i)^2`` with i.i.d. xi_i ~ N(0, 1).
We carry the law of ``u = log(S - c)`` on a uniform lattice ``u_j = u_0 + j h``, where
``c = C_b + C_W inf sigma^2`` is the hard lower edge of S, plus an atom at ``S = c`` (ReLU-type
activations: all neurons off). A transition column for a source ``s`` is the law of
``S' - c = (C_W s / n) W``, ``W = sum_i g(xi_i)``, ``g = (sigma(sqrt(s) xi)^2 - inf sigma^2)/s``,
evaluated at the lattice targets.

Column kinds (:class:`Chain`):

* ``onesided`` (ReLU-type, one slope 0): a Binomial mixture of chi-squares, exact;
* ``symmetric`` (equal slopes, linear-type): a chi-square, exact;
* ``leaky`` (both slopes, different): a Binomial mixture of negative-binomial mixtures of Gamma
  laws, exact (Fourier inversion of the closed-form characteristic function when that series is
  too long, i.e. at large widths);
* ``general`` (any other activation): one neuron's characteristic function by composite
  Gauss-Legendre quadrature in ``t = asinh(sqrt(s) xi)`` (resolving both the Gaussian scale and
  the activation's features at ``|z| ~ 1`` for any source s), raised to the n-th power and
  inverted by direct Fourier summation at the targets.

Two propagation paths:

* scale-invariant activations with ``c = 0`` (value channel with C_b = 0, or a derivative
  channel): the chain is shift-invariant in u, every layer is a convolution with one column per
  width, and the final law is a (binary) convolution power. Moments come from the exact
  recursion (T14); the lattice's own moments are checked against it column by column.
* everything else: a sparse matrix of cached columns, one product per layer. Tails are trimmed on
  ``p S^k`` for k = 0..3 so that the lattice carries the moments, and every layer is checked
  against the exact one-step law of total cumulance (mass, mean, variance, kappa_3); the
  accumulated defects are the solver's error estimate.

Internal module: the public entry point is :func:`corrlib.exact.single_input` (lattice.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy import signal, sparse, special

from .._util import binom_logpmf, gauss_legendre_panels

__all__ = ["Chain", "ChainResult", "SolverLimit", "propagate"]

_LOG2 = math.log(2.0)
_LOG_FMAX = math.log(np.finfo(float).max)
H_CAP = 0.1  # lattice step cap (times h_factor / 3): log(chi2_k) densities are analytic in a strip
XI_MAX = 10.0  # quadrature range of xi
PANEL_DT = 0.5  # panel width in t = asinh(sqrt(s) xi), the activation's feature scale |z| ~ 1
THETA_SD = 10.0  # first Fourier range: theta up to THETA_SD / sd(W)
COL_TOL = 1e-17  # column entries below COL_TOL * max are dropped
MAX_THETA = 1 << 15  # Fourier nodes per source at most (beyond: the column is unresolved)
MAX_FINE_PANELS = 128  # quadrature panels of the per-source refinement at most
CHUNK = 500_000  # elements of one temporary (sources x theta x nodes) block
RANGE_FLOOR = 1e-150  # smallest p / max p the moment-carrying tails may need
LOG_SPAN_MAX = 100.0  # largest log(S / E S) the moment-carrying tails may need
MAX_POINTS = 2_000_000  # lattice points of one law
MAX_NNZ = 30_000_000  # stored entries of the transition matrix of one width
UNRESOLVED_FLOOR = 1e-11  # Fourier truncation error counted as resolved


class SolverLimit(Exception):
    """The lattice cannot reach the stated accuracy here; ``str`` says why and what to use."""

    def __init__(self, message: str, layer: int, quantity: str, error: float):
        super().__init__(message)
        self.layer = layer
        self.quantity = quantity
        self.error = error


# --------------------------------------------------------------------------------------------
# one neuron and the transition columns
# --------------------------------------------------------------------------------------------


def _evaluate(act, z: np.ndarray) -> np.ndarray:
    """sigma(z) for an array z, with a clear error for activations that are not vectorized,
    raise, change the shape or return non-finite values."""
    try:
        with np.errstate(all="ignore"):
            f = np.asarray(act.f(z), dtype=float)
    except Exception as exc:
        raise ValueError(
            f"activation {act.name!r} must map an ndarray of z values to an ndarray of the same "
            f"shape (vectorized, e.g. with numpy functions); calling it on an array of shape "
            f"{z.shape} raised {type(exc).__name__}: {exc}"
        ) from exc
    if f.shape != z.shape:
        raise ValueError(
            f"activation {act.name!r} must return an array of the input's shape {z.shape}; got "
            f"shape {f.shape}"
        )
    bad = ~np.isfinite(f)
    if np.any(bad):
        raise ValueError(
            f"activation {act.name!r} must be finite on the real line; got {f[bad].flat[0]!r} "
            f"at z = {float(z[bad].flat[0]):.4g}"
        )
    return f


def _activation_range(act) -> tuple[float, float]:
    """(inf sigma^2, sup sigma^2) on the real line (sup = inf for growing activations)."""
    zz = np.concatenate([np.linspace(-60.0, 60.0, 240001), np.zeros(1)])
    v = _evaluate(act, zz) ** 2
    m = float(max(np.min(v), 0.0))
    inner = v[np.abs(zz) <= 50.0]
    top = float(np.max(v))
    bounded = float(np.max(inner)) >= 0.99 * top
    return m, (top if bounded else math.inf)


@lru_cache(maxsize=64)
def leaky_mixture(n: int, ap2: float, am2: float, budget: int = 400_000):
    """Exact law of W = a_+^2 chi2_B + a_-^2 chi2'_{n-B}, B ~ Bin(n, 1/2) (T14), as a mixture.

    With beta_s < beta_b the two chi-square scales (2 a^2), a Gamma(alpha, beta_b) is the
    mixture over K ~ NegBin(alpha, p = beta_s/beta_b) of Gamma(alpha + K, beta_s); the shapes
    of the two groups add up to n/2 for every B, so W / beta_s ~ Gamma(n/2 + K) with K a
    Binomial mixture of negative binomials (all terms positive: no cancellation). Returns
    (beta_s, K values, log P(K)) truncated where log P(K) < max - 75, or None when the
    number of terms exceeds ``budget`` (then the Fourier column is used).
    """
    bs, bb = 2.0 * min(ap2, am2), 2.0 * max(ap2, am2)
    pr = bs / bb
    lq = math.log1p(-pr)
    alpha = 0.5 * n
    mean = alpha * (1.0 - pr) / pr
    sd = math.sqrt(alpha * (1.0 - pr)) / pr
    k_max = int(math.ceil(mean + 12.0 * sd + 80.0 / max(-lq, 1e-300) + 50.0))
    if k_max * (n + 1) > 50 * budget or k_max > budget:
        return None
    B = np.arange(1, n + 1, dtype=float)  # members of the larger-scale group
    logbin = binom_logpmf(B, n)
    k = np.arange(k_max + 1, dtype=float)
    a = 0.5 * B[:, None]
    lnb = (
        special.gammaln(a + k[None, :])
        - special.gammaln(a)
        - special.gammaln(k + 1.0)[None, :]
        + a * math.log(pr)
        + k[None, :] * lq
    )
    logP = special.logsumexp(logbin[:, None] + lnb, axis=0)
    logP[0] = np.logaddexp(logP[0], float(binom_logpmf(np.array([0]), n)[0]))  # B = 0: K = 0
    keep = np.nonzero(logP > logP.max() - 75.0)[0]
    sl = slice(keep[0], keep[-1] + 1)
    return bs, k[sl], logP[sl]


def _leaky_density(n: int, w: np.ndarray, mix) -> np.ndarray:
    """Density of log W at w: sum_K P(K) f_Gamma(n/2+K)(w/beta_s) w/beta_s."""
    bs, k, logP = mix
    a = 0.5 * n + k
    lga = logP - special.gammaln(a)
    y = w / bs
    ly = np.log(y)
    out = np.empty(w.size)
    step = max(1, int(CHUNK // max(k.size, 1)))
    for j in range(0, w.size, step):
        t = lga[None, :] + a[None, :] * ly[j : j + step, None] - y[j : j + step, None]
        out[j : j + step] = np.exp(special.logsumexp(t, axis=1))
    return out


def _onesided_density(n: int, y: np.ndarray) -> np.ndarray:
    """sum_{k>=1} P(B=k) f_{chi2_k}(y) y, B ~ Bin(n, 1/2): the density of log(chi2_B) at y."""
    k = np.arange(1, n + 1, dtype=float)
    logp = binom_logpmf(k, n)
    keep = logp > logp.max() - 60.0
    k, logp = k[keep], logp[keep]
    ly = np.log(y)[:, None]
    half = k[None, :] / 2.0
    logf = half * (ly - _LOG2) - np.exp(ly) / 2.0 - special.gammaln(half)
    return np.exp(special.logsumexp(logf + logp[None, :], axis=1))


def _ld_depth(k_eff: np.ndarray) -> np.ndarray:
    """D > 0 with (k_eff/2)(D + e^{-D} - 1) = 46: how far (in log) a Gamma(k_eff/2) law's
    lower tail must be followed to reach relative density e^{-46}. Closed form by Lambert W:
    D = r + 1 + W_0(-e^{-(r+1)}), r = 92 / k_eff."""
    r = 92.0 / k_eff
    return r + 1.0 + special.lambertw(-np.exp(-(r + 1.0)), 0).real


class Chain:
    """Transition kernel of S on a lattice in u = log(S - c), for one activation."""

    def __init__(self, act, C_W: float, C_b: float, *, panels: int, order: int, z_band: float):
        self.act = act
        self.C_W = float(C_W)
        self.C_b = float(C_b)
        self.panels = 2 * ((int(panels) + 1) // 2)  # even: 0 is a panel edge (kinks)
        self.order = int(order)
        self.z_band = float(z_band)
        if act.is_scale_invariant:
            self.ap2, self.am2 = float(act.a_plus) ** 2, float(act.a_minus) ** 2
            self.m, self.M = 0.0, math.inf
            if self.ap2 == self.am2:
                self.kind = "symmetric"
            elif self.ap2 == 0.0 or self.am2 == 0.0:
                self.kind = "onesided"
            else:
                self.kind = "leaky"
        else:
            self.kind = "general"
            self.m, self.M = _activation_range(act)
        self.c = self.C_b + self.C_W * self.m
        # bounded activations (tanh, erf, sigmoid, sin, ...): S < c_max, and the lattice runs in
        # u = logit((S - c)/(c_max - c)) so that both edges are at infinity (a law piling up at
        # the upper bound, as at large inputs, stays smooth in u). c_max sits 1e-6 (relative)
        # above the largest sigma^2 found on a fine grid, which covers the true supremum.
        self.logit = math.isfinite(self.M) and self.M > self.m
        self.c_max = self.C_b + self.C_W * (self.M * (1.0 + 1e-6) if self.logit else self.M)
        self.log_D = math.log(self.c_max - self.c) if self.logit else 0.0

    @property
    def scale_invariant(self) -> bool:
        return self.kind != "general"

    # ---- the lattice coordinate u <-> y = log(S - c) ----------------------------------------
    def u_to_y(self, u):
        """log(S - c) at lattice coordinate u: u itself, or log(D expit(u)) (logit lattice)."""
        if not self.logit:
            return u
        return self.log_D - np.logaddexp(0.0, -np.asarray(u, dtype=float))

    def y_to_u(self, y):
        """Lattice coordinate of log(S - c) = y (inverse of :meth:`u_to_y`)."""
        if not self.logit:
            return y
        x = np.minimum(np.asarray(y, dtype=float) - self.log_D, -1e-300)
        return x - np.log(-np.expm1(x))

    def jacobian(self, u):
        """d log(S - c)/du: 1, or expit(-u) on the logit lattice."""
        if not self.logit:
            return np.ones(np.shape(u))
        return special.expit(-np.asarray(u, dtype=float))

    # ---- one neuron ------------------------------------------------------------------------
    def nodes(self, s: np.ndarray, panels: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Quadrature nodes xi (B, N) and weights (normal density included) for sources s.

        Composite Gauss-Legendre in ``t = asinh(sqrt(s) xi)`` on ``|xi| <= XI_MAX``: panels of
        width PANEL_DT in t resolve the activation's features at ``|z| = sqrt(s)|xi| ~ 1``
        and the Gaussian at ``|xi| ~ 1`` alike, for every source s. ``panels`` overrides the
        number of panels (rounded up to even).
        """
        root = np.sqrt(np.maximum(np.asarray(s, dtype=float), 1e-300))
        T = np.arcsinh(XI_MAX * root)
        P = max(self.panels, 2 * int(math.ceil(float(T.max()) / PANEL_DT)))
        if panels:
            P = 2 * ((int(panels) + 1) // 2)
        t, wt = gauss_legendre_panels(np.linspace(-1.0, 1.0, P + 1), self.order)
        arg = T[:, None] * t[None, :]
        xi = np.sinh(arg) / root[:, None]
        jac = T[:, None] * np.cosh(arg) / root[:, None]
        return xi, wt[None, :] * jac * np.exp(-0.5 * xi * xi) / math.sqrt(2.0 * math.pi)

    def g_values(self, s: np.ndarray, panels: int = 0):
        """(g, weights, xi), each (B, N): g = (sigma(sqrt(s) xi)^2 - inf sigma^2)/s."""
        s = np.asarray(s, dtype=float)
        xi, wq = self.nodes(s, panels)
        z = np.sqrt(s)[:, None] * xi
        f = _evaluate(self.act, z)
        g = np.maximum((f * f - self.m) / s[:, None], 0.0)
        # the quadrature covers |xi| <= XI_MAX: sigma^2 must not carry mass beyond (it does for
        # activations growing faster than a polynomial, e.g. exp, at large Sigma)
        edge = np.maximum(g[:, 0] * wq[:, 0], g[:, -1] * wq[:, -1]) / np.maximum(
            np.sum(g * wq, axis=1), 1e-300
        )
        if np.any(edge > 1e-14):
            b = int(np.argmax(edge))
            raise ValueError(
                f"activation {self.act.name!r} grows too fast: at Sigma = {float(s[b]):.4g} the "
                f"Gaussian integral of sigma(sqrt(Sigma) xi)^2 has weight {float(edge[b]):.1e} at "
                f"|xi| = {XI_MAX:g}, beyond the solver's quadrature; the solver needs sigma^2 to "
                "grow at most polynomially"
            )
        return g, wq, xi

    def g_cumulants(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean, variance and third cumulant of g under xi ~ N(0,1); shape (B,) each."""
        s = np.atleast_1d(np.asarray(s, dtype=float))
        if self.scale_invariant:
            e1 = 0.5 * (self.ap2 + self.am2)
            e2 = 1.5 * (self.ap2**2 + self.am2**2)
            e3 = 7.5 * (self.ap2**3 + self.am2**3)
            k3 = e3 - 3.0 * e1 * e2 + 2.0 * e1**3
            return (np.full(s.shape, e1), np.full(s.shape, e2 - e1 * e1), np.full(s.shape, k3))
        g, wq, _ = self.g_values(s)
        e1 = np.sum(g * wq, axis=1)
        d = g - e1[:, None]
        return e1, np.sum(d * d * wq, axis=1), np.sum(d**3 * wq, axis=1)

    def cond_cumulants(self, s: np.ndarray, n: int):
        """(mean, variance, kappa_3) of S' given S = s, width n: exact (T2), shape (B,) each.

        At s = 0 every neuron sees z = 0: S' = C_b + C_W sigma(0)^2 surely."""
        s = np.atleast_1d(np.asarray(s, dtype=float))
        if np.any(s <= 0.0):
            if not np.all(s <= 0.0):
                raise ValueError("cond_cumulants: mixed zero and positive sources")
            f0 = float(_evaluate(self.act, np.zeros(1))[0])
            z = np.zeros(s.shape)
            return np.full(s.shape, self.C_b + self.C_W * f0 * f0), z, z
        e1, var, k3 = self.g_cumulants(s)
        a = self.C_W * s
        return self.c + a * e1, a * a * var / n, a**3 * k3 / (n * n)

    def rel_width(self, s: np.ndarray, n: int) -> np.ndarray:
        """Standard deviation of u' = log(S' - c) of a column (small-width approximation)."""
        e1, var, _ = self.g_cumulants(s)
        return np.sqrt(var / n) / np.maximum(e1, 1e-300)

    def atom_prob(self, n: int) -> float:
        """P(S' = c | s): all n neurons at inf sigma^2 (ReLU-type only)."""
        return math.exp(-n * _LOG2) if self.kind == "onesided" else 0.0

    # ---- columns ---------------------------------------------------------------------------
    def columns(self, n: int, s: np.ndarray, u0: float, h: float):
        """Lattice columns for sources s (all > 0 with a non-degenerate g), width n.

        Returns ``(cols, unresolved)``: ``cols`` a list of (i_start, values) with values the
        probabilities of the lattice points u_i = u0 + i h, i = i_start.., for the continuous
        part of S' (the atom at S' = c, if any, is :meth:`atom_prob`); ``unresolved`` (B,) the
        relative density error bound of Fourier columns whose characteristic function did not
        decay (0 for resolved and exact columns).
        """
        s = np.atleast_1d(np.asarray(s, dtype=float))
        e1, var, _ = self.g_cumulants(s)
        mu, sd = n * e1, np.sqrt(n * var)
        band = self._band(n, s, mu, sd)
        logscale = np.log(self.C_W * s / n)
        i_lo = np.ceil((self.y_to_u(logscale + np.log(band[0])) - u0) / h).astype(np.int64)
        i_hi = np.floor((self.y_to_u(logscale + np.log(band[1])) - u0) / h).astype(np.int64)
        i_hi = np.maximum(i_hi, i_lo)
        unresolved = np.zeros(s.size)
        targets = []  # (W at the lattice points, d log W / du) per source
        for b in range(s.size):
            u = u0 + np.arange(i_lo[b], i_hi[b] + 1) * h
            targets.append((np.exp(self.u_to_y(u) - logscale[b]), self.jacobian(u)))
        if self.kind == "general" or (self.kind == "leaky" and self._mixture(n) is None):
            vals = self._fourier_columns(n, s, mu, sd, band, targets, h, unresolved)
        else:
            vals = [h * self._exact_log_density(n, w) for w, _ in targets]
        return [_trim_column(int(i0), v) for i0, v in zip(i_lo, vals, strict=True)], unresolved

    def _mixture(self, n: int):
        return leaky_mixture(int(n), self.ap2, self.am2)

    def _exact_log_density(self, n: int, w: np.ndarray) -> np.ndarray:
        """Density of log W at w for the scale-invariant kinds (T14)."""
        if self.kind == "onesided":
            return _onesided_density(n, w / max(self.ap2, self.am2))
        if self.kind == "symmetric":
            y, k = w / self.ap2, n / 2.0
            return np.exp(k * np.log(y / 2.0) - y / 2.0 - special.gammaln(k))
        return _leaky_density(n, w, self._mixture(n))

    def _band(self, n: int, s: np.ndarray, mu: np.ndarray, sd: np.ndarray):
        """Range [w_lo, w_hi] of W that a column covers (each (B,)): at least z_band standard
        deviations, and out to where W's density is below e^{-46} of its scale."""
        w_hi = mu + self.z_band * sd
        if self.kind != "general":
            w_hi = w_hi + 84.0 * max(self.ap2, self.am2)  # chi-square tails: e^{-42} per unit
            w_lo = self._gamma_lower_edge(n, mu, sd)
            return np.maximum(np.minimum(w_lo, 0.5 * w_hi), 1e-300), w_hi
        g, wq, xi = self.g_values(s)
        # Chernoff: P(W <= w) <= exp(t w + n log E e^{-t g}) for every t > 0
        w_lo = self._chernoff(n, g, wq, -1.0)
        z_lo = mu - self.z_band * sd
        w_lo = np.where(z_lo > 0.0, np.minimum(w_lo, z_lo), w_lo)
        if self.logit:  # bounded: W <= W_top = n (sup sigma^2 - inf)/s, Chernoff below it
            w_top = n * (self.M * (1.0 + 5e-7) - self.m) / s
            w_hi = np.minimum(np.maximum(w_hi, self._chernoff(n, g, wq, 1.0)), w_top)
        else:  # sigma^2 grows like xi^2: a chi-square-like right tail
            big = np.abs(xi) > 1.0
            tail = np.maximum(2.0 * np.max(np.where(big, g / xi**2, 0.0), axis=1), 1e-300)
            w_hi = w_hi + 42.0 * tail
        return np.maximum(np.minimum(w_lo, 0.5 * w_hi), 1e-300), w_hi

    def _gamma_lower_edge(self, n: int, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
        """Lower edge of the exact (scale-invariant) columns: a Gamma-matched large-deviation
        bound, at least z_band standard deviations below the mean."""
        k_eff = 2.0 * mu**2 / np.maximum(sd**2, 1e-300)
        if self.kind == "onesided":
            # Binomial mixture: the left tail is that of the fewest active neurons that matter
            k = np.arange(1, n + 1)
            k_eff = np.minimum(k_eff, float(k[np.argmax(binom_logpmf(k, n) > -46.0)]))
        D = np.maximum(_ld_depth(k_eff), self.z_band * sd / mu)
        w_lo = mu * np.exp(-D)
        if self.kind == "leaky" and self._mixture(n) is not None:
            # W >= beta_s Gamma(n/2) stochastically: cover its lower quantile 1e-30
            lo = self._mixture(n)[0] * special.gammaincinv(0.5 * n, 1e-30)
            w_lo = np.minimum(w_lo, max(lo, 1e-300))
        return w_lo

    @staticmethod
    def _chernoff(n: int, g: np.ndarray, wq: np.ndarray, side: float) -> np.ndarray:
        """Where the Chernoff bound of W = sum of n copies of g reaches e^{-46}: the largest w
        with P(W <= w) <= e^{-46} (side = -1) or the smallest with P(W >= w) <= e^{-46}
        (side = +1), from one neuron's quadrature law (g, wq), each (B, N). A coarse grid of
        t only widens the band (the bound holds for every t)."""
        ref = np.max(g, axis=1) if side > 0 else np.min(g, axis=1)
        span = np.maximum(np.max(g, axis=1) - np.min(g, axis=1), 1e-300)
        t = np.geomspace(1e-3, 1e5, 17)[None, :] / span[:, None]  # (B, T)
        d = side * (g - ref[:, None])  # <= 0: no overflow
        mgf = np.einsum("btn,bn->bt", np.exp(t[:, :, None] * d[:, None, :]), wq)
        with np.errstate(divide="ignore"):
            lam = side * t * ref[:, None] + np.log(mgf)  # log E exp(side t g)
        bound = (46.0 + n * lam) / t  # P(side * W >= bound) <= e^{-46}
        return side * np.min(bound, axis=1)

    # ---- Fourier columns -------------------------------------------------------------------
    def _psi(self, n: int, s: np.ndarray, theta: np.ndarray, e1: np.ndarray, panels: int = 0):
        """E exp(i theta (W - E W)) = phi_g(theta)^n for sources s (B,) at theta (B, K).

        Evaluated as exp(n log phi_g) with phi_g - 1 summed directly (cos x - 1 = -2 sin^2(x/2))
        and a complex log1p: at large n the curvature of log phi_g near theta = 0 (the
        column's variance) is then accurate to rounding instead of losing ~n eps / (theta^2
        var) to the cancellation in 1 - phi_g.
        """
        if self.scale_invariant:
            dm1 = 0.5 * (_inv_sqrt_m1(theta * self.ap2) + _inv_sqrt_m1(theta * self.am2))
            return np.exp(n * (_clog1p(dm1) - 1j * theta * e1[:, None]))
        g, wq, _ = self.g_values(s, panels)
        g = g - e1[:, None]
        out = np.empty(theta.shape, dtype=complex)
        per = max(1, CHUNK // max(g.shape[1], 1))
        for b in range(s.size):
            for a in range(0, theta.shape[1], per):
                A = theta[b, a : a + per, None] * g[b, None, :]
                dm1 = -2.0 * (np.sin(0.5 * A) ** 2 @ wq[b]) + 1j * (np.sin(A) @ wq[b])
                out[b, a : a + per] = np.exp(n * _clog1p(dm1))
        return out

    def _refinement(self, s: float, theta_max: float) -> int:
        """Panels so that exp(i theta g(xi)) is resolved up to theta_max: about
        theta_max * (max g - min g) / 4 (at most MAX_FINE_PANELS)."""
        if self.scale_invariant:
            return 0
        g, _, _ = self.g_values(np.array([s]))
        P0 = g.shape[1] // self.order
        return min(MAX_FINE_PANELS, max(P0, math.ceil(theta_max * float(np.ptp(g)) / 4.0)))

    def _refine(self, n: int, s: float, e1: float, sd: float, dth: float, K: int):
        """One source's characteristic function on theta < 2K, then (if it has not decayed)
        on 2K <= theta < 4K, each range with as many panels as its largest theta needs."""
        th_all, ps_all = np.zeros(0), np.zeros(0, dtype=complex)
        Kb, err = K, math.inf
        while err >= UNRESOLVED_FLOOR and Kb < min(4 * K, MAX_THETA):
            start, Kb = th_all.size, min(2 * Kb, MAX_THETA)
            th = dth * np.arange(start, Kb)
            panels = self._refinement(s, float(th[-1]))
            ps = self._psi(n, np.array([s]), th[None, :], np.array([e1]), panels)[0]
            th_all, ps_all = np.concatenate([th_all, th]), np.concatenate([ps_all, ps])
            err = float(abs(ps_all[-1]) * th_all[-1] * sd)
        return th_all, ps_all, err

    def _fourier_columns(self, n, s, mu, sd, band, targets, h, unresolved):
        """f_W at the targets by direct Fourier summation of phi_g^n (trapezoid in theta).

        theta runs up to THETA_SD / sd, then (per source, with finer quadrature, up to
        MAX_THETA nodes) until |phi_g^n| theta sd < 1e-11; the remainder is recorded in
        ``unresolved`` as the column's relative density error bound. Returns the lattice
        probabilities h f_W(w) w (d log W/du) per source.
        """
        w_lo, w_hi = band
        period = 1.3 * (w_hi - np.maximum(w_lo - 3.0 * sd, 0.0)) + 2.0 * sd
        dtheta = 2.0 * math.pi / period
        e1 = mu / n
        K = int(min(np.ceil(np.max(THETA_SD / sd / dtheta)) + 1, MAX_THETA))
        theta = dtheta[:, None] * np.arange(K)[None, :]
        psi = self._psi(n, s, theta, e1)
        out = []
        for b in range(s.size):
            w, jac = targets[b]
            th, ps = theta[b], psi[b]
            err = float(abs(ps[-1]) * th[-1] * sd[b])
            if err >= UNRESOLVED_FLOOR:
                th, ps, err = self._refine(n, s[b], e1[b], sd[b], dtheta[b], K)
            if err >= UNRESOLVED_FLOOR:
                unresolved[b] = err
            out.append(_invert_outward(ps, th, dtheta[b], w, mu[b], h * w * jac))
        return out


def _clog1p(z: np.ndarray) -> np.ndarray:
    """log(1 + z) for complex z, accurate for small |z|."""
    zr, zi = z.real, z.imag
    return 0.5 * np.log1p(2.0 * zr + zr * zr + zi * zi) + 1j * np.arctan2(zi, 1.0 + zr)


def _inv_sqrt_m1(t: np.ndarray) -> np.ndarray:
    """(1 - 2 i t)^(-1/2) - 1, accurate for small t (the chi-square_1 characteristic function)."""
    x = -0.25 * np.log1p(4.0 * t * t)  # real part of -log(1 - 2 i t)/2
    y = 0.5 * np.arctan(2.0 * t)  # its imaginary part
    return np.expm1(x) * np.cos(y) - 2.0 * np.sin(0.5 * y) ** 2 + 1j * np.exp(x) * np.sin(y)


def _invert_outward(psi, theta, dth, w, m, scale, block: int = 64, floor: float = 1e-15):
    """``scale * density`` at the targets w (ascending), computed outward from the mean: each
    side stops after a block whose values all lie below ``floor`` times the peak (the Fourier
    sum's noise level; the remaining far tail is left at 0)."""
    out = np.zeros(w.size)
    mid = int(np.clip(np.searchsorted(w, m), 0, max(w.size - 1, 0)))
    lo, hi = max(mid - block, 0), min(mid + block, w.size)
    out[lo:hi] = _invert(psi, theta, dth, w[lo:hi], m) * scale[lo:hi]
    peak = float(np.max(np.abs(out[lo:hi]))) if hi > lo else 0.0
    while lo > 0:
        a = max(lo - block, 0)
        out[a:lo] = _invert(psi, theta, dth, w[a:lo], m) * scale[a:lo]
        peak = max(peak, float(np.max(out[a:lo])))
        lo = a
        if np.max(np.abs(out[a : a + block])) < floor * peak:
            break
    while hi < w.size:
        b = min(hi + block, w.size)
        out[hi:b] = _invert(psi, theta, dth, w[hi:b], m) * scale[hi:b]
        peak = max(peak, float(np.max(out[hi:b])))
        hi = b
        if np.max(np.abs(out[b - block : b])) < floor * peak:
            break
    return out


def _invert(psi, theta, dth, w, m):
    """Density at w from the characteristic function psi of W - m on theta = 0, dth, ..."""
    wt = np.full(theta.size, dth / math.pi)
    wt[0] *= 0.5
    pw = psi * wt
    out = np.empty(w.size)
    per = max(1, CHUNK // max(theta.size, 1))
    for a in range(0, w.size, per):
        arg = (w[a : a + per] - m)[:, None] * theta[None, :]
        out[a : a + per] = np.cos(arg) @ pw.real + np.sin(arg) @ pw.imag
    return out


def _trim_column(i0: int, v: np.ndarray):
    v = np.where(np.isfinite(v) & (v > 0), v, 0.0)
    if v.size == 0 or v.max() <= 0:
        return i0, v[:0]
    keep = np.nonzero(v > COL_TOL * v.max())[0]
    a, b = keep[0], keep[-1] + 1
    return i0 + int(a), v[a:b]


# --------------------------------------------------------------------------------------------
# moments of laws on the lattice, in scaled arithmetic
# --------------------------------------------------------------------------------------------


def _mixture_cumulants(w, mu, v, k):
    """Cumulants (mass, E, Var, kappa_3) of a mixture with weights w of laws with cumulants
    (mu, v, k) (law of total cumulance); all arrays scaled by a common reference."""
    W = float(w.sum())
    E = float(w @ mu) / W
    d = mu - E
    vb = float(w @ v) / W
    V = vb + float(w @ (d * d)) / W
    K3 = float(w @ k) / W + 3.0 * float(w @ (d * (v - vb))) / W + float(w @ (d**3)) / W
    return np.array([W, E, V, K3])


def _rel(a: float, b: float) -> float:
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(b), 1e-300)


@dataclass
class ChainResult:
    """What :func:`propagate` returns (lattice.py turns it into a SingleInputResult)."""

    cumulants: np.ndarray  # (L+1, 3): E, Var, kappa_3 of Sigma^(l-1) (scaled by `scale`^k)
    log_moments: np.ndarray  # (L+1, 4): log E[S^k]
    error: np.ndarray  # (L+1, 3): estimated relative error of the cumulants
    mass: np.ndarray  # (L+1,)
    law_error: float  # estimated error of the lattice law (mass, moments while carried)
    logS: np.ndarray  # log of the lattice values carrying the final law
    p: np.ndarray
    atom: float
    c: float
    h: float
    moments_exact: bool = False  # cumulants from the exact recursion (scale-invariant)
    c_max: float = math.inf  # finite: the lattice is u = logit((S - c)/(c_max - c))
    notes: list = field(default_factory=list)


def _recursion_error(lm: np.ndarray, cum: np.ndarray) -> np.ndarray:
    """Relative error of cumulants from the exact recursion: ~1e-15 per layer in the log-moments,
    amplified by the cancellation in Var = E S^2 - (E S)^2 and in kappa_3."""
    L1 = lm.shape[0]
    rnd = 1e-15 * (1.0 + np.arange(L1))
    err = np.zeros((L1, 3))
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        err[:, 0] = rnd
        err[:, 1] = rnd * np.exp(lm[:, 2] - np.log(np.abs(cum[:, 1])))
        err[:, 2] = rnd * np.exp(lm[:, 3] - np.log(np.abs(cum[:, 2])))
    err[0] = 0.0
    err[~np.isfinite(err)] = 0.0
    return err


def _log_cumulants(lm: np.ndarray) -> np.ndarray:
    """(E, Var, kappa_3) from log raw moments (L+1, 4), inf where they exceed float64."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        m1, m2, m3 = lm[:, 1], lm[:, 2], lm[:, 3]
        br2 = -np.expm1(np.minimum(2.0 * m1 - m2, 0.0))
        br3 = 1.0 - 3.0 * np.exp(m1 + m2 - m3) + 2.0 * np.exp(3.0 * m1 - m3)
        out = np.empty((lm.shape[0], 3))
        out[:, 0] = np.exp(m1)
        out[:, 1] = np.exp(m2 + np.log(np.abs(br2))) * (br2 != 0)
        out[:, 2] = np.sign(br3) * np.exp(m3 + np.log(np.abs(br3)))
    out[~np.isfinite(out) & ~np.isnan(out)] = np.inf
    out[np.isnan(out)] = 0.0
    return out


# --------------------------------------------------------------------------------------------
# path 1: scale-invariant activations with c = 0 (shift-invariant chain)
# --------------------------------------------------------------------------------------------


def _trim_mass(y: np.ndarray, off: int, tol: float):
    """Drop both tails of a law whose mass (relative) is below tol each; (y, off)."""
    if y.size == 0:
        return y, off
    cp = np.cumsum(y)
    tot = cp[-1]
    if tot <= 0:
        return y[:0], off
    left = int(np.searchsorted(cp, tol * tot, side="right"))
    right = int(np.searchsorted(cp, (1.0 - tol) * tot, side="left"))
    return y[left : max(right, left) + 1], off + left


class _LawBuilder:
    """Convolutions of normalized laws on the shift-invariant lattice (S = S0 e^{h i}).

    Tails are trimmed on ``p e^{k h i}``, k <= 3 (the law keeps the paths that carry E S^k),
    while the lattice can carry them: direct (positive) convolutions and ``p >= RANGE_FLOOR
    max p``; beyond (FFT convolutions, or heavier tails) on the mass alone.
    """

    def __init__(self, h: float, tol: float):
        self.h, self.tol, self.carry = h, tol, True

    def conv(self, a: np.ndarray, aoff: int, b: np.ndarray, boff: int):
        if a.size * b.size <= 4_000_000:
            y = np.convolve(a, b)
        else:  # exact in the bulk; relative accuracy lost below ~1e-16 of the peak
            y = np.maximum(signal.oaconvolve(a, b), 0.0)
            self.carry = False
        y, off = self.trim(y, aoff + boff)
        return y / y.sum(), off

    def trim(self, y: np.ndarray, off: int):
        if not self.carry:
            return _trim_mass(y, off, self.tol)
        with np.errstate(divide="ignore"):
            ly = np.log(y)
        i = self.h * (off + np.arange(y.size))
        left, right = y.size, -1
        for k in range(4):
            lw = ly + k * i
            cw = np.cumsum(np.exp(lw - lw.max()))
            left = min(left, int(np.searchsorted(cw, self.tol * cw[-1], side="right")))
            right = max(right, int(np.searchsorted(cw, (1 - self.tol) * cw[-1], side="left")))
        kept = y[left : max(right, left) + 1]
        if min(kept[0], kept[-1]) < RANGE_FLOOR * kept.max():
            self.carry = False
            return _trim_mass(y, off, self.tol)
        return kept, off + left

    def power(self, v: np.ndarray, i0: int, count: int):
        """The count-fold convolution of the normalized column (v, i0), by binary powers."""
        out, off = np.ones(1), 0
        base, boff = self.trim(v / v.sum(), i0)
        base = base / base.sum()
        while count:
            if count & 1:
                out, off = self.conv(out, off, base, boff)
            count >>= 1
            if count:
                base, boff = self.conv(base, boff, base, boff)
        return out, off


def _column_check(chain: Chain, n: int, h: float):
    """The column of width n from S = 1 and its relative defect against E X^k, k <= 3 (T14)."""
    from .closed_form import log_factor_moments

    (i0, v) = chain.columns(n, np.array([1.0]), 0.0, h)[0][0]
    tilt = [float(np.sum(v * np.exp(k * h * (i0 + np.arange(v.size))))) for k in range(4)]
    pa = chain.atom_prob(n)
    a_p, a_m = math.sqrt(chain.ap2), math.sqrt(chain.am2)
    exact = np.exp(log_factor_moments(n, 3, a_p, a_m, chain.C_W))  # E[(S'/s)^k]
    d = [abs(tilt[0] + pa - 1.0)] + [_rel(tilt[k], exact[k]) for k in (1, 2, 3)]
    return i0, v, pa, tilt[0], max(d)


def _propagate_shift_invariant(chain: Chain, widths, log_S0: float, h: float, tol: float, rtol):
    from .closed_form import log_raw_moment_recursion

    L = len(widths)
    lm = log_raw_moment_recursion(
        math.sqrt(chain.ap2), math.sqrt(chain.am2), chain.C_W, 0.0, widths, log_S0, 3
    )
    cols = {}
    law_err = np.zeros(L + 1)
    mass = np.ones(L + 1)
    log_cont, log_surv = 0.0, 0.0
    for ell, n in enumerate(widths, start=1):
        if n not in cols:
            cols[n] = _column_check(chain, n, h)
        i0, v, pa, t0, d = cols[n]
        law_err[ell] = law_err[ell - 1] + d
        log_cont += math.log(t0)
        log_surv += math.log1p(-pa)
        mass[ell] = math.exp(log_cont) - math.expm1(log_surv)
        if law_err[ell] > rtol:
            raise SolverLimit(
                f"the lattice column of width n = {n} misses the exact factor moments (T14) by "
                f"{d:.1e} (relative); the lattice step h = {h:.3g} is too coarse for it",
                ell,
                "law",
                float(law_err[ell]),
            )
    # the final law: one convolution power per distinct width
    build = _LawBuilder(h, tol)
    p, off = np.ones(1), 0
    for n in sorted(set(widths)):
        q, qoff = build.power(cols[n][1], cols[n][0], widths.count(n))
        p, off = build.conv(p, off, q, qoff)
        if p.size > MAX_POINTS:
            raise MemoryError(
                f"single_input: the law of Sigma^(L) needs {p.size} lattice points (cap "
                f"{MAX_POINTS}); raise h_factor or use corrlib.exact.collective_log_moments"
            )
    atom = max(0.0, -math.expm1(log_surv))
    logS = log_S0 + (off + np.arange(p.size)) * h
    law_error = float(law_err[-1]) + 2 * len(widths) * tol
    if build.carry:  # the lattice law carries E S^k: check it against the exact moments
        lat = special.logsumexp(np.log(p)[None, :] + np.arange(4)[:, None] * logS[None, :], axis=1)
        lat = lat + log_cont - math.log(mass[-1])
        dev = np.abs(np.expm1(lat[1:] - lm[-1, 1:]))
        law_error = max(law_error, float(dev.max()))
        if law_error > rtol:
            raise SolverLimit(
                f"the lattice law of Sigma^({L}) misses the exact moments (T14) by "
                f"{law_error:.1e} (relative); lower h_factor or tol",
                L,
                "law",
                law_error,
            )
    with np.errstate(under="ignore"):
        p = p * math.exp(log_cont)
    keep = np.nonzero(p > 0)[0]
    p, logS = (
        (p[keep[0] : keep[-1] + 1], logS[keep[0] : keep[-1] + 1])
        if keep.size
        else (p[:0], logS[:0])
    )
    cum = _log_cumulants(lm)
    return ChainResult(
        cumulants=cum,
        log_moments=lm,
        error=_recursion_error(lm, cum),
        mass=mass,
        law_error=law_error,
        logS=logS,
        p=p,
        atom=atom,
        c=0.0,
        h=h,
        moments_exact=True,
    )


# --------------------------------------------------------------------------------------------
# path 2: any other chain (a sparse matrix of cached columns)
# --------------------------------------------------------------------------------------------


def _add_into(y: np.ndarray, off: int, v: np.ndarray, i0: int):
    if v.size == 0:
        return y, off
    if y.size == 0:
        return v.copy(), i0
    lo = min(off, i0)
    hi = max(off + y.size, i0 + v.size)
    out = np.zeros(hi - lo)
    out[off - lo : off - lo + y.size] += y
    out[i0 - lo : i0 - lo + v.size] += v
    return out, lo


@dataclass
class _Sources:
    """Cached columns of one width for lattice sources lo..hi-1, as a sparse matrix."""

    lo: int
    hi: int
    r_lo: int
    M: sparse.csc_matrix
    indptr: np.ndarray
    deg: np.ndarray  # 1 where g == 0 (S' = c surely)
    unres: np.ndarray
    cum: np.ndarray  # (3, hi-lo): exact (E S' - c)/s, Var S'/s^2, kappa_3(S')/s^3


class _SparsePath:
    """Push the law of S through the layers with cached columns; check every layer."""

    def __init__(self, chain: Chain, u0: float, h: float, tol: float, carry: bool):
        self.chain, self.u0, self.h, self.tol = chain, u0, h, tol
        self.carry = carry  # trim on p S^k, k <= 3, so that the lattice carries the moments
        self.cols: dict[int, dict[int, tuple]] = {}
        self.mats: dict[int, _Sources] = {}
        self.fixed: dict[tuple, tuple] = {}  # columns of the atom / initial point sources
        self.log_c = math.log(chain.c) if chain.c > 0 else -math.inf
        self._ls_lo, self._ls = 0, np.zeros(0)  # cache of log S over lattice indices

    def _logS_direct(self, i: np.ndarray) -> np.ndarray:
        y = self.chain.u_to_y(self.u0 + np.asarray(i, dtype=float) * self.h)
        return np.logaddexp(self.log_c, y) if self.chain.c > 0 else y

    def logS_range(self, off: int, size: int) -> np.ndarray:
        """log S at the lattice indices off..off+size-1 (a view into a growing cache)."""
        lo, hi = off, off + size
        if lo < self._ls_lo or hi > self._ls_lo + self._ls.size:
            pad = max(size // 2, 64)
            lo2 = min(lo, self._ls_lo if self._ls.size else lo) - pad
            hi2 = max(hi, self._ls_lo + self._ls.size) + pad
            self._ls_lo, self._ls = lo2, self._logS_direct(np.arange(lo2, hi2))
        return self._ls[lo - self._ls_lo : hi - self._ls_lo]

    def logS(self, i: np.ndarray) -> np.ndarray:
        i = np.asarray(i)
        if i.size == 0:
            return np.zeros(0)
        lo = int(i.min())
        return self.logS_range(lo, int(i.max()) + 1 - lo)[i - lo]

    def S_range(self, off: int, size: int, layer: int) -> np.ndarray:
        return self._checked_exp(self.logS_range(off, size), layer)

    def S(self, i: np.ndarray, layer: int) -> np.ndarray:
        return self._checked_exp(self.logS(i), layer)

    @staticmethod
    def _checked_exp(ls: np.ndarray, layer: int) -> np.ndarray:
        if np.any(ls > _LOG_FMAX - 1.0):
            raise OverflowError(
                f"single_input: Sigma^({layer - 1}) reaches {float(ls.max()):.0f} in log, beyond "
                "the float64 range; rescale the input or use fewer layers"
            )
        return np.exp(ls)

    # ---- columns -------------------------------------------------------------------------
    def _build(self, n: int, s: np.ndarray):
        """Columns, degenerate flags, unresolved errors and the exact cumulants of S' given s,
        relative to s: ((E S' - c)/s, Var S'/s^2, kappa_3(S')/s^3) (no under- or overflow for
        tiny or huge sources)."""
        chain = self.chain
        e1, var, k3 = chain.g_cumulants(s)
        C = chain.C_W
        rel = np.vstack([C * e1, C * C * var / n, C**3 * k3 / (n * n)])
        deg = e1 <= 0.0
        cols = [(0, np.zeros(0))] * s.size
        unres = np.zeros(s.size)
        live = np.nonzero(~deg)[0]
        if live.size:
            c2, u2 = chain.columns(n, s[live], self.u0, self.h)
            for q, b in enumerate(live):
                cols[b] = c2[q]
            unres[live] = u2
        return cols, deg.astype(float), unres, rel

    def point_column(self, n: int, s: float):
        key = (n, s)
        if key not in self.fixed:
            cols, deg, unres, cum = self._build(n, np.array([s]))
            self.fixed[key] = (cols[0], float(deg[0]), float(unres[0]), cum[:, 0])
        return self.fixed[key]

    def _get_columns(self, n: int, idx: np.ndarray, layer: int):
        cache = self.cols.setdefault(n, {})
        missing = [int(j) for j in idx if int(j) not in cache]
        for start in range(0, len(missing), 64):
            chunk = np.array(missing[start : start + 64])
            cols, deg, unres, cum = self._build(n, self.S(chunk, layer))
            for q, j in enumerate(chunk):
                cache[int(j)] = (cols[q], deg[q], unres[q], cum[:, q])
        return [cache[int(j)] for j in idx]

    def _matrix(self, n: int, lo: int, hi: int, layer: int) -> _Sources:
        """Sparse matrix with columns for sources lo..hi-1 (grown with a margin)."""
        m = self.mats.get(n)
        if m is not None and m.lo <= lo and hi <= m.hi:
            return m
        width = hi - lo
        if m is not None:
            lo2 = min(lo, m.lo) - (width // 2 + 16 if lo < m.lo else 0)
            hi2 = max(hi, m.hi) + (width // 2 + 16 if hi > m.hi else 0)
        else:
            lo2, hi2 = lo - width // 4 - 8, hi + width // 4 + 8
        entries = self._get_columns(n, np.arange(lo2, hi2), layer)
        cols = [e[0] for e in entries]
        nnz = sum(c[1].size for c in cols)
        if nnz > MAX_NNZ:
            raise MemoryError(
                f"single_input: the transition matrix of width {n} needs {nnz:.2e} entries at "
                f"layer {layer} (cap {MAX_NNZ:.0e}, ~{12 * nnz / 2**30:.1f} GiB); raise h_factor "
                "or use fewer layers"
            )
        live = [c for c in cols if c[1].size] or [(0, np.zeros(0))]
        r_lo = min(c[0] for c in live)
        r_hi = max(c[0] + c[1].size for c in live)
        lens = np.array([c[1].size for c in cols])
        indptr = np.concatenate([[0], np.cumsum(lens)])
        indices = np.concatenate([np.arange(c[0], c[0] + c[1].size) for c in cols] + [[]]) - r_lo
        data = np.concatenate([c[1] for c in cols] + [[]])
        M = sparse.csc_matrix(
            (data, indices.astype(np.int32), indptr), shape=(max(r_hi - r_lo, 1), hi2 - lo2)
        )
        # Deliberate parallel: this keyword-argument call has the shape of theory/expansion.py's
        # HierarchyResult(...) call in hierarchy() (one name per argument, nothing shared).
        m = _Sources(
            lo=lo2,
            hi=hi2,
            r_lo=r_lo,
            M=M,
            indptr=indptr,
            deg=np.array([e[1] for e in entries]),
            unres=np.array([e[2] for e in entries]),
            cum=np.array([e[3] for e in entries]).T,
        )
        self.mats[n] = m
        return m

    # ---- one layer -------------------------------------------------------------------------
    def step(self, n: int, law: tuple, layer: int):
        """One layer from ``law`` = (p, off, atom) or ("point", S0).

        Returns the new law (p', off', atom'), the exact one-step prediction of its cumulants
        (mass, E, Var, kappa_3; law of total cumulance over the old law's sources) as arrays
        of weights and source cumulants, and the law-weighted unresolved Fourier error.
        """
        chain = self.chain
        pa = chain.atom_prob(n)
        blocks = []  # (weights, source values, cumulants (3, B), unresolved (B,))
        y, off, atom = np.zeros(0), 0, 0.0
        if isinstance(law[0], str):
            (i0, v), deg, unres, cum = self.point_column(n, law[1])
            y, off = v.copy(), i0
            atom = pa + deg
            blocks.append((np.ones(1), np.array([law[1]]), cum[:, None], np.array([unres])))
        else:
            p, poff, patom = law
            if p.size:
                src = self._matrix(n, poff, poff + p.size, layer)
                a, b = poff - src.lo, poff + p.size - src.lo
                # the columns a..b-1 times p (the matrix spans every source visited so far)
                ip = src.indptr
                part = (
                    src.M.data[ip[a] : ip[b]],
                    src.M.indices[ip[a] : ip[b]],
                    ip[a : b + 1] - ip[a],
                )
                sub = sparse.csc_matrix(part, shape=(src.M.shape[0], b - a))
                y, off = sub @ p, src.r_lo
                atom = pa * p.sum() + float(p @ src.deg[a:b])
                S = self.S_range(poff, p.size, layer)
                blocks.append((p, S, src.cum[:, a:b], src.unres[a:b]))
            if patom > 0.0:
                if chain.c == 0.0:  # S = 0 is absorbing
                    atom += patom
                    blocks.append((np.array([patom]), np.zeros(1), np.zeros((3, 1)), np.zeros(1)))
                else:  # S = c is a regular source
                    (i0, v), deg, unres, cum = self.point_column(n, chain.c)
                    y, off = _add_into(y, off, patom * v, i0)
                    atom += patom * (pa + deg)
                    blocks.append(
                        (np.array([patom]), np.array([chain.c]), cum[:, None], np.array([unres]))
                    )
        if len(blocks) == 1:
            w, src, cum, unres = blocks[0]
        else:
            w = np.concatenate([bk[0] for bk in blocks])
            src = np.concatenate([bk[1] for bk in blocks])
            cum = np.concatenate([bk[2] for bk in blocks], axis=1)
            unres = np.concatenate([bk[3] for bk in blocks])
        return (y, off, atom), (w, src, cum), unres

    # ---- trimming and moments ----------------------------------------------------------------
    def trim(self, y: np.ndarray, off: int, log_r: float):
        """Drop both tails whose share of the mass and (if carrying) of E S^k, k <= 3, is below
        tol. Returns (y, off, floor): floor is the smallest kept p / max p that the moments
        needed."""
        if y.size == 0:
            return y, off, 1.0
        nz = np.nonzero(y > 0)[0]
        if nz.size == 0:
            return y[:0], off, 1.0
        y = y[nz[0] : nz[-1] + 1]
        off += int(nz[0])
        weights = y[None, :]
        if self.carry:  # p (S/S_max)^k, k = 0..3: no overflow; underflow only where negligible
            lx = self.logS_range(off, y.size)
            xs = np.exp(lx - lx.max())
            weights = np.empty((4, y.size))
            weights[0] = y
            for k in (1, 2, 3):
                np.multiply(weights[k - 1], xs, out=weights[k])
        cw = np.cumsum(weights, axis=1)
        left, right = y.size, -1
        for row in cw:
            tot = row[-1]
            left = min(left, int(np.searchsorted(row, self.tol * tot, side="right")))
            right = max(right, int(np.searchsorted(row, (1.0 - self.tol) * tot, side="left")))
        right = min(max(right, left), y.size - 1)
        kept = y[left : right + 1]
        floor = float(min(kept[0], kept[-1]) / kept.max())
        return kept, off + left, floor

    def cumulants(self, y: np.ndarray, off: int, atom: float, log_r: float):
        """(mass, E, Var, kappa_3) scaled by r, and log E[S^k], k = 0..3, of a lattice law."""
        x = np.exp(self.logS_range(off, y.size) - log_r)
        c_r = self.chain.c * math.exp(-log_r)
        wx = y * x
        wx2 = wx * x
        m = np.array([y.sum(), wx.sum(), wx2.sum(), (wx2 * x).sum()])
        m += atom * c_r ** np.arange(4)
        W = m[0]
        E = m[1] / W
        d = x - E
        dc = c_r - E
        dd = y * d * d
        V = (dd.sum() + atom * dc * dc) / W
        K3 = (float(dd @ d) + atom * dc**3) / W
        with np.errstate(divide="ignore"):
            lm = np.log(m) + np.arange(4) * log_r
        return np.array([W, E, V, K3]), lm - lm[0]


def _saturation(chain: Chain, s: float) -> float:
    """Share of xi whose sigma(sqrt(s) xi)^2 lies within 1e-3 of its supremum (0 if unbounded)."""
    if not math.isfinite(chain.M):
        return 0.0
    g, wq, _ = chain.g_values(np.array([s]))
    top = (chain.M - chain.m) / s
    return float(np.sum(wq[0] * (g[0] >= top * (1.0 - 1e-3)))) / float(np.sum(wq[0]))


def _infimum_share(chain: Chain, s: float) -> float:
    """Probability that sigma(sqrt(s) xi)^2 equals its infimum exactly (0 for the exact kinds)."""
    if chain.scale_invariant:
        return 0.0
    g, wq, _ = chain.g_values(np.array([s]))
    return float(np.sum(wq[0] * (g[0] == 0.0)) / np.sum(wq[0]))


def _cause(chain: Chain, n: int, s: float, unresolved: bool, h: float) -> tuple[str, str]:
    """(cause, advice) of an accuracy failure at a transition from Sigma = s, width n."""
    act = chain.act.name
    mc = "Use corrlib.estimate_cumulants (Monte Carlo) for this case"
    if math.isfinite(chain.M):
        mu = float(chain.cond_cumulants(np.array([s]), n)[0][0])
        if mu - chain.c >= 0.5 * (chain.c_max - chain.c):
            sat = _saturation(chain, s)
            return (
                f"{act} saturates at Sigma = {s:.3g} (sigma(sqrt(Sigma) xi)^2 within 1e-3 of its "
                f"supremum for {100 * sat:.0f}% of xi): the law of the next Sigma is nearly an "
                f"atom at its hard upper bound C_b + C_W sup sigma^2 = {chain.c_max:.4g}, whose "
                "transition density the Fourier columns cannot resolve; the input norm is large "
                "for this activation",
                f"{mc}, or rescale X (Sigma^(0) of order 1)",
            )
    atom = _infimum_share(chain, s)
    if atom > 1e-3:
        return (
            f"{act}(z)^2 equals its infimum on a set of probability {atom:.2g} (an atom of one "
            "neuron's law), which the Fourier columns cannot resolve. If the activation is "
            "a_+ z [z>0] + a_- z [z<0], build it with corrlib.scale_invariant(a_plus, a_minus) "
            "(exact columns)",
            mc,
        )
    if not unresolved and n >= 10_000:
        return (
            f"the width n = {n} is large: the transition column is nearly Gaussian and its "
            "third cumulant (~n^-2) is below what the lattice resolves",
            "Use corrlib.finite_width (the 1/n expansion (T10)-(T13) is accurate at this width)",
        )
    if unresolved and n <= 8:
        return (
            f"the width n = {n} is small: the law of one neuron's {act}(z)^2 is not smooth "
            "enough for its n-th convolution power to be resolved on the lattice",
            mc,
        )
    if unresolved:
        return (
            f"one neuron's law of {act}(z)^2 at Sigma = {s:.3g} is nearly singular (e.g. sigma^2 "
            f"flat at its infimum, as gelu/swish at small widths), so the transition density at "
            f"width n = {n} is not resolved",
            mc,
        )
    return (
        f"the lattice step h = {h:.3g} (or the trimming tol) is too coarse for the transition "
        "columns",
        "Lower h_factor (or tol)",
    )


class _Accuracy:
    """Accumulated error estimates (mass, E, Var, kappa_3) from per-layer conservation checks."""

    def __init__(self, L: int):
        self.err = np.zeros((L + 1, 4))
        self.parts = np.zeros((L + 1, 2))  # lattice/trimming defect, unresolved columns

    def update(self, ell: int, pred: np.ndarray, lat: np.ndarray, u: float, moments: bool):
        e = self.err[ell - 1]
        scale3 = abs(lat[2]) ** 1.5 * 1e-12
        d = np.array(
            [
                _rel(lat[0], pred[0]),
                _rel(lat[1], pred[1]) if moments else 0.0,
                _rel(lat[2], pred[2]) if moments else 0.0,
                abs(lat[3] - pred[3]) / max(abs(pred[3]), scale3, 1e-300) if moments else 0.0,
            ]
        )
        self.parts[ell] = (float(d.max()), u)
        # u (the Fourier truncation bound of unresolved columns) is an error of the law's
        # shape; its effect on the cumulants is what the conservation check d measures
        self.err[ell] = [
            max(e[0], u) + d[0],
            e[1] + d[1],
            max(e[2], 2 * e[1]) + d[2],
            max(e[3], e[2], 3 * e[1]) + d[3],
        ]


def _propagate_sparse(chain: Chain, widths, S0: float, h_factor: float, tol: float, rtol: float):
    L = len(widths)
    c = chain.c
    if S0 <= 0.0:  # Sigma^(0) = 0: z^(1) = 0, so Sigma^(1) = C_b + C_W sigma(0)^2 surely
        S1 = float(chain.cond_cumulants(np.zeros(1), widths[0])[0][0])
        if L == 1 or S1 <= 0.0:  # (S1 = 0 maps to itself)
            return _point_mass(S0, S1, L)
        return _prepend(S0, _propagate_sparse(chain, widths[1:], S1, h_factor, tol, rtol))
    h = _lattice_step(chain, widths, S0, h_factor)
    mu0 = float(chain.cond_cumulants(np.array([S0]), widths[0])[0][0])
    mu_c = float(chain.cond_cumulants(np.array([c]), widths[0])[0][0]) if c > 0 else c
    if mu0 > c:
        u0 = float(chain.y_to_u(math.log(mu0 - c)))
    elif mu_c > c:
        u0 = float(chain.y_to_u(math.log(mu_c - c)))
    else:  # S stays at c from layer 1 on
        return _point_mass(S0, c, L)
    path = _SparsePath(chain, u0, h, tol, carry=True)
    law: tuple = ("point", S0)
    cum = np.zeros((L + 1, 3))
    lm = np.zeros((L + 1, 4))
    cum[0, 0] = S0
    lm[0] = np.arange(4) * math.log(S0) if S0 > 0 else [0.0, -np.inf, -np.inf, -np.inf]
    mass = np.ones(L + 1)
    acc = _Accuracy(L)
    notes: list = []
    for ell, n in enumerate(widths, start=1):
        (y, off, atom), (w, src, scum), unres = path.step(n, law, ell)
        W = float(w.sum())
        r = c + float(w @ (src * scum[0])) / W  # exact E Sigma^(ell) given the previous law
        if r <= 0.0:  # everything sits at c = 0, absorbing
            cum[ell:] = 0.0
            lm[ell:] = [0.0, -np.inf, -np.inf, -np.inf]
            mass[ell:] = mass[ell - 1]
            law = (np.zeros(0), 0, atom)
            break
        log_r = math.log(r)
        x = src / r
        mu_r = c / r + x * scum[0]
        pred = _mixture_cumulants(w, mu_r, x * x * scum[1], x**3 * scum[2])
        y, off, floor = path.trim(y, off, log_r)
        lat, lm[ell] = path.cumulants(y, off, atom, log_r)
        w3 = w * mu_r**3
        u = max(float(w @ unres) / W, float(w3 @ unres) / max(float(w3.sum()), 1e-300))
        acc.update(ell, pred, lat, u, path.carry)
        mass[ell] = lat[0]
        with np.errstate(over="ignore"):
            cum[ell] = [lat[1] * r, lat[2] * r * r, lat[3] * r**3]
        if path.carry:
            span = float(path.logS(off + y.size - 1) - log_r) if y.size else 0.0
            if floor < RANGE_FLOOR or span > LOG_SPAN_MAX:
                if not chain.scale_invariant:
                    raise SolverLimit(_heavy_tail_message(chain, ell, floor, span), ell, "T", 1.0)
                path.carry = False  # exact moments: keep the law, drop the far tails
                notes.append(ell)
        law = (y, off, atom)
        _check_accuracy(chain, acc, ell, n, rtol, h, w, unres, src)
    y, off, atom = law if not isinstance(law[0], str) else (np.zeros(0), 0, 0.0)
    return ChainResult(
        cumulants=cum,
        log_moments=lm,
        error=acc.err[:, 1:].copy(),
        mass=mass,
        law_error=float(acc.err[:, 0].max()),
        logS=path.logS_range(off, y.size).copy(),
        p=y,
        atom=float(atom),
        c=c,
        h=h,
        notes=notes,
        c_max=chain.c_max if chain.logit else math.inf,
    )


def _heavy_tail_message(chain: Chain, ell: int, floor: float, span: float) -> str:
    return (
        f"at layer {ell} (Sigma^({ell})) the third moment of Sigma is carried by paths of "
        f"probability {floor:.1e} relative to the bulk, at Sigma up to e^{span:.0f} times its "
        "mean: a heavy tail (large L/n) beyond the lattice's range "
        f"(p >= {RANGE_FLOOR:.0e} max p, Sigma <= e^{LOG_SPAN_MAX:.0f} E Sigma). The "
        f"cumulants of the earlier layers are available with depth <= {ell - 1}; "
        f"{chain.act.name} has no closed form, and Monte Carlo underestimates such tails "
        "(docs/theory.md section 10). Use fewer layers or wider ones"
    )


def _check_accuracy(chain, acc: _Accuracy, ell, n, rtol, h, weight, unres, src):
    e = acc.err[ell]
    if e.max() <= rtol:
        return
    q = int(np.argmax(e))
    names = ["the probability mass", "E Sigma", "Var Sigma", "kappa_3(Sigma)"]
    # an unresolved Fourier column (its characteristic function had not decayed) carries the
    # blame whenever one carried weight: its truncation bound is a lower estimate of its error
    unresolved = bool(np.any(acc.parts[: ell + 1, 1] > 0))
    worst = int(np.argmax(weight * (1.0 + unres)))
    cause, advice = _cause(chain, n, max(float(src[worst]), 1e-300), unresolved, h)
    advice += ", or pass a larger rtol to accept the measured error"
    raise SolverLimit(
        f"{names[q]} of Sigma^({ell}) has an estimated relative error {e[q]:.1e} > rtol = "
        f"{rtol:.1e} (from per-layer conservation checks of mass, mean, variance and kappa_3 "
        f"against the exact one-step law (T2), (T3)). Cause: {cause}. {advice}",
        ell,
        ["mass", "mean", "V", "T"][q],
        float(e[q]),
    )


def _prepend(S0: float, res: ChainResult) -> ChainResult:
    """The result with a deterministic layer 0 (Sigma^(0) = S0) in front."""
    with np.errstate(divide="ignore"):
        lm0 = np.arange(4) * math.log(S0) if S0 > 0 else np.array([0.0, -np.inf, -np.inf, -np.inf])
    res.cumulants = np.vstack([[S0, 0.0, 0.0], res.cumulants])
    res.log_moments = np.vstack([lm0, res.log_moments])
    res.error = np.vstack([np.zeros(3), res.error])
    res.mass = np.concatenate([[1.0], res.mass])
    return res


def _point_mass(S0: float, c: float, L: int) -> ChainResult:
    """S0 at layer 0, then S = c surely (no hidden layer, a zero input, or a chain stuck at its
    lower edge)."""
    vals = np.array([S0] + [c] * L, dtype=float)
    cum = np.zeros((L + 1, 3))
    cum[:, 0] = vals
    with np.errstate(divide="ignore", invalid="ignore"):  # 0 * log 0 in the k = 0 column
        lm = np.arange(4)[None, :] * np.log(vals)[:, None]
    lm[:, 0] = 0.0
    return ChainResult(
        cumulants=cum,
        log_moments=lm,
        error=np.zeros((L + 1, 3)),
        mass=np.ones(L + 1),
        law_error=0.0,
        logS=np.log(vals[-1:]) if vals[-1] > 0 else np.array([-np.inf]),
        p=np.ones(1),
        atom=0.0,
        c=float(vals[-1]),
        h=1.0,
        moments_exact=True,
    )


def _lattice_step(chain: Chain, widths, S0: float, h_factor: float) -> float:
    """h = h_factor * min(sqrt(2/n_max), column widths at the first sources, H_CAP) / 3."""
    c = chain.c
    base = math.sqrt(2.0 / max(widths))
    s_probe = max(S0, c, 1e-300)
    mu = float(chain.cond_cumulants(np.array([s_probe]), widths[0])[0][0])
    probes = np.array([s_probe, max(mu, 1e-300)])
    width0 = min(base, min(float(chain.rel_width(probes, n).min()) for n in set(widths)))
    return h_factor * min(max(width0, 1e-6), H_CAP) / 3.0


def propagate(
    act,
    C_W: float,
    C_b: float,
    widths,
    log_S0: float,
    *,
    h_factor: float,
    tol: float,
    rtol: float,
    panels: int,
    order: int,
    z_band: float,
) -> ChainResult:
    """Run the chain from log Sigma^{(0)} = log_S0 through hidden widths n_1..n_L.

    Raises :class:`SolverLimit` (with the cause) when the estimated error exceeds ``rtol``.
    """
    chain = Chain(act, C_W, C_b, panels=panels, order=order, z_band=z_band)
    widths = [int(n) for n in widths]
    L = len(widths)
    if L == 0:
        return _point_mass(math.exp(log_S0), math.exp(log_S0), 0)
    if chain.scale_invariant and chain.c == 0.0:
        if log_S0 == -math.inf:
            return _point_mass(0.0, 0.0, L)
        h = _lattice_step(chain, widths, 1.0, h_factor)
        return _propagate_shift_invariant(chain, widths, log_S0, h, tol, rtol)
    S0 = math.exp(log_S0)
    res = _propagate_sparse(chain, widths, S0, h_factor, tol, rtol)
    if chain.scale_invariant and not res.moments_exact:
        from .closed_form import log_raw_moment_recursion

        lm = log_raw_moment_recursion(
            math.sqrt(chain.ap2), math.sqrt(chain.am2), C_W, C_b, widths, log_S0, 3
        )
        exact = _log_cumulants(lm)
        carried = L + 1 if not res.notes else res.notes[0]
        dev = np.abs(res.cumulants[1:carried] - exact[1:carried]) / np.maximum(
            np.abs(exact[1:carried]), 1e-300
        )
        res.law_error = max(res.law_error, float(dev.max()) if dev.size else 0.0)
        res.cumulants, res.log_moments, res.moments_exact = exact, lm, True
        res.error = _recursion_error(lm, exact)
        if res.law_error > rtol:
            raise SolverLimit(
                f"the lattice law of Sigma deviates from the exact moment recursion (T14) by "
                f"{res.law_error:.1e} (relative) > rtol = {rtol:.1e}; lower h_factor",
                L,
                "law",
                res.law_error,
            )
    return res
