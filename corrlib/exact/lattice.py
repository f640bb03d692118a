"""The law of Sigma^{(l)} of one input, any activation: the lattice solver (theory.md sec. 11)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from ..model.network import Network
from .inputs import initial_variance

__all__ = ["single_input", "SingleInputResult"]


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
    from . import _chain

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
    S0 = initial_variance(net, x, directions)
    r = _chain.propagate(
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
