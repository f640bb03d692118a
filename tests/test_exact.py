"""Exact finite-width laws: closed forms (T14)-(T16), the single-input lattice solver, and the
exact output density (checked against the Meijer G-function of the linear network)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import corrlib
from corrlib.exact import (
    collective_moments,
    log_output_moments,
    output_distribution,
    output_moments,
    single_input,
)

GELU_CB, GELU_CW = 0.17292239, 1.98305826


def _cumulants_from_moments(m):
    """(E S, Var S, kappa_3 S) from raw moments m[:, 0..3]."""
    m1, m2, m3 = m[:, 1], m[:, 2], m[:, 3]
    return m1, m2 - m1**2, m3 - 3 * m1 * m2 + 2 * m1**3


def _quiet_single_input(*args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return single_input(*args, **kw)


# ---------------------------------------------------------------------------------------------
# closed forms
# ---------------------------------------------------------------------------------------------


def test_relu_T15_unequal_widths():
    widths = (3, 5, 1, 8, 2, 13, 4)
    net = corrlib.Network(widths, "relu", C_W=2.0)
    x = np.array([0.3, -1.2, 2.0])
    S0 = 2.0 * float(x @ x) / 3
    m = output_moments(net, x, 6)
    hidden = np.array(widths[1:-1], dtype=float)
    assert m[2] == pytest.approx(S0, rel=1e-13)  # no 1/n correction to E z^2
    assert m[4] / m[2] ** 2 == pytest.approx(3 * np.prod(1 + 5 / hidden), rel=1e-12)
    assert m[6] == pytest.approx(15 * S0**3 * np.prod(1 + 15 / hidden + 44 / hidden**2), rel=1e-12)
    assert np.all(m[1::2] == 0.0)
    assert m[0] == 1.0


def test_relu_sanity_number_section9():
    net = corrlib.Network.uniform("relu", 8, 5, C_W=2.0)
    m = output_moments(net, [1.0], 4)
    assert m[4] / m[2] ** 2 == pytest.approx(33.99, abs=5e-3)


def test_linear_factor_moments_unequal_widths():
    widths = (2, 3, 7, 1, 5)
    net = corrlib.Network(widths, "linear", C_W=1.0)
    cm = collective_moments(net, [1.0, 2.0], 3)
    S0 = 5.0 / 2
    expect = [S0**k for k in range(4)]
    assert np.allclose(cm[0], expect, rtol=1e-14)
    for ell, n in enumerate(widths[1:-1], start=1):
        # E (chi2_n/n)^k = prod_{j<k} (1 + 2j/n)
        expect = [e * np.prod([1 + 2 * j / n for j in range(k)]) for k, e in enumerate(expect)]
        assert np.allclose(cm[ell], expect, rtol=1e-12)


def test_T16_derivative_channel_relu_any_Cb():
    widths = (4, 6, 3, 9, 2)
    net = corrlib.Network(widths, "relu", C_W=2.0, C_b=0.8)
    x = np.array([1.0, -0.5, 0.2, 2.0])
    u = np.array([0.3, 1.0, -2.0, 0.0])
    m = output_moments(net, x, 4, directions=u)
    Sdd0 = 2.0 * float(u @ u) / 4
    assert m[2] == pytest.approx(Sdd0, rel=1e-13)
    assert m[4] / m[2] ** 2 == pytest.approx(3 * np.prod([1 + 5 / n for n in widths[1:-1]]))


def test_derivative_channel_leaky_with_bias_vs_monte_carlo():
    """The fair-coin argument of (T16) also covers a_- != 0 and C_b > 0: check by Monte Carlo."""
    act = corrlib.leaky_relu(0.3)
    net = corrlib.Network((3, 4, 4, 4, 1), act, C_W=1.5, C_b=0.9)
    x = np.array([[1.0, 0.5, -1.0]])
    u = np.array([[0.0, 1.0, 2.0]])
    cm = collective_moments(net, x, 3, directions=u)
    mean, var, k3 = _cumulants_from_moments(cm)
    est = corrlib.estimate_cumulants(net, x, 200_000, directions=u, rng=7)
    # channel 1 = d/du at x; z-bound 4
    assert np.all(np.abs(est.mean[1:, 1, 1] - mean[1:]) <= 4 * est.mean_se[1:, 1, 1])
    assert np.all(np.abs(est.V[1:, 1, 1, 1, 1] - var[1:]) <= 4 * est.V_se[1:, 1, 1, 1, 1])
    # and the value channel with C_b > 0 is not of this form: it is rejected
    with pytest.raises(ValueError, match="single_input"):
        output_moments(net, x, 4)


def test_log_moments_extreme_depth_and_width_one():
    L = 10_000
    net = corrlib.Network.uniform("relu", 1, L, C_W=2.0)
    lm = log_output_moments(net, [1.5], 6)
    S0 = 2.0 * 1.5**2
    assert np.all(np.isfinite(lm[0::2]))
    assert np.all(np.isneginf(lm[1::2]))
    assert lm[2] == pytest.approx(math.log(S0), rel=1e-12)
    assert lm[4] == pytest.approx(math.log(3) + 2 * math.log(S0) + L * math.log(6.0), rel=1e-12)
    with pytest.raises(OverflowError, match="log_output_moments"):
        output_moments(net, [1.5], 4)
    # wide and deep: no loss of precision either
    net = corrlib.Network.uniform("relu", 4096, L, C_W=2.0)
    lm = log_output_moments(net, [1.0], 4)
    assert lm[4] - 2 * lm[2] == pytest.approx(math.log(3) + L * math.log1p(5 / 4096), rel=1e-12)


@pytest.mark.parametrize(
    "func", [output_moments, log_output_moments, collective_moments, output_distribution]
)
def test_closed_forms_reject_other_activations_and_bias(func):
    args = (4,) if func is not output_distribution else ()
    net = corrlib.Network.uniform("tanh", 8, 3)
    with pytest.raises(ValueError, match="single_input"):
        func(net, [1.0], *args)
    net = corrlib.Network.uniform("relu", 8, 3, C_W=2.0, C_b=0.1)
    with pytest.raises(ValueError, match="C_b"):
        func(net, [1.0], *args)


def test_closed_form_bad_arguments():
    net = corrlib.Network.uniform("relu", 8, 3, n_in=2, C_W=2.0)
    with pytest.raises(ValueError, match="k_max"):
        output_moments(net, [1.0, 0.0], -1)
    with pytest.raises(ValueError, match="x"):
        output_moments(net, [1.0, 0.0, 3.0], 2)
    with pytest.raises(ValueError, match="x"):
        output_moments(net, np.ones((2, 2)), 2)


# ---------------------------------------------------------------------------------------------
# single-input solver
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "act, widths, C_W",
    [
        ("relu", (2, 1, 3, 16, 2, 64, 64, 64, 5, 1), 2.0),
        ("relu", (1,) + (32,) * 64 + (1,), 2.0),  # L/n = 2
        ("linear", (3, 2, 9, 4, 1), 1.0),
        (corrlib.leaky_relu(0.2), (1, 128, 96, 128, 1), 1.7),
    ],
)
def test_single_input_matches_closed_form(act, widths, C_W):
    net = corrlib.Network(widths, act, C_W=C_W)
    x = np.linspace(-1.0, 1.0, widths[0]) + 0.3
    r = single_input(net, x)
    mean, var, k3 = _cumulants_from_moments(collective_moments(net, x, 3))
    tol = 1e-9
    np.testing.assert_allclose(r.cumulants(1), mean, rtol=tol)
    np.testing.assert_allclose(r.cumulants(2)[1:], var[1:], rtol=tol)
    np.testing.assert_allclose(r.cumulants(3)[1:], k3[1:], rtol=tol)
    assert r.cumulants(2)[0] == 0.0 and r.cumulants(3)[0] == 0.0
    assert r.mean[0] == pytest.approx(float(C_W * x @ x / widths[0]))


@pytest.mark.parametrize("n", [2, 4, 8, 16])
def test_single_input_leaky_small_width_exact_column(n):
    """Leaky ReLU at small widths: the column is the exact Binomial/negative-binomial mixture
    of Gamma laws (T14), so the solver agrees with the closed-form moments to 1e-9, silently."""
    for slope in (0.1, 0.5, 0.9):
        net = corrlib.Network.uniform(corrlib.leaky_relu(slope), n, 6, C_W=2.0 / (1 + slope**2))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            r = single_input(net, [1.0])
        mean, var, k3 = _cumulants_from_moments(collective_moments(net, [1.0], 3))
        np.testing.assert_allclose(r.mean, mean, rtol=1e-9)
        np.testing.assert_allclose(r.var[1:], var[1:], rtol=1e-9)
        np.testing.assert_allclose(r.k3[1:], k3[1:], rtol=1e-9)


def test_single_input_derivative_channel_matches_closed_form():
    net = corrlib.Network((2, 5, 3, 8, 1), "relu", C_W=2.0, C_b=0.8)
    x, u = np.array([1.0, -0.4]), np.array([0.5, 2.0])
    r = single_input(net, x, directions=u)
    mean, var, k3 = _cumulants_from_moments(collective_moments(net, x, 3, directions=u))
    np.testing.assert_allclose(r.mean, mean, rtol=1e-9)
    np.testing.assert_allclose(r.var[1:], var[1:], rtol=1e-9)
    np.testing.assert_allclose(r.k3[1:], k3[1:], rtol=1e-9)


def test_single_input_relu_with_bias_matches_recursive_moments():
    """C_b > 0: the atom S = C_b is a regular source; check E S against the exact mean law
    E S_l = C_b + (C_W/2) E S_{l-1} (ReLU)."""
    net = corrlib.Network.uniform("relu", 6, 8, C_W=2.0, C_b=0.5)
    r = single_input(net, [1.0])
    m = [0.5 + 2.0]
    for _ in range(8):
        m.append(0.5 + m[-1])
    np.testing.assert_allclose(r.mean, m, rtol=1e-9)


def test_single_input_tanh_grid_refinement():
    net = corrlib.Network.uniform("tanh", 256, 256)
    a = _quiet_single_input(net, [1.0])
    b = _quiet_single_input(net, [1.0], h_factor=0.6, z_band=14.0)
    for k in (1, 2, 3):
        np.testing.assert_allclose(a.cumulants(k)[1:], b.cumulants(k)[1:], rtol=1e-6)


@pytest.mark.parametrize("n, L, k3_tol", [(16, 4, 5e-8), (32, 8, 1e-8)])
def test_single_input_tanh_small_width_defaults(n, L, k3_tol):
    """Small widths with default settings: no warning, and a refined run (half the lattice
    step, twice the panels) agrees to 1e-8 (kappa_3 at n = 16: 5e-8, a floor that neither the
    lattice, the quadrature nor z_band moves)."""
    net = corrlib.Network.uniform("tanh", n, L)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = single_input(net, [1.0])
    b = _quiet_single_input(net, [1.0], h_factor=1.0, quad_panels=24)
    np.testing.assert_allclose(a.mean[1:], b.mean[1:], rtol=1e-8)
    np.testing.assert_allclose(a.var[1:], b.var[1:], rtol=1e-8)
    np.testing.assert_allclose(a.k3[1:], b.k3[1:], rtol=k3_tol)


@pytest.mark.parametrize("L", [8, 32, 64])  # L/n = 0.25, 1, 2
def test_single_input_tanh_vs_monte_carlo(L):
    n = 32
    net = corrlib.Network.uniform("tanh", n, L)
    X = np.array([[1.0]])
    r = _quiet_single_input(net, X)
    est = corrlib.estimate_cumulants(net, X, 100_000, rng=100 + L)
    # z-bound 4 on every layer, for E S, Var S and kappa_3 S
    assert np.all(np.abs(r.mean[1:] - est.mean[1:, 0, 0]) <= 4 * est.mean_se[1:, 0, 0])
    assert np.all(np.abs(r.var[1:] - est.V[1:, 0, 0, 0, 0]) <= 4 * est.V_se[1:, 0, 0, 0, 0])
    assert np.all(np.abs(r.k3[1:] - est.T[1:]) <= 4 * est.T_se[1:])


def test_single_input_gelu_vs_monte_carlo():
    """gelu at criticality, L/n = 0.25 (at larger L/n the law of S is heavy-tailed and Monte
    Carlo is not a trustworthy reference, docs/theory.md section 11)."""
    net = corrlib.Network.uniform("gelu", 64, 16, C_W=GELU_CW, C_b=GELU_CB)
    X = np.array([[1.0]])
    r = _quiet_single_input(net, X)
    est = corrlib.estimate_cumulants(net, X, 100_000, rng=5)
    assert np.all(np.abs(r.mean[1:] - est.mean[1:, 0, 0]) <= 4 * est.mean_se[1:, 0, 0])
    assert np.all(np.abs(r.var[1:] - est.V[1:, 0, 0, 0, 0]) <= 4 * est.V_se[1:, 0, 0, 0, 0])
    assert np.all(np.abs(r.k3[1:] - est.T[1:]) <= 4 * est.T_se[1:])


def test_single_input_user_defined_activation_equals_builtin():
    tanh = corrlib.get_activation("tanh")
    mine = corrlib.Activation("my_tanh", f=lambda z: np.tanh(z), df=tanh.df)
    a = _quiet_single_input(corrlib.Network.uniform(tanh, 48, 6), [0.7])
    b = _quiet_single_input(corrlib.Network.uniform(mine, 48, 6), [0.7])
    for k in (1, 2, 3):
        np.testing.assert_allclose(a.cumulants(k), b.cumulants(k), rtol=1e-12, atol=0)


def test_single_input_frame_merges_with_monte_carlo():
    net = corrlib.Network.uniform("relu", 16, 3, C_W=2.0)
    X = np.array([[1.0]])
    r = single_input(net, X)
    df = r.to_frame()
    assert list(df.columns) == ["layer", "quantity", "a", "b", "c", "d", "value", "se"]
    assert set(df.quantity) == {"mean", "V", "T"}
    assert df.layer.min() == 1 and df.layer.max() == 4
    est = corrlib.estimate_cumulants(net, X, 1000, rng=0)
    merged = df.merge(est.to_frame(), on=["layer", "quantity", "a", "b", "c", "d"])
    assert len(merged) == len(df)


def test_single_input_bad_arguments():
    net = corrlib.Network.uniform("tanh", 16, 2)
    with pytest.raises(ValueError, match="h_factor"):
        single_input(net, [1.0], h_factor=0.0)
    with pytest.raises(ValueError, match="tol"):
        single_input(net, [1.0], tol=0.5)
    with pytest.raises(ValueError, match="directions"):
        single_input(net, [1.0], directions=[1.0])
    with pytest.raises(ValueError, match="k"):
        single_input(corrlib.Network.uniform("relu", 16, 2, C_W=2.0), [1.0]).cumulants(4)


# ---------------------------------------------------------------------------------------------
# exact output law
# ---------------------------------------------------------------------------------------------


def _meijer_linear_pdf(z, S0, widths):
    """Zavatone-Veth & Pehlevan: z^2 = lam * prod of Gamma(b_i), b = (1/2, n_1/2, ...),
    lam = 2 S0 prod(2/n_l); a product of unit Gammas has density G^{m,0}_{0,m}(t | b - 1)/prod
    Gamma(b_i); f_z(z) = f_{z^2}(z^2) |z|."""
    mpmath = pytest.importorskip("mpmath")
    b = [mpmath.mpf(1) / 2] + [mpmath.mpf(n) / 2 for n in widths]
    lam = 2 * S0 * np.prod([2.0 / n for n in widths])
    norm = 1 / mpmath.fprod([mpmath.gamma(bb) for bb in b])
    out = []
    for zz in np.atleast_1d(z):
        t = mpmath.mpf(float(zz) ** 2) / lam
        g = mpmath.meijerg([[], []], [[bb - 1 for bb in b], []], t)
        out.append(float(norm * g / lam * abs(zz)))
    return np.array(out)


def test_output_density_linear_vs_meijer_g():
    from scipy import integrate

    widths = (2, 3, 5)
    net = corrlib.Network((1, *widths, 1), "linear", C_W=1.0)
    S0 = 1.3**2
    # the Meijer-G density is normalized
    total, _ = integrate.quad(lambda t: _meijer_linear_pdf(t, S0, widths)[0], -np.inf, np.inf)
    assert total == pytest.approx(1.0, abs=1e-8)
    d = output_distribution(net, [1.3])
    z = np.concatenate([np.linspace(0.05, 40.0, 60), [-0.2, -3.0, -12.0]])
    ref = _meijer_linear_pdf(z, S0, widths)
    got = d.pdf(z)
    peak = d.pdf(np.array([1e-3]))[0]
    mask = ref > 1e-8 * peak
    assert mask.sum() > 40
    np.testing.assert_allclose(got[mask], ref[mask], rtol=1e-6)
    assert d.cdf(0.0) == pytest.approx(0.5, abs=1e-12)
    assert d.moment(2) == pytest.approx(S0) and d.moment(3) == 0.0


def test_output_distribution_relu_atom_and_moments():
    from scipy import integrate

    net = corrlib.Network((1, 3, 2, 4, 1), "relu", C_W=2.0)
    d = output_distribution(net, [1.0])
    atom = 1 - (1 - 1 / 8) * (1 - 1 / 4) * (1 - 1 / 16)
    assert d.atom == pytest.approx(atom, rel=1e-9)
    mass, _ = integrate.quad(lambda t: 2 * d.pdf(np.array([t]))[0], 0, np.inf, limit=200)
    assert mass == pytest.approx(1 - atom, abs=1e-8)
    m2, _ = integrate.quad(lambda t: 2 * t * t * d.pdf(np.array([t]))[0], 0, np.inf, limit=200)
    assert m2 == pytest.approx(d.moment(2), rel=1e-7)
    assert d.cdf(-1e-200) + d.atom == pytest.approx(d.cdf(0.0), abs=1e-12)
    s = d.rvs(200_000, random_state=3)
    se = np.std(s**2) / np.sqrt(s.size)
    assert abs(np.mean(s**2) - d.moment(2)) <= 4 * se  # z-bound 4
    assert abs(np.mean(s == 0.0) - atom) <= 4 * math.sqrt(atom * (1 - atom) / s.size)
