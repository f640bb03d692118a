"""The committed record (notebooks/, figures/, figures/manifest.json) is consistent with itself.

These checks read files only. That the record's numbers are what the notebooks compute at the
paper's parameters is checked by re-running them: ``make test-record`` (nbval of the committed
notebooks, run by ``.ci/run`` after ``make test``).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from corrlib.companion.notebooks import notebook_source_hash
from corrlib.companion.record import MANIFEST_FORMAT, sha256_file

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "figures"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _tracked(folder: str) -> set[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z", folder], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    return {p for p in out.split("\0") if p}


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((FIGURES / "manifest.json").read_text(encoding="utf-8"))


def test_manifest_format(manifest):
    assert manifest["format"] == MANIFEST_FORMAT


def test_every_committed_figure_is_in_the_manifest_with_its_hash(manifest):
    files = manifest["files"]
    tracked = {
        p.removeprefix("figures/") for p in _tracked("figures") if p != "figures/manifest.json"
    }
    assert tracked == set(files), (
        f"tracked but not in the manifest: {sorted(tracked - set(files))}; "
        f"in the manifest but not tracked: {sorted(set(files) - tracked)}"
    )
    stale = [key for key, rec in files.items() if sha256_file(FIGURES / key) != rec["sha256"]]
    assert not stale, f"figures whose content differs from the manifest's sha256: {stale}"


def test_each_figure_belongs_to_its_notebook_folder(manifest):
    for key, rec in manifest["files"].items():
        stem = Path(rec["notebook"]).stem
        assert key.startswith(stem + "/"), (key, rec["notebook"])


def test_every_notebook_is_recorded_at_the_paper_profile_with_its_source(manifest):
    recorded = manifest["notebooks"]
    assert set(recorded) == {f"notebooks/{p.name}" for p in NOTEBOOKS}
    for path in NOTEBOOKS:
        rec = recorded[f"notebooks/{path.name}"]
        assert rec["profile"] == "paper", path.name
        nb = json.loads(path.read_text(encoding="utf-8"))
        assert notebook_source_hash(nb) == rec["notebook_source_sha256"], (
            f"{path.name} was edited after its paper run: re-run python -m corrlib.reproduce "
            f"--only {path.name[:2]}"
        )


def test_committed_notebooks_ran_to_the_end_without_errors():
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text(encoding="utf-8"))
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert code, path.name
        for cell in code:
            assert cell.get("execution_count") is not None, f"{path.name}: a cell did not run"
            errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
            assert not errors, f"{path.name}: {errors[0].get('ename')}"
