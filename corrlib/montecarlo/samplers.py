"""Monte Carlo sampling of the collective kernel and of network outputs (T1)-(T3).

Two samplers produce the same law:

``method="collapsed"`` (default)
    Uses the exact conditional structure (T3): given layer l, the rows
    ``zeta^{(l+1)}_i`` (one per neuron i, each a vector over the c channels) are i.i.d.
    ``N(0, Sigma^{(l)})``. A layer is therefore drawn from the previous layer's c x c
    collective kernel alone: ``n_{l+1}`` Gaussian rows through an eigenvalue square root of
    ``Sigma^{(l)}``, then ``Sigma^{(l+1)} = C_b [values] + (C_W/n_{l+1}) phi^T phi`` (T2).
    Cost O(n c^2) per layer and sample; no n x n weight matrix is ever formed.

    Why this is exact in law (T3): given everything up to layer l, the channel vector of neuron
    i of layer l+1 is ``zeta_i = b_i [values] + sum_j W_ij phi(zeta_j)`` with fresh independent
    Gaussians (W_i., b_i); it is a linear image of a Gaussian vector, hence Gaussian, with
    covariance ``C_b [a,b values] + (C_W/n_l) sum_j phi_a(zeta_j) phi_b(zeta_j) = Sigma^{(l)}``,
    and different i use disjoint rows, so they are independent. The sequence
    Sigma^{(0)}, Sigma^{(1)}, ... is therefore a Markov chain whose transition only needs
    Sigma^{(l)}, and drawing the rows as ``g R^T`` with ``R R^T = Sigma^{(l)}`` (any square root;
    here ``R = Q sqrt(max(w, 0))`` from ``eigh``, valid for singular Sigma, section 3) samples
    the transition exactly. No approximation in n, L or c is made.
``method="naive"``
    The reference: draws every weight matrix and bias vector of (T1) and runs the network
    forward, with forward-mode derivatives ``d_u z^{(l+1)} = W (sigma'(z) * d_u z)`` for the
    direction channels, then evaluates (T2) on the sampled pre-activations.
    Cost O(n^2 c) per layer and sample.

Numerical safety
----------------
In an exploding phase (e.g. ReLU with C_W > 2) Sigma grows geometrically with depth and
overflows float64. Every layer is checked: a non-finite value or a value above 1e300 raises
:class:`OverflowError` naming C_W and the layer, instead of returning inf/NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .._util import sqrt_psd_stack
from ..model.channels import ChannelLayout, input_kernel
from ..model.network import Network, validate_inputs
from .blocks import (
    block_generator,
    block_sizes,
    check_n_samples,
    n_blocks_for,
    resolve_chunk,
    resolve_jobs,
    root_seed_sequence,
    run_tasks,
)

__all__ = [
    "METHODS",
    "SamplingPlan",
    "block_size",
    "check_method",
    "make_plan",
    "run_block",
    "sample_collective",
    "sample_outputs",
]

METHODS = ("collapsed", "naive")

#: values of Sigma above this (or non-finite) raise OverflowError
OVERFLOW_LIMIT = 1e300

# target number of float64 entries in the per-layer working buffer of one block
_COLLAPSED_BUFFER = 2**17
_NAIVE_BUFFER = 2**20
_MAX_BLOCK = 4096


def _pow2_floor(x: float) -> int:
    x = max(1, int(x))
    return 1 << (x.bit_length() - 1)


def block_size(net: Network, c: int, method: str = "collapsed") -> int:
    """Samples per block: a power of two set by the network, c and the method only.

    Collapsed: about 2**17 float64 entries (1 MiB, cache resident) in the (B, n, c) working
    buffer, at most 4096.
    Naive: about 2**20 entries in the (B, n_l, n_(l-1)) weight stack, at most 4096.
    """
    method = check_method(method)
    if method == "collapsed":
        n_max = max((*net.hidden_widths, net.n_out))
        return min(_MAX_BLOCK, _pow2_floor(_COLLAPSED_BUFFER / (n_max * c)))
    ws = net.widths
    w_max = max(ws[i] * ws[i + 1] + ws[i + 1] * c for i in range(len(ws) - 1))
    return min(_MAX_BLOCK, _pow2_floor(_NAIVE_BUFFER / w_max))


# ---------------------------------------------------------------------------------------------
# validation


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    return method


def _overflow(net: Network, layer: int) -> OverflowError:
    return OverflowError(
        f"Monte Carlo overflow: the collective kernel Sigma^({layer - 1}) (pre-activation layer "
        f"{layer} of depth L={net.depth}) exceeds {OVERFLOW_LIMIT:g} or is not finite for "
        f"C_W={net.C_W}, C_b={net.C_b}, activation {net.activation.name!r}. This is an "
        f"exploding phase; use a smaller depth or C_W, or the exact laws in corrlib.exact."
    )


def _check_finite(values: np.ndarray, net: Network, layer: int) -> None:
    if values.size and not float(np.max(np.abs(values))) <= OVERFLOW_LIMIT:
        raise _overflow(net, layer)


# ---------------------------------------------------------------------------------------------
# the plan: everything a block needs, computed once


@dataclass(frozen=True)
class SamplingPlan:
    """Deterministic data of a Monte Carlo run (picklable)."""

    net: Network
    K0: np.ndarray  # (c, c) Sigma^{(0)}
    features0: np.ndarray  # (n_0, c): the vectors v_a of (T2)
    layout: ChannelLayout
    method: str

    @property
    def c(self) -> int:
        return self.layout.c

    @property
    def block(self) -> int:
        return block_size(self.net, self.c, self.method)


def make_plan(net: Network, X, directions=None, method: str = "collapsed") -> SamplingPlan:
    method = check_method(method)
    X, U = validate_inputs(net, X, directions)
    K0, layout = input_kernel(net, X, U)
    cols = [X] + (
        []
        if U is None
        else [np.repeat(U[k : k + 1], X.shape[0], axis=0) for k in range(U.shape[0])]
    )
    F0 = np.ascontiguousarray(np.vstack(cols).T)
    return SamplingPlan(net, K0, F0, layout, method)


def _features(z: np.ndarray, act, m: int, d: int) -> np.ndarray:
    """phi of (T2) for channel vectors z (..., c): sigma on values, sigma' * dz on derivatives."""
    if d == 0:
        return np.asarray(act.f(z), dtype=float)
    phi = np.empty_like(z)
    zv = z[..., :m]
    phi[..., :m] = act.f(zv)
    dfz = np.asarray(act.df(zv), dtype=float)
    shp = z.shape[:-1] + (d, m)
    phi[..., m:] = (z[..., m:].reshape(shp) * dfz[..., None, :]).reshape(z.shape[:-1] + (d * m,))
    return phi


