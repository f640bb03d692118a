"""Exact finite-width laws of a single input (docs/theory.md sections 2 and 6).

Two families of results, valid at every depth-to-width ratio L/n (including L/n >= 1 where the
1/n expansions of (T10)-(T13) fail):

* **Scale-invariant activations** ``sigma(z) = a_+ z [z>0] + a_- z [z<0]`` with ``C_b = 0``:
  the collective kernel of one input is a product of independent factors (T14), so every moment
  is an exact finite binomial sum (:func:`collective_moments`, :func:`output_moments`,
  :func:`log_output_moments`), and the output law is a Gaussian scale mixture
  (:func:`output_distribution`). ReLU gives (T15); derivative channels give (T16).
* **Any activation**: for one input, Sigma^{(l)} is a scalar Markov chain. :func:`single_input`
  propagates its law numerically on a lattice in ``log(S - c)`` (see :mod:`corrlib._solver`).

Derivative channels and ``C_b``
-------------------------------
For a direction ``u`` the derivative channel obeys ``Sigma_dd^{(l)} = Sigma_dd^{(l-1)} X_l`` with
the *same* factor law as (T14), for every scale-invariant activation and **any** ``C_b >= 0``:
conditional on layer ``l-1`` the pairs ``(z_j, dz_j)`` are i.i.d. centred Gaussians, so the map
``(z_j, dz_j) -> (-z_j, -dz_j)`` preserves their law and ``(dz_j)^2``; hence the gate
``[z_j > 0]`` (which selects ``a_+^2`` or ``a_-^2`` in ``sigma'(z_j)^2``) is a fair coin
independent of ``(dz_j)^2 = Sigma_dd^{(l-1)} xi_j^2`` (T16). Biases do not enter derivatives.
So :func:`collective_moments`, :func:`output_moments` and :func:`log_output_moments` accept
``C_b != 0`` when ``directions`` is given, and require ``C_b = 0`` for the value channel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from .channels import input_kernel
from .network import Network

__all__ = [
    "collective_moments",
    "collective_log_moments",
    "output_moments",
    "log_output_moments",
    "output_distribution",
    "OutputDistribution",
    "single_input",
    "SingleInputResult",
]


# --------------------------------------------------------------------------------------------
# input handling
# --------------------------------------------------------------------------------------------


def _single_row(arr, name: str, n0: int) -> np.ndarray:
    try:
        a = np.array(arr, dtype=float)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a real array of shape (n_0,) or (1, n_0)") from exc
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[0] != 1 or a.shape[1] != n0:
        raise ValueError(
            f"{name} must have shape (n_0,) or (1, n_0) with n_0={n0} (one input / one "
            f"direction); got shape {np.shape(arr)}"
        )
    return a


def _check_k_max(k_max) -> int:
    if isinstance(k_max, bool) or not isinstance(k_max, (int, np.integer)) or k_max < 0:
        raise ValueError(f"k_max must be an integer >= 0; got {k_max!r}")
    return int(k_max)


def _initial_variance(net: Network, x, directions) -> float:
    """Sigma^{(0)} of the requested channel (value or derivative), (T2)."""
    if not isinstance(net, Network):
        raise TypeError(f"net must be a corrlib.Network; got {type(net).__name__}")
    x = _single_row(x, "x", net.n_in)
    if directions is None:
        K1, _ = input_kernel(net, x)
        return float(K1[0, 0])
    u = _single_row(directions, "directions", net.n_in)
    K1, _ = input_kernel(net, x, u)
    return float(K1[1, 1])


def _check_closed_form(net: Network, directions, func: str) -> tuple[float, float]:
    act = net.activation
    if not act.is_scale_invariant:
        raise ValueError(
            f"{func}: the closed form (T14) needs a scale-invariant activation "
            f"a_+ z [z>0] + a_- z [z<0]; got {act.name!r}. Use corrlib.exact.single_input "
            "for any activation."
        )
    if directions is None and net.C_b != 0.0:
        raise ValueError(
            f"{func}: the closed form (T14) for the value channel needs C_b = 0; got "
            f"C_b={net.C_b!r}. Use corrlib.exact.single_input for C_b > 0 (derivative channels, "
            "given via `directions`, accept any C_b by (T16))."
        )
    return float(act.a_plus), float(act.a_minus)


# --------------------------------------------------------------------------------------------
# closed forms (T14)-(T16)
# --------------------------------------------------------------------------------------------


def _log_chi2_moments(dof: np.ndarray, k_max: int) -> np.ndarray:
    """log E[(chi^2_dof)^j], j = 0..k_max, shape (len(dof), k_max+1); chi^2_0 = 0."""
    dof = np.asarray(dof, dtype=float)
    # Gamma(a + j)/Gamma(a) = prod_{i<j} (a + i): a product of logs, no gammaln cancellation
    half = dof / 2.0
    out = np.zeros((dof.size, k_max + 1))
    with np.errstate(divide="ignore"):
        for j in range(1, k_max + 1):
            out[:, j] = out[:, j - 1] + math.log(2.0) + np.log(half + (j - 1))
    zero = dof == 0
    out[zero, :] = -np.inf
    out[zero, 0] = 0.0
    return out


def _log_factor_moments(n: int, k_max: int, a_plus: float, a_minus: float, C_W: float):
    """log E[X^k], k = 0..k_max, for X = (C_W/n)(a_+^2 chi2_B + a_-^2 chi2'_{n-B}) (T14).

    Exact finite sums over B ~ Binomial(n, 1/2) and over the split j + (k-j) of the power,
    evaluated in log space. Returns shape (k_max+1,).
    """
    B = np.arange(n + 1)
    logbin = (
        special.gammaln(n + 1.0)
        - special.gammaln(B + 1.0)
        - special.gammaln(n - B + 1.0)
        - n * math.log(2.0)
    )
    logbin -= special.logsumexp(logbin)  # weights sum to 1 to rounding
    mp = _log_chi2_moments(B, k_max)  # (n+1, k+1)
    mm = _log_chi2_moments(n - B, k_max)
    with np.errstate(divide="ignore"):
        la_p = 2.0 * math.log(abs(a_plus)) if a_plus != 0 else -np.inf
        la_m = 2.0 * math.log(abs(a_minus)) if a_minus != 0 else -np.inf
    out = np.empty(k_max + 1)
    for k in range(k_max + 1):
        j = np.arange(k + 1)
        logc = special.gammaln(k + 1.0) - special.gammaln(j + 1.0) - special.gammaln(k - j + 1.0)
        with np.errstate(invalid="ignore"):
            ap = np.where(j > 0, j * la_p, 0.0)
            am = np.where(k - j > 0, (k - j) * la_m, 0.0)
        terms = logbin[:, None] + logc[None, :] + ap + am + mp[:, j] + mm[:, k - j]
        out[k] = special.logsumexp(terms) + k * math.log(C_W / n)
    out[0] = 0.0  # E X^0 = 1 exactly
    return out


def collective_log_moments(net: Network, x, k_max: int, directions=None) -> np.ndarray:
    """log E[(Sigma^{(l-1)})^k] for every layer, exactly (T14), (T16).

    Parameters
    ----------
    net : Network
        Scale-invariant activation; ``C_b = 0`` unless ``directions`` is given.
    x : array_like, shape (n_0,) or (1, n_0)
        The input.
    k_max : int
        Highest power.
    directions : array_like, shape (n_0,) or (1, n_0), optional
        A direction u: then Sigma is the derivative channel's Sigma_dd (any C_b, see module doc).

    Returns
    -------
    ndarray, shape (L+1, k_max+1)
        Entry ``[l-1, k]`` = log E[(Sigma^{(l-1)})^k]; row 0 is the deterministic Sigma^{(0)}.
        ``-inf`` where the moment is 0 (Sigma^{(0)} = 0).
    """
    k_max = _check_k_max(k_max)
    a_plus, a_minus = _check_closed_form(net, directions, "collective_log_moments")
    s0 = _initial_variance(net, x, directions)
    k = np.arange(k_max + 1, dtype=float)
    with np.errstate(divide="ignore"):
        row0 = np.where(k == 0, 0.0, k * math.log(s0) if s0 > 0 else -np.inf)
    cache: dict[int, np.ndarray] = {}
    rows = [row0]
    acc = row0.copy()
    for n in net.hidden_widths:
        if n not in cache:
            cache[n] = _log_factor_moments(n, k_max, a_plus, a_minus, net.C_W)
        acc = acc + cache[n]
        rows.append(acc.copy())
    return np.array(rows)


def _exp_checked(logm: np.ndarray) -> np.ndarray:
    if np.any(logm > np.log(np.finfo(float).max)):
        raise OverflowError(
            "a moment exceeds the float64 range; use corrlib.exact.log_output_moments "
            "(or collective_log_moments) for log-moments"
        )
    return np.exp(logm)


def collective_moments(net: Network, x, k_max: int, directions=None) -> np.ndarray:
    """E[(Sigma^{(l-1)})^k], k = 0..k_max, for every layer, exactly (T14), (T15), (T16).

    Same parameters as :func:`collective_log_moments`. Returns shape (L+1, k_max+1).

    Raises
    ------
    OverflowError
        When a moment exceeds float64; use :func:`collective_log_moments` then.
    """
    return _exp_checked(collective_log_moments(net, x, k_max, directions))


def log_output_moments(net: Network, x, k_max: int, directions=None) -> np.ndarray:
    """log E[z^k], k = 0..k_max, of one output neuron (or of its derivative channel).

    Implements (T14) with (T4): E z^{2k} = (2k-1)!! E[S^k], S = Sigma^{(L)}; odd moments vanish.

    Returns
    -------
    ndarray, shape (k_max+1,)
        log E[z^k]; finite for even k (unless the input is 0), ``-inf`` for odd k
        (E z^k = 0 there). Stays finite for L = 10^4 layers or n = 1.
    """
    k_max = _check_k_max(k_max)
    lm = collective_log_moments(net, x, k_max // 2, directions)[-1]
    out = np.full(k_max + 1, -np.inf)
    for k2 in range(0, k_max + 1, 2):
        h = k2 // 2
        # log (2h-1)!! = log (2h)! - h log 2 - log h!
        ldf = special.gammaln(2 * h + 1.0) - h * math.log(2.0) - special.gammaln(h + 1.0)
        out[k2] = ldf + lm[h]
    return out


def output_moments(net: Network, x, k_max: int, directions=None) -> np.ndarray:
    """E[z^k], k = 0..k_max, of one output neuron (or its derivative channel ∂_u z), exactly.

    Implements (T14)-(T16) with (T4). Scale-invariant activations only; ``C_b = 0`` for the
    value channel, any ``C_b`` for a derivative channel (module docstring).

    Parameters
    ----------
    net : Network
    x : array_like, shape (n_0,) or (1, n_0)
    k_max : int
    directions : array_like, shape (n_0,) or (1, n_0), optional

    Returns
    -------
    ndarray, shape (k_max+1,)

    Raises
    ------
    OverflowError
        When a moment exceeds float64: use :func:`log_output_moments`.
    ValueError
        For a non-scale-invariant activation or ``C_b != 0`` on the value channel
        (use :func:`single_input`).
    """
    lm = log_output_moments(net, x, k_max, directions)
    return _exp_checked(lm)


# --------------------------------------------------------------------------------------------
# any activation: the collective Markov chain (docs/theory.md section 11)
# --------------------------------------------------------------------------------------------


def _check_knob(value, name: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number in ({lo}, {hi}]; got {value!r}")
    v = float(value)
    if not (lo < v <= hi):
        raise ValueError(f"{name} must be in ({lo}, {hi}]; got {value!r}")
    return v


@dataclass(frozen=True, eq=False)
class SingleInputResult:
    """The law of Sigma^{(l)} of one input, layer by layer (from :func:`single_input`).

    Attributes
    ----------
    net : Network
    S0 : float
        Sigma^{(0)} (of the value channel, or of the derivative channel).
    mean, var, k3 : ndarray, shape (L+1,)
        E, Var and kappa_3 of Sigma^{(l-1)}; entry 0 is the point mass Sigma^{(0)}.
    mass : ndarray, shape (L+1,)
        Total probability kept on the lattice plus the atom (1 up to the trimming ``tol``).
    S : ndarray
        Lattice values of Sigma^{(L)} (``c + exp(u_j)``) carrying the final law ``p``.
    p : ndarray
        Probabilities of the lattice points for Sigma^{(L)} (continuous part).
    atom : float
        Probability of Sigma^{(L)} = c (ReLU-type: every neuron of a layer off; also collects
        the mass below the lowest lattice point, where S is within e^{-40} of c).
    c : float
        Hard lower edge C_b + C_W inf sigma^2 of Sigma^{(l)}, l >= 1.
    h : float
        Lattice step in u = log(Sigma - c).
    """

    net: Network
    S0: float
    mean: np.ndarray
    var: np.ndarray
    k3: np.ndarray
    mass: np.ndarray
    S: np.ndarray
    p: np.ndarray
    atom: float
    c: float
    h: float

    @property
    def depth(self) -> int:
        return self.mean.shape[0] - 1

    def cumulants(self, k: int) -> np.ndarray:
        """kappa_k(Sigma^{(l-1)}), l = 1..L+1, for k = 1, 2, 3; shape (L+1,).

        By (T4) these are kappa_2, kappa_4 / 3 and kappa_6 / 15 of one output neuron.
        """
        if k == 1:
            return self.mean.copy()
        if k == 2:
            return self.var.copy()
        if k == 3:
            return self.k3.copy()
        raise ValueError(f"k must be 1, 2 or 3; got {k!r}")

    def output_pdf(self, z) -> np.ndarray:
        """Density of one output neuron z^{(L+1)}: a Gaussian scale mixture over Sigma^{(L)} (T3).

        If ``c = 0`` and ``atom > 0`` (ReLU-type, C_b = 0) the output has an atom
        ``P(z = 0) = atom`` that the density excludes.

        Parameters
        ----------
        z : array_like
        Returns
        -------
        ndarray, the shape of z
        """
        z = np.asarray(z, dtype=float)
        S, w = self._mixture()
        out = np.empty(z.size)
        zf = z.ravel()
        for a in range(0, zf.size, 512):
            zz = zf[a : a + 512, None] ** 2
            out[a : a + 512] = np.exp(-0.5 * zz / S[None, :]) @ (w / np.sqrt(2 * np.pi * S))
        return out.reshape(z.shape)

    def output_cdf(self, z) -> np.ndarray:
        """P(z^{(L+1)} <= z), atoms included; shape of z."""
        z = np.asarray(z, dtype=float)
        S, w = self._mixture()
        zf = z.ravel()
        out = special.ndtr(zf[:, None] / np.sqrt(S)[None, :]) @ w
        if self.c == 0.0 and self.atom > 0:
            out = out + self.atom * (zf >= 0)
        return out.reshape(z.shape)

    def _mixture(self):
        S, w = self.S, self.p
        if self.c > 0.0 and self.atom > 0.0:
            S = np.concatenate([S, [self.c]])
            w = np.concatenate([w, [self.atom]])
        return S, w

    def to_frame(self):
        """Tidy DataFrame: quantities "mean" (a=b=0), "V" (a=b=c=d=0), "T" (indices <NA>).

        ``layer`` is l = 1..L+1 (Sigma^{(l-1)}); ``se`` is NaN. Merges with
        :meth:`corrlib.CumulantEstimate.to_frame` for one input.
        """
        import pandas as pd

        L1 = self.mean.shape[0]
        layer = np.arange(1, L1 + 1)
        zero = pd.array([0] * L1, dtype="Int64")
        na = pd.array([pd.NA] * L1, dtype="Int64")
        parts = [
            ("mean", zero, zero, na, na, self.mean),
            ("V", zero, zero, zero, zero, self.var),
            ("T", na, na, na, na, self.k3),
        ]
        df = pd.concat(
            [
                pd.DataFrame(
                    {
                        "layer": layer,
                        "quantity": q,
                        "a": a,
                        "b": b,
                        "c": c,
                        "d": d,
                        "value": v,
                        "se": np.nan,
                    }
                )
                for q, a, b, c, d, v in parts
            ],
            ignore_index=True,
        )
        df["layer"] = df["layer"].astype("int64")
        return df


def single_input(
    net: Network,
    x,
    directions=None,
    *,
    h_factor: float = 2.0,
    tol: float = 1e-14,
    quad_panels: int = 12,
    quad_order: int = 16,
    z_band: float = 10.0,
) -> SingleInputResult:
    """Non-perturbative law of Sigma^{(l)} for one input and any activation (T2), (T3), (T4).

    Sigma^{(l)} is a scalar Markov chain: given Sigma^{(l-1)} = s it is
    ``C_b + (C_W/n_l) sum_{i<=n_l} sigma(sqrt(s) xi_i)^2``. Its law is carried on a lattice in
    ``u = log(Sigma - c)``, ``c = C_b + C_W inf sigma^2``, with transition columns from one
    neuron's characteristic function (exact Binomial/chi-square columns for scale-invariant
    activations), cached and applied as one sparse product per layer (docs/theory.md section 11).
    Valid at any L/n; widths may differ per layer; any :class:`Activation` (user-defined ones
    through ``act.f``). Accuracy: refining (``h_factor`` 2 -> 1, 24 panels) changes E and Var
    by < 2e-9 and kappa_3 by < 3e-8 relative for tanh at n = 16 (L <= 32) and by < 3e-9 at
    n = 32 (L <= 64); by < 1e-10 for tanh at n >= 256 up to L/n = 2. relu, linear and leaky
    relu (any slope, n >= 1: exact columns) agree with (T14) to < 1e-9. The lattice step is
    capped at ``h_factor * 0.1 / 3`` whatever the width. A RuntimeWarning is issued when
    columns whose characteristic function has not decayed carry a law-weighted relative
    density error above 1e-8 (very small widths, n <= 8, or activations whose sigma^2 is
    nearly flat at its infimum, such as gelu at n < ~48), or when a column that carries
    probability is narrower than the lattice step; cumulants usually remain accurate then
    (check by refining), pointwise densities may not. Only sources holding more than 1e-10
    of the mass or of E S^3 enter these diagnostics.

    Parameters
    ----------
    net : Network
    x : array_like, shape (n_0,) or (1, n_0)
        The input.
    directions : array_like, shape (n_0,) or (1, n_0), optional
        Scale-invariant activations only: follow the derivative channel Sigma_dd instead,
        which for any C_b is the same chain with C_b = 0 (T16, module docstring).
    h_factor : float
        Lattice step ``h = h_factor * w / 3`` where ``w = min(sqrt(2/n), column width)``;
        smaller is more accurate and slower. In (0, 10].
    tol : float
        Trimming threshold: lattice tails with relative mass and relative ``p S^3`` below
        ``tol`` are dropped each layer. In (0, 1e-3].
    quad_panels, quad_order : int
        Gauss-Legendre panels on xi in [-10, 10] and nodes per panel for one neuron's
        characteristic function.
    z_band : float
        Half-width of a transition column in standard deviations (at least; heavier tails
        are covered automatically).

    Returns
    -------
    SingleInputResult
        ``cumulants(k)`` (k = 1, 2, 3, shape (L+1,)), ``mean``, ``var``, ``output_pdf(z)``,
        ``to_frame()``.

    Notes
    -----
    Known limitation: activations whose sigma^2 is nearly flat at its infimum (gelu, swish at
    criticality) are slow at small widths, n = 32..96 (measured for critical gelu at L = 16:
    n = 64 in 4-12 s, n = 32 in ~19 s with a warning; longer at larger L). One neuron's law
    of ``g`` is then almost an atom, its characteristic function does not decay, and each
    column needs the finer per-source Fourier path; the near-atom is not split off in closed
    form. Results stay accurate (refinement changes
    < 2e-7); only the run time suffers. Widths n <= 8 for tanh-like activations are also
    slow and less accurate (kappa_3 changes ~1e-3 under refinement at n = 8); the
    scale-invariant class is exact and fast at every width.
    """
    from . import _solver

    if not isinstance(net, Network):
        raise TypeError(f"net must be a corrlib.Network; got {type(net).__name__}")
    h_factor = _check_knob(h_factor, "h_factor", 0.0, 10.0)
    tol = _check_knob(tol, "tol", 0.0, 1e-3)
    z_band = _check_knob(z_band, "z_band", 5.0, 40.0)
    for name, v in (("quad_panels", quad_panels), ("quad_order", quad_order)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 2 <= v <= 400:
            raise ValueError(f"{name} must be an integer in [2, 400]; got {v!r}")
    C_b = net.C_b
    if directions is not None:
        if not net.activation.is_scale_invariant:
            raise ValueError(
                "single_input: directions (a derivative channel) are supported for scale-"
                f"invariant activations only (T16); got {net.activation.name!r}"
            )
        C_b = 0.0
    S0 = _initial_variance(net, x, directions)
    r = _solver.propagate(
        net.activation,
        net.C_W,
        C_b,
        net.hidden_widths,
        S0,
        h_factor=h_factor,
        tol=tol,
        panels=int(quad_panels),
        order=int(quad_order),
        z_band=z_band,
    )
    if r["point"] is not None:  # no hidden layer, or a chain stuck at its lower edge
        S, p, atom = np.array([r["point"]]), np.ones(1), 0.0
    else:
        S = r["c"] + np.exp(r["u0"] + (r["off"] + np.arange(r["p"].size)) * r["h"])
        p, atom = r["p"], float(r["atom"])
    return SingleInputResult(
        net=net,
        S0=S0,
        mean=r["mean"],
        var=r["var"],
        k3=r["k3"],
        mass=r["mass"],
        S=S,
        p=p,
        atom=atom,
        c=float(r["c"]),
        h=float(r["h"]),
    )


# --------------------------------------------------------------------------------------------
# output law of the scale-invariant class
# --------------------------------------------------------------------------------------------


class OutputDistribution:
    """Frozen law of one output neuron (scipy.stats style): pdf, cdf, moment, rvs.

    A Gaussian scale mixture ``z = sqrt(S) xi`` over the exact law of S = Sigma^{(L)} (T3),
    (T14). For one-sided activations (ReLU) with C_b = 0 the law has an atom at 0 of mass
    :attr:`atom` (every neuron of some layer off); :meth:`pdf` is the density of the continuous
    part, :meth:`cdf` includes the atom.
    """

    def __init__(self, net: Network, x, directions, law: SingleInputResult, S0: float):
        self._net = net
        self._x = x
        self._dirs = directions
        self._law = law
        self._S0 = S0

    @property
    def atom(self) -> float:
        """P(z = 0)."""
        return self._law.atom if self._law.c == 0.0 else 0.0

    def pdf(self, z) -> np.ndarray:
        """Density at z (continuous part); shape of z."""
        return self._law.output_pdf(z)

    def cdf(self, z) -> np.ndarray:
        """P(Z <= z); shape of z."""
        return self._law.output_cdf(z)

    def sf(self, z) -> np.ndarray:
        """P(Z > z) = cdf(-z) by symmetry; shape of z."""
        return self._law.output_cdf(-np.asarray(z, dtype=float))

    def moment(self, k: int) -> float:
        """E z^k exactly (T4), (T14); 0 for odd k."""
        return float(output_moments(self._net, self._x, int(k), self._dirs)[int(k)])

    def mean(self) -> float:
        return 0.0

    def var(self) -> float:
        return self.moment(2)

    def std(self) -> float:
        return math.sqrt(self.var())

    def rvs(self, size=1, random_state=None) -> np.ndarray:
        """Exact samples: S = Sigma^{(0)} prod_l X_l by (T14), then z = sqrt(S) xi."""
        rng = np.random.default_rng(random_state)
        shape = (size,) if np.isscalar(size) else tuple(size)
        m = int(np.prod(shape))
        act = self._net.activation
        ap2, am2 = float(act.a_plus) ** 2, float(act.a_minus) ** 2
        logS = np.full(m, math.log(self._S0) if self._S0 > 0 else -np.inf)
        for n in self._net.hidden_widths:
            B = rng.binomial(n, 0.5, size=m)
            X = ap2 * rng.gamma(B / 2.0, 2.0) + am2 * rng.gamma((n - B) / 2.0, 2.0)
            with np.errstate(divide="ignore"):
                logS += np.log(self._net.C_W / n * X)
        return (np.exp(0.5 * logS) * rng.standard_normal(m)).reshape(shape)


def output_distribution(
    net: Network, x, directions=None, *, h_factor: float = 1.0, tol: float = 1e-16
) -> OutputDistribution:
    """Exact law of one output neuron (or of ∂_u z) for the scale-invariant class (T14)-(T16).

    The density is the Gaussian scale mixture over the law of Sigma^{(L)}, computed on the
    lattice of :func:`single_input` with exact (Binomial mixture of chi-square) columns; the
    trapezoid sum in u = log Sigma is spectrally accurate (checked against the Meijer
    G-function of the linear network, Zavatone-Veth & Pehlevan 2021, to 1e-6 relative where the
    density exceeds 1e-8 of its peak).

    Parameters
    ----------
    net : Network
        Scale-invariant activation; C_b = 0 unless ``directions`` is given.
    x : array_like, shape (n_0,) or (1, n_0)
    directions : array_like, shape (n_0,) or (1, n_0), optional
    h_factor, tol : float
        Lattice controls as in :func:`single_input`.

    Returns
    -------
    OutputDistribution
    """
    _check_closed_form(net, directions, "output_distribution")
    S0 = _initial_variance(net, x, directions)
    law = single_input(net, x, directions, h_factor=h_factor, tol=tol)
    return OutputDistribution(net, x, directions, law, S0)
