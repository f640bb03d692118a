"""The several-channel hierarchy at order n^-2, docs/theory.md section 5b (T33)-(T40).

For c <= 4 channels (several inputs and/or directions) the collective kernel S = Sigma^{(l)} is a
random c x c matrix; given S the next one is an average of n_{l+1} i.i.d. copies of
C_W phi phi^T plus C_b on the value block (T3). Expanding the conditional mean, covariance and
third cumulant of one step around the infinite-width kernel K_l in d = S - K_l and taking
expectations over d gives the 1/n^2 terms of E Sigma and Cov Sigma and the leading term of the
third cumulant tensor (T35)-(T38). Every derivative with respect to the covariance entries is a
Gaussian (Hermite) identity in whitening coordinates x of N(0, K_l) (T34): no finite
differences, no derivative of sigma beyond sigma' (which already defines a derivative channel).

The n^-1 terms (K + Delta, V) are those of :func:`corrlib.finite_width` (the channel engine); this
module adds the n^-2 terms, feeding the engine's Delta and V into (T36)-(T38). It also carries
its own n^-1 terms with the same tables, as an independent check of the quadrature (tests).
"""

from __future__ import annotations

import itertools
import math
import warnings
from functools import lru_cache

import numpy as np

from ..model.channels import ChannelLayout
from ..model.gaussian import kink_rule
from ..model.orthant import OrthantMoments
from ._expansion_single import HierarchyWarning

__all__ = ["MAX_CHANNELS_ORDER2", "LayerRule", "multi_channel_series"]

#: the most channels the order-2 several-channel expansion accepts (issue 11: "up to four")
MAX_CHANNELS_ORDER2 = 4

# smooth activations: trapezoid rule in each value coordinate xi_j with step
# min(h_max, h0 / s_j), s_j the largest coefficient of xi_j in z (sigma varies on its own scale 1
# in z); for an activation analytic in the strip |Im z| < a the error is ~C exp(-2 pi a s_j / h)
# (a = pi/2 for tanh; measured with h0 = 0.3: ~1e-11 relative in Delta and V, against 2e-7 at
# h0 = 0.43). The tables are checked against a rule with _TRAP_CHECK times the step (an upper
# bound of the error, reported as table_error)
_TRAP_STEP = {1: 0.25, 2: 0.3, 3: 0.3, 4: 0.3}
# 3-4 value dimensions carry only quads (He_4) and sextets: the step may grow to 0.6 for small
# scales (Gaussian aliasing ~exp(-pi^2/h^2) ~ 1e-12) and the rule is pruned at radius 8.6
_TRAP_MAX = {1: 0.25, 2: 0.3, 3: 0.6, 4: 0.6}
_PRUNE_HIGH = 1e-16
_TRAP_CHECK = 1.3
_TRAP_R = 10.0
# value nodes per chunk of the Hermite sums
_CHUNK = 4096
# Gauss-Hermite nodes per conditional (derivative) dimension: the integrands are polynomials of
# degree <= 2 + 8 there (a pair times He_8), integrated exactly by 6 nodes
_OMEGA_NODES = 6
# per family: the degree in omega is <= (number of derivative factors) + (Hermite order), i.e.
# 2 + 8 (pairs), 4 + 4 (quads), 6 (sextets): Gauss-Hermite with 6, 5, 4 nodes is exact
_OMEGA_FAMILY = {"pairs": 6, "quads": 5, "sexts": 4}
# product weights below this fraction of the largest are pruned (radius 10 = _TRAP_R: for a small
# kernel the D8 integrand of a pair behaves like xi^16, whose tail beyond 10 is 1e-12 of its
# moment; at radius 8.6 it was 4e-8)
_PRUNE = 1e-22
# eigenvalues below this fraction of the largest are zero (rank of K and of the conditional
# covariance of the derivative channels; the pseudo-inverse convention of section 4)
_EIG_RTOL = 1e-12
# scale-invariant kinks: radial Gauss nodes (exact for degree <= 2n-1 along a ray; the
# integrands have degree <= 6 + 8) and Gauss-Legendre nodes per angular panel (<= pi/2)
_RADIAL = 10
_ANGLE = 24
# 3-4 value dimensions (inputs only): quads times He_4 and sextets, degree <= 8 along rays
# (5 radial nodes are exact to degree 9); Gauss-Legendre order of a simplex of edge pi/2 (T43)
_RADIAL_HIGH = 5
_ANGLE_HIGH = 20
# full-rank subsets of 3-4 inputs (smallest eigenvalue above this fraction of the largest)
# use exact orthant moments instead of the node rule
_ORTHANT_RTOL = 1e-8
# kinked activations on 3-4 inputs: below this smallest/largest eigenvalue ratio of a full-rank
# input subset's kernel the He_4 tables lose digits (the conversion to channel derivatives
# amplifies rounding like 1/lambda_min^2; measured 4e-5 relative at a ratio of 5.6e-7), which
# table_error does not see: a HierarchyWarning says so
_KINK_COND_WARN = 1e-6
# the highest Hermite order any table needs (D8 of a pair)
_HMAX = 8


# ----------------------------------------------------------------------------- multi-indices