# ---------------------------------------------------------------------------------------------
# the block samplers


def _collapsed_scalar(plan, rng, size, visit, want_outputs):
    """c = 1 hot loop: S (size,) per layer; in-place ops, standard_normal(out=...)."""
    net = plan.net
    act = net.activation
    C_W, C_b = net.C_W, net.C_b
    S = np.full(size, float(plan.K0[0, 0]))
    if visit is not None:
        visit(0, S.reshape(size, 1, 1))
    bufs: dict[int, np.ndarray] = {}
    homog = act.is_scale_invariant
    if homog:
        ap2, am2 = float(act.a_plus) ** 2, float(act.a_minus) ** 2
    is_tanh = act.name == "tanh" and not act.params
    for ell, n in enumerate(net.hidden_widths, start=1):
        buf = bufs.get(n)
        if buf is None:
            buf = bufs[n] = np.empty((size, n))
        rng.standard_normal(out=buf)
        row = buf[:, None, :]
        col = buf[:, :, None]
        if homog:
            # sigma(sqrt(S) g) = sqrt(S) sigma(g): scale once after the sum
            if am2 == ap2:
                q = np.matmul(row, col).reshape(size) * ap2
            elif am2 == 0.0:
                np.maximum(buf, 0.0, out=buf)
                q = np.matmul(row, col).reshape(size) * ap2
            else:
                tot = np.matmul(row, col).reshape(size)
                np.maximum(buf, 0.0, out=buf)
                pos = np.matmul(row, col).reshape(size)
                q = ap2 * pos + am2 * (tot - pos)
            q *= S
        else:
            np.multiply(buf, np.sqrt(S)[:, None], out=buf)
            if is_tanh:
                np.tanh(buf, out=buf)
            else:
                buf[...] = act.f(buf)
            q = np.matmul(row, col).reshape(size)
        q *= C_W / n
        if C_b:
            q += C_b
        S = q
        if not float(S.max()) <= OVERFLOW_LIMIT:
            raise _overflow(net, ell + 1)
        if visit is not None:
            visit(ell, S.reshape(size, 1, 1))
    if want_outputs:
        z = rng.standard_normal((size, net.n_out))
        z *= np.sqrt(S)[:, None]
        return z[:, :, None]
    return None


