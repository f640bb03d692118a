"""The several-channel hierarchy at order 2 against stored collapsed Monte Carlo (T3), (T33)-(T40).

The oracle is tests/data/hierarchy_mc/hierarchy_mc.json, written once by
tests/data/hierarchy_mc/generate.py (fixed SeedSequence seeds; provenance in the file and in
the folder's README.md): E Sigma and V = Cov Sigma with delta-method standard errors for three
cases with two channels, each at widths n = 32, 64, 128 and a fixed depth L:

- ``two_inputs``: tanh, C_W = 2.0, C_b = 0.1, L = 16, two inputs at 53 degrees;
- ``tanh_direction``: critical tanh, L = 16, one input and a derivative direction;
- ``gelu_direction``: critical gelu, L = 4, one input and a derivative direction (gelu's
  derivative channel has n^-2 coefficients ~ 3 L times its n^-1 ones, hence the shallower net).

At a fixed depth the order-1 miss of V falls like n^-2 and the order-2 remainder like n^-3
(relative to V ~ 1/n: like 1/n and 1/n^2). The theory is computed here (fast); nothing is
compared with the library's own stored output. The entries checked are the unique entries of V
at the output whose order-1 miss exceeds 10 standard errors at all three widths (selected by
that rule, not by hand).

Measured (run of 2026-12-02, 939 s of CPU; z = (order J - MC)/se at n = 32, 64, 128):

- two_inputs, V_(00)(11): z_1 = -78, -43, -13; z_2 = 17, 5.7, 1.8 (order 2 removes 78%, 87%,
  86%); fitted exponent of the remainder p = 2.58, 95% interval [2.16, 3.14].
  V_(01)(01): z_1 = 104, 58, 19; z_2 = -26, -6.8, 0.2 (removes 75.4%, 88%, 99%);
  p = 2.98 [2.61, 3.48].
- tanh_direction, V_(00)(00), V_(00)(11), V_(01)(01), V_(11)(11): z_1 from 14 to 96 in size;
  order 2 removes 78-99%; V_(11)(11): z_2 = -11.3, -8.4, -2.0, p = 2.83 [2.50, 3.21].
- gelu_direction, all six entries: z_1 from 15 to 87 in size, order 2 removes 82-98%; the
  remainder is at most 9.6 se at n = 32, so its exponent is only bounded loosely (intervals
  contain 3 but not always exclude 2: not resolvable with 2 M networks).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import corrlib
from corrlib.theory import hierarchy

DATA = Path(__file__).parent / "data" / "hierarchy_mc" / "hierarchy_mc.json"
WIDTHS = (32, 64, 128)
CASES = ("two_inputs", "tanh_direction", "gelu_direction")
#: two-sided z-bound for order 2 against the Monte Carlo where the n^-3 remainder is below noise
Z = 4.0
#: chi-square quantiles: 95% profile interval of one parameter, 99.9% for 1 degree of freedom
CHI2_95_1, CHI2_999_1 = 3.841458820694124, 10.827566170662733


@pytest.fixture(scope="module")
def data():
    with open(DATA, encoding="utf-8") as fh:
        return json.load(fh)


def _network(case: str, n: int, meta: dict) -> corrlib.Network:
    act, L = meta["activation"], meta["L"]
    if meta["critical"]:
        return corrlib.Network.critical(act, n, L, n_in=2)
    return corrlib.Network.uniform(act, n, L, n_in=2, C_W=meta["C_W"], C_b=meta["C_b"])


def _pairs(c: int) -> list[tuple[int, int, int, int]]:
    p = [(a, b) for a in range(c) for b in range(a, c)]
    return [(*p[i], *p[j]) for i in range(len(p)) for j in range(i, len(p))]


@pytest.fixture(scope="module")
def table(data):
    """case -> entry -> arrays over WIDTHS: mc, se, order 1, order 2 at the output.

    Entries (a, b, c, d) of V and ("mean", a, b) of E Sigma."""
    out = {}
    for case in CASES:
        meta = data["cases"][case]
        rows = {}
        for n in WIDTHS:
            run = next(r for r in data["runs"] if r["case"] == case and r["n"] == n)
            net = _network(case, n, {**meta, "C_W": run["C_W"], "C_b": run["C_b"]})
            assert net.depth == run["L"] == meta["L"]
            X = np.array(meta["X"])
            U = None if meta["U"] is None else np.array(meta["U"])
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # no range warning in these cases
                h = hierarchy(net, X, U, order=2)
            V, se = np.array(run["V"])[-1], np.array(run["V_se"])[-1]
            m, mse = np.array(run["mean"])[-1], np.array(run["mean_se"])[-1]
            for ab in ((0, 0), (0, 1), (1, 1)):  # E Sigma_ab at the output
                r = rows.setdefault(("mean", *ab), {k: [] for k in ("mc", "se", "o1", "o2")})
                r["mc"].append(m[ab])
                r["se"].append(mse[ab])
                r["o1"].append(h.kappa(1, 1)[-1][ab])
                r["o2"].append(h.kappa(1, 2)[-1][ab])
            for e in _pairs(h.layout.c):
                r = rows.setdefault(e, {k: [] for k in ("mc", "se", "o1", "o2")})
                r["mc"].append(V[e])
                r["se"].append(se[e])
                r["o1"].append(h.kappa(2, 1)[-1][e])
                r["o2"].append(h.kappa(2, 2)[-1][e])
        out[case] = {e: {k: np.array(v) for k, v in r.items()} for e, r in rows.items()}
    return out


def _resolved(rows: dict) -> dict:
    """The entries of V whose order-1 miss exceeds 10 standard errors at every width."""
    return {
        e: r
        for e, r in rows.items()
        if e[0] != "mean" and np.all(np.abs(r["o1"] - r["mc"]) > 10 * r["se"])
    }


def _profile_chi2(R, se, p):
    """min over A of sum ((R - A (32/n)^p) / se)^2: the weighted fit of R = A n^-p."""
    x = (32.0 / np.array(WIDTHS)) ** p
    w = 1.0 / se**2
    A = np.sum(w * x * R) / np.sum(w * x * x)
    return float(np.sum(w * (R - A * x) ** 2)), A


def _exponent_interval(R, se):
    """95% profile-likelihood interval of p in R = A n^-p (grid 0..8 step 0.005), and p-hat."""
    grid = np.arange(0.0, 8.0 + 1e-9, 0.005)
    chi = np.array([_profile_chi2(R, se, p)[0] for p in grid])
    inside = grid[chi <= chi.min() + CHI2_95_1]
    return float(inside.min()), float(inside.max()), float(grid[np.argmin(chi)])


# ------------------------------------------------------------------------- provenance


def _generator():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "hierarchy_mc_generate", DATA.parent / "generate.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_stored_data_has_its_provenance(data):
    """The file says how it was made (command, revision, date, seeds, sample counts, CPU time)
    and matches the generator's cases and runs; standard errors are finite and positive."""
    prov = data["provenance"]
    for key in ("command", "corrlib_revision", "corrlib_version", "numpy_version", "date_utc",
                "root_seed", "seeding", "method", "n_jobs", "cpu_seconds_total"):  # fmt: skip
        assert key in prov, key
    assert prov["method"] == "collapsed" and "generate.py" in prov["command"]
    rev = prov["corrlib_revision"].removesuffix("-dirty")
    assert len(rev) == 40 and int(rev, 16) >= 0
    assert prov["date_utc"].endswith("Z") and prov["cpu_seconds_total"] > 0
    gen = _generator()
    assert prov["root_seed"] == gen.ROOT_SEED
    assert [(r["case"], r["n"], r["n_samples"]) for r in data["runs"]] == [
        tuple(r) for r in gen.RUNS
    ]
    assert set(data["cases"]) == set(gen.CASES) == set(CASES)
    seeds = np.random.SeedSequence(gen.ROOT_SEED).spawn(len(gen.RUNS))
    for run, seed in zip(data["runs"], seeds, strict=True):
        assert run["seed"] == {"entropy": seed.entropy, "spawn_key": list(seed.spawn_key)}
        assert run["cpu_seconds"] > 0 and run["n"] in WIDTHS
        L1 = data["cases"][run["case"]]["L"] + 1
        for key, shape in (("mean", (L1, 2, 2)), ("V", (L1, 2, 2, 2, 2))):
            val, se = np.array(run[key]), np.array(run[key + "_se"])
            assert val.shape == se.shape == shape
            assert np.all(np.isfinite(val)) and np.all(se[1:] > 0)


