"""corrlib.companion.checks: what a notebook's check cell reports, inside and outside its regime."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from corrlib.companion.checks import CHECKS_FILE_ENV, CheckFailed, Checks


def test_passing_checks_print_nothing(capsys):
    checks = Checks("nb")
    inside = checks.regime("L/n <= 0.1", True)
    checks.within_se("V", [1.0, 2.0], [1.01, 2.0], [0.01, 0.01], z_max=4, regime=inside,
                     meaning="m")  # fmt: skip
    checks.relative("E", 2.0 * (1 + 1e-12), 2.0, tol=1e-10, meaning="m")
    checks.absolute("K", [1.0, 1.0 + 1e-10], 1.0, tol=1e-9, meaning="m")
    checks.allclose("A", [1.0, 2.0], [1.0, 2.0 + 1e-12], rtol=1e-10, meaning="m")
    checks.that("T", True, measured="x", expected="y", meaning="m")
    checks.done()
    assert capsys.readouterr().out == ""
    assert [r.status for r in checks.results] == ["passed"] * 5


def test_failure_names_quantity_standard_errors_and_meaning():
    checks = Checks("08_demo")
    sharp = checks.regime("order-1/n agreement, valid for L/n <= 0.1", True, here="L/n = 0.06")
    z = pd.Series([0.5, -5.25, 1.0], index=["relu l=2", "relu l=3", "tanh l=2"])
    checks.z_scores("Var Sigma, Monte Carlo vs (T12)", z, z_max=4.0, regime=sharp,
                    meaning="the recursion misses a term")  # fmt: skip
    with pytest.raises(CheckFailed) as info:
        checks.done()
    msg = str(info.value)
    assert isinstance(info.value, AssertionError)
    assert "08_demo: 1 check failed" in msg
    assert "Var Sigma, Monte Carlo vs (T12): 5.25 standard errors at relu l=3 (worst of 3)" in msg
    assert "(allowed <= 4)" in msg
    assert "Assumes order-1/n agreement, valid for L/n <= 0.1 (here L/n = 0.06)" in msg
    assert "If this fails: the recursion misses a term" in msg


def test_outside_the_regime_reports_instead_of_failing(capsys):
    checks = Checks("08_demo")
    regime = checks.regime("order-1/n agreement, valid for L/n <= 0.1", False, here="L/n = 0.5")
    checks.within_se("Var Sigma", [10.0], [1.0], [1.0], z_max=4, regime=regime, meaning="m")
    checks.outside("saturation value", regime)
    checks.done()  # no exception
    out = capsys.readouterr().out
    assert "08_demo: 2 checks outside the regime they cover (not a failure)" in out
    assert (
        "Var Sigma: outside the regime this check covers (assumes order-1/n agreement, valid "
        "for L/n <= 0.1; here L/n = 0.5); measured 9 standard errors (allowed <= 4)" in out
    )
    assert "saturation value: outside the regime this check covers" in out
    assert [r.status for r in checks.results] == ["outside", "outside"]


def test_nan_never_passes():
    checks = Checks("nb")
    checks.within_se("V", [1.0, np.nan], [1.0, 1.0], [1.0, 1.0], z_max=4, meaning="m")
    checks.relative("R", [np.nan], [1.0], tol=1.0, meaning="m")
    checks.absolute("A", [1.0], [np.inf], tol=1.0, meaning="m")
    assert [r.status for r in checks.results] == ["failed"] * 3
    assert "nan standard errors at entry 1" in checks.results[0].message()


def test_tolerances_keep_the_sense_of_the_original_asserts():
    """relative/absolute are strict (<), z-scores and allclose are inclusive (<=), as in the
    asserts they replace."""
    checks = Checks("nb")
    checks.absolute("A", 1.5, 1.0, tol=0.5, meaning="m")  # |d| < tol fails at equality
    checks.relative("R", 1.5, 1.0, tol=0.5, meaning="m")
    checks.z_scores("Z", [4.0], z_max=4.0, meaning="m")  # |z| <= z_max passes at equality
    checks.allclose("C", [1.0 + 1e-8], [1.0], rtol=0.0, atol=1e-8, meaning="m")
    assert [r.status for r in checks.results] == ["failed", "failed", "passed", "passed"]


def test_records_are_appended_to_the_checks_file(tmp_path, monkeypatch):
    path = tmp_path / "checks.jsonl"
    monkeypatch.setenv(CHECKS_FILE_ENV, str(path))
    for name in ("a", "b"):
        checks = Checks(name)
        checks.z_scores("Z", [1.0, 2.0], z_max=4, meaning="m", labels=["x", "y"])
        checks.done()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["notebook"], r["status"], r["value"]) for r in rows] == [
        ("a", "passed", 2.0), ("b", "passed", 2.0)
    ]  # fmt: skip
    assert rows[0]["measured"] == "2 standard errors at y (worst of 2)"


def test_labels_must_match_the_values():
    with pytest.raises(ValueError, match="labels must have one entry per value"):
        Checks("nb").z_scores("Z", [1.0, 2.0], z_max=4, meaning="m", labels=["only one"])


def test_show_warnings_prints_each_distinct_message_and_returns_them(capsys):
    import warnings

    from corrlib.companion.checks import show_warnings

    with show_warnings(width=40) as caught:
        for _ in range(2):
            warnings.warn(
                "the standard error of T is not trustworthy at layers 5..9",
                UserWarning,
                stacklevel=1,
            )
        warnings.warn("another", DeprecationWarning, stacklevel=1)
    out = capsys.readouterr().out
    assert len(caught) == 3
    assert out.count("UserWarning: the standard error") == 1
    assert "DeprecationWarning: another" in out
    assert max(len(line) for line in out.splitlines()) <= 40