def _collapsed_block(plan, rng, size, visit, want_outputs):
    if plan.c == 1:
        return _collapsed_scalar(plan, rng, size, visit, want_outputs)
    net, lay = plan.net, plan.layout
    act = net.activation
    c, m, d = lay.c, lay.m, lay.d
    mask = lay.bias_mask()
    S = np.broadcast_to(plan.K0, (size, c, c))
    R = np.broadcast_to(sqrt_psd_stack(plan.K0), (size, c, c))
    if visit is not None:
        visit(0, S)
    for ell, n in enumerate(net.hidden_widths, start=1):
        g = rng.standard_normal((size, n, c))
        zeta = np.matmul(g, R.transpose(0, 2, 1))
        S = _collective(_features(zeta, act, m, d), net, n, mask, ell)
        if visit is not None:
            visit(ell, S)
        R = sqrt_psd_stack(S)
    if want_outputs:
        g = rng.standard_normal((size, net.n_out, c))
        return np.matmul(g, R.transpose(0, 2, 1))
    return None


def _collective(phi: np.ndarray, net: Network, n: int, mask: np.ndarray, ell: int) -> np.ndarray:
    """Sigma^{(ell)} (T2) from the features phi (size, n, c) of one layer's n neurons."""
    S = np.matmul(phi.transpose(0, 2, 1), phi)
    S *= net.C_W / n
    S = 0.5 * (S + S.transpose(0, 2, 1))
    if net.C_b:
        S += net.C_b * mask
    c = S.shape[-1]
    _check_finite(S[:, np.arange(c), np.arange(c)], net, ell + 1)
    return S


def _naive_block(plan, rng, size, visit, want_outputs):
    net, lay = plan.net, plan.layout
    act = net.activation
    c, m, d = lay.c, lay.m, lay.d
    vmask = lay.is_value.astype(float)
    mask = lay.bias_mask()
    sb = math.sqrt(net.C_b)
    if visit is not None:
        visit(0, np.broadcast_to(plan.K0, (size, c, c)))
    ws = net.widths
    phi = np.broadcast_to(plan.features0, (size, ws[0], c))
    z = None
    for ell in range(1, len(ws)):
        n_prev, n = ws[ell - 1], ws[ell]
        W = rng.standard_normal((size, n, n_prev))
        z = np.matmul(W, phi)
        z *= math.sqrt(net.C_W / n_prev)
        if net.C_b:
            z += (sb * rng.standard_normal((size, n, 1))) * vmask
        if ell == len(ws) - 1:
            break
        phi = _features(z, act, m, d)
        S = _collective(phi, net, n, mask, ell)
        if visit is not None:
            visit(ell, S)
    if want_outputs:
        _check_finite(z, net, len(ws) - 1)
        return z
    return None


def run_block(plan: SamplingPlan, rng, size: int, visit=None, want_outputs: bool = False):
    """Sample one block of ``size`` networks.

    ``visit(k, Sigma)`` is called for k = 0..L with Sigma^{(k)} of shape (size, c, c) (layer
    index l = k + 1). Returns the outputs (size, n_{L+1}, c) when ``want_outputs``.
    """
    if plan.method == "collapsed":
        return _collapsed_block(plan, rng, size, visit, want_outputs)
    return _naive_block(plan, rng, size, visit, want_outputs)


# ---------------------------------------------------------------------------------------------
# public samplers


def _check_layers(layers, L: int) -> np.ndarray:
    if layers is None:
        return np.arange(1, L + 2)
    arr = np.atleast_1d(np.asarray(layers))
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"layers must be a non-empty sequence of integers in 1..{L + 1}; got {layers!r}"
        )
    if arr.min() < 1 or arr.max() > L + 1:
        raise ValueError(f"layers must lie in 1..L+1 = 1..{L + 1}; got {layers!r}")
    return arr.astype(int)


