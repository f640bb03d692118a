"""The law of Sigma^{(l)} of one input, any activation: the lattice solver (theory.md sec. 10)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from .._util import check_int, check_real, tidy_frame, warn_deprecated
from ..model.network import Network
from . import _chain
from .inputs import check_network, initial_log_variance, resolve_X

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["AccuracyError", "SingleInputResult", "single_input"]

_LOG_FMAX = math.log(np.finfo(float).max)


def _real_array(a: Any, name: str) -> np.ndarray:
    """``a`` as a float array; TypeError naming ``name`` for anything that is not real."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be real numbers; got {a!r} ({arr.dtype})")
    return arr.astype(float)


class AccuracyError(ArithmeticError):
    """The exact solver cannot reach the requested accuracy for this network and input.

    The message names the quantity, the layer, the measured error, the cause and what to use
    instead. Attributes ``layer``, ``quantity`` and ``error`` carry the same information.

    Examples
    --------
    tanh at width 2: one neuron's law is too singular for the Fourier columns.

    >>> import corrlib
    >>> from corrlib.exact import AccuracyError, single_input
    >>> try:
    ...     single_input(corrlib.Network.uniform("tanh", 2, 2), [[1.0]])
    ... except AccuracyError as err:
    ...     print(err.layer, err.quantity, err.error > 1e-6, "width n = 2 is small" in str(err))
    1 mass True True
    """

    def __init__(self, message: str, layer: int = -1, quantity: str = "", error: float = math.nan):
        super().__init__(message)
        self.layer = layer
        self.quantity = quantity
        self.error = error


def _overflow_check(values: np.ndarray, name: str) -> np.ndarray:
    bad = np.nonzero(~np.isfinite(values))[0]
    if bad.size:
        ell = int(bad[0])
        raise OverflowError(
            f"{name} exceeds the float64 range from layer index {ell} on (Sigma^({ell}), the "
            f"pre-activation z^({ell + 1})); read log_moments (log E[Sigma^k]) instead, or "
            "corrlib.exact.collective_log_moments for scale-invariant activations"
        )
    return values


