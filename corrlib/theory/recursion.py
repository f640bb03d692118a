"""Finite-width 1/n recursions: four-point function V (T10), variance correction Delta (T11),
their single-input forms (T12), and the sixth cumulant T (T13).

Layer index: arrays have a leading axis of length L+1 whose entry l-1 belongs to the
pre-activations z^{(l)}, l = 1..L+1, i.e. to the collective kernel Sigma^{(l-1)}.
With that convention, ``E[z_{i;a} z_{i;b}] = K + Delta + O(n^-2)`` and
``Cov(Sigma_ab, Sigma_cd) = V_(ab)(cd) + O(n^-2)`` (T6).

The expectations of each step come from :func:`corrlib.model.channels.layer_tensors` (one
moment engine per distinct input subset, derivative channels integrated out analytically,
exact orthant moments for ReLU-type activations); Gaussian derivatives of non-smooth integrands
are Hermite identities (docs/theory.md section 4), so ReLU needs no finite differences.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._util import check_int, tidy_frame, warn_deprecated
from ..model.activations import Activation
from ..model.channels import ChannelLayout, input_kernel, layer_tensors
from ..model.gaussian import normal_expectation
from ..model.network import Network
from .kernels import infinite_width_kernel, legacy_order, nonfinite_error

__all__ = ["finite_width", "FiniteWidthResult", "single_input_coefficients"]

#: the largest working memory finite_width allocates (bytes); larger problems are refused
MAX_MEMORY = 2 * 1024**3


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

    Examples
    --------
    Two inputs and one direction (c = 4 channels) through a critical tanh network:

    >>> import numpy as np, corrlib
    >>> net = corrlib.Network.critical("tanh", width=32, depth=3, n_in=2)
    >>> rec = corrlib.finite_width(net, np.eye(2), directions=[[1.0, 1.0]])
    >>> rec.layout.c, rec.K.shape, rec.V.shape, rec.T is None
    (4, (4, 4, 4), (4, 4, 4, 4, 4), True)
    >>> bool(np.allclose(rec.mean, rec.K + rec.Delta)), rec.normalized_kappa4().shape
    (True, (4, 4))
    """

    net: Network
    layout: ChannelLayout
    K: np.ndarray
    Delta: np.ndarray
    V: np.ndarray
    T: np.ndarray | None = None

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

    def sigma_covariance(
        self, layer: int = -1, *, entries: str = "all", correlation: bool = False
    ) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """Cov(Sigma_ab, Sigma_cd) at one layer as a matrix over entries (a, b) of Sigma (T10).

        Parameters
        ----------
        layer : int
            Position on the layer axis (-1: the output, z^(L+1)).
        entries : {"all", "diagonal"}
            All unique entries a <= b (p = c(c+1)/2 of them), or the diagonal ones (a, a).
        correlation : bool
            Return Corr(Sigma_ab, Sigma_cd) = V / sqrt(V_(ab)(ab) V_(cd)(cd)) instead (entries
            with zero variance give NaN rows and columns, with a RuntimeWarning).

        Returns
        -------
        matrix : ndarray, shape (p, p)
        labels : list of (a, b)
            The channel pair of each row and column.

        Examples
        --------
        Inputs on a circle: how strongly do the output variances of different inputs co-vary?

        >>> import numpy as np, corrlib
        >>> t = np.linspace(0, np.pi, 4, endpoint=False)
        >>> X = np.c_[np.cos(t), np.sin(t)]
        >>> net = corrlib.Network.critical("relu", width=64, depth=3, n_in=2)
        >>> C, labels = corrlib.finite_width(net, X).sigma_covariance(
        ...     entries="diagonal", correlation=True)
        >>> C.shape, labels[1]
        ((4, 4), (1, 1))
        >>> bool(np.allclose(np.diag(C), 1.0)) and bool(np.all(C[0, 1:] < 1.0))
        True
        """
        c = self.layout.c
        layer = check_int(layer, "layer", minimum=-self.K.shape[0], maximum=self.K.shape[0] - 1)
        if entries == "diagonal":
            labels = [(a, a) for a in range(c)]
        elif entries == "all":
            labels = [(a, b) for a in range(c) for b in range(a, c)]
        else:
            raise ValueError(f"entries must be 'all' or 'diagonal'; got {entries!r}")
        i = np.array([a for a, _ in labels])
        j = np.array([b for _, b in labels])
        M = self.V[layer][i[:, None], j[:, None], i[None, :], j[None, :]]
        if correlation:
            sd = np.sqrt(np.diag(M))
            if np.any(sd == 0):
                import warnings

                warnings.warn(
                    "sigma_covariance: some entries of Sigma have zero variance at this layer "
                    "(e.g. the first layer, where Sigma is deterministic); their correlations are "
                    "NaN",
                    RuntimeWarning,
                    stacklevel=2,
                )
            with np.errstate(divide="ignore", invalid="ignore"):
                M = M / np.outer(sd, sd)
        return M, labels

    def to_frame(self):
        """Tidy DataFrame: layer, quantity ("K", "Delta", "mean", "V", "T"), a..f, value, se.

        One layout for every corrlib result (``corrlib._util.tidy_frame``): K, Delta and mean on
        the unique entries a <= b, V on a <= b, c <= d, (a, b) <= (c, d); T (c = 1) with channel
        indices <NA>; se is NaN (exact theory).

        Examples
        --------
        >>> import numpy as np, corrlib
        >>> rec = corrlib.finite_width(corrlib.Network.critical("relu", 16, 2), np.ones((1, 1)))
        >>> df = rec.to_frame()
        >>> sorted(set(df["quantity"])), len(df)
        (['Delta', 'K', 'T', 'V', 'mean'], 15)
        """
        q = {"K": (self.K, None), "Delta": (self.Delta, None), "mean": (self.mean, None),
             "V": (self.V, None)}  # fmt: skip
        if self.T is not None:
            q["T"] = (self.T, None)
        return tidy_frame(q)