def test_no_heavy_tails_at_the_output(data):
    """A HeavyTailWarning would make a standard error invalid; the runs recorded none."""
    for run in data["runs"]:
        assert run["warnings"] == [], (run["case"], run["n"], run["warnings"])


# ------------------------------------------------------------------------- the evidence


@pytest.mark.parametrize("case", CASES)
def test_order1_miss_is_resolved_at_every_width(table, case):
    """The Monte Carlo resolves the order-1 miss of V by > 10 se at n = 32, 64 and 128 for at
    least one entry (for which the next tests then hold)."""
    assert _resolved(table[case]), {
        e: (r["o1"] - r["mc"]) / r["se"] for e, r in table[case].items()
    }


@pytest.mark.parametrize("case", CASES)
def test_order2_removes_three_quarters_of_the_miss(table, case):
    """|order 2 - MC| <= |order 1 - MC| / 4 for every resolved entry at every width. At a 10-se
    miss the allowance is 2.5 se (a z = 2.5 noise bound), larger for larger misses; the n^-3
    remainder must fit in it too. Closest: two_inputs V_(01)(01) at n = 32 (L/n = 1/2), 75.4%
    removed, the rest being the n^-3 remainder (26 se, fitted exponent 2.98)."""
    for e, r in _resolved(table[case]).items():
        miss1, miss2 = np.abs(r["o1"] - r["mc"]), np.abs(r["o2"] - r["mc"])
        assert np.all(miss2 <= 0.25 * miss1), (e, 1 - miss2 / miss1)