@dataclass(frozen=True, eq=False)
class SingleInputResult:
    """The law of Sigma^{(l)} of one input, layer by layer (from :func:`single_input`).

    Entry ``l-1`` of every per-layer array belongs to the pre-activation z^{(l)}, i.e. to
    Sigma^{(l-1)}; entry 0 is the deterministic Sigma^{(0)} (T2).

    Attributes
    ----------
    net : Network
    log_moments : ndarray, shape (L+1, 4)
        log E[(Sigma^{(l-1)})^k], k = 0..3 (finite even where the moments exceed float64;
        ``-inf`` where a moment is 0).
    error : ndarray, shape (L+1, 3)
        Estimated relative error of E, Var and kappa_3 of Sigma^{(l-1)} as returned
        (per-layer conservation checks; the float64 rounding of the exact recursion (T14) for
        scale-invariant activations). Never above ``rtol``.
    law_error : float
        Estimated error of the lattice law itself (mass and moments, see :func:`single_input`).
    mass : ndarray, shape (L+1,)
        Total probability kept on the lattice plus the atom (1 up to the trimming ``tol``).
    logS : ndarray
        log of the lattice values of Sigma^{(L)} carrying the final law ``p``.
    p : ndarray
        Probabilities of the lattice points for Sigma^{(L)} (continuous part).
    atom : float
        Probability of Sigma^{(L)} = c (ReLU-type: every neuron of some layer off).
    c : float
        Hard lower edge C_b + C_W inf sigma^2 of Sigma^{(l)}, l >= 1.
    h : float
        Lattice step in u = log(Sigma - c), or in u = logit((Sigma - c)/(c_max - c)) for
        bounded activations.
    log_S0 : float
        log Sigma^{(0)}.
    c_max : float
        Upper edge of the logit lattice (just above C_b + C_W sup sigma^2; inf when the
        lattice is in log(Sigma - c)).

    Examples
    --------
    The result protocol shared with :class:`corrlib.FiniteWidthResult` and
    :class:`corrlib.CumulantEstimate`; for a linear network (T14), E Sigma^{(l)} = Sigma^{(0)}
    and Var Sigma^{(l)} = Sigma^{(0)2} ((1 + 2/n)^l - 1).

    >>> import numpy as np, corrlib
    >>> from corrlib.exact import single_input
    >>> r = single_input(corrlib.Network.uniform("linear", 10, 3), [[1.0]])
    >>> print(r.mean[:, 0, 0])
    [1. 1. 1. 1.]
    >>> bool(np.allclose(r.V[:, 0, 0, 0, 0], 1.2 ** np.arange(4) - 1, rtol=1e-12))
    True
    >>> r.to_frame().columns.tolist()
    ['layer', 'quantity', 'a', 'b', 'c', 'd', 'e', 'f', 'value', 'se']
    """

    net: Network
    log_moments: np.ndarray
    error: np.ndarray
    law_error: float
    mass: np.ndarray
    logS: np.ndarray
    p: np.ndarray
    atom: float
    c: float
    h: float
    log_S0: float
    _cumulants: np.ndarray  # (L+1, 3): E, Var, kappa_3 (inf where beyond float64)
    c_max: float = math.inf

    # ---- the result protocol ---------------------------------------------------------------
    @property
    def depth(self) -> int:
        """L, the number of hidden layers."""
        return self._cumulants.shape[0] - 1

    @property
    def S0(self) -> float:
        """Sigma^{(0)} (OverflowError if it exceeds float64; see ``log_S0``)."""
        if self.log_S0 > _LOG_FMAX:
            raise OverflowError("Sigma^(0) exceeds the float64 range; read log_S0")
        return math.exp(self.log_S0)

    @property
    def mean(self) -> np.ndarray:
        """E Sigma^{(l-1)}, shape (L+1, 1, 1) (one channel)."""
        return _overflow_check(self._cumulants[:, 0], "mean (E Sigma)").reshape(-1, 1, 1).copy()

    @property
    def V(self) -> np.ndarray:
        """Var Sigma^{(l-1)}, shape (L+1, 1, 1, 1, 1)."""
        return (
            _overflow_check(self._cumulants[:, 1], "V (Var Sigma)").reshape(-1, 1, 1, 1, 1).copy()
        )

    @property
    def T(self) -> np.ndarray:
        """kappa_3(Sigma^{(l-1)}), shape (L+1,)."""
        return _overflow_check(self._cumulants[:, 2], "T (kappa_3 of Sigma)").copy()

    @property
    def var(self) -> np.ndarray:
        """Deprecated: ``V[:, 0, 0, 0, 0]`` (or ``cumulants(2)``), shape (L+1,)."""
        warn_deprecated("SingleInputResult.var", "SingleInputResult.V or cumulants(2)")
        return self.cumulants(2)

    @property
    def k3(self) -> np.ndarray:
        """Deprecated: ``T`` (or ``cumulants(3)``), shape (L+1,)."""
        warn_deprecated("SingleInputResult.k3", "SingleInputResult.T or cumulants(3)")
        return self.cumulants(3)

    def cumulants(self, k: int) -> np.ndarray:
        """kappa_k(Sigma^{(l-1)}), l = 1..L+1, for k = 1, 2, 3; shape (L+1,).

        By (T4) these are kappa_2, kappa_4 / 3 and kappa_6 / 15 of one output neuron.
        """
        k = check_int(k, "k", minimum=1, maximum=3)
        name = ["E Sigma", "Var Sigma", "kappa_3 of Sigma"][k - 1]
        return _overflow_check(self._cumulants[:, k - 1], name).copy()

    def normalized_kappa4(self) -> np.ndarray:
        """kappa_4/kappa_2^2 of one output neuron, 3 Var Sigma/(E Sigma)^2 (T4); shape (L+1, 1).

        NaN where E Sigma = 0 (a zero input); OverflowError where Var Sigma exceeds float64.
        """
        m, V = self.cumulants(1), self.cumulants(2)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(m > 0, 3.0 * V / m**2, np.nan)[:, None]

    def normalized_kappa6(self) -> np.ndarray:
        """kappa_6/kappa_2^3 of one output neuron, 15 kappa_3(Sigma)/(E Sigma)^3 (T4), (L+1, 1)."""
        m, T = self.cumulants(1), self.cumulants(3)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(m > 0, 15.0 * T / m**3, np.nan)[:, None]

    def to_frame(self) -> pd.DataFrame:
        """Tidy DataFrame (``corrlib._util.tidy_frame``): quantities "mean", "V", "T".

        Columns ``layer, quantity, a, b, c, d, e, f, value, se``; ``layer`` is l = 1..L+1
        (Sigma^{(l-1)}); ``se`` is NaN (an exact law). Merges with
        :meth:`corrlib.CumulantEstimate.to_frame` for one input.
        """
        return tidy_frame({"mean": (self.mean, None), "V": (self.V, None), "T": (self.T, None)})

    # ---- the law of Sigma^{(L)} and of the output ------------------------------------------
    @property
    def S(self) -> np.ndarray:
        """Lattice values of Sigma^{(L)} (``c + exp(u_j)``) carrying the final law ``p``."""
        if self.logS.size and self.logS.max() > _LOG_FMAX:
            raise OverflowError("lattice values of Sigma^(L) exceed float64; read logS")
        return np.exp(self.logS)

    def _u(self) -> np.ndarray:
        """Lattice coordinates of the final law: log(Sigma - c), or its logit."""
        y = self.logS
        if self.c > 0.0:
            y = y + np.log(-np.expm1(math.log(self.c) - self.logS))
        if math.isfinite(self.c_max):
            x = y - math.log(self.c_max - self.c)
            y = x - np.log(-np.expm1(x))
        return y

    def cdf(self, s: ArrayLike) -> np.ndarray:
        """P(Sigma^{(L)} <= s), the atom at ``c`` included; shape of s.

        The band-limited (sinc) interpolant of the lattice density, integrated in closed form
        (sine integral): spectrally accurate where the lattice resolves the law.
        """
        sa = _real_array(s, "s")
        out = np.where(np.isnan(sa), np.nan, 0.0)
        above = sa > self.c
        with np.errstate(divide="ignore"):
            u = np.log(sa[above] - self.c)
        out[above] = self._cdf_u(self._y_to_u(u))
        out[sa >= self.c] += self.atom
        return out

    def _u_to_y(self, u: float) -> float:
        if not math.isfinite(self.c_max):
            return u
        return math.log(self.c_max - self.c) - float(np.logaddexp(0.0, -u))

    def _y_to_u(self, y: np.ndarray) -> np.ndarray:
        if not math.isfinite(self.c_max):
            return y
        x = np.minimum(y - math.log(self.c_max - self.c), -1e-300)
        return x - np.log(-np.expm1(x))

    def _cdf_u(self, u: np.ndarray) -> np.ndarray:
        uj = self._u()
        x = np.pi * (np.asarray(u, dtype=float)[..., None] - uj) / self.h
        si, _ = special.sici(x)
        return np.clip((0.5 + si / np.pi) @ self.p, 0.0, None)

    def quantile(self, q: ArrayLike) -> np.ndarray:
        """Quantiles of Sigma^{(L)} (inverse of :meth:`cdf`, the atom at ``c`` included).

        Parameters
        ----------
        q : array_like
            Probabilities in [0, 1].

        Returns
        -------
        ndarray, the shape of q
            ``c`` where q falls on the atom; ``inf``/``c`` are never returned for 0 < q < 1
            inside the lattice's mass (quantiles beyond the trimmed tails raise ValueError).

        Examples
        --------
        Linear network, one hidden layer: Sigma^{(1)} = Sigma^{(0)} chi2_n / n (T14).

        >>> import numpy as np, corrlib
        >>> from scipy import stats
        >>> from corrlib.exact import single_input
        >>> r = single_input(corrlib.Network.uniform("linear", 8, 1), [[1.0]])
        >>> q = r.quantile([0.001, 0.5, 0.999])
        >>> bool(np.allclose(q, stats.chi2.ppf([0.001, 0.5, 0.999], 8) / 8, rtol=1e-9))
        True
        """
        from scipy.optimize import brentq

        qa = np.atleast_1d(_real_array(q, "q"))
        shape = np.shape(q)
        if not np.all((qa >= 0.0) & (qa <= 1.0)):
            raise ValueError(f"q must be probabilities in [0, 1]; got {q!r}")
        mass = float(self.p.sum()) + self.atom
        target = qa * mass - self.atom
        if self.p.size == 0:
            return np.full(shape, self.c if self.atom > 0 else float(np.exp(self.logS[0])))
        lo_ok = target <= 0.0
        hi = float(self.p.sum())
        if np.any((target > hi * (1 - 1e-12)) & (qa < 1.0)) or np.any(qa == 1.0):
            raise ValueError(
                f"q={q!r} reaches beyond the lattice's trimmed upper tail (probability "
                f"{max(1.0 - mass, 0.0) + 1e-12:.1e}); quantiles there are not resolved"
            )
        uj = self._u()
        cum = np.cumsum(self.p)
        out = np.full(qa.shape, self.c)
        for idx in zip(*np.nonzero(~lo_ok), strict=True):
            t = float(target[idx])
            j = int(np.searchsorted(cum, t))
            a, b = uj[max(j - 2, 0)] - self.h, uj[min(j + 2, uj.size - 1)] + self.h
            u = brentq(lambda v, t=t: float(self._cdf_u(np.array([v]))[0]) - t, a, b, xtol=1e-14)
            if u > _LOG_FMAX:
                raise OverflowError(
                    f"the {float(qa[idx]):g}-quantile of Sigma^(L) exceeds the float64 range "
                    f"(log = {u:.1f}); the law scales with Sigma^(0): rescale X"
                )
            out[idx] = self.c + math.exp(self._u_to_y(u))
        return out.reshape(shape)

    def output_pdf(self, z: ArrayLike) -> np.ndarray:
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
        z = _real_array(z, "z")
        logS, w = self._mixture()
        out = np.empty(z.size)
        zf = z.ravel()
        lw = np.log(np.maximum(w, 1e-320)) - 0.5 * (logS + math.log(2 * math.pi))
        inv_sd = np.exp(-0.5 * logS)
        for a in range(0, zf.size, 512):
            with np.errstate(under="ignore", over="ignore"):
                x = zf[a : a + 512, None] * inv_sd[None, :]
                out[a : a + 512] = np.exp(lw[None, :] - 0.5 * x * x).sum(1)
        return out.reshape(z.shape)

    def output_cdf(self, z: ArrayLike) -> np.ndarray:
        """P(z^{(L+1)} <= z), atoms included; shape of z."""
        z = _real_array(z, "z")
        logS, w = self._mixture()
        zf = z.ravel()
        with np.errstate(over="ignore"):
            out = special.ndtr(zf[:, None] * np.exp(-0.5 * logS)[None, :]) @ w
        if self.c == 0.0 and self.atom > 0:
            out = out + self.atom * (zf >= 0)
        # normalized by the lattice's mass (1 up to the trimming tol); rounding clipped
        out = np.clip(out / (float(w.sum()) + (self.atom if self.c == 0.0 else 0.0)), 0.0, 1.0)
        return out.reshape(z.shape)

    def _mixture(self):
        logS, w = self.logS, self.p
        if self.c > 0.0 and self.atom > 0.0:
            logS = np.concatenate([logS, [math.log(self.c)]])
            w = np.concatenate([w, [self.atom]])
        return logS, w


