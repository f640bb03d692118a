"""Lattice solver for the single-input collective Markov chain (docs/theory.md section 11).

For one input, Sigma^{(l)} =: S_l is a scalar Markov chain (T3):
``S_l = C_b + (C_W/n_l) sum_{i<=n_l} sigma(sqrt(S_{l-1}) xi_i)^2`` with i.i.d. xi_i ~ N(0, 1).
We carry the law of ``u = log(S - c)`` on a uniform lattice ``u_j = u_0 + j h``, where
``c = C_b + C_W inf sigma^2`` is the hard lower edge of S, plus an atom at ``S = c`` (ReLU-type
activations: all neurons off). A transition column for a source ``s`` is the law of
``S' - c = (C_W s / n) W``, ``W = sum_i g(xi_i)``, ``g = (sigma(sqrt(s) xi)^2 - inf sigma^2)/s``,
evaluated at the lattice targets. For a general activation it is obtained from one neuron's
characteristic function (Gauss-Legendre panels against the normal density) raised to the n-th
power and inverted by direct Fourier summation at the targets. For scale-invariant activations
the column is exact: a Binomial mixture of chi-squares (one-sided, e.g. ReLU), a chi-square
(a_+ = a_-), or, for leaky activations, a Binomial mixture of negative-binomial mixtures of
Gamma densities (:meth:`_Chain._leaky_mixture`; Fourier inversion of the closed-form
characteristic function only when that series is too long, i.e. at large widths).
Columns are cached; each layer is one sparse matrix-vector product. Tails are trimmed on both
``p`` and ``p S^3`` so that the third cumulant is not biased by the trimming.

Internal module: the public entry point is :func:`corrlib.exact.single_input` (lattice.py).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import sparse, special

_LOG2 = math.log(2.0)
H_CAP = 0.1


def _gauss_legendre_panels(edges: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.legendre.leggauss(order)
    a, b = edges[:-1, None], edges[1:, None]
    nodes = (0.5 * (b - a) * x + 0.5 * (b + a)).ravel()
    weights = (0.5 * (b - a) * w).ravel()
    return nodes, weights


class _Chain:
    """Transition kernel of S on a fixed lattice in u = log(S - c)."""

    def __init__(
        self,
        act,
        C_W: float,
        C_b: float,
        *,
        xi_max: float = 10.0,
        panels: int = 24,
        order: int = 16,
        z_band: float = 10.0,
        theta_sd: float = 10.0,
        col_tol: float = 1e-20,
    ):
        self.act = act
        self.C_W = float(C_W)
        self.C_b = float(C_b)
        self.z_band = float(z_band)
        self.col_tol = float(col_tol)
        self.theta_sd = float(theta_sd)
        self.xi_max = float(xi_max)
        self.order = int(order)
        self._node_cache: dict = {}
        self.unresolved = 0.0
        edges = np.linspace(-xi_max, xi_max, 2 * (panels // 2) + 1)  # 0 is an edge (kinks)
        xi, w = _gauss_legendre_panels(edges, order)
        self.xi = xi
        self.wq = w * np.exp(-0.5 * xi * xi) / math.sqrt(2.0 * math.pi)
        self.scale_inv = bool(act.is_scale_invariant)
        if self.scale_inv:
            self.ap2 = float(act.a_plus) ** 2
            self.am2 = float(act.a_minus) ** 2
            self.m = 0.0
        else:
            zz = np.concatenate([np.linspace(-60.0, 60.0, 240001), np.zeros(1)])
            with np.errstate(all="ignore"):
                v = np.asarray(act.f(zz), dtype=float) ** 2
            v = v[np.isfinite(v)]
            self.m = float(max(np.min(v), 0.0)) if v.size else 0.0
        self.c = self.C_b + self.C_W * self.m

    # ---- one-neuron statistics -------------------------------------------------------------
    def g_values(self, s: np.ndarray) -> np.ndarray:
        """g(xi) = (sigma(sqrt(s) xi)^2 - m)/s on the quadrature nodes, shape (B, N)."""
        s = np.asarray(s, dtype=float)
        z = np.sqrt(s)[:, None] * self.xi[None, :]
        with np.errstate(over="ignore", invalid="ignore"):
            f = np.asarray(self.act.f(z), dtype=float)
        g = (f * f - self.m) / s[:, None]
        if not np.all(np.isfinite(g)):
            raise FloatingPointError(
                f"activation {self.act.name!r} returned non-finite values at |z| <= "
                f"{float(np.sqrt(s.max()) * self.xi.max()):.3g}"
            )
        return np.maximum(g, 0.0)

    def g_stats(self, s: np.ndarray):
        """Mean and variance of g under xi ~ N(0,1); shape (B,) each."""
        s = np.atleast_1d(np.asarray(s, dtype=float))
        if self.scale_inv:
            e1 = 0.5 * (self.ap2 + self.am2)
            e2 = 1.5 * (self.ap2**2 + self.am2**2)
            return np.full(s.shape, e1), np.full(s.shape, e2 - e1 * e1)
        g = self.g_values(s)
        e1 = g @ self.wq
        var = ((g - e1[:, None]) ** 2) @ self.wq
        return e1, var

    def rel_width(self, s, n: int) -> np.ndarray:
        """Standard deviation of u' = log(S' - c) of a column (small-width approximation)."""
        e1, var = self.g_stats(s)
        return np.sqrt(var / n) / np.maximum(e1, 1e-300)

    def atom_prob(self, n: int) -> float:
        """P(S' = c | s): all n neurons at inf sigma^2 (ReLU-type only)."""
        if self.scale_inv and (self.am2 == 0.0 or self.ap2 == 0.0):
            return math.exp(-n * _LOG2)
        return 0.0

    # ---- columns -------------------------------------------------------------------------
    def columns(self, n: int, s: np.ndarray, u0: float, h: float):
        """Lattice columns for sources s, width n.

        Returns a list of (i_start, values) with values the probabilities of the lattice
        points u_i = u0 + i h, i = i_start.., for the continuous part of S' (the atom at
        S' = c, if any, is :meth:`atom_prob`).
        """
        s = np.atleast_1d(np.asarray(s, dtype=float))
        self.last_unresolved = np.zeros(s.size)
        e1, var = self.g_stats(s)
        mu = n * e1
        sd = np.sqrt(n * var)
        if self.scale_inv:
            tail = np.full(s.shape, 2.0 * max(self.ap2, self.am2))
        else:
            g = self.g_values(s)
            big = np.abs(self.xi) > 1.0
            tail = 2.0 * np.max(g[:, big] / self.xi[big] ** 2, axis=1)
            tail = np.maximum(tail, 1e-300)
        w_hi = mu + self.z_band * sd + 42.0 * tail
        # left edge: Gamma-matched large deviation bound (k_eff/2)(D + e^-D - 1) = 46 below
        # the mean in log scale, but at least z_band standard deviations
        k_eff = 2.0 * mu**2 / np.maximum(sd**2, 1e-300)
        if self.scale_inv and (self.am2 == 0.0 or self.ap2 == 0.0):
            # Binomial mixture: the left tail is that of the fewest active neurons that matter
            k = np.arange(1, n + 1)
            logp = (
                special.gammaln(n + 1.0)
                - special.gammaln(k + 1.0)
                - special.gammaln(n - k + 1.0)
                - n * _LOG2
            )
            k_eff = np.minimum(k_eff, float(k[np.argmax(logp > -46.0)]))
        rhs = 92.0 / k_eff
        D = rhs + 1.0
        for _ in range(60):
            D = rhs + 1.0 - np.exp(-D)
        D = np.maximum(D, self.z_band * sd / mu)
        w_lo = mu * np.exp(-D)
        leaky = None
        if self.scale_inv and 0.0 != self.am2 != self.ap2 != 0.0:
            leaky = self._leaky_mixture(n)
            if leaky is not None:
                # W >= beta_s Gamma(n/2) stochastically: cover its lower quantile 1e-30
                lo = leaky[0] * special.gammaincinv(0.5 * n, 1e-30)
                w_lo = np.minimum(w_lo, max(lo, 1e-300))
        logscale = np.log(self.C_W * s / n)
        i_lo = np.ceil((logscale + np.log(w_lo) - u0) / h).astype(np.int64)
        i_hi = np.floor((logscale + np.log(w_hi) - u0) / h).astype(np.int64)
        out = []
        if self.scale_inv and (self.am2 == 0.0 or self.ap2 == 0.0):
            a2 = max(self.ap2, self.am2)
            for b in range(s.size):
                i = np.arange(i_lo[b], i_hi[b] + 1)
                # y = W at the targets; the density of u' is f_W(y) y
                y = np.exp(u0 + i * h - logscale[b])
                out.append((int(i_lo[b]), h * self._onesided_chi2_density(n, y / a2)))
        elif self.scale_inv and self.ap2 == self.am2:
            a2 = self.ap2
            for b in range(s.size):
                i = np.arange(i_lo[b], i_hi[b] + 1)
                y = np.exp(u0 + i * h - logscale[b]) / a2
                k = n / 2.0
                logf = k * np.log(y / 2.0) - y / 2.0 - special.gammaln(k)
                out.append((int(i_lo[b]), h * np.exp(logf)))
        elif leaky is not None:
            for b in range(s.size):
                i = np.arange(i_lo[b], i_hi[b] + 1)
                w = np.exp(u0 + i * h - logscale[b])
                out.append((int(i_lo[b]), h * self._leaky_density(n, w, leaky)))
        else:
            T = int(np.max(i_hi - i_lo)) + 1
            i = i_lo[:, None] + np.arange(T)[None, :]
            valid = i <= i_hi[:, None]
            w = np.exp(u0 + i * h - logscale[:, None])
            dens = self._fourier_density(n, s, mu, sd, w_lo, w_hi, w)
            vals = np.where(valid, h * dens * w, 0.0)
            for b in range(s.size):
                out.append((int(i_lo[b]), vals[b, : int(i_hi[b] - i_lo[b]) + 1]))
        return [self._trim_column(i0, v) for i0, v in out]

    def _trim_column(self, i0: int, v: np.ndarray):
        v = np.where(np.isfinite(v) & (v > 0), v, 0.0)
        if v.size == 0 or v.max() <= 0:
            return i0, v[:0]
        keep = np.nonzero(v > self.col_tol * v.max())[0]
        a, b = keep[0], keep[-1] + 1
        return i0 + int(a), v[a:b]

    @staticmethod
    def _onesided_chi2_density(n: int, y: np.ndarray) -> np.ndarray:
        """sum_{k>=1} P(B=k) f_{chi2_k}(y) y, B ~ Bin(n, 1/2): density of log(chi2_B)."""
        k = np.arange(1, n + 1, dtype=float)
        logp = (
            special.gammaln(n + 1.0)
            - special.gammaln(k + 1.0)
            - special.gammaln(n - k + 1.0)
            - n * _LOG2
        )
        keep = logp > logp.max() - 60.0
        k, logp = k[keep], logp[keep]
        ly = np.log(y)[:, None]
        half = k[None, :] / 2.0
        logf = half * (ly - _LOG2) - np.exp(ly) / 2.0 - special.gammaln(half)
        return np.exp(special.logsumexp(logf + logp[None, :], axis=1))

    def _leaky_mixture(self, n: int, budget: int = 400_000):
        """Exact law of W = a_+^2 chi2_B + a_-^2 chi2'_{n-B}, B ~ Bin(n, 1/2) (T14), as a mixture.

        With beta_s < beta_b the two chi-square scales (2 a^2), a Gamma(alpha, beta_b) is the
        mixture over K ~ NegBin(alpha, p = beta_s/beta_b) of Gamma(alpha + K, beta_s); the shapes
        of the two groups add up to n/2 for every B, so W / beta_s ~ Gamma(n/2 + K) with K a
        Binomial mixture of negative binomials (all terms positive: no cancellation). Returns
        (beta_s, K values, log P(K)) truncated where log P(K) < max - 75, or None when the
        number of terms exceeds ``budget`` (then the Fourier column is used).
        """
        key = ("leaky", int(n))
        if key in self._node_cache:
            return self._node_cache[key]
        bs, bb = 2.0 * min(self.ap2, self.am2), 2.0 * max(self.ap2, self.am2)
        pr = bs / bb
        lq = math.log1p(-pr)
        alpha = 0.5 * n
        mean = alpha * (1.0 - pr) / pr
        sd = math.sqrt(alpha * (1.0 - pr)) / pr
        k_max = int(math.ceil(mean + 12.0 * sd + 80.0 / max(-lq, 1e-300) + 50.0))
        res = None
        if k_max * (n + 1) <= 50 * budget and k_max <= budget:
            B = np.arange(1, n + 1, dtype=float)  # members of the larger-scale group
            logbin = (
                special.gammaln(n + 1.0)
                - special.gammaln(B + 1.0)
                - special.gammaln(n - B + 1.0)
                - n * _LOG2
            )
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
            logP[0] = np.logaddexp(logP[0], -n * _LOG2)  # B = 0: K = 0
            keep = np.nonzero(logP > logP.max() - 75.0)[0]
            sl = slice(keep[0], keep[-1] + 1)
            res = (bs, k[sl], logP[sl])
        self._node_cache[key] = res
        return res

    @staticmethod
    def _leaky_density(n: int, w: np.ndarray, mix) -> np.ndarray:
        """Density of log W at w: sum_K P(K) f_Gamma(n/2+K)(w/beta_s) w/beta_s."""
        bs, k, logP = mix
        a = 0.5 * n + k
        lga = logP - special.gammaln(a)
        ly = np.log(w / bs)
        y = w / bs
        out = np.empty(w.size)
        step = max(1, int(4_000_000 // max(k.size, 1)))
        for j in range(0, w.size, step):
            t = lga[None, :] + a[None, :] * ly[j : j + step, None] - y[j : j + step, None]
            out[j : j + step] = np.exp(special.logsumexp(t, axis=1))
        return out

    def _phi_g(self, s: np.ndarray, theta: np.ndarray, e1: np.ndarray) -> np.ndarray:
        """E exp(i theta (g - E g)) for sources s (B,) at theta (B, K); shape (B, K)."""
        if self.scale_inv:
            ph = (
                0.5 * (1.0 - 2j * theta * self.ap2) ** -0.5
                + 0.5 * (1.0 - 2j * theta * self.am2) ** -0.5
            )
            return ph * np.exp(-1j * theta * e1[:, None])
        g = self.g_values(s) - e1[:, None]  # (B, N)
        A = theta[:, :, None] * g[:, None, :]  # (B, K, N)
        return np.cos(A) @ self.wq + 1j * (np.sin(A) @ self.wq)

    def _nodes(self, panels: int):
        key = int(panels)
        if key not in self._node_cache:
            edges = np.linspace(-self.xi_max, self.xi_max, 2 * ((key + 1) // 2) + 1)
            xi, w = _gauss_legendre_panels(edges, self.order)
            self._node_cache[key] = (xi, w * np.exp(-0.5 * xi * xi) / math.sqrt(2.0 * math.pi))
        return self._node_cache[key]

    def _phi_g_fine(self, s: float, theta: np.ndarray, e1: float) -> np.ndarray:
        """Like :meth:`_phi_g` for one source at large theta: panels resolve the oscillation."""
        if self.scale_inv:
            return self._phi_g(np.array([s]), theta[None, :], np.array([e1]))[0]
        g0 = self.g_values(np.array([s]))[0]
        span = float(g0.max() - g0.min())
        panels = max(len(self.xi) // self.order, int(math.ceil(theta[-1] * span / 4.0)))
        panels = min(panels, 128)
        xi, wq = self._nodes(panels)
        z = math.sqrt(s) * xi
        with np.errstate(over="ignore", invalid="ignore"):
            f = np.asarray(self.act.f(z), dtype=float)
        g = np.maximum((f * f - self.m) / s, 0.0) - e1
        out = np.empty(theta.size, dtype=complex)
        step = max(1, int(2_000_000 // g.size))
        for a in range(0, theta.size, step):
            A = theta[a : a + step, None] * g[None, :]
            out[a : a + step] = np.cos(A) @ wq + 1j * (np.sin(A) @ wq)
        return out

    def _fourier_density(self, n, s, mu, sd, w_lo, w_hi, w):
        """f_W at w (B, T) by direct Fourier summation of phi_g^n (trapezoid in theta).

        theta runs up to where |phi_g^n| theta sd < 1e-11 (relative density error), first in a
        batch at ``theta_sd / sd``, then per source with finer quadrature where the one-neuron
        law has singular points (small widths).
        """
        period = 1.3 * (w_hi - np.maximum(w_lo - 3.0 * sd, 0.0)) + 2.0 * sd
        dtheta = 2.0 * math.pi / period
        e1 = mu / n
        out = np.empty(w.shape)
        wt0 = 1.0 / math.pi

        def invert(psi, theta, dth, ww, m):
            wt = np.full(theta.shape[-1], wt0 * dth)
            wt[0] *= 0.5
            pw = psi * wt
            arg = (ww - m)[:, None] * theta[None, :]
            return np.cos(arg) @ pw.real + np.sin(arg) @ pw.imag

        K = int(np.ceil(np.max(self.theta_sd / sd / dtheta))) + 1
        theta = dtheta[:, None] * np.arange(K)[None, :]
        psi = self._phi_g(s, theta, e1) ** n
        for b in range(s.size):
            ok = abs(psi[b, -1]) * theta[b, -1] * sd[b] < 1e-11
            if ok:
                out[b] = invert(psi[b], theta[b], dtheta[b], w[b], mu[b])
                continue
            Kb = K
            while True:
                Kb *= 2
                th = dtheta[b] * np.arange(Kb)
                ps = self._phi_g_fine(s[b], th, e1[b]) ** n
                if abs(ps[-1]) * th[-1] * sd[b] < 1e-11 or Kb >= 4 * K:
                    break
            err = float(abs(ps[-1]) * th[-1] * sd[b])
            if err >= 1e-8:
                self.unresolved = max(self.unresolved, err)
                self.last_unresolved[b] = err
            out[b] = invert(ps, th, dtheta[b], w[b], mu[b])
        return out


class _Propagator:
    """Push the law of S through the layers; collects E S, Var S, kappa_3(S) per layer."""

    def __init__(self, chain: _Chain, u0: float, h: float, tol: float):
        self.chain = chain
        self.u0 = u0
        self.h = h
        self.tol = tol
        self.cache: dict[int, dict[int, tuple[int, np.ndarray]]] = {}
        self.mats: dict[int, tuple[int, int, int, sparse.csc_matrix, np.ndarray]] = {}
        self.shift_invariant = chain.scale_inv and chain.c == 0.0
        # diagnostics over the sources that carry probability (see :meth:`_diagnose`)
        self.min_width_ratio = np.inf
        self.max_unresolved = 0.0
        self.diag: dict[int, dict[int, tuple[float, float]]] = {}

    def S_of(self, i: np.ndarray) -> np.ndarray:
        return self.chain.c + np.exp(self.u0 + i * self.h)

    def _get_columns(self, n: int, idx: np.ndarray):
        cache = self.cache.setdefault(n, {})
        diag = self.diag.setdefault(n, {})
        if self.shift_invariant:
            if 0 not in cache:
                s = self.S_of(np.array([0]))
                cache[0] = self.chain.columns(n, s, self.u0, self.h)[0]
                wr = float(self.chain.rel_width(s, n)[0] / self.h)
                diag[0] = (wr, float(self.chain.last_unresolved[0]))
            i0, v = cache[0]
            return [(i0 + int(j), v) for j in idx], [diag[0]] * len(idx)
        missing = [int(j) for j in idx if int(j) not in cache]
        for start in range(0, len(missing), 64):
            chunk = np.array(missing[start : start + 64])
            s = self.S_of(chunk)
            wr = self.chain.rel_width(s, n) / self.h
            cols = self.chain.columns(n, s, self.u0, self.h)
            unres = self.chain.last_unresolved
            for q, (j, col) in enumerate(zip(chunk, cols, strict=True)):
                cache[int(j)] = col
                diag[int(j)] = (float(wr[q]), float(unres[q]))
        return [cache[int(j)] for j in idx], [diag[int(j)] for j in idx]

    def _matrix(self, n: int, lo: int, hi: int):
        """Sparse matrix with columns for sources lo..hi-1 (grown with a margin)."""
        m = self.mats.get(n)
        if m is not None and m[0] <= lo and hi <= m[1]:
            return m
        width = hi - lo
        if m is not None:
            lo2 = min(lo, m[0]) - (width // 2 + 16 if lo < m[0] else 0)
            hi2 = max(hi, m[1]) + (width // 2 + 16 if hi > m[1] else 0)
        else:
            lo2, hi2 = lo - width // 4 - 8, hi + width // 4 + 8
        idx = np.arange(lo2, hi2)
        cols, dg = self._get_columns(n, idx)
        dg = np.array(dg, dtype=float).reshape(-1, 2)
        pa = self.chain.atom_prob(n)
        deficit = np.array([max(0.0, 1.0 - pa - c[1].sum()) for c in cols])
        r_lo = min(c[0] for c in cols)
        r_hi = max(c[0] + c[1].size for c in cols)
        lens = np.array([c[1].size for c in cols])
        indptr = np.concatenate([[0], np.cumsum(lens)])
        indices = np.concatenate([np.arange(c[0], c[0] + c[1].size) for c in cols]) - r_lo
        data = np.concatenate([c[1] for c in cols])
        M = sparse.csc_matrix(
            (data, indices.astype(np.int32), indptr), shape=(r_hi - r_lo, hi2 - lo2)
        )
        m = (lo2, hi2, r_lo, M, indptr, deficit, dg[:, 0].copy(), dg[:, 1].copy())
        self.mats[n] = m
        return m

    def _diagnose(self, p, off, ratio, unres, share: float = 1e-10):
        """Update the diagnostics from the sources whose share of the mass or of E S^3
        exceeds ``share`` (columns built only as a margin of the matrix do not count)."""
        S = self.S_of(off + np.arange(p.size))
        w3 = p * S**3
        sig = (p > share * p.sum()) | (w3 > share * w3.sum())
        if np.any(sig):
            self.min_width_ratio = min(self.min_width_ratio, float(ratio[sig].min()))
        # an unresolved column's relative density error, weighted by its source's share of
        # the mass and of E S^3: the error it brings into the next law and its cumulants
        err = max(float(p @ unres) / p.sum(), float(w3 @ unres) / w3.sum())
        if err > 1e-8:
            self.max_unresolved = max(self.max_unresolved, err)

    def step(self, n: int, p: np.ndarray, off: int, atom: float):
        """One layer: (p over lattice indices off.., atom) -> (p', off', atom')."""
        chain = self.chain
        lo, hi = off, off + p.size
        pa = chain.atom_prob(n)
        new_atom = 0.0
        if p.size:
            c_lo, c_hi, r_lo, M, indptr, deficit, ratio, unres = self._matrix(n, lo, hi)
            a, b = lo - c_lo, hi - c_lo
            self._diagnose(p, off, ratio[a:b], unres[a:b])
            sub = sparse.csc_matrix(
                (
                    M.data[indptr[a] : indptr[b]],
                    M.indices[indptr[a] : indptr[b]],
                    indptr[a : b + 1] - indptr[a],
                ),
                shape=(M.shape[0], b - a),
            )
            y = sub @ p
            new_off = r_lo
            # mass of the columns below their lower edge (S' ~ c) joins the atom at c
            new_atom += pa * p.sum() + p @ deficit[a:b]
        else:
            y = np.zeros(0)
            new_off = off
        if atom > 0.0:
            if chain.c == 0.0:
                new_atom += atom
            else:
                # the atom S = c is a regular source
                i0, v = chain.columns(n, np.array([chain.c]), self.u0, self.h)[0]
                err = atom * float(chain.last_unresolved[0])
                if err > 1e-8:
                    self.max_unresolved = max(self.max_unresolved, err)
                new_atom += atom * max(1.0 - v.sum(), pa)
                y, new_off = _add_into(y, new_off, atom * v, i0)
        return self._trim(y, new_off) + (new_atom,)

    def _trim(self, y: np.ndarray, off: int):
        if y.size == 0:
            return y, off
        nz = np.nonzero(y > 0)[0]
        if nz.size == 0:
            return y[:0], off
        y = y[nz[0] : nz[-1] + 1]
        off += int(nz[0])
        S = self.S_of(off + np.arange(y.size))
        w3 = y * S**3
        tol = self.tol
        cp = np.cumsum(y)
        c3 = np.cumsum(w3)
        tp, t3 = cp[-1], c3[-1]
        left = np.nonzero((cp > tol * tp) | (c3 > tol * t3))[0][0]
        rp = tp - np.concatenate([[0.0], cp[:-1]])
        r3 = t3 - np.concatenate([[0.0], c3[:-1]])
        right = np.nonzero((rp > tol * tp) | (r3 > tol * t3))[0][-1]
        return y[left : right + 1], off + int(left)

    def moments(self, p: np.ndarray, off: int, atom: float):
        """(E S, Var S, kappa_3(S), total mass) of the current law."""
        S = self.S_of(off + np.arange(p.size))
        c = self.chain.c
        mass = p.sum() + atom
        mean = (p @ S + atom * c) / mass
        d = S - mean
        dc = c - mean
        v = (p @ (d * d) + atom * dc * dc) / mass
        k3 = (p @ (d * d * d) + atom * dc**3) / mass
        return mean, v, k3, mass


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


def _point_mass(S0: float, L: int) -> dict:
    """The solver's result when S stays at S0 through all L layers (a point mass)."""
    return dict(
        mean=np.full(L + 1, S0),
        var=np.zeros(L + 1),
        k3=np.zeros(L + 1),
        mass=np.ones(L + 1),
        p=np.zeros(0),
        off=0,
        atom=1.0,
        u0=0.0,
        h=1.0,
        c=S0,
        point=S0,
        min_width_ratio=np.inf,
        laws=[],
    )


def propagate(act, C_W, C_b, widths, S0, *, h_factor=1.0, tol=1e-14, keep_laws=False, **chain_kw):
    """Run the chain from Sigma^{(0)} = S0 through hidden widths n_1..n_L.

    Returns a dict with arrays ``mean, var, k3, mass`` of shape (L+1,), the final law
    ``(p, off, atom)``, the lattice ``(u0, h, c)`` and diagnostics.
    """
    chain = _Chain(act, C_W, C_b, **chain_kw)
    c = chain.c
    widths = [int(n) for n in widths]
    L = len(widths)
    if L == 0:
        return _point_mass(S0, L)
    n_max = max(widths)
    base = math.sqrt(2.0 / n_max)
    s_probe = max(S0, c, 1e-300)
    if S0 > c:
        u0 = math.log(S0 - c)
        e1, _ = chain.g_stats(np.array([s_probe]))
        s1 = c + C_W * s_probe * e1[0]
        probes = np.array([s_probe, s1])
    else:
        e1, _ = chain.g_stats(np.array([s_probe]))
        val = C_W * s_probe * e1[0]
        if not val > 0:
            # S stays at c = S0 forever (e.g. zero input, C_b = 0)
            return _point_mass(S0, L)
        u0 = math.log(val)
        probes = np.array([s_probe, c + val])
    width0 = min(base, float(np.min([chain.rel_width(probes, n).min() for n in set(widths)])))
    # cap: densities of log(chi2_k) with small k are analytic only in a strip of width ~pi/2
    h = h_factor * min(width0, H_CAP) / 3.0
    prop = _Propagator(chain, u0, h, tol)
    mean = np.empty(L + 1)
    var = np.zeros(L + 1)
    k3 = np.zeros(L + 1)
    mass = np.ones(L + 1)
    mean[0] = S0
    laws = []
    if S0 > c:
        p, off, atom = np.ones(1), 0, 0.0
        # the first column must come from exactly S0 = S_of(0)
    else:
        p, off, atom = np.zeros(0), 0, 1.0
    for ell, n in enumerate(widths, start=1):
        p, off, atom = prop.step(n, p, off, atom)
        mean[ell], var[ell], k3[ell], mass[ell] = prop.moments(p, off, atom)
        if keep_laws:
            laws.append((p.copy(), off, atom))
    if prop.max_unresolved > 0.0:
        warnings.warn(
            "single_input: the characteristic function of a transition column did not decay "
            f"below tolerance (relative density error, weighted by the law, up to "
            f"{prop.max_unresolved:.1e}); widths "
            "this small need a finer treatment",
            RuntimeWarning,
            stacklevel=3,
        )
    if prop.min_width_ratio < 1.0:
        warnings.warn(
            f"single_input: some transition columns are narrower than the lattice step "
            f"(ratio {prop.min_width_ratio:.2f}); decrease h_factor for full accuracy",
            RuntimeWarning,
            stacklevel=3,
        )
    return dict(
        mean=mean,
        var=var,
        k3=k3,
        mass=mass,
        p=p,
        off=off,
        atom=atom,
        u0=u0,
        h=h,
        c=c,
        point=None,
        min_width_ratio=prop.min_width_ratio,
        laws=laws,
    )
