"""python -m corrlib.reproduce on a throw-away project (a git repository in tmp_path).

The generated notebooks are tiny (a parameters cell, one figure, one table), so each run costs a
few seconds of kernel start-up. The project is a git repository of its own, so "the repository
is unchanged" is checked the way a user sees it: ``git status --porcelain`` and the bytes of
every tracked file.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from corrlib import __version__
from corrlib.companion import notebooks as nbs
from corrlib.companion import reproduce as rp
from corrlib.companion.execute import normalise
from corrlib.companion.runs import FIGURES_ENV, RUN_NAME_ENV, RUNS_ENV


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


# Two prints with a flush in between (two stream messages: a rerun may see them as one or two)
# and kernel noise on stderr, which the record must not depend on.
FIGURE_BODY = """\
import os, sys
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
sys.stdout.flush()
print("label =", label)
print("Kernel is running over TCP without encryption.", file=sys.stderr)
"""


def _write(folder: Path, stem: str, body: str, quick: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.ipynb"
    nbformat.write(_notebook(stem, body, quick), path)
    return path


def _git(root: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.org",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.org")  # fmt: skip
    out = subprocess.run(["git", *args], cwd=root, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _tracked(root: Path) -> dict[str, str]:
    """sha256 of every tracked file."""
    names = _git(root, "ls-files", "-z").split("\0")
    return {n: hashlib.sha256((root / n).read_bytes()).hexdigest() for n in names if n}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A git repository with two notebooks, a pyproject.toml and the .gitignore of corrlib; the
    workspace settings of the calling environment (make test sets them) do not apply."""
    for name in (FIGURES_ENV, RUNS_ENV, RUN_NAME_ENV):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "project"
    _write(root / "notebooks", "01_tiny", FIGURE_BODY.format(stem="01_tiny"), quick={"n": 3})
    _write(root / "notebooks", "02_other", FIGURE_BODY.format(stem="02_other"))
    (root / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    (root / ".gitignore").write_text("/runs/\n__pycache__/\n")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "initial")
    return root


def _run(root: Path, *extra: str) -> int:
    return rp.main(["--project", str(root), *extra])


def _manifest(path: Path) -> dict:
    return json.loads(path.read_text())


def _stdout_of_last_cell(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    outs = nb.cells[-1].outputs
    return "".join(o.get("text", "") for o in outs if o.output_type == "stream" and
                   o.name == "stdout")  # fmt: skip


# ------------------------------------------------------------------------- selection, list


def test_selection_by_number_and_stem(tmp_path):
    for stem in ("01_a", "02_b", "10_c"):
        _write(tmp_path, stem, "pass")
    (tmp_path / "01_a.failed.ipynb").write_text("{}")  # never picked up
    (tmp_path / ".01_a.running-1.ipynb").write_text("{}")
    found = nbs.discover_notebooks(tmp_path)
    assert [p.stem for p in found] == ["01_a", "02_b", "10_c"]
    assert [p.stem for p in nbs.select_notebooks(found, ["02"])] == ["02_b"]
    assert [p.stem for p in nbs.select_notebooks(found, ["10_c", "1"])] == ["01_a", "10_c"]
    assert [p.stem for p in nbs.select_notebooks(found, ["02_b.ipynb"])] == ["02_b"]
    with pytest.raises(ValueError, match="'03' matches no notebook"):
        nbs.select_notebooks(found, ["03"])
    with pytest.raises(ValueError, match="did you mean '02_b'"):
        nbs.select_notebooks(found, ["02_bx"])


def test_list_executes_nothing(project, capsys):
    before = _tracked(project)
    assert _run(project, "--list") == 0
    out = capsys.readouterr().out
    assert "01_tiny" in out and "02_other" in out and '"n": 3' in out
    assert not (project / "runs").exists()
    assert _tracked(project) == before


def test_no_notebooks_folder_is_an_error(tmp_path, capsys):
    assert rp.main(["--project", str(tmp_path)]) == 2
    assert "no notebooks/ folder" in capsys.readouterr().err


# --------------------------------------------------------------------- parameter validation


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--param", "nn=4"], "unknown parameter 'nn' (did you mean 'n'?)"),
        (["--param", "lable=x"], "did you mean 'label'?"),
        (["--param", "n=4.5"], "parameter 'n' of 01_tiny must be an int like its default 10"),
        (["--param", "n=[4]"], "must be an int"),
        (["--param", "label=3"], "must be a str"),
        (["--param", "profile=quick"], "set with --profile"),
        (["--param", "not an assignment"], "--param expects NAME=VALUE"),
        (["--only", "07"], "'07' matches no notebook"),
        (["--jobs", "0"], "--jobs must be >= 1"),
        (["--name", "../escape"], "run name must be a plain folder name"),
    ],
)
def test_bad_arguments_are_refused_before_anything_runs(project, capsys, args, message):
    before = _tracked(project)
    assert _run(project, *args) == 2
    assert message in capsys.readouterr().err
    assert not (project / "runs").exists()  # nothing ran, nothing was created
    assert _tracked(project) == before