class _CoefficientDict(dict):
    """The coefficients of (T12)-(T13); the former key "chi_par" (= "m1") is deprecated."""

    def __missing__(self, key):
        if key == "chi_par":
            warn_deprecated('single_input_coefficients(...)["chi_par"]', '["m1"]', stacklevel=3)
            return self["m1"]
        raise KeyError(key)


def single_input_coefficients(act: Activation, K: float, C_W: float, C_b: float) -> dict:
    """The coefficients of (T12)-(T13) at a single-input kernel value K > 0.

    m(s) = C_b + C_W g(s), v(s) = C_W^2 h(s), t(s) = C_W^3 kappa_3(sigma(sqrt(s) xi)^2),
    with g = <sigma^2>, h = <sigma^4> - g^2. Derivatives in s use the one-dimensional
    Hermite identity d^k/ds^k <G>_s = (2s)^-k <G(sqrt(s) xi) He_2k(xi)>.

    Parameters
    ----------
    act : Activation
    K : float
        Kernel value > 0.
    C_W, C_b : float

    Returns
    -------
    dict
        Keys m1, m2 (m', m''; m1 = chi_parallel), v, v1 (v'), t.

    Notes
    -----
    Every expectation by :func:`corrlib.model.gaussian.normal_expectation` (1e-13 relative at
    any K).

    Examples
    --------
    >>> import corrlib
    >>> co = single_input_coefficients(corrlib.get_activation("relu"), 1.0, 2.0, 0.0)
    >>> round(co["m1"], 12), round(co["v"], 12)  # chi_par = 1, v = C_W^2 (3/2 - 1/4) K^2
    (1.0, 5.0)
    """
    K = float(K)
    if not (K > 0 and math.isfinite(K)):
        raise ValueError(f"K must be a finite real number > 0; got {K!r}")
    f = act.f

    def s2(z):
        return f(z) ** 2

    def he2(z):
        return z * z / K - 1.0

    def he4(z):
        x = z * z / K
        return x * x - 6.0 * x + 3.0

    fns = [
        s2,
        lambda z: s2(z) * he2(z),
        lambda z: s2(z) * he4(z),
        lambda z: s2(z) ** 2,
        lambda z: s2(z) ** 2 * he2(z),
        lambda z: s2(z) ** 3,
    ]
    g, g1, g2, q, q1, s6 = normal_expectation(fns, math.sqrt(K), name="single_input_coefficients")
    g1 = g1 / (2 * K)
    g2 = g2 / (4 * K * K)
    q1 = q1 / (2 * K)
    h = q - g * g
    h1 = q1 - 2 * g * g1
    k3 = s6 - 3 * q * g + 2 * g**3
    return _CoefficientDict(
        m1=float(C_W * g1),
        m2=float(C_W * g2),
        v=float(C_W**2 * h),
        v1=float(C_W**2 * h1),
        t=float(C_W**3 * k3),
    )