def sample_collective(
    net: Network,
    X,
    n_samples: int,
    directions=None,
    method: str = "collapsed",
    rng=None,
    layers: Sequence[int] | None = None,
    *,
    n_jobs: int | None = None,
    chunk_size: int | None = None,
) -> np.ndarray:
    """Sample the collective kernel Sigma^{(l-1)} (T2) of independent random networks.

    Implements (T2) on samples drawn by (T3) (``method="collapsed"``: exact in law, because
    conditional on layer l the neuron rows of layer l+1 are i.i.d. N(0, Sigma^{(l)}), so each
    layer is drawn from the previous Sigma alone) or by the full network (T1)
    (``method="naive"``, the reference).

    Parameters
    ----------
    net : Network
    X : array_like, shape (m, n_0)
        Inputs.
    n_samples : int
        Number of independent networks, >= 1.
    directions : array_like, shape (d, n_0), optional
        Input directions; adds derivative channels (c = m(1+d)).
    method : {"collapsed", "naive"}
    rng : None, int, numpy.random.Generator or numpy.random.SeedSequence
        See :func:`root_seed_sequence`.
    layers : sequence of int, optional
        Pre-activation indices l in 1..L+1; entry for l is Sigma^{(l-1)} (index convention of
        ``infinite_width_kernel``). Default: all, 1..L+1.
    n_jobs : int, optional
        Threads (default ``min(os.cpu_count(), 2)``). Does not change the result.
    chunk_size : int, optional
        Blocks per thread task (default 1). Does not change the result.

    Returns
    -------
    ndarray, shape (n_samples, len(layers), c, c)

    Raises
    ------
    OverflowError
        When Sigma exceeds 1e300 or is not finite (exploding phase at large depth).
    """
    n_samples = check_n_samples(n_samples)
    plan = make_plan(net, X, directions, method)
    sel = _check_layers(layers, net.depth)
    c, B = plan.c, plan.block
    out = np.empty((n_samples, sel.size, c, c))
    root = root_seed_sequence(rng)
    positions = {k: np.flatnonzero(sel - 1 == k) for k in np.unique(sel - 1)}

    def task(a: int, b: int) -> None:
        for i, size in zip(range(a, b), block_sizes(n_samples, B, a, b), strict=True):
            lo = i * B

            def visit(k, S, lo=lo, size=size):
                pos = positions.get(k)
                if pos is not None:
                    for p in pos:
                        out[lo : lo + size, p] = S

            run_block(plan, block_generator(root, i), size, visit)

    nb = n_blocks_for(n_samples, B)
    run_tasks(task, 0, nb, resolve_chunk(chunk_size), resolve_jobs(n_jobs))
    return out


def sample_outputs(
    net: Network,
    X,
    n_samples: int,
    directions=None,
    method: str = "collapsed",
    rng=None,
    *,
    n_jobs: int | None = None,
    chunk_size: int | None = None,
) -> np.ndarray:
    """Sample network outputs z^{(L+1)} and their directional derivatives (T1).

    Collapsed: the output rows are drawn i.i.d. N(0, Sigma^{(L)}) given the sampled Sigma^{(L)}
    (T3), exact in law. Naive: the full network forward pass with forward-mode derivatives.

    Parameters
    ----------
    net, X, n_samples, directions, method, rng, n_jobs, chunk_size
        As in :func:`sample_collective`.

    Returns
    -------
    ndarray, shape (n_samples, n_{L+1}, c)
        Channel order of :class:`corrlib.ChannelLayout` (values, then derivatives).
    """
    n_samples = check_n_samples(n_samples)
    plan = make_plan(net, X, directions, method)
    c, B = plan.c, plan.block
    out = np.empty((n_samples, net.n_out, c))
    root = root_seed_sequence(rng)

    def task(a: int, b: int) -> None:
        for i, size in zip(range(a, b), block_sizes(n_samples, B, a, b), strict=True):
            z = run_block(plan, block_generator(root, i), size, None, want_outputs=True)
            out[i * B : i * B + size] = z

    nb = n_blocks_for(n_samples, B)
    run_tasks(task, 0, nb, resolve_chunk(chunk_size), resolve_jobs(n_jobs))
    return out