@lru_cache(maxsize=64)
def _multi_indices(r: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Count vectors (n_alpha, r) of the multisets of size k from r symbols, and the map from
    every ordered k-tuple (flattened r^k, C order) to its multiset's position."""
    combos = list(itertools.combinations_with_replacement(range(r), k))
    counts = np.zeros((len(combos), r), dtype=np.int64)
    for i, cmb in enumerate(combos):
        for s in cmb:
            counts[i, s] += 1
    if k == 0:
        return counts, np.zeros(1, dtype=np.int64)
    tuples = np.indices((r,) * k).reshape(k, -1).T
    code_counts = np.zeros((tuples.shape[0], r), dtype=np.int64)
    for j in range(k):
        np.add.at(code_counts, (np.arange(tuples.shape[0]), tuples[:, j]), 1)
    base = (k + 1) ** np.arange(r)
    lookup = {int(v): i for i, v in enumerate(counts @ base)}
    idmap = np.array([lookup[int(v)] for v in code_counts @ base], dtype=np.int64)
    return counts, idmap


def _full(mom: np.ndarray, r: int, k: int) -> np.ndarray:
    """Symmetric tensors (n, r^k) from their multiset values (n, n_alpha)."""
    return mom[:, _multi_indices(r, k)[1]]


# ----------------------------------------------------------------------------- node rules


@lru_cache(maxsize=32)
def _gh(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.hermite_e.hermegauss(n)
    return x, w / math.sqrt(2.0 * math.pi)


@lru_cache(maxsize=64)
def _trap(h: float) -> tuple[np.ndarray, np.ndarray]:
    M = int(math.floor(_TRAP_R / h))
    x = h * np.arange(-M, M + 1, dtype=float)
    return x, h * np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _tensor(rules, prune: float = _PRUNE, grid: bool = False):
    """Pruned product rule: node indices are carried per dimension and the nodes gathered once
    at the end (the same nodes and weights as concatenating the coordinates step by step)."""
    idx = np.zeros((0, 1), dtype=np.intp)
    W = np.ones(1)
    keeps = []
    for _x, w in rules:
        nw = len(w)
        W = np.outer(W, w).ravel()
        keep = np.flatnonzero(W > prune * W.max())
        keeps.append(keep)
        W = W[keep]
        idx = np.concatenate([idx[:, keep // nw], (keep % nw)[None]], axis=0)
    X = np.empty((len(W), len(rules)))
    for j, (x, _) in enumerate(rules):
        X[:, j] = x[idx[j]]
    if grid:  # per dimension: the kept (parent node, 1-D node) pairs, and the 1-D nodes
        return X, W, (keeps, [x for x, _ in rules])
    return X, W


def _value_rule(act, r: int, L: np.ndarray, coarse: bool, derivatives: bool = True) -> tuple:
    """A standard-normal rule on R^r for the value coordinates xi (z = L xi): nodes, weights and
    (smooth activations) the pruned product grid they lie on, else None."""
    if r == 0:
        return np.zeros((1, 0)), np.ones(1), None
    if act.kink:
        if not act.is_scale_invariant:
            raise NotImplementedError(
                "hierarchy: order 2 with several channels integrates a kinked activation "
                "exactly only when it is scale-invariant (a_+ z [z>0] + a_- z [z<0]); got "
                f"{act!r}. Missing: a rule for kinked activations that are not piecewise "
                "linear (use order=1, corrlib.finite_width)"
            )
        if r <= 2:
            return (*kink_rule(L, _RADIAL, _ANGLE), None)
        # 3-4 value dimensions: only inputs (c <= 4), so every function of the subset has a
        # factor sigma(z_i) for each of its inputs and vanishes on cells where one is 0
        skip = None if derivatives else (lambda y: np.any(act.f(y @ L.T) == 0.0, axis=1))
        return (*kink_rule(L, _RADIAL_HIGH, _ANGLE_HIGH, skip=skip), None)
    f = _TRAP_CHECK if coarse else 1.0
    steps = [min(_TRAP_MAX[r], _TRAP_STEP[r] / max(float(np.max(np.abs(L[:, j]))), 1e-300))
             for j in range(r)]  # fmt: skip
    return _tensor([_trap(f * h) for h in steps], _PRUNE if r <= 2 else _PRUNE_HIGH, grid=True)


def _value_part(act, K: np.ndarray, m: int, coarse: bool, derivatives: bool = True) -> dict:
    """The value coordinates of N(0, K) (z = L xi), their rule, and sigma, sigma' at the value
    nodes (shared by the rules of one subset that differ only in the omega nodes)."""
    K = 0.5 * (K + K.T)
    scale = max(float(np.max(np.diag(K))), 0.0)
    lam, Q = np.linalg.eigh(K[:m, :m])
    keep = lam > _EIG_RTOL * max(scale, 1e-300)
    L = Q[:, keep] * np.sqrt(lam[keep])
    Xz, Wz, grid = _value_rule(act, L.shape[1], L, coarse, derivatives)
    z = Xz @ L.T
    with np.errstate(over="ignore", invalid="ignore"):
        f = act.f(z)
        df = act.df(z) if derivatives else None
    return {"L": L, "Xz": Xz, "Wz": Wz, "grid": grid, "f": f, "df": df}


class LayerRule:
    """Whitening coordinates and a node rule for zeta ~ N(0, K) on c <= 4 channels (T34).

    zeta = B x with x ~ N(0, I_r), r = rank K. The value channels come first: z = L xi (L from
    the eigenvectors of the value block), and the derivative channels are
    zeta_D = BL xi + R omega given z (Gaussian, with BL = K_Dz pinv(L^T) and R R^T the
    conditional covariance); x = (xi, omega).

    Parameters
    ----------
    act : Activation
    K : ndarray, shape (c, c)
    layout : ChannelLayout
    coarse : bool
        Use the coarser check rule (smooth activations: fewer Gauss-Hermite nodes).

    Examples
    --------
    >>> import numpy as np, corrlib
    >>> from corrlib.model.channels import ChannelLayout
    >>> rule = LayerRule(corrlib.get_activation("tanh"), np.array([[1.0, 0.5], [0.5, 1.0]]),
    ...                  ChannelLayout(2, 0))
    >>> rule.B.shape, bool(np.allclose(rule.B @ rule.B.T, [[1.0, 0.5], [0.5, 1.0]]))
    ((2, 2), True)
    >>> bool(abs(rule.W.sum() - 1.0) < 1e-14)
    True
    """

    def __init__(
        self,
        act,
        K: np.ndarray,
        layout: ChannelLayout,
        coarse: bool = False,
        omega_nodes: int = _OMEGA_NODES,
        value: dict | None = None,
    ):
        m, c = layout.m, layout.c
        K = 0.5 * (K + K.T)
        scale = max(float(np.max(np.diag(K))), 0.0)
        if value is None:
            value = _value_part(act, K, m, coarse)
        L, Xz, Wz = value["L"], value["Xz"], value["Wz"]
        rz, nz = L.shape[1], len(Wz)
        inp = layout.input
        val = layout.is_value
        if c > m:
            Kdz = K[m:, :m]
            BL = Kdz @ np.linalg.pinv(L.T) if rz else np.zeros((c - m, 0))
            C = K[m:, m:] - BL @ BL.T
            lc, Qc = np.linalg.eigh(0.5 * (C + C.T))
            kc = lc > _EIG_RTOL * max(scale, 1e-300)
            R = Qc[:, kc] * np.sqrt(lc[kc])
            rd = R.shape[1]
            B = np.block([[L, np.zeros((m, rd))], [BL, R]])
            Xo, Wo = _tensor([_gh(omega_nodes)] * rd)
            no = len(Wo)
            X = np.concatenate([np.repeat(Xz, no, axis=0), np.tile(Xo, (nz, 1))], axis=1)
            W = np.outer(Wz, Wo).ravel()
            # the activation is evaluated once per value node (it depends on z only);
            # derivative channels: sigma'(z) (BL xi + R omega)
            zd = ((Xz @ BL.T)[:, None, :] + (Xo @ R.T)[None, :, :]).reshape(nz * no, c - m)
            phi = np.empty((nz, no, c))
            phi[:, :, val] = value["f"][:, None, :][:, :, inp[val]]
            phi = phi.reshape(nz * no, c)
            with np.errstate(over="ignore", invalid="ignore"):
                phi[:, ~val] = np.repeat(value["df"][:, inp[~val]], no, axis=0) * zd
        else:
            B, X, W = L, Xz, Wz
            Xo, Wo = np.zeros((1, 0)), np.ones(1)
            phi = value["f"][:, inp[val]]
        self.Xz, self.Wz, self.Xo, self.Wo = Xz, Wz, Xo, Wo
        self.grid = value["grid"]
        self.rz, self.rd = Xz.shape[1], Xo.shape[1]
        self.layout = layout
        self.B = B
        self.r = B.shape[1]
        self.X, self.W = X, W
        self.Bp = np.linalg.pinv(B) if self.r else np.zeros((0, c))
        self.phi = phi


# ----------------------------------------------------------------------------- tables


@lru_cache(maxsize=16)
def _channel_sets(m: int, d: int) -> dict:
    """Pairs, quads and sextets of channels (multisets), their index tables, and the input
    subset each one lives on."""
    layout = ChannelLayout(m, d)
    c, inp = layout.c, layout.input
    fam = {}
    for name, size in (("pairs", 2), ("quads", 4), ("sexts", 6)):
        fam[name] = np.array(
            list(itertools.combinations_with_replacement(range(c), size)), dtype=np.int64
        )
    qpos = {tuple(q): i for i, q in enumerate(fam["quads"].tolist())}
    spos = {tuple(q): i for i, q in enumerate(fam["sexts"].tolist())}
    pairs = fam["pairs"].tolist()
    npr = len(pairs)
    qid = np.empty((npr, npr), dtype=np.int64)
    sid = np.empty((npr,) * 3, dtype=np.int64)
    for A, B in itertools.product(range(npr), repeat=2):
        qid[A, B] = qpos[tuple(sorted(pairs[A] + pairs[B]))]
    for A, B, C in itertools.product(range(npr), repeat=3):
        sid[A, B, C] = spos[tuple(sorted(pairs[A] + pairs[B] + pairs[C]))]
    idx2 = np.empty((c, c), dtype=np.int64)
    P = fam["pairs"]
    idx2[P[:, 0], P[:, 1]] = idx2[P[:, 1], P[:, 0]] = np.arange(npr)
    groups: dict[tuple, dict] = {}
    for name, arr in fam.items():
        for i, chans in enumerate(arr.tolist()):
            I = tuple(sorted({int(inp[a]) for a in chans}))
            groups.setdefault(I, {}).setdefault(name, []).append(i)
    subsets = []
    for I, members in sorted(groups.items(), key=lambda kv: (len(kv[0]), kv[0])):
        S = list(I) + [m * (k + 1) + a for k in range(d) for a in I]
        subsets.append(
            (I, np.array(S, dtype=np.int64), {k: np.array(v) for k, v in members.items()})
        )
    return {**fam, "qid": qid, "sid": sid, "idx2": idx2, "subsets": subsets, "c": c}


_ORDERS = {"pairs": (0, 2, 4, 6, 8), "quads": (0, 2, 4), "sexts": (0,)}


def _from_x(T: np.ndarray, Bp: np.ndarray) -> np.ndarray:
    """(n,) + (r,) * k tensors of x-derivatives -> channel derivatives: every x index i is
    contracted with Bp[i, s] (the pseudo-inverse convention of docs/theory.md section 4)."""
    for _ in range(T.ndim - 1):
        T = np.tensordot(T, Bp, axes=([1], [0]))
    return T


@lru_cache(maxsize=64)
def _all_indices(q: int, kmax: int) -> tuple[np.ndarray, dict]:
    """Count vectors (n, q) of every multiset of size <= kmax from q symbols and their positions."""
    if q == 0:
        return np.zeros((1, 0), dtype=np.int64), {(): 0}
    counts = np.concatenate([_multi_indices(q, k)[0] for k in range(kmax + 1)])
    return counts, {tuple(v): i for i, v in enumerate(counts.tolist())}


def _hermite_all(x: np.ndarray, kmax: int) -> np.ndarray:
    """He_alpha(x) for every multi-index of order <= kmax, (n_alpha, P) (all orders)."""
    P, q = x.shape
    counts = _all_indices(q, kmax)[0]
    if q == 0:
        return np.ones((1, P))
    out = None
    for j in range(q):
        He = np.empty((kmax + 1, P))  # rows He_0..He_kmax of coordinate j, contiguous
        He[0] = 1.0
        if kmax >= 1:
            He[1] = x[:, j]
        for k in range(1, kmax):
            He[k + 1] = x[:, j] * He[k] - k * He[k - 1]
        out = He[counts[:, j]] if out is None else out * He[counts[:, j]]
    return out


@lru_cache(maxsize=64)
def _part_map(ra: int, rb: int, k: int, exact: bool) -> tuple[np.ndarray, np.ndarray]:
    """For the multi-indices over ra + rb coordinates (``exact``: the multisets of order k, as
    _multi_indices; else every one of order <= k, as _all_indices): the positions of their
    first-ra part and of their last-rb part among all multi-indices of order <= k of each part."""
    counts = (_multi_indices if exact else _all_indices)(ra + rb, k)[0]
    _, pa = _all_indices(ra, k)
    _, pb = _all_indices(rb, k)
    ia = np.array([pa[tuple(v[:ra])] for v in counts.tolist()], dtype=np.int64)
    ib = np.array([pb[tuple(v[ra:])] for v in counts.tolist()], dtype=np.int64)
    return ia, ib


def _grid_moments(G: np.ndarray, keeps: list, xs: list, kmax: int) -> np.ndarray:
    """sum_p G_fp He_alpha(x_p) for every multi-index of order <= kmax, (n_f, n_alpha), for the
    nodes of a pruned product grid built by :func:`_tensor` (``keeps[j]``: the flat positions
    (parent, j-th 1-D node) kept when coordinate j was added; ``xs[j]``: the 1-D nodes).

    One coordinate at a time, last first: the kept nodes are scattered into the dense
    (parents, n_j) table, which is contracted with the (n_j, kmax + 1) table of He_k(xs[j])."""
    nf = G.shape[0]
    T = G[:, :, None]  # (nf, nodes, trailing orders)
    for j in range(len(xs) - 1, -1, -1):
        x = xs[j]
        H = np.empty((len(x), kmax + 1))
        H[:, 0] = 1.0
        if kmax >= 1:
            H[:, 1] = x
        for k in range(1, kmax):
            H[:, k + 1] = x * H[:, k] - k * H[:, k - 1]
        parents = len(keeps[j - 1]) if j else 1
        D = np.zeros((nf, parents * len(x), T.shape[2]))
        D[:, keeps[j], :] = T
        D = D.reshape(nf, parents, len(x), -1)
        T = np.einsum("fpnt,nk->fpkt", D, H, optimize=True).reshape(nf, parents, -1)
    counts = _all_indices(len(xs), kmax)[0]
    return T.reshape((nf,) + (kmax + 1,) * len(xs))[(slice(None), *counts.T)]


def _split_moments(F: np.ndarray, x: np.ndarray, w: np.ndarray, kmax: int) -> np.ndarray:
    """sum_p w_p F_fp He_alpha(x_p) for every multi-index of order <= kmax, (n_f, n_alpha).

    He_alpha(x) = He_a(x_A) He_b(x_B) for a split x = (x_A, x_B) of the coordinates: the sums
    are one matrix product of the (a, node) and (node, b) tables, far smaller than the full
    (alpha, node) table when x has 3-4 coordinates."""
    nf, P = F.shape
    ra = (x.shape[1] + 1) // 2
    ia, ib = _part_map(ra, x.shape[1] - ra, kmax, False)
    out = 0.0
    for p0 in range(0, P, 16 * _CHUNK):  # chunks keep the (functions x a x nodes) table small
        ps = slice(p0, p0 + 16 * _CHUNK)
        HA = _hermite_all(x[ps, :ra], kmax)  # (nA, chunk)
        HB = _hermite_all(x[ps, ra:], kmax)  # (nB, chunk)
        FA = (F[:, ps] * w[ps])[:, None, :] * HA[None]  # (nf, nA, chunk)
        out = out + FA.reshape(nf * HA.shape[0], -1) @ HB.T
    return out.reshape(nf, -1, HB.shape[0])[:, ia, ib]


def _products(phi: np.ndarray, funcs: dict) -> dict:
    """Products of channel features at the nodes for every family, (n_f, P) each, built from
    shared pair and quad products (one multiplication per function and node)."""
    cS = phi.shape[1]
    lp = list(itertools.combinations_with_replacement(range(cS), 2))
    ppos = {p: i for i, p in enumerate(lp)}
    la = np.array(lp, dtype=np.int64)
    pt = np.ascontiguousarray(phi.T)
    Fp = pt[la[:, 0]] * pt[la[:, 1]]  # (n_pairs, P)
    out = {}
    quads = {}

    def quad(q):
        q = tuple(q)
        if q not in quads:
            quads[q] = Fp[ppos[q[:2]]] * Fp[ppos[q[2:]]]
        return quads[q]

    for name, loc in funcs.items():
        arr = np.empty((len(loc), phi.shape[0]))
        for i, row in enumerate(np.sort(loc, axis=1).tolist()):
            if len(row) == 2:
                arr[i] = Fp[ppos[tuple(row)]]
            elif len(row) == 4:
                arr[i] = quad(row)
            else:  # a sextet: a quad already built (if any) times the remaining pair
                q, p = row[:4], row[4:]
                for drop in itertools.combinations(range(6), 2):
                    rest = tuple(row[k] for k in range(6) if k not in drop)
                    if rest in quads:
                        q, p = rest, [row[k] for k in drop]
                        break
                np.multiply(quad(q), Fp[ppos[tuple(p)]], out=arr[i])
        out[name] = arr
    return out


def _subset_tables(rule: LayerRule, funcs: dict, orders: dict) -> dict:
    """Hermite moments E[F He_alpha(x)] of the functions on one subset, as channel-derivative
    tensors on the subset's channels (T34): {(family, k): (n_f,) + (c_S,) * k}.

    The rule is a product of the value rule (xi) and the conditional rule (omega), and
    He_alpha(x) = He_a(xi) He_b(omega): the omega sums are done first, for every b at once."""
    rz, rd, r = rule.rz, rule.rd, rule.r
    nz, no = len(rule.Wz), len(rule.Wo)
    out = {}
    prods = _products(rule.phi, funcs)
    for name in funcs:
        kmax = max(orders[name])
        nf = prods[name].shape[0]
        if nz == 0:  # every cell skipped: the functions vanish (e.g. relu, an empty cell)
            na, nb = len(_all_indices(rz, kmax)[0]), len(_all_indices(rd, kmax)[0])
            mom_all = np.zeros((nf, na, nb))
        elif rd == 0 and rz >= 2 and kmax > 0 and rule.grid is not None:
            mom_all = _grid_moments(prods[name] * rule.Wz, *rule.grid, kmax)[:, :, None]
        elif rd == 0 and rz >= 2 and kmax > 0:
            mom_all = _split_moments(prods[name], rule.Xz, rule.Wz, kmax)[:, :, None]
        else:
            Ho = (_hermite_all(rule.Xo, kmax) * rule.Wo).T  # (no, nb)
            nb = Ho.shape[1]
            inner = (prods[name].reshape(nf * nz, no) @ Ho).reshape(nf, nz, nb)
            mom_all = 0.0
            for z0 in range(0, nz, _CHUNK):  # chunks keep the (nodes x multi-indices) table small
                zs = slice(z0, z0 + _CHUNK)
                Hz = _hermite_all(rule.Xz[zs], kmax) * rule.Wz[zs]  # (na, chunk)
                mom_all = mom_all + np.matmul(Hz[None], inner[:, zs])  # (nf, na, nb)
        for k in orders[name]:
            ia, ib = _part_map(rz, rd, k, True)
            mom = mom_all[:, ia, ib]
            full = _full(mom, r, k).reshape((nf,) + (r,) * k)
            out[name, k] = _from_x(full, rule.Bp)
    return out


def _warn_near_singular(Kv: np.ndarray) -> None:
    """HierarchyWarning at the first layer where a full-rank subset of >= 3 inputs has a kernel
    with smallest/largest eigenvalue ratio below _KINK_COND_WARN (kinked activations).

    Kv : (L, m, m) the value kernels K_l the tables are evaluated at (layers 1..L)."""
    m = Kv.shape[1]
    for size in range(3, m + 1):
        for S in itertools.combinations(range(m), size):
            lam = np.linalg.eigvalsh(Kv[:, S][:, :, S])  # (L, size), ascending
            ratio = lam[:, 0] / np.maximum(lam[:, -1], 1e-300)
            bad = np.flatnonzero((ratio > _EIG_RTOL) & (ratio < _KINK_COND_WARN))
            if bad.size:
                ell = int(bad[0])
                warnings.warn(
                    f"hierarchy: the kernel of inputs {S} is nearly singular at layer {ell + 1} "
                    f"(z^({ell + 1})): smallest/largest eigenvalue {ratio[ell]:.1e} < "
                    f"{_KINK_COND_WARN:.0e}; the n^-2 terms of a kinked activation lose accuracy "
                    "there (measured 4e-5 relative at 5.6e-7) and table_error does not include "
                    "it. Use order=1 (corrlib.finite_width) or corrlib.estimate_cumulants for "
                    "these inputs",
                    HierarchyWarning,
                    stacklevel=4,
                )
                return


def _orthant_eligible(act, KS: np.ndarray, d: int) -> bool:
    """Subsets of 3-4 inputs (no directions) of full rank, scale-invariant kinks: the cells are
    the orthants of z and the tables are truncated moments (T41)."""
    m = KS.shape[0]
    if not (act.kink and act.is_scale_invariant and d == 0 and m >= 3):
        return False
    lam = np.linalg.eigvalsh(0.5 * (KS + KS.T))
    return bool(lam[0] > _ORTHANT_RTOL * lam[-1])


def _orthant_tables(act, KS: np.ndarray, funcs: dict, orders: dict) -> dict:
    """Exact tables of (T34) on a full-rank subset of m = 3, 4 inputs for a scale-invariant
    kinked activation (T41): with z = L xi, sigma(z_a) = a_s L_a . xi on the cell of signs s
    (an orthant of z), so E[F He_alpha(xi)] is a sum over cells of truncated moments of xi
    (corrlib.model.orthant, Stein recursion down to orthant probabilities), contracted with
    the rows L_a of the function's channels; the Hermite tensors are formed in xi (no
    cancellation against K) and turned into channel derivatives with L^-1 as in _from_x."""
    m = KS.shape[0]
    lam, Q = np.linalg.eigh(0.5 * (KS + KS.T))
    L = Q * np.sqrt(lam)
    ap, am = float(act.f(np.array(1.0))), -float(act.f(np.array(-1.0)))
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=m)))
    slope = np.where(signs > 0, ap, am)  # (ns, m)
    keep = np.all(slope != 0.0, axis=1)  # every function has a factor sigma(z_i) for each i
    signs, slope = signs[keep], slope[keep]
    Ls = signs[:, :, None] * L[None]  # z' = S z = (S L) xi > 0 on the cell
    om = OrthantMoments(np.einsum("sik,sjk->sij", Ls, Ls), Ls, standard=True)
    Bp = np.linalg.inv(L)
    I = np.eye(m)
    out = {}
    for name, loc in funcs.items():
        loc = np.asarray(loc)
        p = loc.shape[1]
        coef = np.prod(slope[:, loc], axis=2)  # (ns, nf)
        mom = {}
        for k in sorted({0, *orders[name]}):
            T = om.truncated(2**m - 1, p + k)  # (ns,) + (m,) * (p + k): E xi^(x)(p+k) 1{cell}
            vals = []
            for f in range(len(loc)):
                v = T
                for a in loc[f]:  # contract the function's factors z_a = L_a . xi
                    v = np.tensordot(v, L[a], axes=([1], [0]))
                vals.append(np.tensordot(coef[:, f], v, axes=(0, 0)))
            mom[k] = np.array(vals)  # (nf,) + (m,) * k
        herm = {0: mom[0]}
        if 2 in orders[name]:
            herm[2] = mom[2] - mom[0][:, None, None] * I
        if 4 in orders[name]:
            herm[4] = _hermite4(mom[4], mom[2], mom[0], I)
        for k in orders[name]:
            out[name, k] = _from_x(herm[k], Bp)
    return out


def _hermite4(M4: np.ndarray, M2: np.ndarray, m0: np.ndarray, I: np.ndarray) -> np.ndarray:
    """E F He_4(xi) = M4 - sym_6 M2 (x) I + m0 sym_3 I (x) I, for a batch (nf,) of functions."""
    S = M4.copy()
    for a, b, c, d in ((0, 1, 2, 3), (0, 2, 1, 3), (0, 3, 1, 2)):
        for (i, j), (k, l) in (((a, b), (c, d)), ((c, d), (a, b))):
            idx = "".join("pqrs"[[i, j, k, l].index(x)] for x in range(4))
            S -= np.einsum(f"fpq,rs->f{idx}", M2, I)
        idx = "".join("pqrs"[[a, b, c, d].index(x)] for x in range(4))
        S += m0[:, None, None, None, None] * np.einsum(f"pq,rs->{idx}", I, I)[None]
    return S


def _zero_linear_pairs(glob: dict, sets: dict) -> None:
    """Scale-invariant activations: the pair functions of one input (sigma^2, sigma sigma' dz,
    sigma'^2 dz dz') have G_A linear in K (e.g. E sigma'(z)^2 dz^2 = (a_+^2 + a_-^2)/2 K_dd), so
    their second and higher K-derivatives D4, D6, D8 vanish identically. Set them to 0: their
    quadrature rounding (~1e-13) would otherwise be multiplied by V2, T and V1^2, which grow
    like l^2-l^3, and the n^-2 mean would drift by ~1e-8 K over 100 layers."""
    for I, _S, members in sets["subsets"]:
        if len(I) == 1 and "pairs" in members:
            for k in (4, 6, 8):
                glob["pairs", k][members["pairs"]] = 0.0


def _tables(
    act, K: np.ndarray, layout: ChannelLayout, derivatives: bool, coarse: bool, cells: bool = True
) -> dict:
    """Every Gaussian table of one step at the kernel K (T34), in channel coordinates:
    G (pairs), EQ (quads), E6 (sextets); with ``derivatives`` also D2..D8 of the pairs
    (n_pairs, c^k) and Q2, Q4 of the quads. One rule per distinct input subset; full-rank
    subsets of 3-4 inputs of a scale-invariant kinked activation by exact orthant moments
    (``cells``; else the kink-split node rule (T41)-(T43))."""
    sets = _channel_sets(layout.m, layout.d)
    c = sets["c"]
    orders = _ORDERS if derivatives else dict.fromkeys(_ORDERS, (0,))
    n = {name: len(sets[name]) for name in _ORDERS}
    glob = {(name, k): np.zeros((n[name],) + (c,) * k) for name in _ORDERS for k in orders[name]}
    for I, S, members in sets["subsets"]:
        sub = ChannelLayout(len(I), layout.d)
        pos = np.full(c, -1, dtype=np.int64)
        pos[S] = np.arange(len(S))
        by_nodes: dict[int, dict] = {}
        for name, idx in members.items():
            nodes = _OMEGA_FAMILY[name] if derivatives and layout.d else 4
            by_nodes.setdefault(nodes, {})[name] = pos[sets[name][idx]]
        KS = K[np.ix_(S, S)]
        if cells and _orthant_eligible(act, KS, layout.d):
            locs = [_orthant_tables(act, KS, {nm: f for d_ in by_nodes.values()
                                              for nm, f in d_.items()}, orders)]  # fmt: skip
        else:
            value = _value_part(act, KS, sub.m, coarse, derivatives=bool(layout.d))
            locs = [
                _subset_tables(
                    LayerRule(act, KS, sub, coarse=coarse, omega_nodes=nodes, value=value),
                    funcs,
                    orders,
                )
                for nodes, funcs in by_nodes.items()
            ]
        for loc in locs:
            for (name, k), val in loc.items():
                glob[name, k][np.ix_(members[name], *([S] * k))] = val
    if derivatives and act.is_scale_invariant:
        _zero_linear_pairs(glob, sets)
    t = {"G": glob["pairs", 0], "EQ": glob["quads", 0], "E6": glob["sexts", 0]}
    if derivatives:
        for k in (2, 4, 6, 8):
            t[f"D{k}"] = glob["pairs", k].reshape(n["pairs"], -1)
        for k in (2, 4):
            t[f"Q{k}"] = glob["quads", k].reshape(n["quads"], -1)
    for key, arr in t.items():
        if not np.all(np.isfinite(arr)):
            raise OverflowError(f"hierarchy: the Gaussian table {key} is not finite at this layer")
    return t


# ----------------------------------------------------------------------------- the step


def _step(t: dict, sets: dict, C_W: float, rho: float, state: dict, own: dict) -> dict:
    """One layer of (T36)-(T38) in channel coordinates, on unordered channel pairs. ``state``:
    slot-1 (the engine's) and slot-2 coefficients of the current layer; ``own``: this
    recursion's own slot-1 coefficients (a check of the tables)."""
    qid, sid, c = sets["qid"], sets["sid"], sets["c"]
    G, EQ = t["G"], t["EQ"]
    npr = G.size
    C0 = C_W**2 * (EQ[qid] - np.outer(G, G))
    EQq = EQ[qid]
    k3F = (
        t["E6"][sid]
        - EQq[:, :, None] * G[None, None, :]
        - EQq[:, None, :] * G[None, :, None]
        - EQq[None, :, :] * G[:, None, None]
        + 2.0 * G[:, None, None] * G[None, :, None] * G[None, None, :]
    )
    out = {
        "D1": np.zeros(npr),
        "V1": rho * C0,
        "D2": np.zeros(npr),
        "V2": np.zeros((npr, npr)),
        "T": rho**2 * C_W**3 * k3F,
        "oD1": np.zeros(npr),
        "oV1": rho * C0,
    }
    if "D2" not in t:
        return out
    r2 = c * c
    M1 = 0.5 * C_W * t["D2"]  # (npr, c^2): m1[delta] = (C_W/2) D2 : delta
    M2 = 0.25 * C_W * t["D4"]
    M3 = 0.125 * C_W * t["D6"]
    M4 = 0.0625 * C_W * t["D8"]
    M2r = M2.reshape(npr, r2, r2)
    d1 = state["D1"].reshape(r2)
    v1 = state["V1"].reshape(r2, r2)
    d2 = state["D2"].reshape(r2)
    v2 = state["V2"].reshape(r2, r2)
    tt = state["T"].reshape(r2, r2, r2)
    vv = v1.reshape(-1)
    # (T36): the mean
    M3v = (M3.reshape(npr * r2, r2 * r2) @ vv).reshape(npr, r2)  # m3[., V]
    M4v = (M4.reshape(npr * r2 * r2, r2 * r2) @ vv).reshape(npr, r2 * r2)  # m4[., ., V]
    out["D2"] = (
        M1 @ d2
        + 0.5 * M2 @ v2.reshape(-1)
        + 0.5 * M2 @ np.outer(d1, d1).reshape(-1)
        + M3 @ tt.reshape(-1) / 6.0
        + 0.5 * M3v @ d1
        + M4v @ vv / 8.0
    )
    # (T37): the covariance
    D2F, D4F = t["D2"], t["D4"]
    Q2, Q4 = t["Q2"][qid], t["Q4"][qid]  # (npr, npr, c^k)
    c1 = C_W**2 * (0.5 * Q2 - 0.5 * D2F[:, None, :] * G[None, :, None]
                   - 0.5 * G[:, None, None] * D2F[None, :, :])  # fmt: skip
    D4v = D4F @ vv
    c2v = C_W**2 * (0.25 * Q4 @ vv - 0.25 * np.outer(D4v, G) - 0.25 * np.outer(G, D4v)
                    - 0.5 * D2F @ v1 @ D2F.T)  # fmt: skip
    w = M1 @ v1  # w_A = sum_i m1_{A,i} V_{i.}
    X = 0.5 * (M1 @ tt.reshape(r2, r2 * r2)) @ M2.T + w @ (M2r @ d1).T + 0.5 * w @ M3v.T
    Y = np.einsum("aij,ik,jl->akl", M2r, v1, v1, optimize=True)
    out["V2"] = (
        M1 @ v2 @ M1.T
        + rho * (c1 @ d1 + 0.5 * c2v)
        + X
        + X.T
        + 0.5 * Y.reshape(npr, -1) @ M2.reshape(npr, -1).T
    )
    # (T38): the third cumulant
    T3 = np.einsum("ai,bj,ck,ijk->abc", M1, M1, M1, tt, optimize=True)
    P1 = np.einsum("ak,bck->abc", w, c1)
    P2 = np.einsum("ak,ckl,bl->abc", w, M2r, w, optimize=True)
    out["T"] = (
        out["T"]
        + T3
        + rho * (P1 + P1.transpose(1, 0, 2) + P1.transpose(1, 2, 0))
        + P2
        + P2.transpose(2, 0, 1)
        + P2.transpose(0, 2, 1)
    )
    # the engine's slot-1 recursion (T10)-(T11) with these tables: a check of the quadrature
    od1, ov1 = own["D1"].reshape(r2), own["V1"].reshape(r2, r2)
    out["oD1"] = M1 @ od1 + 0.5 * M2 @ ov1.reshape(-1)
    out["oV1"] = rho * C0 + M1 @ ov1 @ M1.T
    return out


def _expand(out: dict, idx2: np.ndarray) -> dict:
    """Unordered-pair arrays -> full channel tensors."""
    c = idx2.shape[0]
    res = {key: out[key][idx2] for key in ("D1", "D2", "oD1")}
    for key in ("V1", "V2", "oV1"):
        res[key] = out[key][idx2[:, :, None, None], idx2[None, None, :, :]]
    sel = (idx2.reshape((c, c) + (1,) * 4), idx2.reshape((1, 1, c, c, 1, 1)),
           idx2.reshape((1,) * 4 + (c, c)))  # fmt: skip
    res["T"] = out["T"][sel]
    return res


def multi_channel_series(
    net, K: np.ndarray, Delta: np.ndarray, V: np.ndarray, layout: ChannelLayout, n_ref: float,
    *, check: bool = True,
) -> dict:  # fmt: skip
    """The n^-2 terms of E Sigma, Cov Sigma and kappa_3(Sigma) for c <= 4 channels (T36)-(T38).

    Parameters
    ----------
    net : Network
    K, Delta, V : ndarray
        :func:`corrlib.finite_width`'s K (L+1, c, c), Delta (L+1, c, c), V (L+1, c, c, c, c).
    layout : ChannelLayout
    n_ref : float
        Reference width: slot k holds the coefficient of n_ref^-k.
    check : bool
        Also evaluate the tables at the second and last layer with a coarser rule and report
        the largest relative change of the slot-2 terms (``table_error``; an upper bound of
        the quadrature error, 0 where the rules are exact: scale-invariant activations).

    Returns
    -------
    dict
        ``D2`` (L+1, c, c), ``V2`` (L+1, c, c, c, c), ``T`` (L+1,) + (c, c) * 3: the
        coefficients of n_ref^-2; ``own_D1``, ``own_V1``: the slot-1 coefficients of (T10)-(T11)
        evaluated with this module's tables (to compare with the engine's);
        ``table_error`` (float).

    Examples
    --------
    >>> import numpy as np, corrlib
    >>> net = corrlib.Network.uniform("tanh", 32, 2, n_in=2, C_W=1.5, C_b=0.2)
    >>> fw = corrlib.finite_width(net, np.eye(2))
    >>> out = multi_channel_series(net, fw.K, fw.Delta, fw.V, fw.layout, 32.0)
    >>> out["T"].shape, bool(np.allclose(out["own_V1"], fw.V * 32, rtol=1e-9, atol=0))
    ((3, 2, 2, 2, 2, 2, 2), True)
    """
    c = layout.c
    L = K.shape[0] - 1
    act, C_W = net.activation, net.C_W
    sets = _channel_sets(layout.m, layout.d)
    idx2 = sets["idx2"]
    D2 = np.zeros((L + 1, c, c))
    V2 = np.zeros((L + 1,) + (c,) * 4)
    T = np.zeros((L + 1,) + (c,) * 6)
    oD1 = np.zeros((L + 1, c, c))
    oV1 = np.zeros((L + 1,) + (c,) * 4)
    err = 0.0
    if act.kink:
        _warn_near_singular(K[:L, : layout.m, : layout.m])
    for ell in range(1, L + 1):
        rho = n_ref / net.widths[ell]
        state = {"D1": Delta[ell - 1] * n_ref, "V1": V[ell - 1] * n_ref, "D2": D2[ell - 1],
                 "V2": V2[ell - 1], "T": T[ell - 1]}  # fmt: skip
        own = {"D1": oD1[ell - 1], "V1": oV1[ell - 1]}
        need = ell > 1
        tab = _tables(act, K[ell - 1], layout, need, coarse=False)
        out = _expand(_step(tab, sets, C_W, rho, state, own), idx2)
        if check and not act.kink and ell in {2, L}:
            tc = _tables(act, K[ell - 1], layout, need, coarse=True)
            oc = _expand(_step(tc, sets, C_W, rho, state, own), idx2)
            for key in ("D2", "V2", "T"):
                scale = np.max(np.abs(out[key]))
                if scale > 0:
                    err = max(err, float(np.max(np.abs(oc[key] - out[key])) / scale))
        D2[ell], V2[ell], T[ell] = out["D2"], out["V2"], out["T"]
        oD1[ell], oV1[ell] = out["oD1"], out["oV1"]
        for key, arr in (("D2", D2), ("V2", V2), ("T", T)):
            if not np.all(np.isfinite(arr[ell])):
                raise OverflowError(
                    f"hierarchy: the n^-2 term {key} is not finite at layer {ell + 1} "
                    f"(z^({ell + 1}))"
                )
    return {"D2": D2, "V2": V2, "T": T, "own_D1": oD1, "own_V1": oV1, "table_error": err}
