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

Fast paths (c = 1)
------------------
The single-channel hot loop picks its arithmetic by inspecting the activation object, never by
its name: a scale-invariant activation (declared slopes ``a_plus``, ``a_minus`` that ``f``
reproduces on a probe grid) uses sigma(sqrt(S) g) = sqrt(S) sigma(g) and skips the scaling; an
activation whose ``f`` is a unary float64 numpy ufunc (``np.tanh``, ``np.sin``,
``scipy.special.erf``) is applied in place; anything else (e.g. LeCun's
``1.7159 tanh(2z/3)``, whatever it is called) goes through ``f`` itself, whose output must have
the shape of its input.

Numerical safety
----------------
In an exploding phase (e.g. ReLU with C_W > 2) Sigma grows geometrically with depth and
overflows float64. Every layer is checked: a non-finite value or a value above 1e300 raises
:class:`OverflowError` naming C_W and the layer, instead of returning inf/NaN; a NaN (the
activation returned NaN) raises ValueError naming the activation and the layer.

Resources
---------
:func:`sample_collective` and :func:`sample_outputs` return all samples: they refuse (with a
MemoryError naming the size) an output larger than the machine's memory, and, like every
single-machine entry point, a run above :data:`corrlib.montecarlo.blocks.MAX_DRAWS` Gaussian
draws. :func:`corrlib.estimate_cumulants` streams and needs O(1) memory in ``n_samples``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._util import check_choice, check_kwargs, parameter_names, sqrt_psd_stack
from ..model.channels import ChannelLayout, input_kernel
from ..model.network import Network, validate_inputs

# Deliberate parallel: the same names as estimators.py imports from .blocks; both modules drive
# the seeds, blocks, threads and cost guard of blocks.py (an import list declares, it holds no
# logic to share).
from .blocks import (
    block_generator,
    block_sizes,
    check_cost,
    check_n_samples,
    n_blocks_for,
    resolve_chunk,
    resolve_jobs,
    root_seed_sequence,
    run_tasks,
)

__all__ = [
    "METHODS",
    "OVERFLOW_LIMIT",
    "SamplingPlan",
    "block_size",
    "check_method",
    "draws_per_sample",
    "make_plan",
    "run_block",
    "sample_collective",
    "sample_outputs",
    "scalar_kernel",
]

METHODS = ("collapsed", "naive")

#: values of Sigma above this (or non-finite) raise OverflowError
OVERFLOW_LIMIT = 1e300

# target number of float64 entries in the per-layer working buffer of one block
_COLLAPSED_BUFFER = 2**17
_NAIVE_BUFFER = 2**20
_MAX_BLOCK = 4096

# probe points on which f must reproduce its declared slopes to take the homogeneous fast path
_PROBE = np.array([-1e3, -7.5, -1.0, -0.3, -1e-3, 0.0, 1e-3, 0.3, 1.0, 7.5, 1e3])


def _pow2_floor(x: float) -> int:
    x = max(1, int(x))
    return 1 << (x.bit_length() - 1)


