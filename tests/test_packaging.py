"""Packaging and documentation consistency.

- environment.yml (conda) lists every dependency of pyproject.toml, with the same lower bounds;
- CI runs exactly the README's test command;
- every equation tag cited in the code, notebooks, tests or README is defined in docs/theory.md.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ("notebooks", "dev")  # the extras environment.yml and the Makefile install

# pip name (with extras) -> conda-forge package names
PIP_TO_CONDA = {"dask[distributed]": ["dask", "distributed"]}
CONDA_ONLY = {"python", "pip"}

TAG_CITE = re.compile(r"\(T(\d+)\)")
TAG_DEF = re.compile(r'<a id="T(\d+)"></a>\*\*\(T(\d+)\)\*\*')


def _pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)


def _pyproject_requirements() -> list[Requirement]:
    project = _pyproject()["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in EXTRAS:
        reqs += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return reqs


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _environment() -> dict:
    with open(ROOT / "environment.yml", encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _conda_specs() -> dict[str, str]:
    """conda package name -> version specifier string ("" if none)."""
    out = {}
    for dep in _environment()["dependencies"]:
        if isinstance(dep, str):
            m = re.match(r"^([A-Za-z0-9_.-]+)\s*(.*)$", dep.strip())
            assert m, f"cannot parse conda dependency {dep!r}"
            out[_norm(m.group(1))] = m.group(2).replace(" ", "")
    return out


def _conda_names_for(req: Requirement) -> list[str]:
    key = req.name + (f"[{','.join(sorted(req.extras))}]" if req.extras else "")
    return [_norm(n) for n in PIP_TO_CONDA.get(key, [req.name])]


def test_environment_uses_conda_forge():
    env = _environment()
    assert env["channels"] == ["conda-forge"]
    assert env["name"] == "corrlib"


def test_environment_lists_every_pyproject_dependency():
    conda = _conda_specs()
    missing = []
    for req in _pyproject_requirements():
        for name in _conda_names_for(req):
            if name not in conda:
                missing.append(f"{req} (conda name {name!r})")
    assert not missing, "environment.yml lacks: " + ", ".join(missing)


def test_environment_lower_bounds_match_pyproject():
    conda = _conda_specs()
    mismatched = []
    for req in _pyproject_requirements():
        want = str(req.specifier)
        for name in _conda_names_for(req):
            if name in conda and want and conda[name] != want:
                mismatched.append(f"{name}: pyproject {want!r}, environment.yml {conda[name]!r}")
    assert not mismatched, "; ".join(mismatched)


def test_environment_has_nothing_pyproject_does_not_declare():
    declared = {n for req in _pyproject_requirements() for n in _conda_names_for(req)}
    extra = set(_conda_specs()) - declared - CONDA_ONLY
    assert not extra, f"environment.yml lists packages pyproject.toml does not: {sorted(extra)}"


def test_environment_installs_the_package_editable_with_extras():
    pip_sections = [d["pip"] for d in _environment()["dependencies"] if isinstance(d, dict)]
    assert pip_sections == [[f"-e .[{','.join(EXTRAS)}]"]]


def test_makefile_installs_the_same_extras():
    text = (ROOT / "Makefile").read_text()
    assert f"EXTRAS := {','.join(EXTRAS)}" in text
    assert '-m pip install -e ".[$(EXTRAS)]"' in text
    for target in ("figures:", "test:", "test-record:", "lint:", "bench:", "clean:"):
        assert re.search(rf"^{target}", text, re.M), target


def test_ci_runs_the_readme_test_command():
    ci = ROOT / ".ci" / "run"
    assert os.access(ci, os.X_OK), ".ci/run must be executable"
    lines = [ln.strip() for ln in ci.read_text().splitlines()]
    assert lines[0].startswith("#!") and "bash" in lines[0]
    assert "set -euo pipefail" in lines
    commands = [ln for ln in lines if ln and not ln.startswith("#")]
    assert commands[-2:] == ["make test", "make test-record"]
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make figures" in readme and "make test-record" in readme


def test_readme_cites_the_paper():
    readme = (ROOT / "README.md").read_text()
    assert "2204.01058" in readme
    assert re.search(r"eprint\s*=\s*\{2204\.01058\}", readme)


# ------------------------------------------------------------------------------- equation tags


def _defined_tags() -> list[int]:
    text = (ROOT / "docs" / "theory.md").read_text(encoding="utf-8")
    tags = []
    for anchor, bold in TAG_DEF.findall(text):
        assert anchor == bold, f"anchor T{anchor} labels tag (T{bold})"
        tags.append(int(anchor))
    return tags


def _sources():
    for folder in ("corrlib", "tests"):
        yield from sorted((ROOT / folder).rglob("*.py"))
    yield from sorted(
        p
        for p in (ROOT / "notebooks").glob("*.ipynb")
        if not p.name.startswith(".") and not p.name.endswith(".failed.ipynb")
    )
    yield ROOT / "README.md"


def _text(path: Path) -> str:
    if path.suffix == ".ipynb":
        nb = json.loads(path.read_text(encoding="utf-8"))
        return "\n".join(
            "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for c in nb["cells"]
        )
    return path.read_text(encoding="utf-8")


def test_theory_defines_each_tag_once():
    """Tags are (T1), (T2), ... without gaps, each defined once, and (T1)-(T18) never move."""
    tags = _defined_tags()
    assert sorted(tags) == list(range(1, max(tags) + 1)), tags
    assert max(tags) >= 18


def test_every_cited_tag_is_defined():
    defined = set(_defined_tags())
    bad = []
    for path in _sources():
        for n in TAG_CITE.findall(_text(path)):
            if int(n) not in defined:
                bad.append(f"{path.relative_to(ROOT)}: (T{n})")
    assert not bad, "tags not defined in docs/theory.md: " + ", ".join(sorted(set(bad)))


@pytest.mark.parametrize("text,expected", [("see (T7) and (T12)", ["7", "12"]), ("T7", [])])
def test_tag_pattern(text, expected):
    assert TAG_CITE.findall(text) == expected
