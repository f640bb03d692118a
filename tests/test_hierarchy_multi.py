"""The several-channel hierarchy, orders 1 and 2 (docs/theory.md section 5b, (T33)-(T40)).

References, none of them the code under test:
- order 1 and the n^0, n^-1 slots of order 2: ``corrlib.finite_width`` (the channel engine);
- c = 1: the single-channel series (T19)-(T27), an independent implementation (natural-unit
  Hermite tables, a scalar Markov chain) of the same expansion;
- ReLU value + derivative channel: the exact law (T14)/(T16) of the derivative block, expanded
  to n^-2 by hand;
- two inputs and a derivative direction (tanh): the collapsed Monte Carlo sampler (T3).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import corrlib
from corrlib.model.channels import ChannelLayout
from corrlib.model.gaussian import kink_rule
from corrlib.model.orthant import OrthantMoments
from corrlib.theory import hierarchy
from corrlib.theory._expansion_multi import (
    LayerRule,
    _channel_sets,
    _tables,
    multi_channel_series,
)
from corrlib.theory.recursion import finite_width

RNG = np.random.default_rng(20261202)
X3 = RNG.normal(size=(4, 3))
U3 = RNG.normal(size=(3, 3))

# (m inputs, d directions): c = 2 (inputs), 2 (input + direction), 3, 4 (inputs + direction),
# 4 (inputs), 4 (one input, three directions)
LAYOUTS = [(2, 0), (1, 1), (3, 0), (2, 1), (4, 0), (1, 3)]
ACTS = [("tanh", 1.5, 0.2), ("relu", 2.0, 0.1), ("gelu", 1.3, 0.1)]


def _net(name, C_W, C_b, n=24, L=4):
    return corrlib.Network.uniform(name, n, L, n_in=3, C_W=C_W, C_b=C_b)


def _inputs(m, d):
    return X3[:m], (U3[:d] if d else None)


# ------------------------------------------------------------------------- order 1


@pytest.mark.parametrize("act", ACTS, ids=[a[0] for a in ACTS])
@pytest.mark.parametrize("md", LAYOUTS, ids=[f"m{m}d{d}" for m, d in LAYOUTS])
def test_order1_is_finite_width(act, md):
    net = _net(*act)
    X, U = _inputs(*md)
    fw = finite_width(net, X, U)
    h = hierarchy(net, X, U, order=1)
    c = md[0] * (1 + md[1])
    assert h.layout.c == c and h.order == 1
    scale_m, scale_v = np.max(np.abs(fw.mean)), np.max(np.abs(fw.V))
    assert np.max(np.abs(h.mean - fw.mean)) <= 1e-12 * scale_m
    assert np.max(np.abs(h.V - fw.V)) <= 1e-12 * scale_v
    assert np.max(np.abs(h.kappa(1, 0) - fw.K)) <= 1e-12 * scale_m


# cases of order 2 cheap enough for a test (one value dimension per input; kinks on <= 2 inputs)
ORDER2 = [
    ("tanh", (2, 0)),
    ("tanh", (1, 1)),
    ("tanh", (3, 0)),
    ("relu", (2, 0)),
    ("relu", (1, 1)),
    ("gelu", (1, 1)),
    ("gelu", (3, 0)),
]


@pytest.fixture(scope="module", params=ORDER2, ids=[f"{a}-m{m}d{d}" for a, (m, d) in ORDER2])
def order2(request):
    name, md = request.param
    act = next(a for a in ACTS if a[0] == name)
    net = _net(*act)
    X, U = _inputs(*md)
    fw = finite_width(net, X, U)
    h = hierarchy(net, X, U, order=2)
    out = multi_channel_series(net, fw.K, fw.Delta, fw.V, fw.layout, 24.0)
    return net, fw, h, out


def test_order2_keeps_the_order1_terms(order2):
    """The n^0 and n^-1 slots of order 2 are finite_width's, to 1e-12."""
    _, fw, h, _ = order2
    assert h.method == "hermite-multi"
    np.testing.assert_array_equal(h.kappa(1, 0), fw.K)
    assert np.max(np.abs(h.kappa(1, 1) - fw.mean)) <= 1e-12 * np.max(np.abs(fw.mean))
    assert np.max(np.abs(h.kappa(2, 1) - fw.V)) <= 1e-12 * np.max(np.abs(fw.V))
    assert np.all(h.term(3, 1) == 0) and np.all(h.term(3, 0) == 0) and np.all(h.term(2, 0) == 0)


