"""The 1/n recursions (T10)-(T13) against exact results (T14)-(T18) and independent evaluations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate

import corrlib
from corrlib.theory import asymptotics
from corrlib.theory.recursion import _recursion, finite_width

ONE = np.ones((1, 1))


def _partial_sums(widths):
    a = 1.0 / np.asarray(widths, dtype=float)
    return np.concatenate([[0.0], np.cumsum(a)])


# ---------------------------------------------------------------- exact: scale-invariant class


@pytest.mark.parametrize("act", ["relu", corrlib.leaky_relu(0.2), "linear"])
def test_scale_invariant_V_exact_unequal_widths(act):
    """(T17): V/K^2 = (3A_4/A_2^2 - 1) sum_{l'<l} 1/n_l' exactly, Delta = 0 (C_b = 0, critical)."""
    a = corrlib.get_activation(act)
    cp = corrlib.critical_point(a)
    widths = (3, 7, 30, 12, 50, 2)
    net = corrlib.Network(widths, a, C_W=cp.C_W, C_b=cp.C_b)
    x = np.array([[0.3, -1.2, 0.5]])
    rec = finite_width(net, x)
    K = rec.K[:, 0, 0]
    np.testing.assert_allclose(K, K[0], rtol=1e-12)
    expected = a.moment_ratio() * _partial_sums(widths[1:-1])
    np.testing.assert_allclose(rec.V[:, 0, 0, 0, 0] / K**2, expected, rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(rec.Delta[:, 0, 0], 0.0, atol=1e-12 * K[0])
    np.testing.assert_allclose(
        asymptotics.leading_order(a, np.arange(1, len(widths)), widths[1:-1])["V_over_K2"],
        expected,
        rtol=1e-12,
    )


def test_relu_T_is_the_n2_term_of_the_exact_cumulant():
    """(T13) vs (T14): kappa_3(S)/K^3 = 44 sum a_l^2 + 150 sum_{i<j} a_i a_j + O(n^-3), a = 1/n."""
    widths = (1, 30, 50, 40, 25, 1)
    net = corrlib.Network(widths, "relu", C_W=2.0, C_b=0.0)
    rec = finite_width(net, ONE * 0.7)
    K = rec.K[0, 0, 0]
    a = 1.0 / np.array(widths[1:-1], dtype=float)
    exp = [0.0]
    for L in range(1, len(a) + 1):
        s1, s2 = a[:L].sum(), (a[:L] ** 2).sum()
        exp.append(44 * s2 + 150 * (s1**2 - s2) / 2)
    np.testing.assert_allclose(rec.T / K**3, exp, rtol=1e-11, atol=1e-15)
    # equal widths: K^3 (44 L + 75 L (L-1)) / n^2
    n, L = 64, 6
    rec = finite_width(corrlib.Network.critical("relu", n, L), ONE)
    K = rec.K[-1, 0, 0]
    assert rec.T[-1] == pytest.approx(K**3 * (44 * L + 75 * L * (L - 1)) / n**2, rel=1e-11)
    assert rec.kappa6()[-1] == pytest.approx(15 * rec.T[-1])


def test_linear_network_against_exact_moments():
    """Linear, C_W = 1, C_b = 0: X_l = chi2_n/n, so to order 1/n Var S/K^2 = 2 sum 1/n_l and
    kappa_3 at order n^-2 is 8 sum a^2 + 24 sum_{i<j} a_i a_j (T14)."""
    widths = (2, 5, 9, 3, 1)
    net = corrlib.Network(widths, "linear", C_W=1.0, C_b=0.0)
    rec = finite_width(net, np.array([[1.0, -2.0]]))
    K = rec.K[0, 0, 0]
    a = 1.0 / np.array(widths[1:-1], dtype=float)
    np.testing.assert_allclose(rec.V[:, 0, 0, 0, 0] / K**2, 2 * _partial_sums(widths[1:-1]))
    exact_T = [0.0] + [
        8 * (a[:L] ** 2).sum() + 24 * ((a[:L].sum()) ** 2 - (a[:L] ** 2).sum()) / 2
        for L in range(1, len(a) + 1)
    ]
    np.testing.assert_allclose(rec.T / K**3, exact_T, rtol=1e-11, atol=1e-15)
    np.testing.assert_allclose(rec.Delta, 0.0, atol=1e-13)


# ------------------------------------------------------------------------ K* = 0 class (T18)


def _tanh_T12_trapezoid(C_W, C_b, K1, widths):
    """K and V of (T12) for one tanh channel, independent of corrlib's quadrature: a trapezoid
    rule in xi = z / sqrt(K) with step 0.04 on [-10, 10] (spectrally accurate at K <= 2)."""
    h = 0.04
    xi = h * np.arange(-250, 251)
    w = h * np.exp(-0.5 * xi * xi) / math.sqrt(2 * math.pi)
    K, V = K1, 0.0
    Ks, Vs = [K], [V]
    for n in widths[1:-1]:
        s = np.sqrt(K) * xi
        t = np.tanh(s)
        g, q = w @ t**2, w @ t**4
        g1 = (w @ (s * t * (1 - t * t))) / K  # g'(K) = <z sigma sigma'> / K
        V = C_W**2 * (q - g * g) / n + (C_W * g1) ** 2 * V
        K = C_b + C_W * g
        Ks.append(K)
        Vs.append(V)
    return np.array(Ks), np.array(Vs)


def test_tanh_large_depth_forms():
    """(T18): 2 l K -> 1 and V n/(K^2 l) -> 2/3, logarithmically slowly.

    K and V of the recursion against an independent evaluation of (T12) (trapezoid rule) at
    l = 10, 100, 1000; the approach to the leading forms is monotone and still visible at
    l = 1000 (2lK - 1 = 0.0033, 2/3 - Vn/(K^2 l) = 0.0025 there: ~1/l with log corrections).
    """
    n, L = 100, 1000
    rec = finite_width(corrlib.Network.critical("tanh", n, L), ONE)
    Kref, Vref = _tanh_T12_trapezoid(1.0, 0.0, 1.0, [1] + [n] * L + [1])
    ells = np.array([10, 100, 1000])
    K = rec.K[ells - 1, 0, 0]
    V = rec.V[ells - 1, 0, 0, 0, 0]
    np.testing.assert_allclose(K, Kref[ells - 1], rtol=1e-11)
    np.testing.assert_allclose(V, Vref[ells - 1], rtol=1e-9)
    ratio = V * n / (K**2 * ells)
    assert np.all(np.diff(np.abs(2 * ells * K - 1)) < 0)
    assert np.all(np.diff(np.abs(ratio - 2 / 3)) < 0)
    assert abs(2 * ells[-1] * K[-1] - 1) < 0.01 and abs(ratio[-1] - 2 / 3) < 0.01
    lead = asymptotics.leading_order("tanh", ells, n)
    np.testing.assert_allclose(lead["K"], 1 / (2 * ells))
    np.testing.assert_allclose(lead["V_over_K2"], 2 * ells / (3 * n))


# ----------------------------------------------------- independent high-precision evaluation


def _quad_expect(f, K):
    s = math.sqrt(K)
    pdf = lambda x: math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    opts = dict(epsabs=1e-15, epsrel=1e-13, limit=400)
    lo = integrate.quad(lambda x: f(s * x) * pdf(x), -np.inf, 0.0, **opts)[0]
    hi = integrate.quad(lambda x: f(s * x) * pdf(x), 0.0, np.inf, **opts)[0]
    return lo + hi


def _reference_T12(act, net, K1):
    """(T12) with adaptive scipy quadrature and derivatives g'(K) = <z s s'>/K,
    g''(K) from the Hermite form -- independent of corrlib's quadrature rules."""
    f, df = act.f, act.df
    f1 = lambda x: float(f(np.array(x)))
    d1 = lambda x: float(df(np.array(x)))
    K, V, D = K1, 0.0, 0.0
    out = [(K, V, D)]
    for ell in range(1, net.depth + 1):
        n = net.widths[ell]
        g = _quad_expect(lambda z: f1(z) ** 2, K)
        q = _quad_expect(lambda z: f1(z) ** 4, K)
        g1 = _quad_expect(lambda z: z * f1(z) * d1(z), K) / K
        g2 = _quad_expect(lambda z, K=K: f1(z) ** 2 * ((z * z / K) ** 2 - 6 * z * z / K + 3), K) / (
            4 * K * K
        )
        chi = net.C_W * g1
        V, D = net.C_W**2 * (q - g * g) / n + chi**2 * V, chi * D + 0.5 * net.C_W * g2 * V
        K = net.C_b + net.C_W * g
        out.append((K, V, D))
    return np.array(out)


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
@pytest.mark.parametrize("name", ["relu", "tanh", "erf", "gelu"])
def test_single_input_against_adaptive_quadrature(name):
    """c = 1: K, V, Delta to 1e-8 relative against scipy.integrate.quad."""
    act = corrlib.get_activation(name)
    net = corrlib.Network((1, 20, 35, 50, 1), act, C_W=1.7, C_b=0.2)
    rec = finite_width(net, np.array([[1.3]]))
    ref = _reference_T12(act, net, rec.K[0, 0, 0])
    np.testing.assert_allclose(rec.K[:, 0, 0], ref[:, 0], rtol=1e-10)
    np.testing.assert_allclose(rec.V[1:, 0, 0, 0, 0], ref[1:, 1], rtol=1e-8)
    np.testing.assert_allclose(rec.Delta[2:, 0, 0], ref[2:, 2], rtol=1e-8, atol=1e-14)


@pytest.mark.parametrize("name", ["relu", "tanh", "gelu"])
def test_tensor_path_equals_scalar_path(name):
    """The general c-channel code (Hermite tensors) reduces to (T12) for one channel."""
    net = corrlib.Network.uniform(name, 40, 5, C_W=1.5, C_b=0.1)
    r1 = finite_width(net, ONE)
    r2 = _recursion(net, ONE, general=True)  # the tensor path, forced for c = 1
    np.testing.assert_allclose(r2.V, r1.V, rtol=1e-10, atol=1e-16)
    np.testing.assert_allclose(r2.Delta, r1.Delta, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("name", ["relu", "tanh"])
def test_identical_inputs_give_the_single_input_answer(name):
    """Two equal inputs: K is singular; every V entry equals the single-input V."""
    net = corrlib.Network.uniform(name, 30, 4, n_in=2, C_W=1.8, C_b=0.1)
    x = np.array([[0.4, -0.9]])
    r1 = finite_width(net, x)
    r2 = finite_width(net, np.vstack([x, x]))
    np.testing.assert_allclose(r2.V, np.broadcast_to(r1.V, r2.V.shape), rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(
        r2.Delta, np.broadcast_to(r1.Delta, r2.Delta.shape), rtol=1e-8, atol=1e-14
    )


# --------------------------------------------------------------------- derivative channels


def test_relu_derivative_block_matches_T16():
    """(T16) at leading order: V_(dd)(dd)/K_dd^2 = 5 sum 1/n_l for any C_b, unequal widths."""
    widths = (2, 30, 50, 40, 1)
    net = corrlib.Network(widths, "relu", C_W=2.0, C_b=0.3)
    rec = finite_width(net, np.array([[1.0, 0.5]]), directions=np.array([[0.3, -1.0]]))
    Kdd = rec.K[:, 1, 1]
    np.testing.assert_allclose(
        rec.V[:, 1, 1, 1, 1] / Kdd**2, 5 * _partial_sums(widths[1:-1]), rtol=1e-10
    )


@pytest.mark.parametrize("name", ["tanh", "relu", "gelu"])
def test_derivative_channels_are_derivatives_of_value_channels(name):
    """Sigma_{z dz} = (1/2) d/dt Sigma_{zz}(x + t u): the same identity holds for V and Delta
    at every order, so the derivative-channel recursion must match central finite
    differences of the value-channel recursion (step 1e-4, error O(1e-8))."""
    net = corrlib.Network.uniform(name, 20, 3, n_in=2, C_W=1.6, C_b=0.2)
    x = np.array([0.7, -0.4])
    u = np.array([0.5, 0.8])
    y = np.array([[-0.3, 0.9]])
    rec = finite_width(net, np.vstack([x, y]), directions=u[None])
    t = 1e-4
    rp = finite_width(net, np.vstack([x + t * u, y]))
    rm = finite_width(net, np.vstack([x - t * u, y]))
    # channels: 0 = z(x), 1 = z(y), 2 = dz(x), 3 = dz(y)
    fd_V = (rp.V[:, 0, 0, 1, 1] - rm.V[:, 0, 0, 1, 1]) / (2 * t)
    np.testing.assert_allclose(2 * rec.V[:, 0, 2, 1, 1], fd_V, rtol=1e-6, atol=1e-9)
    fd_V01 = (rp.V[:, 0, 1, 0, 1] - rm.V[:, 0, 1, 0, 1]) / (2 * t)
    np.testing.assert_allclose(
        rec.V[:, 2, 1, 0, 1] + rec.V[:, 0, 1, 2, 1], fd_V01, rtol=1e-6, atol=1e-9
    )
    fd_D = (rp.Delta[:, 0, 0] - rm.Delta[:, 0, 0]) / (2 * t)
    np.testing.assert_allclose(2 * rec.Delta[:, 0, 2], fd_D, rtol=1e-5, atol=1e-9)


def test_V_symmetries_and_odd_blocks():
    """V is symmetric under a<->b, c<->d, (ab)<->(cd); blocks odd in d/du vanish when K_{z,dz}=0."""
    net = corrlib.Network.uniform("tanh", 25, 3, n_in=2, C_W=1.2, C_b=0.1)
    rec = finite_width(net, np.array([[1.0, 0.0], [0.2, 0.9]]), directions=np.array([[0.0, 1.0]]))
    V = rec.V
    np.testing.assert_allclose(V, V.transpose(0, 2, 1, 3, 4), atol=1e-15)
    np.testing.assert_allclose(V, V.transpose(0, 1, 2, 4, 3), atol=1e-15)
    np.testing.assert_allclose(V, V.transpose(0, 3, 4, 1, 2), atol=1e-15)
    # single input, direction orthogonal to x with C_b: K_{z dz} = 0 at every layer
    rec1 = finite_width(net, np.array([[1.0, 0.0]]), directions=np.array([[0.0, 1.0]]))
    np.testing.assert_allclose(rec1.K[:, 0, 1], 0.0, atol=1e-15)
    np.testing.assert_allclose(rec1.V[:, 0, 0, 0, 1], 0.0, atol=1e-15)
    np.testing.assert_allclose(rec1.V[:, 0, 1, 1, 1], 0.0, atol=1e-15)
    assert np.all(rec1.V[2:, 0, 1, 0, 1] > 0)  # Sigma_{z dz} fluctuates although K_{z dz} = 0


def test_result_methods_and_frame():
    net = corrlib.Network.critical("relu", 16, 3)
    rec = finite_width(net, ONE)
    k4 = rec.kappa4()
    np.testing.assert_allclose(k4[:, 0, 0, 0, 0], 3 * rec.V[:, 0, 0, 0, 0])
    np.testing.assert_allclose(rec.normalized_kappa4()[:, 0], 15 * _partial_sums([16] * 3))
    np.testing.assert_allclose(rec.inter_neuron_cov(), rec.V)
    df = rec.to_frame()
    assert set(df["quantity"]) == {"K", "Delta", "mean", "V", "T"}
    assert list(df.columns) == ["layer", "quantity", "a", "b", "c", "d", "e", "f", "value", "se"]
    v = df[(df.quantity == "V") & (df.layer == 4)]["value"].item()
    assert v == pytest.approx(rec.V[-1, 0, 0, 0, 0])
    rec2 = finite_width(
        corrlib.Network.critical("relu", 16, 2, n_in=2), np.eye(2), directions=[[1.0, 1.0]]
    )
    assert rec2.T is None
    with pytest.raises(ValueError, match="c = 1"):
        rec2.kappa6()
    nV = ((df.quantity == "V") & (df.layer == 1)).sum()
    assert nV == 1
    df2 = rec2.to_frame()
    p = 4 * 5 // 2
    assert ((df2.quantity == "V") & (df2.layer == 1)).sum() == p * (p + 1) // 2


def test_marginal_class_linear_growth():
    """gelu at its critical point K* != 0: the recursion started at K* stays there and V/K^2
    grows exactly linearly, as leading_order says; the slope C_W^2 (<s^4> - <s^2>^2)/K*^2 per
    1/n against scipy's adaptive quadrature."""
    net = corrlib.Network.critical("gelu", 50, 30)
    cp = corrlib.critical_point("gelu")
    K_star = cp.K_star
    rec = finite_width(net, np.array([[np.sqrt((K_star - net.C_b) / net.C_W)]]))
    np.testing.assert_allclose(rec.K[:, 0, 0], K_star, rtol=1e-9)
    lead = asymptotics.leading_order("gelu", np.arange(1, 32), 50)
    np.testing.assert_allclose(rec.V[:, 0, 0, 0, 0] / K_star**2, lead["V_over_K2"], rtol=1e-7)
    f = corrlib.get_activation("gelu").f
    s2 = _quad_expect(lambda z: float(f(np.array(z))) ** 2, K_star)
    s4 = _quad_expect(lambda z: float(f(np.array(z))) ** 4, K_star)
    slope = cp.C_W**2 * (s4 - s2**2) / K_star**2
    assert lead["V_over_K2"][1] * 50 == pytest.approx(slope, rel=1e-9)


def test_asymptotics_errors():
    with pytest.raises(ValueError, match="softplus"):
        asymptotics.leading_order("softplus", [1, 2], 10)
    with pytest.raises(ValueError, match="relu"):
        asymptotics.a1("relu")
    with pytest.raises(ValueError, match="tanh"):
        asymptotics.moment_ratio("tanh")


def _tanh_power_derivs(m: int, order: int):
    """Functions d^k/dz^k tanh(z)^m, k = 0..order, via polynomials in t = tanh z (t' = 1 - t^2)."""
    from numpy.polynomial import polynomial as P

    polys = [np.array([0.0] * m + [1.0])]
    for _ in range(order):
        p = polys[-1]
        polys.append(P.polymul(P.polyder(p), [1.0, 0.0, -1.0]) if len(p) > 1 else np.zeros(1))
    return [lambda z, p=p: P.polyval(np.tanh(z), p) for p in polys]


def independent_two_input_tanh(widths, C_W: float, C_b: float, K1: np.ndarray) -> list:
    """(K^(l), V^(l), Delta^(l)), l = 1..L+1, for two value channels of a tanh network: an
    implementation of (T7), (T10), (T11) independent of corrlib's quadrature and Hermite
    identities (analytic derivatives of tanh products, a tensor trapezoid rule in eigen
    coordinates, spectrally accurate for tanh). Also used by tests/test_channel_engine.py."""
    h = 0.1  # trapezoid error ~ exp(-2 pi a / h), a ~ 1 the strip of analyticity
    xi = np.arange(-8.5, 8.5 + h / 2, h)
    w1 = h * np.exp(-0.5 * xi**2) / np.sqrt(2 * np.pi)
    g0, g1 = np.meshgrid(xi, xi, indexing="ij")
    W = np.outer(w1, w1).ravel()
    deriv = {m: _tanh_power_derivs(m, 4) for m in range(5)}

    def expect(K, fn):
        lam, Q = np.linalg.eigh(K)
        A = Q * np.sqrt(np.clip(lam, 0, None))
        Zs = A @ np.vstack([g0.ravel(), g1.ravel()])
        return W @ fn(Zs[0], Zs[1])

    def prod_deriv(K, chans, diffs):
        # <d^diffs (prod_{a in chans} tanh(z_a))>_K with diffs a tuple of channel indices
        m = [chans.count(0), chans.count(1)]
        k = [diffs.count(0), diffs.count(1)]
        return expect(K, lambda z0, z1: deriv[m[0]][k[0]](z0) * deriv[m[1]][k[1]](z1))

    K = np.array(K1, dtype=float)
    V = np.zeros((2, 2, 2, 2))
    D = np.zeros((2, 2))
    out = [(K, V, D)]
    idx = [(a, b) for a in range(2) for b in range(2)]
    for ell in range(1, len(widths) - 1):
        n = widths[ell]
        G2 = {(a, b): prod_deriv(K, [a, b], ()) for a, b in idx}
        D2 = np.zeros((2, 2, 2, 2))
        D4 = np.zeros((2,) * 6)
        for a, b in idx:
            for e, f in idx:
                D2[a, b, e, f] = prod_deriv(K, [a, b], (e, f))
            for e, f, g, hh in np.ndindex(2, 2, 2, 2):
                D4[a, b, e, f, g, hh] = prod_deriv(K, [a, b], (e, f, g, hh))
        G4 = np.zeros((2, 2, 2, 2))
        for a, b, c, d in np.ndindex(2, 2, 2, 2):
            G4[a, b, c, d] = prod_deriv(K, [a, b, c, d], ()) - G2[a, b] * G2[c, d]
        V_new = C_W**2 / n * G4 + C_W**2 / 4 * np.einsum("abef,efgh,cdgh->abcd", D2, V, D2)
        D = C_W / 2 * np.einsum("abef,ef->ab", D2, D) + C_W / 8 * np.einsum(
            "abefgh,efgh->ab", D4, V
        )
        V = V_new
        K = C_b + C_W * np.array([[G2[0, 0], G2[0, 1]], [G2[1, 0], G2[1, 1]]])
        out.append((K, V, D))
    return out


def test_two_input_tanh_against_independent_trapezoid_recursion():
    """c = 2 (two inputs, values): V and Delta to 1e-8 relative against an independent
    implementation of (T10)-(T11): analytic derivatives of tanh products (no Hermite
    identities) and a tensor trapezoid rule (spectrally accurate for tanh) instead of the
    engine's rules."""
    widths = (2, 40, 25, 60, 30, 1)
    net = corrlib.Network(widths, "tanh", C_W=1.2, C_b=0.1)
    X = np.array([[1.0, 0.4], [-0.3, 0.8]])
    rec = finite_width(net, X)
    ref = independent_two_input_tanh(widths, net.C_W, net.C_b, rec.K[0])
    for ell in range(1, net.depth + 1):
        K, V, D = ref[ell]
        np.testing.assert_allclose(rec.K[ell], K, rtol=1e-12)
        np.testing.assert_allclose(rec.V[ell], V, rtol=1e-8, atol=1e-16)
        np.testing.assert_allclose(rec.Delta[ell], D, rtol=1e-8, atol=1e-16)


# ------------------------------------------------- kinked Delta deep in the network, exactly


def _arccos_kernel_derivatives(a, b, k):
    """Gradient and Hessian of the ReLU two-point function G_ab(K11, K12, K22) (Cho-Saul closed
    form; K12 is one symmetric variable), by mpmath's numerical differentiation at 40 digits."""
    import mpmath as mp

    mp.mp.dps = 40

    def G(k11, k12, k22):
        if a == b:
            return (k11 if a == 0 else k22) / 2
        c = k12 / mp.sqrt(k11 * k22)
        th = mp.acos(c)
        return mp.sqrt(k11 * k22) * (mp.sin(th) + (mp.pi - th) * c) / (2 * mp.pi)

    x = [mp.mpf(float(v)) for v in k]
    e = np.eye(3, dtype=int)
    J = [mp.diff(G, x, tuple(e[i])) for i in range(3)]
    H = [[mp.diff(G, x, tuple(e[i] + e[j])) for j in range(3)] for i in range(3)]
    return J, H


def test_relu_two_input_Delta_against_exact_kernel_derivatives():
    """Delta (T11) of two ReLU inputs over 40 layers, where their correlation reaches 0.983 and
    the Hermite-identity route loses digits (the previous release was 2e-8 off at L = 100).
    Reference: (T11) written with the exact derivatives of the arc-cosine kernel,
    sum_ef <d_e d_f (phi_a phi_b)> D_ef = 2 dG_ab[D] and sum_efgh <d^4 (phi_a phi_b)> V = 4
    sum_ij H_ab,ij Cov(Sigma_i, Sigma_j) over the unique entries i, j of (K11, K12, K22), fed
    with the recursion's own V (tested separately against (T17) and Monte Carlo)."""
    X = np.array([[1.0, 0.0, 0.0], [0.3, 0.9, 0.2]])
    net = corrlib.Network.critical("relu", 64, 40, n_in=3)
    rec = finite_width(net, X)
    K, V = rec.K, rec.V
    idx = [(0, 0), (0, 1), (1, 1)]
    D = np.zeros_like(rec.Delta)
    for ell in range(1, net.depth + 1):
        k = [K[ell - 1][i] for i in idx]
        C = np.array([[V[ell - 1][i + j] for j in idx] for i in idx])
        for a, b in idx:
            J, H = _arccos_kernel_derivatives(a, b, k)
            dG = sum(float(J[i]) * D[ell - 1][idx[i]] for i in range(3))
            hc = sum(float(H[i][j]) * C[i, j] for i in range(3) for j in range(3))
            D[ell][a, b] = D[ell][b, a] = net.C_W * dG + net.C_W / 2 * hc
    corr = K[-1, 0, 1] / np.sqrt(K[-1, 0, 0] * K[-1, 1, 1])
    assert corr > 0.98
    np.testing.assert_allclose(rec.Delta, D, rtol=0, atol=1e-10 * np.abs(D).max())
    # homogeneity: the diagonal Delta is exactly 0, the engine returns rounding noise
    assert np.abs(rec.Delta[:, [0, 1], [0, 1]]).max() < 1e-12 * np.abs(D).max()
