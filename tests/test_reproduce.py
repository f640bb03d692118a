"""python -m corrlib.reproduce on a throw-away notebooks folder.

The generated notebooks are tiny (a parameters cell, one figure, one table), so each run is a
few seconds of kernel start-up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from corrlib import __version__
from corrlib.companion import reproduce as rp

pytest.importorskip("papermill")


def _notebook(stem: str, body: str, quick: dict | None = None) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('n = 10\nlabel = "paper default"\nprofile = "paper"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        nbformat.v4.new_markdown_cell(f"# {stem}"),
        params,
        nbformat.v4.new_code_cell(body),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    if quick is not None:
        nb.metadata["corrlib"] = {"quick": quick}
    return nb


FIGURE_BODY = """\
import os
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from corrlib.companion.plotting import save_figure, save_table
fig, ax = plt.subplots()
ax.plot(range(n), [i * i for i in range(n)])
save_figure(fig, "{stem}", "squares")
save_table(pd.DataFrame({{"i": range(n)}}), "{stem}", "values")
print("n =", n, "| profile =", profile, "| cwd =", os.path.basename(os.getcwd()))
"""


def _write(folder: Path, stem: str, body: str, quick: dict | None = None) -> Path:
    path = folder / f"{stem}.ipynb"
    nbformat.write(_notebook(stem, body, quick), path)
    return path


def _stdout_of_last_cell(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    outs = nb.cells[-1].outputs
    return "".join(o.get("text", "") for o in outs if o.output_type == "stream")


@pytest.fixture
def project(tmp_path):
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    _write(nbdir, "01_tiny", FIGURE_BODY.format(stem="01_tiny"), quick={"n": 3})
    _write(nbdir, "02_other", FIGURE_BODY.format(stem="02_other"))
    return nbdir, tmp_path / "figures"


def _run(nbdir, figdir, *extra):
    return rp.main(["--notebooks-dir", str(nbdir), "--figures-dir", str(figdir), *extra])


def _manifest(figdir: Path) -> dict:
    return json.loads((figdir / "manifest.json").read_text())["files"]


def test_selection_by_number_and_stem(tmp_path):
    for stem in ("01_a", "02_b", "10_c"):
        _write(tmp_path, stem, "pass")
    (tmp_path / "01_a.failed.ipynb").write_text("{}")  # never picked up
    (tmp_path / ".01_a.running-1.ipynb").write_text("{}")
    nbs = rp.discover_notebooks(tmp_path)
    assert [p.stem for p in nbs] == ["01_a", "02_b", "10_c"]
    assert [p.stem for p in rp.select_notebooks(nbs, ["02"])] == ["02_b"]
    assert [p.stem for p in rp.select_notebooks(nbs, ["10_c", "1"])] == ["01_a", "10_c"]
    assert [p.stem for p in rp.select_notebooks(nbs, ["02_b.ipynb"])] == ["02_b"]
    with pytest.raises(ValueError, match="03"):
        rp.select_notebooks(nbs, ["03"])


def test_list(project, capsys):
    nbdir, figdir = project
    assert _run(nbdir, figdir, "--list") == 0
    out = capsys.readouterr().out
    assert "01_tiny" in out and "02_other" in out and '"n": 3' in out
    assert not figdir.exists()  # --list executes nothing


def test_unknown_only_is_an_error(project, capsys):
    nbdir, figdir = project
    assert _run(nbdir, figdir, "--only", "07") == 2
    assert "07" in capsys.readouterr().err


def test_paper_run_writes_outputs_and_manifest(project):
    nbdir, figdir = project
    assert _run(nbdir, figdir, "--jobs", "2") == 0

    files = _manifest(figdir)
    expected = {
        f"{stem}/{f}"
        for stem in ("01_tiny", "02_other")
        for f in ("squares.png", "squares.pdf", "values.csv")
    }
    assert set(files) == expected
    entry = files["01_tiny/squares.png"]
    assert entry["notebook"] == "notebooks/01_tiny.ipynb"
    assert entry["profile"] == "paper"
    # defaults of the parameters cell, plus the injected profile
    assert entry["parameters"] == {"n": 10, "label": "paper default", "profile": "paper"}
    assert entry["corrlib_version"] == __version__
    assert entry["git_revision"] == "unknown"  # tmp_path is not a git checkout
    assert entry["runtime_seconds"] > 0
    assert (figdir / "01_tiny" / "squares.png").read_bytes()[:4] == b"\x89PNG"

    # executed in place, from notebooks/, with the parameters injected after the tagged cell
    for stem in ("01_tiny", "02_other"):
        path = nbdir / f"{stem}.ipynb"
        assert _stdout_of_last_cell(path).strip() == "n = 10 | profile = paper | cwd = notebooks"
        nb = nbformat.read(path, as_version=4)
        assert "injected-parameters" in nb.cells[2].metadata.get("tags", [])
        assert nb.cells[2].id == "injected-parameters"  # stable across re-runs
        assert "start_time" not in nb.metadata.get("papermill", {})
    assert sorted(p.name for p in nbdir.iterdir()) == ["01_tiny.ipynb", "02_other.ipynb"]


def test_quick_profile_injects_metadata_overrides_and_merges_manifest(project):
    nbdir, figdir = project
    assert _run(nbdir, figdir) == 0
    before = _manifest(figdir)
    assert _run(nbdir, figdir, "--only", "01", "--profile", "quick") == 0
    out = _stdout_of_last_cell(nbdir / "01_tiny.ipynb").strip()
    assert out == "n = 3 | profile = quick | cwd = notebooks"
    files = _manifest(figdir)
    assert files["01_tiny/squares.png"]["parameters"]["n"] == 3
    assert files["01_tiny/values.csv"]["profile"] == "quick"
    # --only merges: the other notebook's entries are kept as they were
    assert files["02_other/squares.png"] == before["02_other/squares.png"]
    # the quick run wrote 3 rows
    assert (figdir / "01_tiny" / "values.csv").read_text().splitlines() == ["i", "0", "1", "2"]


def test_failing_notebook_is_named_and_left_untouched(project, capsys):
    nbdir, figdir = project
    bad = _write(nbdir, "03_bad", 'raise ValueError("deliberate failure 8675309")')
    original = bad.read_bytes()
    assert _run(nbdir, figdir, "--only", "02", "03_bad") == 1
    err = capsys.readouterr().err
    assert "03_bad" in err
    assert "ValueError: deliberate failure 8675309" in err
    assert "02_other" not in err
    assert bad.read_bytes() == original  # the committed notebook is untouched
    failed = nbdir / "03_bad.failed.ipynb"
    assert failed.exists()
    nb = nbformat.read(failed, as_version=4)
    assert any(o.output_type == "error" for o in nb.cells[-1].outputs)
    # the notebook that succeeded is still recorded
    assert "02_other/squares.png" in _manifest(figdir)
    assert not [p for p in nbdir.iterdir() if p.name.startswith(".")]


def test_success_removes_stale_failed_copy_and_warns_about_stale_figures(project, capsys):
    nbdir, figdir = project
    stale = nbdir / "02_other.failed.ipynb"
    stale.write_text("{}")
    old = figdir / "02_other" / "renamed_long_ago.png"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"old")
    os.utime(old, (1.0e9, 1.0e9))
    assert _run(nbdir, figdir, "--only", "02_other") == 0
    assert not stale.exists()
    err = capsys.readouterr().err
    assert "02_other/renamed_long_ago.png was not rewritten" in err
    assert "squares.png" not in err


def test_module_entry_point_exit_status(project):
    nbdir, figdir = project
    _write(nbdir, "04_boom", "1 / 0")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "corrlib.reproduce",
            "--notebooks-dir",
            str(nbdir),
            "--figures-dir",
            str(figdir),
            "--only",
            "04",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 1
    assert "04_boom: ZeroDivisionError" in proc.stderr


def test_param_option_injects_values_and_records_them(project, capsys):
    nbdir, figdir = project
    assert _run(nbdir, figdir, "--only", "01", "--param", "n=4") == 0
    out = _stdout_of_last_cell(nbdir / "01_tiny.ipynb").strip()
    assert out == "n = 4 | profile = paper | cwd = notebooks"
    assert _manifest(figdir)["01_tiny/squares.png"]["parameters"]["n"] == 4
    assert _run(nbdir, figdir, "--param", "not an assignment") == 2
    assert "--param expects NAME=VALUE" in capsys.readouterr().err