_PARAMS = ("X", "directions", "h_factor", "tol", "rtol", "quad_panels", "quad_order", "z_band")


# Deliberate parallel: the signature has the shape of distribution.output_distribution's (net,
# X, directions, then keyword-only accuracy controls); each public function keeps its own typed
# signature and defaults.
def single_input(
    net: Network,
    X: Any = None,
    directions: Any = None,
    *,
    h_factor: float = 2.0,
    tol: float = 1e-14,
    rtol: float = 1e-6,
    quad_panels: int = 12,
    quad_order: int = 16,
    z_band: float = 10.0,
    **kwargs: Any,
) -> SingleInputResult:
    """Non-perturbative law of Sigma^{(l)} for one input and any activation (T2), (T3), (T4).

    Sigma^{(l)} is a scalar Markov chain: given Sigma^{(l-1)} = s it is
    ``C_b + (C_W/n_l) sum_{i<=n_l} sigma(sqrt(s) xi_i)^2``. Its law is carried on a lattice in
    ``u = log(Sigma - c)``, ``c = C_b + C_W inf sigma^2``, with transition columns from one
    neuron's characteristic function (exact Binomial/chi-square columns for scale-invariant
    activations), applied as one sparse product (or convolution) per layer (docs/theory.md
    section 10). Widths may differ per layer; any :class:`Activation` (user-defined ones
    through ``act.f``).

    Domain and accuracy. Every returned E, Var and kappa_3 is within ``rtol`` (relative) of
    the exact law's, as estimated (``result.error``):

    * scale-invariant activations (ReLU, linear, leaky ReLU; value channel with any C_b,
      derivative channels): the moments come from the exact recursion (T14), at any depth,
      width and input norm; the lattice carries the law (density, quantiles) and is checked
      against the exact moments (``law_error``: mass, and the moments while the lattice
      carries them; at large L/n the moments are carried by exponentially rare paths, the
      lattice keeps the law's bulk).
    * other activations: every layer is checked against the exact one-step law of total
      cumulance (mass, mean, variance, kappa_3); the accumulated defects are ``error``. The
      lattice carries the moments as long as they are carried by paths of probability
      >= 1e-150 relative to the bulk and Sigma <= e^100 E Sigma; beyond (heavy tails of
      unbounded activations at large L/n) the call raises.

    Where the estimated error exceeds ``rtol`` the call raises :class:`AccuracyError` naming
    the quantity, the layer, the error and its cause (e.g. a tiny width, a saturating
    activation at a large input norm, a lattice too coarse) and what to use instead.
    Measured estimates (max over layers and cumulants; benchmarks/results/exact*.csv): tanh at
    criticality 1e-10..1e-9 for n = 256..4096 up to L = 8192, 1e-10 at n = 32 (L = 64),
    4e-8 at n = 16 (L = 64, 2e-7 at L = 300); the estimate exceeded the change under
    refinement in every case tested. relu, linear and leaky relu (any slope, n >= 1) are exact.

    Parameters
    ----------
    net : Network
    X : array_like, shape (1, n_0) or (n_0,)
        The input (any finite norm for scale-invariant activations).
    directions : array_like, shape (1, n_0) or (n_0,), optional
        Scale-invariant activations only: follow the derivative channel Sigma_dd instead,
        which for any C_b is the same chain with C_b = 0 (T16).
    h_factor : float
        Lattice step ``h = h_factor * w / 3`` where ``w = min(sqrt(2/n), column width, 0.1)``;
        smaller is more accurate and slower (the cost grows like 1/h_factor^2). In [0.25, 10].
    tol : float
        Trimming threshold: lattice tails with relative mass (and, where the lattice carries
        the moments, relative ``p Sigma^k``, k <= 3) below ``tol`` are dropped each layer.
        In (0, 1e-3].
    rtol : float
        Accuracy required of E, Var and kappa_3 at every layer (relative). In (0, 1).
    quad_panels, quad_order : int
        Gauss-Legendre panels (at least; more for large Sigma) and nodes per panel for one
        neuron's characteristic function, in [2, 400].
    z_band : float
        Half-width of a transition column in standard deviations (at least; heavier tails
        are covered automatically). In [5, 40].

    Returns
    -------
    SingleInputResult
        ``mean`` (L+1, 1, 1), ``V`` (L+1, 1, 1, 1, 1), ``T`` (L+1,),
        ``normalized_kappa4()`` (L+1, 1), ``cumulants(k)`` (L+1,), ``log_moments``
        (L+1, 4), ``error`` (L+1, 3), ``quantile(q)``, ``output_pdf(z)``, ``to_frame()``.

    Raises
    ------
    AccuracyError
        Where the estimated error exceeds ``rtol`` (the message says why and what to use).
    OverflowError
        When Sigma^{(0)} of a non-scale-invariant network exceeds float64.

    Notes
    -----
    Known limitations (docs/theory.md section 10): activations whose sigma^2 is nearly flat at
    its infimum (gelu, swish at criticality) need the finer per-source Fourier path at small
    widths (critical gelu, L = 16: n = 64 in ~4 s; n = 32 is outside the domain at the
    default rtol). tanh-like activations at n <= 8, saturated inputs of bounded activations
    (tanh from Sigma^{(0)} ~ 9 at n = 16) and n ~ 1e6 raise AccuracyError. The cost grows
    with L for activations whose law keeps moving (tanh at criticality: new columns every
    layer; about 0.2 s per layer at n = 16).

    Examples
    --------
    ReLU at C_W = 2 (T15): E Sigma = Sigma^{(0)} and 3 Var Sigma/(E Sigma)^2 =
    3 ((1 + 5/n)^L - 1).

    >>> import numpy as np, corrlib
    >>> from corrlib.exact import single_input
    >>> r = single_input(corrlib.Network.uniform("relu", 16, 4, C_W=2.0), [[1.0]])
    >>> r.mean.shape, r.V.shape, r.T.shape
    ((5, 1, 1), (5, 1, 1, 1, 1), (5,))
    >>> bool(np.allclose(r.normalized_kappa4()[:, 0], 3 * ((1 + 5 / 16) ** np.arange(5) - 1)))
    True

    tanh at criticality: the solver reports its own error estimate.

    >>> r = single_input(corrlib.Network.uniform("tanh", 64, 4), [[1.0]])
    >>> bool(r.error.max() < 1e-8)
    True
    """
    X = resolve_X(X, kwargs, "single_input", _PARAMS)
    check_network(net)
    h_factor = check_real(h_factor, "h_factor", minimum=0.25, maximum=10.0)
    tol = check_real(tol, "tol", minimum=0.0, maximum=1e-3, strict_min=True)
    rtol = check_real(rtol, "rtol", minimum=0.0, maximum=1.0, strict_min=True, strict_max=True)
    z_band = check_real(z_band, "z_band", minimum=5.0, maximum=40.0)
    quad_panels = check_int(quad_panels, "quad_panels", minimum=2, maximum=400)
    quad_order = check_int(quad_order, "quad_order", minimum=2, maximum=400)
    C_b = net.C_b
    if directions is not None:
        if not net.activation.is_scale_invariant:
            raise ValueError(
                "single_input: directions (a derivative channel) are supported for scale-"
                f"invariant activations only (T16); got {net.activation.name!r}"
            )
        C_b = 0.0
    log_S0 = initial_log_variance(net, X, directions)
    if log_S0 > _LOG_FMAX and not (net.activation.is_scale_invariant and C_b == 0.0):
        raise OverflowError(
            f"single_input: Sigma^(0) = C_b + C_W |X|^2/n_0 exceeds the float64 range (log "
            f"Sigma^(0) = {log_S0:.1f}) for the {net.activation.name!r} network; rescale X"
        )
    try:
        # Deliberate parallel: this keyword-argument call has the shape of theory/expansion.py's
        # HierarchyResult(...) call in hierarchy() (one name per argument, nothing shared).
        r = _chain.propagate(
            net.activation,
            net.C_W,
            C_b,
            net.hidden_widths,
            log_S0,
            h_factor=h_factor,
            tol=tol,
            rtol=rtol,
            panels=quad_panels,
            order=quad_order,
            z_band=z_band,
        )
    except _chain.SolverLimit as exc:
        raise AccuracyError(f"single_input: {exc}", exc.layer, exc.quantity, exc.error) from None
    return SingleInputResult(
        net=net,
        log_moments=r.log_moments,
        error=r.error,
        law_error=float(r.law_error),
        mass=r.mass,
        logS=r.logS,
        p=r.p,
        atom=float(r.atom),
        c=float(r.c),
        h=float(r.h),
        log_S0=float(log_S0),
        _cumulants=r.cumulants,
        c_max=float(r.c_max),
    )