def test_own_tables_reproduce_the_engine(order2):
    """(T10)-(T11) evaluated with this module's tables (T34) against the channel engine.

    Both are quadratures of the same integrals; the engine is accurate to ~1e-12 (G2, G4, D2)
    and this module's trapezoid/Gauss rules to ~1e-10 of each table (measured, table_error
    bound <= 2e-5 on the n^-2 terms). A wrong derivative convention (ordered pairs, factors
    1/2^r) or a wrong pseudo-inverse gives O(1) differences; 1e-7 separates the two."""
    _, fw, _, out = order2
    n = 24.0
    Kmax = np.max(np.abs(fw.K))
    for j, own, ref in ((1, out["own_D1"], fw.Delta * n), (2, out["own_V1"], fw.V * n)):
        # (relu's Delta vanishes up to rounding, ~1e-14 K: absolute floor 1e-12 K^j)
        assert np.max(np.abs(own - ref)) <= 1e-7 * np.max(np.abs(ref)) + 1e-12 * Kmax**j


def test_symmetries_of_the_order2_tensors(order2):
    _, _, h, _ = order2
    V2, T = h.term(2, 2), h.term(3, 2)
    np.testing.assert_allclose(V2, V2.transpose(0, 2, 1, 3, 4), rtol=0, atol=0)
    np.testing.assert_allclose(
        V2, V2.transpose(0, 3, 4, 1, 2), rtol=1e-12, atol=1e-14 * np.max(np.abs(V2))
    )
    sT = 1e-12 * np.max(np.abs(T))
    for perm in ((0, 3, 4, 1, 2, 5, 6), (0, 5, 6, 3, 4, 1, 2), (0, 2, 1, 3, 4, 5, 6)):
        np.testing.assert_allclose(T, T.transpose(perm), rtol=0, atol=sT)


# ------------------------------------------------------------------------- c = 1 consistency


@pytest.mark.parametrize(
    "name, C_W, C_b", [("tanh", 1.5, 0.2), ("tanh", 1.0, 0.0), ("gelu", 1.3, 0.1),
                       ("swish", 1.3, 0.1), ("relu", 2.0, 0.1), ("leaky_relu", 1.9, 0.2)],
)  # fmt: skip
def test_one_channel_equals_the_single_channel_series(name, C_W, C_b):
    """c = 1 through the several-channel code against the scalar series (T19)-(T27).

    The single-channel coefficients are accurate to <= 1e-9 relative for k <= 6 (its
    docstring); the several-channel tables of one value dimension (trapezoid step 0.25/s,
    exact for the scale-invariant class) to ~1e-12. 1e-8 of each layer's largest term."""
    net = corrlib.Network.uniform(name, 32, 8, n_in=1, C_W=C_W, C_b=C_b)
    X = np.array([[1.2]])
    fw = finite_width(net, X)
    out = multi_channel_series(net, fw.K, fw.Delta, fw.V, fw.layout, 32.0)
    h = hierarchy(net, X, order=2)
    K = h.K[:, 0, 0]
    for j, mine in ((1, out["D2"]), (2, out["V2"]), (3, out["T"])):
        ref = h.coefficients(j)[:, 2].reshape(-1)
        scale = np.maximum(np.abs(ref), K**j * 1e-3)
        assert np.all(np.abs(mine.reshape(-1) - ref) <= 1e-8 * scale), (j, mine.reshape(-1), ref)