def _memory_estimate(c: int, L: int) -> int:
    """Bytes finite_width allocates for c channels and L layers (V, K, Delta over layers, the
    layer tensors, the multiset index tables, node work arrays)."""
    per_layer = c**4 + 2 * c * c
    tensors = 6 * c**4 + 256 * c * (c + 1) // 2 + 5 * math.comb(c + 3, 4)
    return 8 * ((L + 1) * per_layer + tensors) + 64 * 1024**2


def _single_channel(net: Network, K_all: np.ndarray):
    """(T12)-(T13): V, Delta and T of one channel."""
    L, C_W, C_b = net.depth, net.C_W, net.C_b
    V, Delta, T = np.zeros(L + 1), np.zeros(L + 1), np.zeros(L + 1)
    for ell in range(1, L + 1):  # step from z^{(ell)} to z^{(ell+1)}, width n_ell
        n = net.widths[ell]
        k = float(K_all[ell - 1, 0, 0])
        if k <= 0.0:
            raise ValueError(
                f"the kernel vanished at layer {ell} (K^({ell}) = {k!r}): the single-input "
                "recursion (T12) needs K > 0; use C_b > 0 or a non-zero input"
            )
        try:
            co = single_input_coefficients(net.activation, k, C_W, C_b)
        except (OverflowError, ValueError) as exc:
            raise nonfinite_error(
                net.activation, "a coefficient of (T12) (a moment of sigma^2)", ell + 1,
                K_all[ell - 1], f" ({exc})",
            ) from exc  # fmt: skip
        Vp = V[ell - 1]
        with np.errstate(over="ignore", invalid="ignore"):
            V[ell] = co["v"] / n + co["m1"] ** 2 * Vp
            Delta[ell] = co["m1"] * Delta[ell - 1] + 0.5 * co["m2"] * Vp
            T[ell] = (
                co["t"] / n**2
                + 3.0 * co["m1"] * co["v1"] / n * Vp
                + co["m1"] ** 3 * T[ell - 1]
                + 3.0 * co["m1"] ** 2 * co["m2"] * Vp**2
            )
        for name, arr in (("V", V), ("Delta", Delta), ("T", T)):
            if not np.isfinite(arr[ell]):
                raise nonfinite_error(net.activation, name, ell + 1, K_all[ell - 1])
    return V.reshape(-1, 1, 1, 1, 1), Delta.reshape(-1, 1, 1), T


def _tensor_path(net: Network, K1: np.ndarray, layout: ChannelLayout):
    """(T7), (T10), (T11) for any number of channels: K, Delta, V over layers."""
    c, L = layout.c, net.depth
    C_W, C_b = net.C_W, net.C_b
    mask = layout.bias_mask()
    K = np.empty((L + 1, c, c))
    K[0] = K1
    Delta = np.zeros((L + 1, c, c))
    V = np.zeros((L + 1, c, c, c, c))
    c2 = c * c
    for ell in range(1, L + 1):  # step from z^{(ell)} to z^{(ell+1)}, width n_ell
        n = net.widths[ell]
        need = bool(np.any(V[ell - 1] != 0.0))
        with np.errstate(over="ignore", invalid="ignore"):
            lt = layer_tensors(net.activation, K[ell - 1], layout, derivatives=need)
            K[ell] = C_b * mask + C_W * lt.G2
            V[ell] = (C_W**2 / n) * lt.G4
            if need:
                D2m = lt.D2.reshape(c2, c2)
                prop = D2m @ V[ell - 1].reshape(c2, c2) @ D2m.T
                V[ell] += (C_W**2 / 4.0) * prop.reshape(c, c, c, c)
                Delta[ell] = (C_W / 2.0) * (D2m @ Delta[ell - 1].reshape(c2)).reshape(c, c)
                Delta[ell] += (C_W / 8.0) * lt.contract_D4(V[ell - 1])
        for name, arr in ((f"the kernel K^({ell + 1})", K), ("V", V), ("Delta", Delta)):
            if not np.all(np.isfinite(arr[ell])):
                raise nonfinite_error(net.activation, name, ell + 1, K[ell - 1])
    return K, Delta, V


