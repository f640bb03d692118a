"""Streaming Monte Carlo estimators of the cumulants of the collective kernel (T2)-(T6).

For every layer l = 1..L+1 the estimator returns, from independent samples of Sigma^{(l-1)}:

- ``mean``  E Sigma_ab                        (estimates K + Delta, (T7), (T11)),
- ``V``     Cov(Sigma_ab, Sigma_cd)           (estimates V, (T9), (T10)),
- ``T``     kappa_3(Sigma) when c = 1          (estimates T, (T13)),

each with a standard error. Output cumulants follow from these by (T4)-(T6)
(Rao-Blackwellization: Sigma^{(L)} carries all the randomness of the output law).

Estimators and standard errors
------------------------------
Unbiased k-statistics: the sample mean, the sample covariance with divisor N-1 and
``k_3 = N^2 / ((N-1)(N-2)) m_3``. Standard errors use the **delta method** (first-order
asymptotic variances) from moments estimated in the same pass:

- ``se(mean_ab) = sqrt(k_2(Sigma_ab) / N)``;
- ``se(V_(ab)(cd)) = sqrt((mu_22 - mu_11^2) / N)`` with ``mu_22 = E[(u-Eu)^2 (w-Ew)^2]``,
  ``mu_11 = Cov(u, w)``, ``u = Sigma_ab``, ``w = Sigma_cd``;
- ``se(T) = sqrt((mu_6 - mu_3^2 - 6 mu_4 mu_2 + 9 mu_2^3) / N)`` (central moments mu_k).

The delta method assumes the needed moments exist and are resolved by the sample; for very
heavy tails (ReLU or gelu at large L/n) the higher moments, and so the errors of V and T, are
underestimated (docs/theory.md section 11): use the exact or lattice methods there.

Streaming and determinism
-------------------------
Nothing of size n_samples is kept. Each block of samples (see
:func:`corrlib.montecarlo.samplers.block_size`) is reduced to *shifted power sums* per layer: with
``x = Sigma_unique - r`` (the c(c+1)/2 entries a <= b, r a per-layer reference point),
``N, sum x_i, sum x_i x_j, sum x_i^2 x_j, sum x_i^2 x_j^2`` (and ``sum x^5, sum x^6`` for c = 1).
The reference r is the mean of a small pilot run drawn from its own child seed
(spawn key ``root.spawn_key + (2**32 - 1,)``), so every worker computes the same r without
communication and the sums stay well conditioned. Block sums are combined along a fixed binary
tree over block indices (a node's sums = left child + right child); :class:`BlockStats` keeps
the canonical dyadic decomposition of its block range, so ranges computed anywhere, in any
order, merged in range order, give bit-identical estimates for any ``chunk_size``, ``n_jobs``
or split (contract with :mod:`corrlib.sweep`).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np

from ..model.network import Network
from .blocks import (
    block_generator,
    block_sizes,
    n_blocks_for,
    resolve_chunk,
    resolve_jobs,
    root_seed_sequence,
    run_tasks,
)
from .samplers import check_method, make_plan, run_block

__all__ = [
    "estimate_cumulants",
    "CumulantEstimate",
    "MonteCarloTask",
    "BlockStats",
]

PILOT_KEY = 2**32 - 1
PILOT_SAMPLES = 16


# ---------------------------------------------------------------------------------------------
# result object


@dataclass(frozen=True, eq=False)
class CumulantEstimate:
    """Monte Carlo estimates of the cumulants of Sigma^{(l-1)}, l = 1..L+1 (T2)-(T6).

    Attributes
    ----------
    mean : ndarray, shape (L+1, c, c)
        Sample mean of Sigma^{(l-1)} (estimates K^{(l)} + Delta^{(l)}).
    V : ndarray, shape (L+1, c, c, c, c)
        Unbiased sample covariance Cov(Sigma_ab, Sigma_cd) (estimates V^{(l)}).
    T : ndarray, shape (L+1,) or None
        Unbiased third cumulant k_3 of Sigma when c = 1 (estimates T^{(l)}), else None.
    mean_se, V_se, T_se : ndarray or None
        Delta-method standard errors, same shapes.
    n_samples : int
    method : str
        ``"collapsed"`` or ``"naive"``.
    """

    mean: np.ndarray
    V: np.ndarray
    T: np.ndarray | None
    mean_se: np.ndarray
    V_se: np.ndarray
    T_se: np.ndarray | None
    n_samples: int
    method: str = "collapsed"

    @property
    def n_layers(self) -> int:
        return self.mean.shape[0]

    @property
    def c(self) -> int:
        return self.mean.shape[1]

    def normalized_kappa4(self) -> tuple[np.ndarray, np.ndarray]:
        """kappa_4/kappa_2^2 of one output neuron, 3 Var(S)/(E S)^2 (T4), and its error.

        Single channel (c = 1) only. The standard error is the joint delta method for the
        ratio, including the covariance of the sample mean and the sample variance,
        Cov(mean, V) = kappa_3(S)/N (estimated by ``T``).

        Returns
        -------
        value, se : ndarray, shape (L+1,)
            NaN where E S = 0 (none of the layers for a nonzero input).
        """
        if self.T is None:
            raise ValueError(
                "normalized_kappa4 needs a single channel (c = 1: one input, no directions)"
            )
        m = self.mean[:, 0, 0]
        V = self.V[:, 0, 0, 0, 0]
        sm, sV = self.mean_se[:, 0, 0], self.V_se[:, 0, 0, 0, 0]
        cov = self.T / self.n_samples
        with np.errstate(divide="ignore", invalid="ignore"):
            r = 3.0 * V / m**2
            var = sV**2 / m**4 + 4.0 * V**2 * sm**2 / m**6 - 4.0 * V * cov / m**5
            se = 3.0 * np.sqrt(np.clip(var, 0.0, None))
        return r, se

    def to_frame(self):
        """Tidy :class:`pandas.DataFrame`: layer, quantity, a, b, c, d, value, se.

        ``layer`` is the pre-activation index l = 1..L+1. Quantities: ``"mean"`` (a <= b),
        ``"V"`` (unique entries a <= b, c <= d, (a,b) <= (c,d) lexicographically) and, when
        c = 1, ``"T"`` (channel indices <NA>).
        """
        import pandas as pd

        L1, c = self.n_layers, self.c
        iu, ju = np.triu_indices(c)
        p = iu.size
        I, J = np.triu_indices(p)
        layer_m = np.repeat(np.arange(1, L1 + 1), p)
        layer_v = np.repeat(np.arange(1, L1 + 1), I.size)
        na = pd.array([pd.NA] * (L1 * p), dtype="Int64")
        parts = [
            pd.DataFrame(
                {
                    "layer": layer_m,
                    "quantity": "mean",
                    "a": pd.array(np.tile(iu, L1), dtype="Int64"),
                    "b": pd.array(np.tile(ju, L1), dtype="Int64"),
                    "c": na,
                    "d": na,
                    "value": self.mean[:, iu, ju].ravel(),
                    "se": self.mean_se[:, iu, ju].ravel(),
                }
            ),
            pd.DataFrame(
                {
                    "layer": layer_v,
                    "quantity": "V",
                    "a": pd.array(np.tile(iu[I], L1), dtype="Int64"),
                    "b": pd.array(np.tile(ju[I], L1), dtype="Int64"),
                    "c": pd.array(np.tile(iu[J], L1), dtype="Int64"),
                    "d": pd.array(np.tile(ju[J], L1), dtype="Int64"),
                    "value": self.V[:, iu[I], ju[I], iu[J], ju[J]].ravel(),
                    "se": self.V_se[:, iu[I], ju[I], iu[J], ju[J]].ravel(),
                }
            ),
        ]
        if self.T is not None:
            na1 = pd.array([pd.NA] * L1, dtype="Int64")
            parts.append(
                pd.DataFrame(
                    {
                        "layer": np.arange(1, L1 + 1),
                        "quantity": "T",
                        "a": na1,
                        "b": na1,
                        "c": na1,
                        "d": na1,
                        "value": self.T,
                        "se": self.T_se,
                    }
                )
            )
        df = pd.concat(parts, ignore_index=True)
        df["layer"] = df["layer"].astype("int64")
        return df


# ---------------------------------------------------------------------------------------------
# per-block power sums and their deterministic merge


def _unique_index(c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(iu, ju) of the entries a <= b and P (c, c) mapping (a, b) to the unique index."""
    iu, ju = np.triu_indices(c)
    P = np.empty((c, c), dtype=int)
    P[iu, ju] = np.arange(iu.size)
    P[ju, iu] = np.arange(iu.size)
    return iu, ju, P