@pytest.mark.parametrize("case", CASES)
def test_remainder_shrinks_like_n_to_the_minus_3(table, case):
    """R(n) = MC - order 2 for every resolved entry, fitted by R = A n^-p (weighted by 1/se^2):

    - p = 3 fits: chi-square of the one-parameter fit (A free) <= 13.8 (2 degrees of freedom,
      alpha = 0.001), and 3 lies in the 95% profile interval of p;
    - where the data resolve the remainder (R > 10 se at n = 32), the interval excludes 2 (the
      order-1 rate): the remainder is a new, faster-falling term, not a rescaled miss.
    Resolved remainders (> 10 se at n = 32): two_inputs V_(00)(11), V_(01)(01) and
    tanh_direction V_(11)(11) (test_some_remainder_is_resolved). gelu's remainders are <= 9.6
    se at n = 32: there only the consistency with p = 3 is tested, the data cannot exclude 2.
    """
    for e, r in _resolved(table[case]).items():
        R, se = r["mc"] - r["o2"], r["se"]
        chi3, _ = _profile_chi2(R, se, 3.0)
        lo, hi, p_hat = _exponent_interval(R, se)
        assert chi3 <= 13.815510557964274, (e, chi3, R / se)
        assert lo <= 3.0 <= hi, (e, lo, hi, p_hat, R / se)
        if abs(R[0]) > 10 * se[0]:
            assert lo > 2.0, (e, lo, hi, p_hat, R / se)


def test_some_remainder_is_resolved(table):
    """At least one resolved entry per tanh case has R(32) > 10 se, so the exclusion of p = 2 is
    tested (not vacuous)."""
    for case in ("two_inputs", "tanh_direction"):
        res = _resolved(table[case])
        assert any(abs(r["mc"][0] - r["o2"][0]) > 10 * r["se"][0] for r in res.values()), case


@pytest.mark.parametrize("case", CASES)
def test_order2_within_z_of_monte_carlo_at_n128(table, case):
    """At n = 128 the n^-3 remainder is below the noise: |order 2 - MC| <= 4 se for every
    unique entry of V and of E Sigma at the output (27 entries in all; family-wise alpha
    <= 2e-3 by the union bound). Measured: largest |z| 3.7 (gelu, V_(11)(11); the same run's
    E Sigma_11 is 3.1 se off at both orders, a fluctuation of that run rather than a
    remainder: at n = 64 both are within 2 se)."""
    for e, r in table[case].items():
        z = (r["o2"][-1] - r["mc"][-1]) / r["se"][-1]
        assert abs(z) <= Z, (e, z)


def test_no_range_warning_in_the_checked_cases(data):
    """The range warning of several channels stays silent where the series is checked here."""
    for case in CASES:
        meta = data["cases"][case]
        X = np.array(meta["X"])
        U = None if meta["U"] is None else np.array(meta["U"])
        for run in (r for r in data["runs"] if r["case"] == case):
            net = _network(case, run["n"], {**meta, "C_W": run["C_W"], "C_b": run["C_b"]})
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                for order in (1, 2):
                    hierarchy(net, X, U, order=order)
