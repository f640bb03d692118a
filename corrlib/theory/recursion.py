"""Finite-width 1/n recursions: four-point function V (T10), variance correction Delta (T11),
their single-input forms (T12), and the sixth cumulant T (T13).

Layer index: arrays have a leading axis of length L+1 whose entry l-1 belongs to the
pre-activations z^{(l)}, l = 1..L+1, i.e. to the collective kernel Sigma^{(l-1)}.
With that convention, ``E[z_{i;a} z_{i;b}] = K + Delta + O(n^-2)`` and
``Cov(Sigma_ab, Sigma_cd) = V_(ab)(cd) + O(n^-2)`` (T6).

Gaussian derivatives of non-smooth integrands are evaluated with the Hermite identities
of docs/theory.md section 4 (y = P zeta, P the (pseudo-)inverse of the covariance of the
channels the integrand depends on), so ReLU needs no finite differences.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from .._util import pinv_psd
from ..model.activations import Activation
from ..model.channels import ChannelExpectation, ChannelLayout, input_kernel
from ..model.gaussian import gaussian_rule
from ..model.network import Network
from .kernels import infinite_width_kernel

__all__ = ["finite_width", "FiniteWidthResult", "single_input_coefficients"]


def _support(layout: ChannelLayout, a: int, b: int) -> list[int]:
    """Channels that phi_a phi_b depends on: a, b and the value channels of their inputs."""
    inp = layout.input
    return sorted({a, b, int(inp[a]), int(inp[b])})


def _derivative_tensors(E: ChannelExpectation, K: np.ndarray, layout: ChannelLayout, fourth: bool):
    """D2[a,b,e,f] = <d_e d_f (phi_a phi_b)>_K and, optionally, D4[a,b,e,f,g,h].

    Hermite identities on the support S of phi_a phi_b with P = K_S^+ and y = P zeta_S:
      <d_e d_f F>         = <F (y_e y_f - P_ef)>,
      <d_e d_f d_g d_h F> = <F (y_e y_f y_g y_h - [6 P y y] + P_ef P_gh + P_eg P_fh + P_eh P_fg)>.
    Entries with an index outside S vanish.
    """
    c = layout.c
    D2 = np.zeros((c, c, c, c))
    D4 = np.zeros((c,) * 6) if fourth else None
    for a in range(c):
        for b in range(a, c):
            S = _support(layout, a, b)
            k = len(S)
            P = pinv_psd(K[np.ix_(S, S)])
            rows = np.zeros((k, c))  # y_i = rows[i] . zeta
            rows[:, S] = P
            # moments M_J = <F prod_{i in J} y_i> for sorted index tuples J of length 0, 2, 4
            orders = [0, 2, 4] if fourth else [0, 2]
            idx_tuples = [
                J for q in orders for J in itertools.combinations_with_replacement(range(k), q)
            ]
            vals = E.expect_many([((a, b), rows[list(J)] if J else None) for J in idx_tuples])
            M = dict(zip(idx_tuples, vals, strict=True))

            def m(*J, M=M):
                return M[tuple(sorted(J))]

            d2 = np.empty((k, k))
            for i in range(k):
                for j in range(k):
                    d2[i, j] = m(i, j) - P[i, j] * m()
            D2[np.ix_([a], [b], S, S)] = d2
            D2[np.ix_([b], [a], S, S)] = d2
            if fourth:
                d4 = np.empty((k,) * 4)
                for e, f, g, h in itertools.product(range(k), repeat=4):
                    val = m(e, f, g, h)
                    val -= (
                        P[e, f] * m(g, h)
                        + P[e, g] * m(f, h)
                        + P[e, h] * m(f, g)
                        + P[f, g] * m(e, h)
                        + P[f, h] * m(e, g)
                        + P[g, h] * m(e, f)
                    )
                    val += (P[e, f] * P[g, h] + P[e, g] * P[f, h] + P[e, h] * P[f, g]) * m()
                    d4[e, f, g, h] = val
                D4[np.ix_([a], [b], S, S, S, S)] = d4
                D4[np.ix_([b], [a], S, S, S, S)] = d4
    return D2, D4


def _pair_index(c: int):
    pairs = [(a, b) for a in range(c) for b in range(a, c)]
    return pairs


def _four_point(E: ChannelExpectation, c: int) -> tuple[np.ndarray, np.ndarray]:
    """<phi_a phi_b> (c, c) and the connected <phi_a phi_b phi_c phi_d> - <..><..> (c,)*4."""
    pairs = _pair_index(c)
    two = E.expect_many([((a, b), None) for a, b in pairs])
    G2 = np.empty((c, c))
    for (a, b), v in zip(pairs, two, strict=True):
        G2[a, b] = G2[b, a] = v
    quads = [(p, q) for i, p in enumerate(pairs) for q in pairs[i:]]
    four = E.expect_many([((*p, *q), None) for p, q in quads])
    G4 = np.empty((c,) * 4)
    for (p, q), v in zip(quads, four, strict=True):
        conn = v - G2[p] * G2[q]
        for a, b in {p, p[::-1]}:
            for cc, d in {q, q[::-1]}:
                G4[a, b, cc, d] = conn
                G4[cc, d, a, b] = conn
    return G2, G4


@dataclass
class FiniteWidthResult:
    """Finite-width statistics of the collective kernels, per layer (T10)-(T13).

    Attributes
    ----------
    net : Network
    layout : ChannelLayout
    K : ndarray, shape (L+1, c, c)
        Infinite-width kernels K^{(l)} (T7).
    Delta : ndarray, shape (L+1, c, c)
        O(1/n) correction: E Sigma^{(l-1)} = K^{(l)} + Delta^{(l)} + O(n^-2) (T11).
    V : ndarray, shape (L+1, c, c, c, c)
        Cov(Sigma_ab, Sigma_cd) at leading order (T10); the inter-neuron connected four-point
        function (T6). Symmetric under a<->b, c<->d and (ab)<->(cd).
    T : ndarray, shape (L+1,) or None
        kappa_3 of Sigma at order n^-2 (T13), only for a single channel (c = 1).
    """

    net: Network
    layout: ChannelLayout
    K: np.ndarray
    Delta: np.ndarray
    V: np.ndarray
    T: np.ndarray | None = None
    extras: dict = field(default_factory=dict)

    @property
    def mean(self) -> np.ndarray:
        """K + Delta, shape (L+1, c, c): E[z_{i;a} z_{i;b}] to O(1/n)."""
        return self.K + self.Delta

    def kappa4(self) -> np.ndarray:
        """Single-neuron fourth cumulant kappa_4(z_a, z_b, z_c, z_d), shape (L+1, c, c, c, c).

        The sum of (T6) over the three pairings: V_(ab)(cd) + V_(ac)(bd) + V_(ad)(bc).
        """
        V = self.V
        return V + V.transpose(0, 1, 3, 2, 4) + V.transpose(0, 1, 4, 3, 2)

    def normalized_kappa4(self) -> np.ndarray:
        """kappa_4(z_a)/kappa_2(z_a)^2 = 3 V_(aa)(aa)/K_aa^2 per channel, shape (L+1, c).

        Leading order in 1/n (T12): the normalized fourth cumulant of one output neuron.
        """
        idx = np.arange(self.layout.c)
        Vd = self.V[:, idx, idx, idx, idx]
        Kd = self.K[:, idx, idx]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(Kd > 0, 3.0 * Vd / Kd**2, np.nan)

    def kappa6(self) -> np.ndarray:
        """Sixth cumulant of one output neuron, 15 T (T4), (T13); shape (L+1,). Needs c = 1."""
        if self.T is None:
            raise ValueError("kappa6 needs a single channel (c = 1: one input, no directions)")
        return 15.0 * self.T

    def inter_neuron_cov(self) -> np.ndarray:
        """Cov(z_{i;a} z_{i;b}, z_{j;c} z_{j;d}) for i != j: V itself (T5), (T6).

        Shape (L+1, c, c, c, c).
        """
        return self.V.copy()

    def to_frame(self):
        """Tidy DataFrame: layer, quantity ("K", "Delta", "mean", "V", "T"), a, b, c, d, value, se.

        V is listed on its unique entries a<=b, c<=d, (a,b)<=(c,d); T (c = 1) has channel
        indices <NA> as in the Monte Carlo frames; se is NaN (exact theory).
        """
        import pandas as pd

        c = self.layout.c
        pairs = _pair_index(c)
        rows = []
        for ell in range(self.K.shape[0]):
            layer = ell + 1
            for a, b in pairs:
                for name, arr in (("K", self.K), ("Delta", self.Delta), ("mean", self.mean)):
                    rows.append((layer, name, a, b, None, None, arr[ell, a, b]))
            for i, (a, b) in enumerate(pairs):
                for cc, d in pairs[i:]:
                    rows.append((layer, "V", a, b, cc, d, self.V[ell, a, b, cc, d]))
            if self.T is not None:
                rows.append((layer, "T", None, None, None, None, self.T[ell]))
        df = pd.DataFrame(rows, columns=["layer", "quantity", "a", "b", "c", "d", "value"])
        for col in ("a", "b", "c", "d"):
            df[col] = df[col].astype("Int64")
        df["se"] = np.nan
        return df


def single_input_coefficients(act: Activation, K: float, C_W: float, C_b: float) -> dict:
    """The coefficients of (T12)-(T13) at a single-input kernel value K > 0.

    m(s) = C_b + C_W g(s), v(s) = C_W^2 h(s), t(s) = C_W^3 kappa_3(sigma(sqrt(s) xi)^2),
    with g = <sigma^2>, h = <sigma^4> - g^2. Derivatives in s use the one-dimensional
    Hermite identity d^k/ds^k <G>_s = (2s)^-k <G(sqrt(s) xi) He_2k(xi)>.

    Returns
    -------
    dict with keys m1, m2 (m', m''), v, v1 (v'), t, chi_par.
    """
    rule = gaussian_rule(np.array([[K]]), "axes")
    z = rule.points[:, 0]
    w = rule.weights
    xi2 = z * z / K
    he2 = xi2 - 1.0
    he4 = xi2 * xi2 - 6.0 * xi2 + 3.0
    s2 = act.f(z) ** 2
    s4 = s2 * s2
    g = w @ s2
    g1 = (w @ (s2 * he2)) / (2 * K)
    g2 = (w @ (s2 * he4)) / (4 * K * K)
    q = w @ s4
    q1 = (w @ (s4 * he2)) / (2 * K)
    h = q - g * g
    h1 = q1 - 2 * g * g1
    k3 = w @ (s2 * s4) - 3 * q * g + 2 * g**3
    return {
        "m1": C_W * g1,
        "m2": C_W * g2,
        "v": C_W**2 * h,
        "v1": C_W**2 * h1,
        "t": C_W**3 * k3,
        "chi_par": C_W * g1,
    }


def finite_width(net: Network, X, directions=None, **order) -> FiniteWidthResult:
    """The layerwise 1/n recursions (T10), (T11) (and (T13) for one channel).

    Parameters
    ----------
    net : Network
        Widths may differ per layer: the width n_l enters the step l -> l+1.
    X : array_like, shape (m, n_0)
    directions : array_like, shape (d, n_0), optional
    **order
        Quadrature node counts (see :func:`corrlib.gaussian.gaussian_rule`).

    Returns
    -------
    FiniteWidthResult
        ``K`` (L+1, c, c), ``Delta`` (L+1, c, c), ``V`` (L+1, c, c, c, c), ``T`` (L+1,) or None.

    Notes
    -----
    V^{(1)} = Delta^{(1)} = 0 (z^{(1)} is Gaussian). For l >= 1, with K = K^{(l)}, n = n_l:

    V^{(l+1)}_{(ab)(cd)} = (C_W^2/n) [<phi_a phi_b phi_c phi_d> - <phi_a phi_b><phi_c phi_d>]_K
        + (C_W^2/4) sum_{efgh} <d_e d_f(phi_a phi_b)>_K <d_g d_h(phi_c phi_d)>_K V^{(l)}_{(ef)(gh)}

    Delta^{(l+1)}_{ab} = (C_W/2) sum_{ef} <d_e d_f(phi_a phi_b)>_K Delta^{(l)}_{ef}
        + (C_W/8) sum_{efgh} <d_e d_f d_g d_h(phi_a phi_b)>_K V^{(l)}_{(ef)(gh)}

    The sums run over ordered index pairs. The neglected terms are O(L^2/n^2): the relative
    error of V grows like const * L/n (docs/theory.md section 4).

    Examples
    --------
    >>> import numpy as np, corrlib
    >>> net = corrlib.Network.critical("relu", width=64, depth=4)
    >>> rec = corrlib.finite_width(net, np.ones((1, 1)))
    >>> round(float(rec.V[-1, 0, 0, 0, 0] / rec.K[-1, 0, 0] ** 2 * 64 / 4), 12)  # (T17): 5
    5.0
    """
    general = bool(order.pop("_general", False))  # testing hook: force the tensor path
    K_all = infinite_width_kernel(net, X, directions, **order)
    _, layout = input_kernel(net, X, directions)
    c = layout.c
    L = net.depth
    C_W, C_b = net.C_W, net.C_b
    Delta = np.zeros((L + 1, c, c))
    V = np.zeros((L + 1, c, c, c, c))
    T = np.zeros(L + 1) if c == 1 else None
    for ell in range(1, L + 1):  # step from z^{(ell)} to z^{(ell+1)}, width n_ell
        n = net.widths[ell]
        K = K_all[ell - 1]
        if c == 1 and not general:
            k = float(K[0, 0])
            if k <= 0.0:
                raise ValueError(f"the kernel vanished at layer {ell}; the recursion needs K > 0")
            co = single_input_coefficients(net.activation, k, C_W, C_b)
            Vp = float(V[ell - 1, 0, 0, 0, 0])
            V[ell] = co["v"] / n + co["m1"] ** 2 * Vp
            Delta[ell] = co["m1"] * Delta[ell - 1] + 0.5 * co["m2"] * Vp
            T[ell] = (
                co["t"] / n**2
                + 3.0 * co["m1"] * co["v1"] / n * Vp
                + co["m1"] ** 3 * T[ell - 1]
                + 3.0 * co["m1"] ** 2 * co["m2"] * Vp**2
            )
            continue
        E = ChannelExpectation(net.activation, K, layout, **order)
        _, G4 = _four_point(E, c)
        need_prev = bool(np.any(V[ell - 1] != 0.0))
        if need_prev:
            D2, D4 = _derivative_tensors(E, K, layout, fourth=True)
            prop = np.einsum("abef,efgh,cdgh->abcd", D2, V[ell - 1], D2, optimize=True)
            V[ell] = (C_W**2 / n) * G4 + (C_W**2 / 4.0) * prop
            Delta[ell] = (C_W / 2.0) * np.einsum("abef,ef->ab", D2, Delta[ell - 1]) + (
                C_W / 8.0
            ) * np.einsum("abefgh,efgh->ab", D4, V[ell - 1], optimize=True)
        else:
            V[ell] = (C_W**2 / n) * G4
    return FiniteWidthResult(net=net, layout=layout, K=K_all, Delta=Delta, V=V, T=T)