def test_one_channel_unequal_widths_equals_the_single_channel_series():
    """Unequal widths: slot k holds every term with k factors 1/n_l, with n_ref the harmonic
    mean (T24); the several-channel recursion carries rho = n_ref/n_l per conditional
    covariance and rho^2 per conditional third cumulant (T37)-(T38). Same bound as above."""
    net = corrlib.Network([1, 20, 40, 10, 30, 25, 1], "tanh", 1.5, 0.2)
    X = np.array([[1.2]])
    fw = finite_width(net, X)
    h = hierarchy(net, X, order=2)
    out = multi_channel_series(net, fw.K, fw.Delta, fw.V, fw.layout, h.n_ref)
    for j, key in ((1, "D2"), (2, "V2"), (3, "T")):
        ref = h.term(j, 2).reshape(-1) * h.n_ref**2
        assert np.max(np.abs(out[key].reshape(-1) - ref)) <= 1e-8 * np.max(np.abs(ref))


# ------------------------------------------------------------------------- ReLU, (T16)


@pytest.mark.parametrize("C_b", [0.0, 0.3])
def test_relu_derivative_block_matches_t16_through_n2(C_b):
    """Value + derivative channel, ReLU at C_W = 2: the derivative block obeys (T14)/(T16),
    S_l = S_{l-1} X_l with E X = 1, E X^2 = 1 + 5/n, E X^3 = 1 + 15/n + 44/n^2, so through n^-2
    E S_l = K, Var S_l / K^2 = 5 l/n + 25 C(l,2)/n^2 and kappa_3(S_l)/K^3 = (44 l + 150 C(l,2))/n^2.
    The rules are exact for ReLU (polar/half-line Gauss, piecewise polynomial integrands), so
    only rounding is left: 1e-10 of the K^j scale."""
    n, L = 16, 6
    net = corrlib.Network.uniform("relu", n, L, n_in=2, C_W=2.0, C_b=C_b)
    h = hierarchy(net, [[1.0, 0.5]], directions=[[0.3, 1.0]], order=2)
    K = h.K[:, 1, 1]
    np.testing.assert_allclose(K, K[0], rtol=1e-14)  # chi_perp = 1
    ell = np.arange(L + 1)
    C2 = ell * (ell - 1) / 2
    c1 = h.coefficients(1)[:, :, 1, 1]
    c2 = h.coefficients(2)[:, :, 1, 1, 1, 1]
    c3 = h.coefficients(3)[:, :, 1, 1, 1, 1, 1, 1]
    tol = 1e-10
    assert np.all(np.abs(c1[:, 1:]) <= tol * K[:, None])
    assert np.all(np.abs(c2[:, 1] - 5 * ell * K**2) <= tol * K**2)
    assert np.all(np.abs(c2[:, 2] - 25 * C2 * K**2) <= tol * K**2)
    assert np.all(np.abs(c3[:, 2] - (44 * ell + 150 * C2) * K**3) <= tol * K**3)
    # and the partial sums against the exact law at this width, to O(n^-3)
    exact_var = K**2 * ((1 + 5 / n) ** ell - 1)
    resid = np.abs(h.kappa(2)[:, 1, 1, 1, 1] - exact_var)
    assert np.all(
        resid <= 1.01 * K**2 * sum(math.comb(L, k) * (5 / n) ** k for k in range(3, L + 1))
    )


@pytest.mark.parametrize("C_b", [0.0, 0.3])
def test_relu_derivative_block_stays_exact_over_100_layers(C_b):
    """The same (T16) identities after 100 layers: the tables D4, D6, D8 of one-input pairs
    vanish identically for the scale-invariant class (G_A linear in K) and are exactly 0, so the
    n^-2 mean of the derivative block is 0 and nothing is amplified by V2 ~ l^2, T ~ l^3
    (before: the mean term drifted to 2.6e-9 K, with table_error 0). Measured: mean 0,
    V2 1.1e-13, T 7e-14 relative; bounds 1e-15 K, 1e-11 of each term. At L/n = 6.25 the
    series is far outside its range, which the range warning says (from L/n = 1/2); the
    identities tested here hold at every depth."""
    n, L = 16, 100
    net = corrlib.Network.uniform("relu", n, L, n_in=2, C_W=2.0, C_b=C_b)
    with pytest.warns(corrlib.HierarchyWarning, match="outside its range at layer 9 "):
        h = hierarchy(net, [[1.0, 0.5]], directions=[[0.3, 1.0]], order=2)
    K = h.K[:, 1, 1]
    ell = np.arange(L + 1)
    C2 = ell * (ell - 1) / 2
    c1 = h.coefficients(1)[:, 2, 1, 1]
    c2 = h.coefficients(2)[:, 2, 1, 1, 1, 1]
    c3 = h.coefficients(3)[:, 2, 1, 1, 1, 1, 1, 1]
    assert np.all(np.abs(c1) <= 1e-15 * K)
    assert np.all(np.abs(c2 - 25 * C2 * K**2) <= 1e-11 * 25 * np.maximum(C2, 1) * K**2)
    ref3 = (44 * ell + 150 * C2) * K**3
    assert np.all(np.abs(c3 - ref3) <= 1e-11 * np.maximum(ref3, K**3))
    assert h.table_error[0] == 0.0  # exact rules, and the one cancelling term is exact