def block_size(net: Network, c: int, method: str = "collapsed") -> int:
    """Samples per block: a power of two set by the network, c and the method only.

    Collapsed: about 2**17 float64 entries (1 MiB, cache resident) in the (B, n, c) working
    buffer, at most 4096.
    Naive: about 2**20 entries in the (B, n_l, n_(l-1)) weight stack, at most 4096.

    Examples
    --------
    >>> from corrlib import Network
    >>> from corrlib.montecarlo.samplers import block_size
    >>> block_size(Network.uniform("relu", 64, 3), 1)
    2048
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
    """``method`` if it is ``"collapsed"`` or ``"naive"`` (ValueError with a suggestion).

    Examples
    --------
    >>> from corrlib.montecarlo.samplers import check_method
    >>> check_method("colapsed")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: method must be one of 'collapsed', 'naive'; got 'colapsed' (did you mean ...
    """
    return check_choice(method, "method", METHODS)


def _overflow(net: Network, layer: int) -> OverflowError:
    return OverflowError(
        f"Monte Carlo overflow: the collective kernel Sigma^({layer - 1}) (pre-activation layer "
        f"{layer} of depth L={net.depth}) exceeds {OVERFLOW_LIMIT:g} or is not finite for "
        f"C_W={net.C_W}, C_b={net.C_b}, activation {net.activation.name!r}. This is an "
        f"exploding phase; use a smaller depth or C_W, or the exact laws in corrlib.exact."
    )


def _nan_error(net: Network, layer: int) -> ValueError:
    return ValueError(
        f"Monte Carlo: the collective kernel Sigma^({layer - 1}) (pre-activation layer {layer} "
        f"of depth L={net.depth}) is NaN: the activation {net.activation.name!r} returned NaN "
        "(or values whose products overflowed to inf - inf) on finite pre-activations of "
        f"layer {layer - 1}. Check the activation's f and df on the range of its inputs."
    )


def _check_finite(values: np.ndarray, net: Network, layer: int) -> None:
    """Raise unless every value is finite and at most OVERFLOW_LIMIT in size."""
    if values.size and not float(np.max(np.abs(values))) <= OVERFLOW_LIMIT:
        if np.isnan(values).any():
            raise _nan_error(net, layer)
        raise _overflow(net, layer)


def _apply(fn, z: np.ndarray, act, what: str) -> np.ndarray:
    """``fn(z)`` of a user activation as a float array of z's shape (never broadcast)."""
    try:
        out = np.asarray(fn(z), dtype=float)
    except (TypeError, ValueError) as exc:  # e.g. math.tanh, or `z if z > 0 else 0`
        raise TypeError(
            f"activation {act.name!r}: {what} must be vectorized (ndarray -> ndarray of the same "
            f"shape); on an array of shape {z.shape} it raised {type(exc).__name__}: {exc}"
        ) from exc
    if out.shape != z.shape:
        raise ValueError(
            f"activation {act.name!r}: {what} must be vectorized and keep the shape of its "
            f"input (ndarray -> ndarray); on an array of shape {z.shape} it returned shape "
            f"{out.shape}"
        )
    return out


# ---------------------------------------------------------------------------------------------
# the plan: everything a block needs, computed once


def _homogeneous_slopes(act) -> tuple[float, float] | None:
    """(a_plus, a_minus) if the activation declares them and its f reproduces them, else None."""
    ap, am = getattr(act, "a_plus", None), getattr(act, "a_minus", None)
    if ap is None or am is None:
        return None
    ap, am = float(ap), float(am)
    want = np.where(_PROBE > 0, ap * _PROBE, am * _PROBE)
    with np.errstate(all="ignore"):
        got = np.asarray(act.f(_PROBE.copy()), dtype=float)
    if got.shape != want.shape or not np.allclose(got, want, rtol=1e-13, atol=0.0):
        return None  # f is the definition (T1); sample it through the general path
    return ap, am


def _is_unary_ufunc(f) -> bool:
    return isinstance(f, np.ufunc) and f.nin == 1 and f.nout == 1 and "d->d" in f.types


def scalar_kernel(act) -> tuple:
    """How the c = 1 loop applies the activation, chosen by inspecting the object.

    ``("homogeneous", a_plus**2, a_minus**2)``, ``("ufunc",)`` or ``("general",)`` (see the
    module docstring). Never looks at ``act.name``.

    Examples
    --------
    >>> import numpy as np
    >>> from corrlib import Activation, get_activation
    >>> from corrlib.montecarlo.samplers import scalar_kernel
    >>> scalar_kernel(get_activation("relu")), scalar_kernel(get_activation("tanh"))
    (('homogeneous', 1.0, 0.0), ('ufunc',))
    >>> lecun = Activation("tanh", f=lambda z: 1.7159 * np.tanh(2 * z / 3),
    ...                    df=lambda z: 1.7159 * 2 / 3 / np.cosh(2 * z / 3) ** 2)
    >>> scalar_kernel(lecun)
    ('general',)
    """
    slopes = _homogeneous_slopes(act)
    if slopes is not None:
        return ("homogeneous", slopes[0] ** 2, slopes[1] ** 2)
    if _is_unary_ufunc(act.f):
        return ("ufunc",)
    return ("general",)


@dataclass(frozen=True)
class SamplingPlan:
    """Deterministic data of a Monte Carlo run (picklable)."""

    net: Network
    K0: np.ndarray  # (c, c) Sigma^{(0)}
    features0: np.ndarray  # (n_0, c): the vectors v_a of (T2)
    layout: ChannelLayout
    method: str
    kernel: tuple = ("general",)  # c = 1 fast path, see scalar_kernel

    @property
    def c(self) -> int:
        return self.layout.c

    @property
    def block(self) -> int:
        return block_size(self.net, self.c, self.method)


def make_plan(
    net: Network, X: Any, directions: Any = None, method: str = "collapsed"
) -> SamplingPlan:
    """Validate the inputs (first) and the method; compute Sigma^{(0)} (T2) and the layout.

    Examples
    --------
    >>> from corrlib import Network
    >>> from corrlib.montecarlo.samplers import make_plan
    >>> plan = make_plan(Network((2, 8, 1), "relu", C_W=2.0), [[1.0, 0.0]], [[0.0, 1.0]])
    >>> plan.c, plan.K0.shape, plan.kernel
    (2, (2, 2), ('general',))
    """
    X, U = validate_inputs(net, X, directions)
    method = check_method(method)
    K0, layout = input_kernel(net, X, U)
    cols = [X] + (
        []
        if U is None
        else [np.repeat(U[k : k + 1], X.shape[0], axis=0) for k in range(U.shape[0])]
    )
    F0 = np.ascontiguousarray(np.vstack(cols).T)
    kernel = scalar_kernel(net.activation) if layout.c == 1 else ("general",)
    return SamplingPlan(net, K0, F0, layout, method, kernel)


def draws_per_sample(plan: SamplingPlan, outputs: bool = False) -> int:
    """Gaussian variates drawn per network (the cost unit of :func:`~.blocks.check_cost`).

    Collapsed: c per neuron of every hidden layer (and of the output layer with ``outputs``);
    naive: every weight and bias.

    Examples
    --------
    >>> from corrlib import Network
    >>> from corrlib.montecarlo.samplers import draws_per_sample, make_plan
    >>> net = Network((1, 8, 8, 1), "tanh")
    >>> draws_per_sample(make_plan(net, [[1.0]]))  # 8 + 8 neurons
    16
    >>> draws_per_sample(make_plan(net, [[1.0]], None, "naive"))  # 80 weights + 17 biases
    97
    """
    net, c = plan.net, plan.c
    if plan.method == "collapsed":
        return c * (sum(net.hidden_widths) + (net.n_out if outputs else 0))
    ws = net.widths
    return sum(ws[i] * ws[i + 1] + ws[i + 1] for i in range(len(ws) - 1))


def _features(z: np.ndarray, act, m: int, d: int) -> np.ndarray:
    """phi of (T2) for channel vectors z (..., c): sigma on values, sigma' * dz on derivatives."""
    if d == 0:
        return _apply(act.f, z, act, "f")
    phi = np.empty_like(z)
    zv = z[..., :m]
    phi[..., :m] = _apply(act.f, zv, act, "f")
    dfz = _apply(act.df, zv, act, "df")
    shp = z.shape[:-1] + (d, m)
    phi[..., m:] = (z[..., m:].reshape(shp) * dfz[..., None, :]).reshape(z.shape[:-1] + (d * m,))
    return phi


# ---------------------------------------------------------------------------------------------
# the block samplers


def _sumsq(buf: np.ndarray) -> np.ndarray:
    """Row-wise sum of squares of buf (size, n) as one batched dot product, shape (size,)."""
    return np.matmul(buf[:, None, :], buf[:, :, None]).reshape(buf.shape[0])


def _step_homogeneous(plan: SamplingPlan, buf: np.ndarray, S: np.ndarray) -> np.ndarray:
    # sigma(sqrt(S) g) = sqrt(S) sigma(g): scale once after the sum
    _, ap2, am2 = plan.kernel
    if am2 == ap2:
        q = _sumsq(buf) * ap2
    elif am2 == 0.0:
        np.maximum(buf, 0.0, out=buf)
        q = _sumsq(buf) * ap2
    else:
        tot = _sumsq(buf)
        np.maximum(buf, 0.0, out=buf)
        pos = _sumsq(buf)
        q = ap2 * pos + am2 * (tot - pos)
    q *= S
    return q


def _step_ufunc(plan: SamplingPlan, buf: np.ndarray, S: np.ndarray) -> np.ndarray:
    np.multiply(buf, np.sqrt(S)[:, None], out=buf)
    plan.net.activation.f(buf, out=buf)
    return _sumsq(buf)


def _step_general(plan: SamplingPlan, buf: np.ndarray, S: np.ndarray) -> np.ndarray:
    np.multiply(buf, np.sqrt(S)[:, None], out=buf)
    act = plan.net.activation
    buf[...] = _apply(act.f, buf, act, "f")
    return _sumsq(buf)


_SCALAR_STEPS = {
    "homogeneous": _step_homogeneous,
    "ufunc": _step_ufunc,
    "general": _step_general,
}


def _collapsed_scalar(plan, rng, size, visit, want_outputs):
    """c = 1 hot loop: S (size,) per layer; in-place ops, standard_normal(out=...)."""
    net = plan.net
    step = _SCALAR_STEPS[plan.kernel[0]]
    S = np.full(size, float(plan.K0[0, 0]))
    if visit is not None:
        visit(0, S.reshape(size, 1, 1))
    bufs: dict[int, np.ndarray] = {}
    for ell, n in enumerate(net.hidden_widths, start=1):
        buf = bufs.get(n)
        if buf is None:
            buf = bufs[n] = np.empty((size, n))
        rng.standard_normal(out=buf)
        q = step(plan, buf, S)
        q *= net.C_W / n
        if net.C_b:
            q += net.C_b
        S = q
        if not float(S.max()) <= OVERFLOW_LIMIT:
            _check_finite(S, net, ell + 1)
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


def run_block(
    plan: SamplingPlan,
    rng: np.random.Generator,
    size: int,
    visit: Callable[[int, np.ndarray], None] | None = None,
    want_outputs: bool = False,
) -> np.ndarray | None:
    """Sample one block of ``size`` networks by (T3) (collapsed) or (T1) (naive).

    ``visit(k, Sigma)`` is called for k = 0..L with Sigma^{(k)} of shape (size, c, c) (layer
    index l = k + 1). Returns the outputs (size, n_{L+1}, c) when ``want_outputs``.

    Examples
    --------
    >>> import numpy as np
    >>> from corrlib import Network
    >>> from corrlib.montecarlo.samplers import make_plan, run_block
    >>> plan = make_plan(Network((1, 8, 2), "tanh"), [[1.0]])
    >>> run_block(plan, np.random.default_rng(0), 5, want_outputs=True).shape
    (5, 2, 1)
    """
    if plan.method == "collapsed":
        return _collapsed_block(plan, rng, size, visit, want_outputs)
    return _naive_block(plan, rng, size, visit, want_outputs)


# ---------------------------------------------------------------------------------------------
# public samplers


def _check_layers(layers, L: int) -> np.ndarray:
    allowed = f"a non-empty sequence of integers in 1..L+1 = 1..{L + 1}"
    if layers is None:
        return np.arange(1, L + 2)
    try:
        arr = np.atleast_1d(np.asarray(layers))
    except (TypeError, ValueError):
        raise TypeError(f"layers must be {allowed}; got {layers!r}") from None
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"layers must be {allowed}; got {layers!r}")
    if arr.min() < 1 or arr.max() > L + 1:
        raise ValueError(f"layers must be {allowed}; got {layers!r}")
    return arr.astype(int)


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return None


