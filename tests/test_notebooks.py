"""Every notebook under papermill at its quick profile, in a temporary folder (as pyhf does).

Each notebook's final cell checks what it shows through :class:`corrlib.companion.checks.Checks`;
with ``CORRLIB_CHECKS_FILE`` set, those checks are recorded, and the tests below assert on them:
no check failed, every check inside its regime passed, and the ones outside their regime are
exactly the expected ones. The notebooks write their figures and tables into tmp_path
(``CORRLIB_FIGURES_DIR``), run with tmp_path as working directory, and the module asserts that
``git status --porcelain`` of the repository is the same before and after.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from corrlib.companion import notebooks as nbs
from corrlib.companion.checks import CHECKS_FILE_ENV
from corrlib.companion.execute import execute
from corrlib.companion.runs import FIGURES_ENV, RUN_NAME_ENV, RUNS_ENV

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = nbs.discover_notebooks(ROOT / "notebooks")

#: Checks that are outside their regime at the quick profile (none: the quick profiles were
#: chosen inside every regime, so they exercise every check).
EXPECTED_OUTSIDE: dict[str, set[str]] = {}

#: Notebooks that write no figures or tables.
NO_FILES = {"00_explore"}


def _git_status() -> str | None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        return None
    out = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return out.stdout if out.returncode == 0 else None


@pytest.fixture(scope="module", autouse=True)
def repository_unchanged():
    """Running the notebooks changes nothing in the repository (tracked or untracked)."""
    before = _git_status()
    yield
    assert _git_status() == before, "running the notebooks changed the repository"


def _run(path: Path, tmp_path: Path, monkeypatch, extra: dict | None = None) -> list[dict]:
    (plan,) = nbs.plan_parameters([path], "quick", extra or {})
    checks_file = tmp_path / "checks.jsonl"
    monkeypatch.setenv(FIGURES_ENV, str(tmp_path / "figures"))
    monkeypatch.setenv(RUNS_ENV, str(tmp_path / "runs"))
    monkeypatch.setenv(RUN_NAME_ENV, "test")
    monkeypatch.setenv(CHECKS_FILE_ENV, str(checks_file))
    monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", "1")
    out = tmp_path / path.name
    ok, error, _ = execute(path, out, plan.injected, cwd=tmp_path)
    assert ok, f"{path.stem} failed at the quick profile: {error} (executed copy: {out})"
    assert checks_file.exists(), f"{path.stem}: the final cell recorded no checks"
    return [json.loads(line) for line in checks_file.read_text().splitlines()]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_at_quick_profile(path, tmp_path, monkeypatch):
    records = _run(path, tmp_path, monkeypatch)
    failed = [r for r in records if r["status"] == "failed"]
    assert not failed, failed  # (the notebook would have raised CheckFailed)
    passed = [r for r in records if r["status"] == "passed"]
    assert passed, f"{path.stem}: no check ran inside its regime"
    outside = {r["quantity"] for r in records if r["status"] == "outside"}
    assert outside == EXPECTED_OUTSIDE.get(path.stem, set())
    for r in records:  # every statistical check passed within its bound
        if r["measured"].endswith("standard errors") or "standard errors at" in r["measured"]:
            assert r["value"] is not None and r["value"] <= float(r["allowed"].split()[-1])
    if path.stem not in NO_FILES:
        written = sorted(p.name for p in (tmp_path / "figures" / path.stem).iterdir())
        assert written, f"{path.stem} wrote no figures"
    assert not (tmp_path / "runs").exists()  # CORRLIB_FIGURES_DIR wins over the workspace


def test_leaving_a_regime_is_reported_not_failed(tmp_path, monkeypatch):
    """Notebook 08 at width 50 with 40 000 networks: the order-1/n comparison of the recursion
    with the Monte Carlo at l <= 3 is no longer sharp (its O(1/n^2) remainder exceeds the Monte
    Carlo resolution), so those checks report "outside the regime" and the notebook succeeds."""
    path = next(p for p in NOTEBOOKS if p.stem.startswith("08_"))
    records = _run(path, tmp_path, monkeypatch, {"width": 50, "n_samples": 40_000})
    outside = {r["quantity"] for r in records if r["status"] == "outside"}
    assert outside == {"Var Sigma, Monte Carlo vs (T12)", "E Sigma, Monte Carlo vs K + Delta (T11)"}
    assert all("sqrt(n_samples)/n = 4" in r["here"] for r in records if r["status"] == "outside")
    assert not [r for r in records if r["status"] == "failed"]