def _n_fields(c: int) -> int:
    p = c * (c + 1) // 2
    return 1 + p + 3 * p * p + (2 if c == 1 else 0)


def _layer_sums(x: np.ndarray, c: int) -> np.ndarray:
    """Shifted power sums of one layer: x (B, p) -> flat vector (see module docstring)."""
    B, p = x.shape
    if c == 1:
        v = x[:, 0]
        v2 = v * v
        v3 = v2 * v
        return np.array(
            [B, v.sum(), v2.sum(), v3.sum(), (v2 * v2).sum(), (v3 * v2).sum(), (v3 * v3).sum()]
        )
    x2 = x * x
    out = np.empty(_n_fields(c))
    out[0] = B
    out[1 : 1 + p] = x.sum(axis=0)
    k = 1 + p
    # einsum without BLAS: reproducible independent of BLAS threading
    out[k : k + p * p] = np.einsum("bi,bj->ij", x, x, optimize=False).ravel()
    k += p * p
    out[k : k + p * p] = np.einsum("bi,bj->ij", x2, x, optimize=False).ravel()
    k += p * p
    out[k : k + p * p] = np.einsum("bi,bj->ij", x2, x2, optimize=False).ravel()
    return out


def _combine(nodes: list) -> list:
    """Canonical dyadic decomposition: merge adjacent sibling nodes (level, index, sums)."""
    stack: list = []
    for node in nodes:
        stack.append(node)
        while len(stack) >= 2:
            (l1, i1, s1), (l2, i2, s2) = stack[-2], stack[-1]
            if l1 == l2 and i1 % 2 == 0 and i2 == i1 + 1:
                stack[-2:] = [(l1 + 1, i1 // 2, s1 + s2)]
            else:
                break
    return stack


@dataclass(eq=False)
class BlockStats:
    """Mergeable power sums of blocks ``start..stop-1`` of a :class:`MonteCarloTask` (picklable).

    Attributes
    ----------
    start, stop : int
        Block range covered.
    n_blocks, n_samples, c, method
        Of the whole task.
    shift : ndarray, shape (L+1, p)
        Reference point r of the shifted sums (identical for every range of a task).
    nodes : list of (level, index, sums (L+1, F))
        Canonical dyadic decomposition of [start, stop).
    """

    start: int
    stop: int
    n_blocks: int
    n_samples: int
    c: int
    method: str
    shift: np.ndarray
    nodes: list = field(default_factory=list)

    def merge(self, other: BlockStats) -> BlockStats:
        """Statistics of the union of adjacent ranges (requires ``other.start == self.stop``)."""
        if not isinstance(other, BlockStats):
            raise TypeError(f"other must be a BlockStats; got {type(other).__name__}")
        if other.start != self.stop:
            raise ValueError(
                "other.start must equal self.stop (adjacent ranges); "
                f"got {other.start} != {self.stop}"
            )
        if (self.n_blocks, self.n_samples, self.c) != (
            other.n_blocks,
            other.n_samples,
            other.c,
        ) or not (np.array_equal(self.shift, other.shift)):
            raise ValueError("other must come from the same MonteCarloTask and root seed")
        return BlockStats(
            self.start,
            other.stop,
            self.n_blocks,
            self.n_samples,
            self.c,
            self.method,
            self.shift,
            _combine(list(self.nodes) + list(other.nodes)),
        )

    def result(self) -> CumulantEstimate:
        """Fold the sums (in block order) into a :class:`CumulantEstimate`.

        Requires the full range ``[0, n_blocks)``.
        """
        if self.start != 0 or self.stop != self.n_blocks:
            raise ValueError(
                f"result() needs the full block range [0, {self.n_blocks}); "
                f"this BlockStats covers [{self.start}, {self.stop})"
            )
        total = self.nodes[0][2]
        for node in self.nodes[1:]:
            total = total + node[2]
        return _estimate_from_sums(total, self.shift, self.c, self.method)


def _estimate_from_sums(sums: np.ndarray, shift: np.ndarray, c: int, method: str):
    L1 = sums.shape[0]
    iu, ju, P = _unique_index(c)
    p = iu.size
    N = float(sums[0, 0])
    n_samples = int(round(N))
    s1 = sums[:, 1 : 1 + p]
    k = 1 + p
    s11 = sums[:, k : k + p * p].reshape(L1, p, p)
    k += p * p
    s21 = sums[:, k : k + p * p].reshape(L1, p, p)
    k += p * p
    s22 = sums[:, k : k + p * p].reshape(L1, p, p)
    a = s1 / N
    mean_p = shift + a
    E11 = s11 / N
    aa = a[:, :, None] * a[:, None, :]
    C = E11 - aa  # central, divisor N
    Vp = C * (N / (N - 1))
    var = np.maximum(np.diagonal(Vp, axis1=1, axis2=2), 0.0)
    mean_se_p = np.sqrt(var / N)
    E21 = s21 / N  # E[x_i^2 x_j]
    E12 = np.swapaxes(E21, 1, 2)  # E[x_i x_j^2]
    Eii = np.diagonal(E11, axis1=1, axis2=2)
    ai, aj = a[:, :, None], a[:, None, :]
    mu22 = (
        s22 / N
        - 2 * aj * E21
        - 2 * ai * E12
        + aj**2 * Eii[:, :, None]
        + ai**2 * Eii[:, None, :]
        + 4 * aa * E11
        - 3 * aa**2
    )
    Vp_se = np.sqrt(np.maximum(mu22 - C**2, 0.0) / N)

    mean = mean_p[:, P]
    mean_se = mean_se_p[:, P]
    V = Vp[:, P[:, :, None, None], P[None, None, :, :]]
    V_se = Vp_se[:, P[:, :, None, None], P[None, None, :, :]]
    T = T_se = None
    if c == 1:
        raw = (
            [np.ones(L1)]
            + [sums[:, j] / N for j in (1, 2, 3, 4)]
            + [sums[:, 5] / N, sums[:, 6] / N]
        )
        a1 = a[:, 0]

        def central(kk: int) -> np.ndarray:
            return sum(math.comb(kk, j) * raw[j] * (-a1) ** (kk - j) for j in range(kk + 1))

        m2, m3, m4, m6 = central(2), central(3), central(4), central(6)
        T = m3 * (N * N / ((N - 1) * (N - 2))) if N > 2 else np.full(L1, np.nan)
        T_se = np.sqrt(np.maximum(m6 - m3**2 - 6 * m4 * m2 + 9 * m2**3, 0.0) / N)
    return CumulantEstimate(mean, V, T, mean_se, V_se, T_se, n_samples, method)


# ---------------------------------------------------------------------------------------------
# the task


@dataclass(frozen=True, eq=False)
class MonteCarloTask:
    """A picklable Monte Carlo run, executable in block ranges (contract with corrlib.sweep).

    Parameters
    ----------
    net : Network
    X : ndarray, shape (m, n_0)
    n_samples : int
    directions : ndarray, shape (d, n_0), optional
    method : {"collapsed", "naive"}
    """

    net: Network
    X: np.ndarray
    n_samples: int
    directions: np.ndarray | None = None
    method: str = "collapsed"

    def __post_init__(self) -> None:
        n = self.n_samples
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise TypeError(f"n_samples must be an integer >= 3; got {n!r}")
        if n < 3:
            raise ValueError(f"n_samples must be an integer >= 3; got {n!r}")
        check_method(self.method)
        object.__setattr__(self, "n_samples", int(n))
        object.__setattr__(self, "X", np.asarray(self.X, dtype=float))
        if self.directions is not None:
            object.__setattr__(self, "directions", np.asarray(self.directions, dtype=float))
        # validates X and directions (raises ValueError/TypeError naming them)
        make_plan(self.net, self.X, self.directions, self.method)

    def _plan(self):
        return make_plan(self.net, self.X, self.directions, self.method)

    @property
    def block_size(self) -> int:
        """Samples per block (depends on the network, c and the method only)."""
        return self._plan().block

    @property
    def n_blocks(self) -> int:
        return n_blocks_for(self.n_samples, self.block_size)

    def shift(self, root: np.random.SeedSequence) -> np.ndarray:
        """The per-layer reference point r (L+1, p): the mean of a small collapsed pilot run."""
        plan = make_plan(self.net, self.X, self.directions, "collapsed")
        c = plan.c
        iu, ju, _ = _unique_index(c)
        r = np.empty((self.net.depth + 1, iu.size))

        def visit(k, S):
            r[k] = S[:, iu, ju].mean(axis=0)

        run_block(plan, block_generator(root, PILOT_KEY), PILOT_SAMPLES, visit)
        return r

    def run_blocks(
        self,
        root: np.random.SeedSequence,
        start: int,
        stop: int,
        *,
        n_jobs: int | None = None,
        chunk_size: int | None = None,
        on_done=None,
    ) -> BlockStats:
        """Power sums of blocks ``start..stop-1`` generated from ``root``.

        Parameters
        ----------
        root : numpy.random.SeedSequence
            See :func:`root_seed_sequence`.
        start, stop : int
            0 <= start <= stop <= n_blocks (an empty range gives an empty BlockStats).
        n_jobs, chunk_size : int, optional
            Threads and blocks per thread task; they do not change the result.
        on_done : callable, optional
            Called with the number of finished blocks (progress bars).
        """
        if not isinstance(root, np.random.SeedSequence):
            raise TypeError(f"root must be a numpy.random.SeedSequence; got {type(root).__name__}")
        nb = self.n_blocks
        if not (0 <= start <= stop <= nb):
            raise ValueError(
                f"need 0 <= start <= stop <= n_blocks={nb}; got start={start}, stop={stop}"
            )
        plan = self._plan()
        c, B = plan.c, plan.block
        iu, ju, _ = _unique_index(c)
        shift = self.shift(root)
        L1 = self.net.depth + 1
        net = self.net
        n_samples = self.n_samples

        def one_block(i: int, size: int) -> np.ndarray:
            sums = np.empty((L1, _n_fields(c)))

            def visit(k, S):
                sums[k] = _layer_sums(S[:, iu, ju] - shift[k], c)

            with np.errstate(over="ignore", invalid="ignore"):
                run_block(plan, block_generator(root, i), size, visit)
            if not np.all(np.isfinite(sums)):
                raise OverflowError(
                    f"Monte Carlo overflow: power sums of Sigma up to order {6 if c == 1 else 4} "
                    f"are not finite in block {i} for C_W={net.C_W}, depth L={net.depth}, "
                    f"activation {net.activation.name!r} (heavy tails or an exploding phase); "
                    "use a smaller depth or C_W, or the exact laws in corrlib.exact."
                )
            return sums

        def task(a: int, b: int) -> list:
            nodes = [
                (0, i, one_block(i, s))
                for i, s in zip(range(a, b), block_sizes(n_samples, B, a, b), strict=True)
            ]
            return _combine(nodes)

        nodes: list = []

        def consume(part: list) -> None:
            # fold in range order as results arrive: O(log n_blocks) nodes kept
            nodes[:] = _combine(nodes + part)

        run_tasks(
            task, start, stop, resolve_chunk(chunk_size), resolve_jobs(n_jobs), on_done, consume
        )
        return BlockStats(start, stop, nb, n_samples, c, self.method, shift, nodes)


# ---------------------------------------------------------------------------------------------
# public entry point


def estimate_cumulants(
    net: Network,
    X,
    n_samples: int,
    directions=None,
    method: str = "collapsed",
    rng=None,
    progress: bool = False,
    *,
    n_jobs: int | None = None,
    chunk_size: int | None = None,
) -> CumulantEstimate:
    """Streaming Monte Carlo estimates of mean, covariance and third cumulant of Sigma (T2)-(T6).

    Samples Sigma^{(l-1)}, l = 1..L+1, by (T3) (``method="collapsed"``) or by the full network
    (``method="naive"``) in blocks, reduces each block to power sums, and returns unbiased
    k-statistics with delta-method standard errors (see the module docstring). Equal, bit for
    bit, to ``MonteCarloTask(net, X, n_samples, directions, method).run_blocks(
    root_seed_sequence(rng), 0, n_blocks).result()``.

    Parameters
    ----------
    net : Network
    X : array_like, shape (m, n_0)
    n_samples : int
        >= 3.
    directions : array_like, shape (d, n_0), optional
    method : {"collapsed", "naive"}
    rng : None, int, numpy.random.Generator or numpy.random.SeedSequence
    progress : bool
        Show a ``tqdm.auto`` progress bar over blocks (works in JupyterLab).
    n_jobs : int, optional
        Threads (default ``min(os.cpu_count(), 2)``); does not change the result.
    chunk_size : int, optional
        Blocks per thread task (default 1); does not change the result.

    Returns
    -------
    CumulantEstimate
        ``mean`` (L+1, c, c), ``V`` (L+1, c, c, c, c), ``T`` (L+1,) or None, their ``*_se``.

    Raises
    ------
    OverflowError
        When Sigma or its power sums overflow (exploding phase, extreme tails).
    """
    task = MonteCarloTask(net, X, n_samples, directions, method)
    root = root_seed_sequence(rng)
    nb = task.n_blocks
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=nb, desc=f"Monte Carlo ({method})", unit="block")
    try:
        stats = task.run_blocks(
            root,
            0,
            nb,
            n_jobs=n_jobs,
            chunk_size=chunk_size,
            on_done=None if bar is None else bar.update,
        )
    finally:
        if bar is not None:
            bar.close()
    return stats.result()