# ------------------------------------------------------------------------- Monte Carlo


def _mc_case(case, n, L):
    if case == "two_inputs":
        net = corrlib.Network.uniform("tanh", n, L, n_in=2, C_W=2.0, C_b=0.1)
        return net, np.array([[1.0, 0.0], [0.6, 0.8]]), None
    net = corrlib.Network.critical("tanh", n, L, n_in=2)
    return net, np.array([[1.0, 0.3]]), np.array([[0.0, 1.0]])


MC_CASES = [("two_inputs", 32, 8, 100_000), ("derivative", 32, 8, 100_000),
            ("two_inputs", 64, 16, 150_000), ("derivative", 64, 16, 120_000)]  # fmt: skip


@pytest.mark.parametrize("case, n, L, N", MC_CASES)
def test_order2_removes_the_order1_gap_against_monte_carlo(case, n, L, N):
    """Every unique entry of V at the output where order 1 misses the collapsed Monte Carlo by
    more than 10 standard errors: order 2 removes at least 3/4 of that miss. At a 10-se gap the
    allowance (2.5 se) is the noise bound of this check (z = 2.5), larger for larger gaps; the
    n^-3 truncation must fit in it too. The test fails if no entry is resolved."""
    net, X, U = _mc_case(case, n, L)
    h = hierarchy(net, X, U, order=2)
    mc = corrlib.estimate_cumulants(net, X, N, U, method="collapsed", rng=11)
    o1, o2 = h.kappa(2, 1)[-1], h.kappa(2, 2)[-1]
    V, se = mc.V[-1], mc.V_se[-1]
    c = h.layout.c
    pairs = [(a, b) for a in range(c) for b in range(a, c)]
    resolved = 0
    for i, (a, b) in enumerate(pairs):
        for cc, d in pairs[i:]:
            gap = abs(o1[a, b, cc, d] - V[a, b, cc, d])
            if gap > 10 * se[a, b, cc, d]:
                resolved += 1
                assert abs(o2[a, b, cc, d] - V[a, b, cc, d]) <= 0.25 * gap, (a, b, cc, d)
    assert resolved >= 1


# ------------------------------------------------------------------------- API


@pytest.mark.parametrize("md", [(2, 0), (1, 1), (3, 0)])
def test_result_api_shapes(md):
    net = _net("tanh", 1.5, 0.2, n=20, L=3)
    X, U = _inputs(*md)
    h = hierarchy(net, X, U, order=2)
    c = h.layout.c
    assert h.term(1, 2).shape == (4, c, c)
    assert h.term(2, 1).shape == (4,) + (c,) * 4
    assert h.term(3, 2).shape == (4,) + (c,) * 6
    assert h.kappa(3).shape == (4,) + (c,) * 6 and h.kappa(2, 1).shape == (4,) + (c,) * 4
    assert h.coefficients(1).shape == (4, 3, c, c)
    assert h.coefficients(3).shape == (4, 3) + (c,) * 6
    np.testing.assert_allclose(h.kappa(2), h.term(2, 1) + h.term(2, 2), rtol=1e-15)
    np.testing.assert_allclose(h.coefficients(2)[:, 2] / 20.0**2, h.term(2, 2), rtol=1e-15)
    assert h.T is None and h.normalized_kappa4().shape == (4, c)
    df = h.to_frame()
    assert list(df.columns) == "layer quantity a b c d e f value se order".split()
    assert set(df.order) == {0, 1, 2} and set(df.quantity) == {"mean", "V", "T"}
    full = df[df.order == 2].set_index(["quantity", "layer", "a", "b"])
    row = full.loc[("mean", 4, 0, c - 1)]
    assert float(np.ravel(row.value)[0]) == pytest.approx(h.mean[-1, 0, c - 1], rel=1e-15)
    with pytest.raises(ValueError, match="c = 1"):
        h.output_cumulants()
    assert h.table_error.shape == (1,) and 0 <= h.table_error[0] < 1e-3


