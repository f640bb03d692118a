"""Channels: bookkeeping, the input kernel (T2) and expectations of channel features.

With m inputs x_1..x_m and d directions u_1..u_d there are c = m(1+d) channels, ordered
[values at x_1..x_m, then d/du_1 at x_1..x_m, ..., then d/du_d at x_1..x_m].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .gaussian import MAX_DIM, gaussian_rule
from .network import Network, validate_inputs

__all__ = ["ChannelExpectation", "ChannelLayout", "input_kernel"]


@dataclass(frozen=True)
class ChannelLayout:
    """Which input and which direction each channel belongs to.

    Attributes
    ----------
    m, d : int
        Number of inputs and of directions.
    input : ndarray of int, shape (c,)
        Input index alpha of each channel.
    direction : ndarray of int, shape (c,)
        Direction index k of a derivative channel, -1 for a value channel.
    """

    m: int
    d: int

    @property
    def c(self) -> int:
        return self.m * (1 + self.d)

    @property
    def input(self) -> np.ndarray:
        return np.tile(np.arange(self.m), 1 + self.d)

    @property
    def direction(self) -> np.ndarray:
        return np.repeat(np.arange(-1, self.d), self.m)

    @property
    def is_value(self) -> np.ndarray:
        return self.direction < 0

    def value_channel(self, a: int) -> int:
        """Index of the value channel of the input of channel ``a``."""
        return int(self.input[a])

    def bias_mask(self) -> np.ndarray:
        """(c, c) indicator [a, b both value channels] (where C_b enters (T2), (T7))."""
        v = self.is_value.astype(float)
        return np.outer(v, v)


def input_kernel(net: Network, X, directions=None) -> tuple[np.ndarray, ChannelLayout]:
    """Sigma^{(0)} = K^{(1)} of (T2): C_b [a,b values] + (C_W/n_0) <v_a, v_b>.

    Parameters
    ----------
    net : Network
    X : array_like, shape (m, n_0)
    directions : array_like, shape (d, n_0), optional

    Returns
    -------
    K1 : ndarray, shape (c, c)
    layout : ChannelLayout
    """
    X, U = validate_inputs(net, X, directions)
    d = 0 if U is None else U.shape[0]
    layout = ChannelLayout(X.shape[0], d)
    V = (
        X
        if U is None
        else np.vstack([X] + [np.repeat(U[k : k + 1], X.shape[0], axis=0) for k in range(d)])
    )
    K1 = net.C_b * layout.bias_mask() + (net.C_W / net.n_in) * (V @ V.T)
    return 0.5 * (K1 + K1.T), layout


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
        if len(inputs) > MAX_DIM:
            raise ValueError(
                f"a term involves {len(inputs)} distinct inputs; at most {MAX_DIM} are supported"
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