def test_parameter_given_to_a_notebook_that_lacks_it(project, capsys):
    _write(project / "notebooks", "03_more", "width = 5", quick=None)
    nb = nbformat.read(project / "notebooks" / "03_more.ipynb", as_version=4)
    nb.cells[1].source = "width = 5\nprofile = 'paper'"
    nbformat.write(nb, project / "notebooks" / "03_more.ipynb")
    assert _run(project, "--only", "01", "03", "--param", "width=7") == 2
    err = capsys.readouterr().err
    assert "'width' is a parameter of 03_more but not of 01_tiny" in err
    assert "--only" in err


def test_quick_overrides_are_validated_like_params(tmp_path):
    _write(tmp_path, "01_q", "pass", quick={"nn": 3})
    with pytest.raises(nbs.ParameterError, match="01_q has no parameter 'nn'.*did you mean 'n'"):
        nbs.plan_parameters(nbs.discover_notebooks(tmp_path), "quick", {})


def test_committed_notebooks_quick_profiles_are_valid():
    """Every quick override of the real notebooks names a parameter of the right type."""
    folder = Path(__file__).resolve().parents[1] / "notebooks"
    plans = nbs.plan_parameters(nbs.discover_notebooks(folder), "quick", {})
    assert len(plans) >= 10
    assert all(p.injected["profile"] == "quick" for p in plans)


def test_int_accepted_for_float_parameter_and_converted(tmp_path):
    _write(tmp_path, "01_f", "pass")
    nb = nbformat.read(tmp_path / "01_f.ipynb", as_version=4)
    nb.cells[1].source = "ratio = 0.25\nwidths = [8, 32]\nmix = [0.5, 1]\nscheduler = None"
    nbformat.write(nb, tmp_path / "01_f.ipynb")
    found = nbs.discover_notebooks(tmp_path)
    plan = nbs.plan_parameters(found, "paper", {"ratio": 1, "mix": [1, 2], "scheduler": "tcp://x"})
    assert plan[0].injected["ratio"] == 1.0 and isinstance(plan[0].injected["ratio"], float)
    for bad in ({"widths": [8.5]}, {"widths": 8}, {"ratio": True}, {"mix": ["a"]}):
        with pytest.raises(nbs.ParameterError, match="must be"):
            nbs.plan_parameters(found, "paper", bad)


# ------------------------------------------------------------------------------- paper runs


def _check_record(project: Path) -> None:
    """What the first paper run below must have written."""
    manifest = _manifest(project / "figures" / "manifest.json")
    assert manifest["format"] == 2
    files = manifest["files"]
    expected = {
        f"{stem}/{f}"
        for stem in ("01_tiny", "02_other")
        for f in ("squares.png", "squares.pdf", "values.csv")
    }
    assert set(files) == expected
    png = project / "figures" / "01_tiny" / "squares.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert files["01_tiny/squares.png"] == {
        "notebook": "notebooks/01_tiny.ipynb",
        "sha256": hashlib.sha256(png.read_bytes()).hexdigest(),
    }
    record = manifest["notebooks"]["notebooks/01_tiny.ipynb"]
    assert record["parameters"] == {"n": 10, "label": "paper default", "profile": "paper"}
    assert record["corrlib_version"] == __version__
    # the revision of the library inputs (here pyproject.toml), not of the latest commit
    library = _git(project, "log", "-1", "--format=%H", "--", "pyproject.toml").strip()
    assert record["git_revision"] == library != _git(project, "rev-parse", "HEAD").strip()
    assert "runtime_seconds" not in json.dumps(manifest)  # run-specific facts go to the log
    (run,) = (project / "runs").glob("paper-*")
    log = json.loads((run / "log.json").read_text())
    assert log["status"] == "finished" and log["notebooks"][0]["wall_seconds"] > 0
    assert not (run / ".staging").exists()
    # executed from notebooks/, with the parameters injected after the tagged cell
    for stem in ("01_tiny", "02_other"):
        path = project / "notebooks" / f"{stem}.ipynb"
        out = _stdout_of_last_cell(path)
        assert out == "n = 10 | profile = paper | cwd = notebooks\nlabel = paper default\n"
        nb = nbformat.read(path, as_version=4)
        assert nb.cells[2].id == "injected-parameters"
        assert "start_time" not in nb.metadata.get("papermill", {})
        streams = [o for o in nb.cells[-1].outputs if o.output_type == "stream"]
        assert [o.name for o in streams] == ["stdout"]  # merged; the TCP noise dropped