def test_unequal_widths_order2_terms_carry_their_widths():
    """Slot k holds the terms with k factors 1/n_l; equal widths give the same numbers."""
    X = X3[:2]
    a = hierarchy(corrlib.Network([3, 20, 20, 20, 1], "tanh", 1.5, 0.2), X, order=2)
    b = hierarchy(corrlib.Network([3, 20, 40, 10, 1], "tanh", 1.5, 0.2), X, order=2)
    assert np.all(np.isfinite(b.kappa(3))) and not np.allclose(a.term(2, 2), b.term(2, 2))
    with pytest.raises(ValueError, match="equal hidden widths"):
        b.coefficients(2)


def test_layer_rule_whitens_the_kernel():
    K = np.array([[1.0, 0.3, 0.2, 0.0], [0.3, 0.8, 0.1, 0.2], [0.2, 0.1, 0.5, 0.1],
                  [0.0, 0.2, 0.1, 0.6]])  # fmt: skip
    rule = LayerRule(corrlib.get_activation("tanh"), K, ChannelLayout(2, 1))
    np.testing.assert_allclose(rule.B @ rule.B.T, K, atol=1e-14)
    zeta = rule.X @ rule.B.T
    np.testing.assert_allclose((zeta * rule.W[:, None]).T @ zeta, K, atol=1e-13)


# ------------------------------------------------------------------------- bad input

NET2 = corrlib.Network.uniform("tanh", 16, 3, n_in=3)


@pytest.mark.parametrize("order", [0, -2])
def test_order_below_one(order):
    with pytest.raises(ValueError, match=rf"order must be an integer in \[1, 12\]; got {order}"):
        hierarchy(NET2, X3[:2], order=order)


@pytest.mark.parametrize("order", [1.0, 2.5, "2", None, True])
def test_order_not_an_integer(order):
    with pytest.raises(TypeError, match=r"order must be an integer in \[1, 12\]; got"):
        hierarchy(NET2, X3[:2], order=order)


@pytest.mark.parametrize("order", [3, 6, 12])
def test_order_above_two_with_several_channels(order):
    with pytest.raises(
        ValueError, match=rf"order must be 1 or 2 for several channels; got {order}"
    ):
        hierarchy(NET2, X3[:2], order=order)
    with pytest.raises(ValueError, match=r"c = 2 channels: m = 1 inputs, d = 1 directions"):
        hierarchy(NET2, X3[:1], directions=U3[:1], order=order)


def test_order2_with_more_than_four_channels():
    with pytest.raises(ValueError, match=r"order 2 with several channels needs c <= 4 .*got c = 6"):
        hierarchy(NET2, X3[:3], directions=U3[:1], order=2)
    assert hierarchy(NET2, X3[:3], directions=U3[:1], order=1).layout.c == 6


# ------------------------------------------------------------------------- kinks on 3-4 inputs

KINKED = [("relu", 2.0, 0.1), ("leaky_relu", 1.9, 0.2)]


def _slopes(act):
    """sigma(z) = a_+ z on z > 0, a_- z on z < 0."""
    return float(act.f(np.array(1.0))), -float(act.f(np.array(-1.0)))