def _recursion(net: Network, X, directions=None, *, general: bool = False) -> FiniteWidthResult:
    """finite_width without argument checks; ``general`` forces the tensor path for c = 1."""
    K1, layout = input_kernel(net, X, directions)
    c, L = layout.c, net.depth
    need = _memory_estimate(c, L)
    if need > MAX_MEMORY:
        raise MemoryError(
            f"finite_width with c = {c} channels ({layout.m} inputs x {1 + layout.d}) and "
            f"depth {L} needs about {need / 1024**3:.1f} GiB (V alone is (L+1) c^4 floats), more "
            f"than the limit corrlib.theory.recursion.MAX_MEMORY = {MAX_MEMORY / 1024**3:.1f} "
            "GiB; use fewer inputs or directions, or raise the limit"
        )
    if c == 1 and not general:
        K_all = infinite_width_kernel(net, X, directions)
        V, Delta, T = _single_channel(net, K_all)
        return FiniteWidthResult(net=net, layout=layout, K=K_all, Delta=Delta, V=V, T=T)
    K_all, Delta, V = _tensor_path(net, K1, layout)
    return FiniteWidthResult(net=net, layout=layout, K=K_all, Delta=Delta, V=V, T=None)


def finite_width(net: Network, X, directions=None, **order) -> FiniteWidthResult:
    """The layerwise 1/n recursions (T10), (T11) (and (T13) for one channel).

    Parameters
    ----------
    net : Network
        Widths may differ per layer: the width n_l enters the step l -> l+1.
    X : array_like, shape (m, n_0)
        Inputs, one per row (a 1-D array is one input).
    directions : array_like, shape (d, n_0), optional
        Directions of input derivatives; c = m (1 + d) channels.

    Returns
    -------
    FiniteWidthResult
        ``K`` (L+1, c, c), ``Delta`` (L+1, c, c), ``V`` (L+1, c, c, c, c), ``T`` (L+1,) or None.

    Raises
    ------
    OverflowError
        If K, V or Delta overflows, naming the layer and the quantity.
    MemoryError
        Before allocating, if the estimated working memory exceeds ``MAX_MEMORY``.

    Notes
    -----
    V^{(1)} = Delta^{(1)} = 0 (z^{(1)} is Gaussian). For l >= 1, with K = K^{(l)}, n = n_l:

    V^{(l+1)}_{(ab)(cd)} = (C_W^2/n) [<phi_a phi_b phi_c phi_d> - <phi_a phi_b><phi_c phi_d>]_K
        + (C_W^2/4) sum_{efgh} <d_e d_f(phi_a phi_b)>_K <d_g d_h(phi_c phi_d)>_K V^{(l)}_{(ef)(gh)}

    Delta^{(l+1)}_{ab} = (C_W/2) sum_{ef} <d_e d_f(phi_a phi_b)>_K Delta^{(l)}_{ef}
        + (C_W/8) sum_{efgh} <d_e d_f d_g d_h(phi_a phi_b)>_K V^{(l)}_{(ef)(gh)}

    The sums run over ordered index pairs. The neglected terms are O(L^2/n^2): the relative
    error of V grows like const * L/n (docs/theory.md section 4).

    Numerics (:func:`corrlib.model.channels.layer_tensors`): every expectation involves at most
    four distinct inputs and is computed once per distinct input subset and layer. Accuracy
    per step: ReLU-type activations exact up to rounding (four distinct inputs ~1e-15);
    smooth activations ~1e-12 relative for G2, G4, D2; D4 (a Hermite identity) to
    ~1e-16 cond(K_S)^2 of its scale, K_S the kernel of the pair's support. Cost at L = 100
    (one core): c = 4 channels about 0.8-2.1 s, c = 8 about 2-24 s (benchmarks/bench_recursion.py).

    Examples
    --------
    >>> import numpy as np, corrlib
    >>> net = corrlib.Network.critical("relu", width=64, depth=4)
    >>> rec = corrlib.finite_width(net, np.ones((1, 1)))
    >>> round(float(rec.V[-1, 0, 0, 0, 0] / rec.K[-1, 0, 0] ** 2 * 64 / 4), 12)  # (T17): 5
    5.0
    """
    legacy_order(order, "finite_width")
    return _recursion(net, X, directions)