def test_paper_runs_are_deterministic_and_a_failure_changes_nothing(project, capsys):
    # a file of the old record that the notebook no longer writes
    old = project / "figures" / "02_other" / "renamed_long_ago.png"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"old")
    _git(project, "add", "-A")
    _git(project, "commit", "-q", "-m", "an old figure")

    # a paper run writes the record (and moves the stale file out of it)
    assert _run(project, "--jobs", "2") == 0
    _check_record(project)
    assert not old.exists()
    moved = next((project / "runs").glob("paper-*/replaced/02_other/renamed_long_ago.png"))
    assert moved.read_bytes() == b"old"
    assert "02_other/renamed_long_ago.png was not written by 02_other" in capsys.readouterr().out

    # two paper runs in a row: the second changes nothing (git status clean, same bytes)
    _git(project, "add", "-A")
    _git(project, "commit", "-q", "-m", "record")
    record = _tracked(project)
    assert _run(project) == 0
    assert _git(project, "status", "--porcelain") == ""
    assert _tracked(project) == record

    # a notebook that writes its figures and then fails replaces nothing, and is named
    bad = project / "notebooks" / "02_other.ipynb"
    nb = nbformat.read(bad, as_version=4)
    nb.cells[-1].source = FIGURE_BODY.format(stem="02_other") + '\nraise ValueError("8675309")'
    nbformat.write(nb, bad)
    _git(project, "commit", "-q", "-am", "break 02")
    before = _tracked(project)
    capsys.readouterr()
    assert _run(project, "--only", "02") == 1
    err = capsys.readouterr().err
    assert "02_other: ValueError: 8675309" in err
    copy = next((project / "runs").glob("paper-*/failed/02_other/02_other.ipynb"))
    assert str(copy.relative_to(project)) in err
    executed = nbformat.read(copy, as_version=4)
    assert any(o.output_type == "error" for o in executed.cells[-1].outputs)
    assert _tracked(project) == before  # the failed notebook's figures were not replaced
    assert _git(project, "status", "--porcelain") == ""


# ----------------------------------------------------------------------- workspace runs


def test_quick_param_and_failing_runs_leave_the_repository_byte_identical(project, capsys):
    """The three ways to experiment (another profile, a parameter override, a notebook that
    fails) write only under runs/: every tracked file keeps its bytes."""
    _write(project / "notebooks", "03_bad", FIGURE_BODY.format(stem="03_bad") + "\n1 / 0")
    _git(project, "add", "-A")
    _git(project, "commit", "-q", "-m", "a failing notebook")
    before = _tracked(project)

    assert _run(project, "--only", "01", "--profile", "quick", "--name", "q") == 0
    assert _run(project, "--only", "02", "--param", "n=4") == 0  # named by the date and n
    assert _run(project, "--only", "03") == 1  # a paper run, failing
    assert "03_bad: ZeroDivisionError" in capsys.readouterr().err

    assert _tracked(project) == before
    assert _git(project, "status", "--porcelain") == ""
    assert not (project / "figures").exists()

    runs = project / "runs"
    assert _stdout_of_last_cell(runs / "q" / "notebooks" / "01_tiny.ipynb").startswith(
        "n = 3 | profile = quick"
    )
    assert (runs / "q" / "figures" / "01_tiny" / "values.csv").read_text().split() == [
        "i", "0", "1", "2"
    ]  # fmt: skip
    (p,) = runs.glob("*_paper_n=4")
    manifest = _manifest(p / "manifest.json")
    assert manifest["notebooks"]["notebooks/02_other.ipynb"]["parameters"]["n"] == 4
    assert set(manifest["files"]) == {f"02_other/{f}" for f in ("squares.png", "squares.pdf",
                                                               "values.csv")}  # fmt: skip
    assert next(runs.glob("paper-*/failed/03_bad/03_bad.ipynb")).exists()