def _orthant_moment(act, K, chans, k):
    """E[prod_{a in chans} sigma(z_a) z^{(x)k}], z ~ N(0, K) (k x k positive definite): a sum
    over the orthants of truncated moments (corrlib.model.orthant: Stein recursion down to
    orthant probabilities, independent of any node rule)."""
    ap, am = _slopes(act)
    c = K.shape[0]
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=c)))
    Kb = K[None] * signs[:, :, None] * signs[:, None, :]
    q = len(chans) + k
    T = OrthantMoments(Kb).truncated(2**c - 1, q)  # (16, c^q) on z' = S z > 0
    out = 0.0
    for s, Ts in zip(signs, T, strict=True):
        coef = np.prod([ap if s[a] > 0 else am for a in chans])
        for ax in range(q):  # back to z = S z'
            shape = [1] * q
            shape[ax] = c
            Ts = Ts * s.reshape(shape)
        out = out + coef * Ts[tuple(chans)]
    return out


def _hermite_tables(act, K, chans):
    """E[F], and the channel-derivative tables E[F He_2], E[F He_4] of (T34) for F the product
    of sigma over chans, by Price's formula from z-moments: with P = K^-1,
    Q2 = P (M2 - E F K) P, Q4 = P^(x4) (M4 - sym_6 M2 (x) K + E F sym_3 K (x) K)."""
    P = np.linalg.inv(K)
    m0 = _orthant_moment(act, K, chans, 0)
    M2 = _orthant_moment(act, K, chans, 2)
    M4 = _orthant_moment(act, K, chans, 4)
    Q2 = P @ (M2 - m0 * K) @ P
    pairs3 = [((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2))]
    S = M4.copy()
    for (i, j), (k, l) in pairs3:
        for A, B in (((i, j), (k, l)), ((k, l), (i, j))):
            S -= np.einsum("ab,cd->" + "".join("abcd"[[*A, *B].index(x)] for x in range(4)), M2, K)
        S += m0 * np.einsum(
            "ab,cd->" + "".join("abcd"[[i, j, k, l].index(x)] for x in range(4)), K, K
        )
    Q4 = np.einsum("ai,bj,ck,dl,ijkl->abcd", P, P, P, P, S)
    return m0, Q2, Q4


# (leaky ReLU through the node rule integrates all 16 cells: ~25 s, too slow for a test)
TABLE_CASES = [(KINKED[0], True), (KINKED[1], True), (KINKED[0], False)]


@pytest.mark.parametrize(
    "act, cells",
    TABLE_CASES,
    ids=[f"{a[0]}-{'orthant' if c else 'node-rule'}" for a, c in TABLE_CASES],
)
def test_kink_tables_on_four_inputs_match_orthant_moments(act, cells):
    """The tables of (T34) on the four-input subset (value rank 4): the library's exact path
    (xi-moments of the cells, Hermite tensors in xi, ``cells``) and the kink-split node rule
    (T41)-(T43) against z-moments of the orthant recursion turned into derivative tables by
    Price's formula with K^-1 (a different formulation): E F, E F He_2, E F He_4 of quads and
    E F of sextets. Measured <= 4e-12 relative (layer 1); 1e-10 of each table's largest entry."""
    net = corrlib.Network.uniform(act[0], 24, 2, n_in=3, C_W=act[1], C_b=act[2])
    fw = finite_width(net, X3)
    K = fw.K[1]  # full rank 4 after one layer
    t = _tables(net.activation, K, ChannelLayout(4, 0), True, False, cells=cells)
    sets = _channel_sets(4, 0)
    quads = [tuple(q) for q in sets["quads"].tolist()]
    sexts = [tuple(q) for q in sets["sexts"].tolist()]
    for q in [(0, 1, 2, 3), (0, 0, 1, 3), (1, 2, 3, 3)]:
        i = quads.index(q)
        m0, Q2, Q4 = _hermite_tables(net.activation, K, q)
        assert abs(t["EQ"][i] - m0) <= 1e-10 * abs(m0)
        for mine, ref in ((t["Q2"][i], Q2), (t["Q4"][i], Q4)):
            ref = ref.reshape(-1)
            assert np.max(np.abs(mine - ref)) <= 1e-10 * np.max(np.abs(ref)), q
    for q in [(0, 1, 2, 3, 3, 3), (0, 0, 1, 1, 2, 3)]:
        ref = _orthant_moment(net.activation, K, q, 0)
        assert abs(t["E6"][sexts.index(q)] - ref) <= 1e-10 * abs(ref)