def _check_memory(n_samples: int, per_sample: int, func: str) -> None:
    """MemoryError naming the size when the returned array cannot fit in physical memory."""
    need = 8 * n_samples * per_sample
    have = _physical_memory()
    if have is not None and need > have:
        raise MemoryError(
            f"{func}(n_samples={n_samples}) would return {need / 2**30:.3g} GiB "
            f"({per_sample} float64 per network), more than this machine's "
            f"{have / 2**30:.3g} GiB of memory. Use fewer samples or layers, or "
            "corrlib.estimate_cumulants, which streams in O(1) memory."
        )


def _start(net, X, n_samples, directions, method, rng, n_jobs, chunk_size, kwargs, func):
    """Shared argument handling of the public samplers (inputs validated first); ``func`` is
    the public function itself (its signature lists the keywords it accepts)."""
    validate_inputs(net, X, directions)
    check_kwargs(kwargs, parameter_names(func), func.__name__)
    n_samples = check_n_samples(n_samples)
    plan = make_plan(net, X, directions, method)
    root = root_seed_sequence(rng)
    return n_samples, plan, root, resolve_jobs(n_jobs), resolve_chunk(chunk_size)


# Deliberate parallel: the signature of sample_outputs below and of
# estimators.estimate_cumulants has the same leading parameters; each public function keeps its
# own typed signature (help() and IDEs show it); the shared argument handling is _start.
def sample_collective(
    net: Network,
    X: Any,
    n_samples: int,
    directions: Any = None,
    method: str = "collapsed",
    rng: Any = None,
    layers: Sequence[int] | None = None,
    *,
    n_jobs: int | None = None,
    chunk_size: int | None = None,
    **kwargs: Any,
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
        Inputs (validated first, by :func:`corrlib.model.network.validate_inputs`).
    n_samples : int
        Number of independent networks, >= 1.
    directions : array_like, shape (d, n_0), optional
        Input directions; adds derivative channels (c = m(1+d)).
    method : {"collapsed", "naive"}
    rng : None, int, numpy.random.Generator or numpy.random.SeedSequence
        See :func:`corrlib.montecarlo.root_seed_sequence`.
    layers : sequence of int, optional
        Pre-activation indices l in 1..L+1; entry for l is Sigma^{(l-1)} (index convention of
        ``infinite_width_kernel``). Default: all, 1..L+1.
    n_jobs : int, optional
        Threads (default :func:`corrlib._util.default_jobs`). Does not change the result.
    chunk_size : int, optional
        Blocks per thread task (default 1). Does not change the result.
    **kwargs
        None accepted: an unknown keyword raises TypeError with a did-you-mean.

    Returns
    -------
    ndarray, shape (n_samples, len(layers), c, c)

    Raises
    ------
    OverflowError
        When Sigma exceeds 1e300 or is not finite (exploding phase at large depth).
    MemoryError
        When the returned array would not fit in the machine's memory.
    ValueError
        Bad arguments (naming them), a run above ``MAX_DRAWS`` Gaussian draws, or an
        activation that returns NaN.

    Examples
    --------
    >>> import corrlib
    >>> net = corrlib.Network.uniform("relu", 8, 2, C_W=2.0)
    >>> S = corrlib.sample_collective(net, [[1.0]], 1000, rng=0)
    >>> S.shape
    (1000, 3, 1, 1)
    >>> float(S[:, 0, 0, 0].max())  # Sigma^(0) = C_W x^2 / n_0 is deterministic
    2.0
    """
    n_samples, plan, root, jobs, chunk = _start(
        net, X, n_samples, directions, method, rng, n_jobs, chunk_size, kwargs, sample_collective
    )
    sel = _check_layers(layers, net.depth)
    c, B = plan.c, plan.block
    check_cost(n_samples, draws_per_sample(plan), "sample_collective", jobs)
    _check_memory(n_samples, sel.size * c * c, "sample_collective")
    out = np.empty((n_samples, sel.size, c, c))
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

    run_tasks(task, 0, n_blocks_for(n_samples, B), chunk, jobs)
    return out


# Deliberate parallel: same leading parameters as sample_collective above and
# estimators.estimate_cumulants (each public function keeps its own typed signature; the shared
# argument handling is _start).
def sample_outputs(
    net: Network,
    X: Any,
    n_samples: int,
    directions: Any = None,
    method: str = "collapsed",
    rng: Any = None,
    *,
    n_jobs: int | None = None,
    chunk_size: int | None = None,
    **kwargs: Any,
) -> np.ndarray:
    """Sample network outputs z^{(L+1)} and their directional derivatives (T1).

    Collapsed: the output rows are drawn i.i.d. N(0, Sigma^{(L)}) given the sampled Sigma^{(L)}
    (T3), exact in law. Naive: the full network forward pass with forward-mode derivatives.

    Parameters
    ----------
    net, X, n_samples, directions, method, rng, n_jobs, chunk_size, **kwargs
        As in :func:`sample_collective`.

    Returns
    -------
    ndarray, shape (n_samples, n_{L+1}, c)
        Channel order of :class:`corrlib.ChannelLayout` (values, then derivatives).

    Raises
    ------
    OverflowError, MemoryError, ValueError
        As in :func:`sample_collective`.

    Examples
    --------
    >>> import corrlib
    >>> net = corrlib.Network((1, 16, 3), "tanh", C_W=1.0)
    >>> corrlib.sample_outputs(net, [[1.0]], 500, rng=0).shape
    (500, 3, 1)
    """
    n_samples, plan, root, jobs, chunk = _start(
        net, X, n_samples, directions, method, rng, n_jobs, chunk_size, kwargs, sample_outputs
    )
    c, B = plan.c, plan.block
    check_cost(n_samples, draws_per_sample(plan, outputs=True), "sample_outputs", jobs)
    _check_memory(n_samples, net.n_out * c, "sample_outputs")
    out = np.empty((n_samples, net.n_out, c))

    def task(a: int, b: int) -> None:
        for i, size in zip(range(a, b), block_sizes(n_samples, B, a, b), strict=True):
            z = run_block(plan, block_generator(root, i), size, None, want_outputs=True)
            out[i * B : i * B + size] = z

    run_tasks(task, 0, n_blocks_for(n_samples, B), chunk, jobs)
    return out