# ------------------------------------------------------------------- the module, interrupts


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in (FIGURES_ENV, RUNS_ENV, RUN_NAME_ENV)}
    return {**env, "PYTHONWARNINGS": "ignore", **extra}


SLOW_BODY = """\
import os, time
from corrlib.companion.plotting import save_table
import pandas as pd
save_table(pd.DataFrame({{"i": [1]}}), "{stem}", "early")  # a file, written before the end
with open({pid_file!r}, "w") as fh:
    fh.write(str(os.getpid()))
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie is not alive
        return fh.read().split(") ")[-1][0] != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to see the kernel process")
def test_sigint_stops_the_run_promptly_and_replaces_nothing(project, tmp_path):
    """kill -INT to the main process: the notebooks and their kernels stop within seconds, the
    repository keeps every byte, the exit status is 130."""
    pid_file = tmp_path / "kernel.pid"
    _write(
        project / "notebooks", "03_slow", SLOW_BODY.format(stem="03_slow", pid_file=str(pid_file))
    )
    _git(project, "add", "-A")
    _git(project, "commit", "-q", "-m", "slow")
    before = _tracked(project)
    proc = subprocess.Popen(
        [sys.executable, "-m", "corrlib.reproduce", "--project", str(project), "--only", "03"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        deadline = time.monotonic() + 300
        while not pid_file.exists() or not pid_file.read_text():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the slow notebook did not start in 300 s"
            time.sleep(0.1)
        kernel = int(pid_file.read_text())
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        stopped = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert stopped < 30, stopped  # promptly: not after the 600 s the notebook would take
    assert "interrupted: nothing was replaced" in err
    assert _tracked(project) == before
    assert _git(project, "status", "--porcelain") == ""
    assert not (project / "figures").exists()
    deadline = time.monotonic() + 10
    while _alive(kernel) and time.monotonic() < deadline:  # the kernel polls its parent (1 s)
        time.sleep(0.2)
    assert not _alive(kernel), "the notebook's kernel survived the interrupt"
    (run,) = (project / "runs").glob("paper-*")
    assert (run / "interrupted" / "03_slow" / "figures" / "03_slow" / "early.csv").exists()
    assert json.loads((run / "log.json").read_text())["status"] == "interrupted"


# --------------------------------------------------------------------------- normalisation


def test_normalise_merges_streams_and_drops_kernel_noise(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(1)")
    cell.metadata["execution"] = {"iopub.execute_input": "2026-01-01T00:00:00"}
    cell.metadata["papermill"] = {"duration": 1.5}
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="a\n"),
        nbformat.v4.new_output("stream", name="stdout", text="b\n"),
        nbformat.v4.new_output(
            "stream",
            name="stderr",
            text='Traceback (most recent call last):\n  File "x", line 1\nKeyboardInterrupt\n'
            "/tmp/ipykernel_4242/938942395.py:19: UserWarning: a real warning\n"
            "2026-01-01 00:00:00,000 - distributed.comm.tcp - WARNING - closing\n",
        ),
        nbformat.v4.new_output(
            "execute_result",
            data={
                "text/plain": "<Line2D at 0x7f3a2b>",
                "application/vnd.jupyter.widget-view+json": {"model_id": "abc"},
            },
            execution_count=1,
        ),  # fmt: skip
    ]
    nb.cells = [cell]
    nb.metadata["papermill"] = {"start_time": "t", "duration": 3.0, "input_path": "/abs/x.ipynb"}
    nb.metadata["widgets"] = {"state": {}}
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    normalise(path, "x.ipynb")
    out = json.loads(path.read_text())
    cell = out["cells"][0]
    assert cell["metadata"] == {}
    assert [(o["output_type"], o.get("name")) for o in cell["outputs"]] == [
        ("stream", "stdout"), ("stream", "stderr"), ("execute_result", None)
    ]  # fmt: skip
    assert "".join(cell["outputs"][0]["text"]) == "a\nb\n"
    # the warning stays, without the kernel's per-process file name
    assert (
        "".join(cell["outputs"][1]["text"])
        == "<cell>/938942395.py:19: UserWarning: a real warning\n"
    )
    assert cell["outputs"][2]["data"] == {"text/plain": ["<Line2D at 0x...>"]}
    assert out["metadata"]["papermill"] == {"input_path": "x.ipynb", "output_path": "x.ipynb"}
    assert "widgets" not in out["metadata"]