KINKED_M = [(KINKED[0], 3), (KINKED[1], 3), (KINKED[0], 4), (KINKED[1], 4)]


@pytest.mark.parametrize("act, m", KINKED_M, ids=[f"{a[0]}-m{m}" for a, m in KINKED_M])
def test_kinked_order2_on_three_and_four_inputs_keeps_finite_width(act, m):
    """Order 2 on 3-4 distinct inputs (rank 3 at the input: four inputs in R^3 give four kink
    planes in three value dimensions; rank m after): the n^0, n^-1 slots are finite_width's,
    and (T10)-(T11) evaluated with this module's tables (quads on 3-4 inputs enter V) match
    the channel engine's exact orthant moments to 1e-12."""
    net = corrlib.Network.uniform(act[0], 24, 2, n_in=3, C_W=act[1], C_b=act[2])
    X = X3[:m]
    fw = finite_width(net, X)
    h = hierarchy(net, X, order=2)
    assert np.max(np.abs(h.kappa(1, 1) - fw.mean)) <= 1e-12 * np.max(np.abs(fw.mean))
    assert np.max(np.abs(h.kappa(2, 1) - fw.V)) <= 1e-12 * np.max(np.abs(fw.V))
    out = multi_channel_series(net, fw.K, fw.Delta, fw.V, fw.layout, 24.0)
    ref = fw.V * 24.0
    assert np.max(np.abs(out["own_V1"] - ref)) <= 1e-12 * np.max(np.abs(ref))
    assert np.all(np.isfinite(h.term(3, 2))) and np.max(np.abs(h.term(2, 2))) > 0


def test_kinked_order2_four_inputs_with_an_empty_positive_cell():
    """Four inputs in R^3 with 0 in their convex hull: at the input no z has all four
    coordinates > 0, so the ReLU quad of all four inputs vanishes there (no nodes at all);
    the result is still finite_width's at order 1 and (T10)-(T11) with these tables match."""
    X = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, -1.0, -1.0]])
    net = corrlib.Network.uniform("relu", 24, 2, n_in=3, C_W=2.0, C_b=0.1)
    fw = finite_width(net, X)
    h = hierarchy(net, X, order=2)
    assert np.max(np.abs(h.kappa(2, 1) - fw.V)) <= 1e-12 * np.max(np.abs(fw.V))
    out = multi_channel_series(net, fw.K, fw.Delta, fw.V, fw.layout, 24.0)
    ref = fw.V * 24.0
    assert np.max(np.abs(out["own_V1"] - ref)) <= 1e-12 * np.max(np.abs(ref))
    assert np.all(np.isfinite(h.term(2, 2))) and np.all(np.isfinite(h.term(3, 2)))


@pytest.fixture(scope="module")
def relu4():
    net = corrlib.Network.uniform("relu", 24, 2, n_in=3, C_W=2.0, C_b=0.1)
    return net, hierarchy(net, X3, order=2)


def _order2_terms(h):
    return [h.term(1, 2), h.term(2, 2), h.term(3, 2)]


def test_kinked_order2_permuting_inputs_permutes_the_terms(relu4):
    net, h = relu4
    perm = [2, 0, 3, 1]
    hp = hierarchy(net, X3[perm], order=2)
    for j, (a, b) in enumerate(zip(_order2_terms(h), _order2_terms(hp), strict=True), start=1):
        ix = np.ix_(range(a.shape[0]), *([perm] * (2 * j)))
        np.testing.assert_allclose(b, a[ix], rtol=0, atol=1e-11 * np.max(np.abs(a)))


def test_kinked_order2_repeated_input_embeds_three_inputs(relu4):
    """Inputs (x0, x1, x2, x0): four channels on three distinct inputs (a repeated kink
    plane); the block of the first three channels is the three-input result."""
    net, _ = relu4
    h3 = hierarchy(net, X3[:3], order=2)
    h4 = hierarchy(net, X3[[0, 1, 2, 0]], order=2)
    for j, (a, b) in enumerate(zip(_order2_terms(h3), _order2_terms(h4), strict=True), start=1):
        ix = np.ix_(range(a.shape[0]), *([range(3)] * (2 * j)))
        np.testing.assert_allclose(b[ix], a, rtol=0, atol=1e-11 * np.max(np.abs(a)))
        ix = np.ix_(range(a.shape[0]), *([[0, 1, 2, 0]] * (2 * j)))
        np.testing.assert_allclose(b, a[ix], rtol=0, atol=1e-11 * np.max(np.abs(a)))


@pytest.mark.parametrize("rho", [0.0, 0.9, 0.999])
@pytest.mark.parametrize("r", [3, 4])
def test_kink_rule_positive_orthant_moments(r, rho):
    """kink_rule (T41)-(T43) on the cell z > 0 only (skip): E[z^(x)q 1{z > 0}] for q = 0, 4,
    8 (the degree of the tables) against the orthant recursion, up to strongly correlated
    kernels (measured <= 1e-12 relative; bound 1e-11); and the full rule (all cells, r = 3) against
    Isserlis (measured 2.7e-11 relative at degree 8; bound 1e-10)."""
    rng = np.random.default_rng(7 + r)
    A = rng.normal(size=(r, r))
    K = A @ A.T
    d = np.sqrt(np.diag(K))
    K = rho + (1 - rho) * K / np.outer(d, d)
    lam, Q = np.linalg.eigh(K)
    L = Q * np.sqrt(lam)
    X, W = kink_rule(L, 5, 20, skip=lambda y: np.any(y @ L.T <= 0, axis=1))
    z = X @ L.T
    om = OrthantMoments(K[None])
    dirs = rng.normal(size=(4, r))
    for q in (0, 4, 8):
        ref = []
        for a in dirs:  # contract the tensor with a^(x)q
            v = om.truncated(2**r - 1, q)[0].reshape(-1)
            for _ in range(q):
                v = v.reshape(-1, r) @ a
            ref.append(float(v[0]) if np.ndim(v) else float(v))
        ref = np.array(ref)
        mine = W @ (z @ dirs.T) ** q
        # relative to the cell's moments, with an absolute floor of 1e-13 of the Gaussian's
        # (unit variances: E z_1^q = (q-1)!!) for cells of small probability
        floor = 1e-13 * math.prod(range(q - 1, 0, -2)) * np.max(np.abs(dirs)) ** q * r**q
        assert np.max(np.abs(mine - ref)) <= 1e-11 * np.max(np.abs(ref)) + floor, q
    if r == 4:  # (the rule over all 16 cells of S^3 has ~10^6 nodes: r = 3 only, for time)
        return
    X, W = kink_rule(L, 5, 20)
    assert abs(W.sum() - 1.0) < 1e-12
    assert abs(W @ (X[:, 0] ** 4 * X[:, 1] ** 4) - 9.0) < 1e-10 * 9.0  # measured 2.7e-11


def test_kinked_activation_on_three_inputs_at_order1_and_2():
    net = corrlib.Network.uniform("relu", 16, 3, n_in=3, C_W=2.0)
    assert hierarchy(net, X3[:3], order=2).order == 2
    assert hierarchy(net, X3[:3], order=1).order == 1


def test_kinked_tables_on_a_nearly_singular_input_kernel_warn():
    """Three ReLU inputs 1e-3 apart: the input kernel's eigenvalue ratio is ~1e-7, where the
    He_4 tables of (T41) lose digits (measured 4e-5 relative at 5.6e-7) that table_error does
    not see; the call says so, naming the inputs and the layer. Well separated inputs do not
    warn (pytest runs with filterwarnings = error)."""
    net = corrlib.Network.critical("relu", 32, 3, n_in=3)
    X = np.array([[1.0, 0.0, 0.0], [1.0, 1e-3, 0.0], [1.0, 0.0, 1e-3]])
    with pytest.warns(
        corrlib.HierarchyWarning, match=r"inputs \(0, 1, 2\) is nearly singular at layer 1"
    ):
        corrlib.hierarchy(net, X, order=2)
    corrlib.hierarchy(net, [[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.6, 0.0, 0.8]], order=2)
