"""Re-run the notebooks: the paper's record, or an experiment in the run workspace.

Usage::

    python -m corrlib.reproduce [--only NAME ...] [--profile {paper,quick}] [--param NAME=VALUE]
                                [--name RUN] [--jobs N] [--project DIR] [--runs-dir DIR] [--list]

Where the outputs go
--------------------
Only a *paper run* (the ``paper`` profile, no ``--param``, no ``--name``) replaces the
committed record: ``notebooks/NN_name.ipynb``, ``figures/NN_name/`` and ``figures/manifest.json``
of the project (``--project``, default: the current directory). Every other run is an
experiment and writes into the workspace folder ``runs/<name>/`` (``notebooks/`` with the
executed copies, ``figures/``, ``manifest.json``); the name is ``--name`` or made from the date,
the profile and the parameters. ``runs/`` is git-ignored.

Atomic, interruptible runs
--------------------------
Each notebook runs in its own process with papermill, into a staging folder
(``runs/<name>/.staging/<stem>/``); ``CORRLIB_FIGURES_DIR`` points the notebook's figures and
tables there. Only when the whole notebook succeeded, and only after every selected notebook has
finished, are its executed copy and its files moved into place and its manifest entries written
(with SIGINT/SIGTERM deferred for those few file moves). A failed notebook changes nothing in the
target; its executed copy with the traceback is kept under ``runs/<name>/failed/`` and named in
the error message. Ctrl-C (SIGINT) or SIGTERM stops the running notebooks and their kernels at
once and moves nothing: the repository stays as it was (exit status 130).

Parameters
----------
``--param NAME=VALUE`` values (Python literals, else strings) and the quick profile's overrides
(``metadata["corrlib"]["quick"]`` of each notebook) are validated before anything runs: an
unknown name is refused with a did-you-mean, a value must have the type of the notebook's
default, and a parameter must exist in every selected notebook. ``profile`` is always injected.

The record
----------
The manifest holds only facts that follow from the inputs and outputs (see
:mod:`corrlib.companion.record`), and the executed notebooks are normalised
(:func:`corrlib.companion.execute.normalise`), so two paper runs on the same revision leave
``git status`` clean. Wall times, host and date go to ``runs/<name>/log.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._util import default_jobs, source_hash
from . import notebooks as nbs
from .execute import KERNEL
from .io import atomic_path
from .record import MANIFEST, git_revision, sha256_file, update_manifest, write_log
from .runs import FIGURES_ENV, RUN_NAME_ENV, RUNS_ENV, check_run_name, make_run_name

__all__ = ["NotebookResult", "main"]

_PAPER_DESCRIPTION = (
    "Provenance of every file under figures/: the notebook that wrote it and what it ran with "
    "(written by python -m corrlib.reproduce, paper profile)"
)
_RUN_DESCRIPTION = (
    "Provenance of every file under figures/ of this run (written by python -m corrlib.reproduce)"
)


class UsageError(ValueError):
    """A bad command line (reported with exit status 2 before anything runs)."""


@dataclass
class NotebookResult:
    """Outcome of executing one notebook."""

    notebook: str  # file name, e.g. "01_infinite_width.ipynb"
    ok: bool
    runtime: float
    parameters: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    failed_copy: str | None = None


@dataclass
class _Target:
    """Where a successful notebook's outputs go."""

    notebooks: Path
    figures: Path
    manifest: Path
    description: str
    label: str


@dataclass
class _Setup:
    project: Path
    plans: list[nbs.Plan]
    all_notebooks: list[Path]
    profile: str
    paper: bool
    full: bool  # every notebook selected (the manifest forgets notebooks that no longer exist)
    run_dir: Path
    runs_root: Path
    target: _Target
    jobs: int
    kernel: str
    command: str = "python -m corrlib.reproduce"


@dataclass
class _Job:
    plan: nbs.Plan
    staging: Path
    proc: subprocess.Popen | None = None
    started: float = 0.0
    result: NotebookResult | None = None


# -------------------------------------------------------------------------------- arguments


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m corrlib.reproduce",
        description="Execute the notebooks. A paper run (paper profile, no --param, no --name) "
        "replaces notebooks/ and figures/; every other run writes to runs/<name>/.",
    )
    p.add_argument("--only", nargs="+", metavar="NAME", help='notebooks, by number ("03") or stem')
    p.add_argument("--profile", choices=nbs.PROFILES, default="paper", help="parameter profile")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a notebook parameter (repeatable; VALUE is a Python literal or a string); "
        "the run then goes to runs/<name>/",
    )
    p.add_argument("--name", help="run name: write to runs/NAME/ (default: date and parameters)")
    p.add_argument("--jobs", type=int, default=None, help="notebooks run at the same time")
    p.add_argument(
        "--project",
        type=Path,
        default=None,
        help="folder holding notebooks/, figures/ and runs/ (default: the current directory)",
    )
    p.add_argument(
        "--runs-dir",
        type=Path,
        default=None,
        help=f"the workspace root (default: ${RUNS_ENV}, else <project>/runs)",
    )
    p.add_argument("--list", action="store_true", help="list the notebooks and exit")
    p.add_argument("--kernel", default=KERNEL, help=argparse.SUPPRESS)
    return p


def _run_folder(root: Path, name: str | None, paper: bool, profile: str, extra: dict) -> Path:
    if name is not None:
        return root / check_run_name(name)
    now = _dt.datetime.now()
    base = f"paper-{now:%Y%m%d-%H%M%S}" if paper else make_run_name(profile, extra, now)
    folder, k = root / base, 1
    while folder.exists():
        k += 1
        folder = root / f"{base}-{k}"
    return folder


def _prepare(args: argparse.Namespace) -> _Setup:
    project = (args.project or Path.cwd()).resolve()
    nb_dir = project / "notebooks"
    if not nb_dir.is_dir():
        raise UsageError(
            f"no notebooks/ folder in {project}; run from the corrlib checkout or pass --project"
        )
    jobs = default_jobs() if args.jobs is None else args.jobs
    if jobs < 1:
        raise UsageError(f"--jobs must be >= 1; got {jobs}")
    extra = dict(nbs.parse_param(t) for t in args.param)
    every = nbs.discover_notebooks(nb_dir)
    selected = nbs.select_notebooks(every, args.only)
    plans = nbs.plan_parameters(selected, args.profile, extra)
    paper = args.profile == "paper" and not extra and args.name is None
    env_root = os.environ.get(RUNS_ENV)
    runs_root = (args.runs_dir or (Path(env_root) if env_root else project / "runs")).resolve()
    run_dir = _run_folder(runs_root, args.name, paper, args.profile, extra)
    if paper:
        figures = project / "figures"
        label = "the paper's record (notebooks/, figures/)"
        target = _Target(nb_dir, figures, figures / MANIFEST, _PAPER_DESCRIPTION, label)
    else:
        label = f"the run workspace {run_dir}"
        target = _Target(
            run_dir / "notebooks", run_dir / "figures", run_dir / MANIFEST, _RUN_DESCRIPTION, label
        )
    return _Setup(
        project=project,
        plans=plans,
        all_notebooks=every,
        profile=args.profile,
        paper=paper,
        full=not args.only,
        run_dir=run_dir,
        runs_root=runs_root,
        target=target,
        jobs=jobs,
        kernel=args.kernel,
    )


# -------------------------------------------------------------------------------- execution


def _kernel_env(setup: _Setup, job: _Job) -> dict[str, str]:
    """The worker's (and so the kernel's) environment: outputs into the staging folder, and the
    corrlib that runs this command first on the path when it is a source checkout."""
    env = dict(os.environ)
    env[FIGURES_ENV] = str(job.staging / "figures")
    env[RUNS_ENV] = str(setup.runs_root)
    env[RUN_NAME_ENV] = setup.run_dir.name
    env.setdefault("JUPYTER_PREFER_ENV_PATH", "1")
    pkg_parent = Path(__file__).resolve().parents[2]
    if "site-packages" not in pkg_parent.parts:
        old = env.get("PYTHONPATH")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(pkg_parent), old) if p)
    return env


def _start(setup: _Setup, job: _Job) -> None:
    stem = job.plan.path.stem
    job.staging.mkdir(parents=True, exist_ok=True)
    spec = {
        "source": str(job.plan.path),
        "output": str(job.staging / f"{stem}.ipynb"),
        "parameters": job.plan.injected,
        "cwd": str(job.plan.path.parent),
        "kernel": setup.kernel,
        "result": str(job.staging / "result.json"),
    }
    spec_path = job.staging / "spec.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    log = open(job.staging / "worker.log", "wb")  # the child keeps its own descriptor
    job.started = time.perf_counter()
    job.proc = subprocess.Popen(
        [sys.executable, "-m", "corrlib.companion.execute", str(spec_path)],
        env=_kernel_env(setup, job),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches this process only; it stops the workers
    )
    log.close()


def _collect(job: _Job) -> NotebookResult:
    name = job.plan.path.name
    runtime = time.perf_counter() - job.started
    try:
        out = json.loads((job.staging / "result.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        tail = (job.staging / "worker.log").read_text(errors="replace").strip().splitlines()
        why = tail[-1] if tail else f"exit status {job.proc.returncode}"
        return NotebookResult(name, False, runtime, job.plan.parameters, f"worker failed: {why}")
    return NotebookResult(
        name, bool(out["ok"]), float(out["runtime"]), job.plan.parameters, out.get("error")
    )


def _stop(jobs: Sequence[_Job], grace: float = 5.0) -> None:
    """Terminate running workers (their kernels exit with them), then kill what is left."""
    live = [j for j in jobs if j.proc is not None and j.proc.poll() is None]
    for j in live:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(j.proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for j in live:
        try:
            j.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(j.proc.pid, signal.SIGKILL)
            j.proc.wait()


def _run_all(setup: _Setup, jobs: list[_Job]) -> None:
    """Run every job, ``setup.jobs`` at a time; print a line as each finishes."""
    pending, running = list(jobs), []
    try:
        while pending or running:
            while pending and len(running) < setup.jobs:
                job = pending.pop(0)
                _start(setup, job)
                running.append(job)
            time.sleep(0.05)
            for job in [j for j in running if j.proc.poll() is not None]:
                running.remove(job)
                job.result = _collect(job)
                status = "ok    " if job.result.ok else "FAILED"
                stem = job.plan.path.stem
                print(f"{status} {stem:<32s} {job.result.runtime:8.1f} s", flush=True)
    except BaseException:
        _stop(running)
        raise


# ----------------------------------------------------------------------------------- commit


def _move(src: Path, dst: Path) -> None:
    """Replace ``dst`` by ``src`` atomically (a copy first when they are on different disks)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
        src.unlink()


def _staged_files(job: _Job) -> dict[str, Path]:
    folder = job.staging / "figures"
    if not folder.is_dir():
        return {}
    return {
        f.relative_to(folder).as_posix(): f
        for f in sorted(folder.rglob("*"))
        if f.is_file() and not f.name.startswith(".")
    }


def _commit(setup: _Setup, job: _Job, revision: str, source: str) -> None:
    """Move one successful notebook's outputs into the target and record them."""
    from .. import __version__

    target, stem = setup.target, job.plan.path.stem
    staged = _staged_files(job)
    digests = {key: sha256_file(path) for key, path in staged.items()}
    old = target.figures / stem
    stale = sorted(f for f in old.rglob("*") if f.is_file()) if old.is_dir() else []
    for f in stale:
        if f.relative_to(target.figures).as_posix() not in staged:
            key = f.relative_to(target.figures)
            _move(f, setup.run_dir / "replaced" / key)
            print(f"note: {key} was not written by {stem}; moved to {setup.run_dir / 'replaced'}")
    for key, path in staged.items():
        _move(path, target.figures / key)
    _move(job.staging / f"{stem}.ipynb", target.notebooks / job.plan.path.name)
    record = {
        "parameters": job.plan.parameters,
        "profile": setup.profile,
        "corrlib_version": __version__,
        "corrlib_source_sha256": source,
        "git_revision": revision,
        "notebook_source_sha256": job.plan.source_hash,
    }
    keep = [f"notebooks/{p.name}" for p in setup.all_notebooks] if setup.full else None
    key = f"notebooks/{job.plan.path.name}"
    update_manifest(target.manifest, key, record, digests, target.description, keep)


def _keep_failed(setup: _Setup, job: _Job) -> None:
    dest = setup.run_dir / "failed" / job.plan.path.stem
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(job.staging, dest)
    copy = dest / job.plan.path.name
    if copy.exists():
        job.result.failed_copy = str(copy)


@contextlib.contextmanager
def _deferred_interrupts() -> Iterator[list[int]]:
    """SIGINT/SIGTERM received in the block are recorded (yielded list), not raised: the block
    (a few file moves) always completes."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    sigs = (signal.SIGINT, signal.SIGTERM)
    old = {s: signal.signal(s, lambda n, f: received.append(n)) for s in sigs}
    try:
        yield received
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt like SIGINT, so both stop the run the same way."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


# -------------------------------------------------------------------------------------- CLI


def _list(setup: _Setup) -> int:
    for plan in nbs.plan_parameters(setup.all_notebooks, "quick", {}):
        quick = {k: v for k, v in plan.injected.items() if k != "profile"}
        extra = f"  quick: {json.dumps(quick)}" if quick else ""
        print(f"{plan.path.name[:2]}  {plan.path.stem}{extra}")
    return 0


def _report(setup: _Setup, jobs: list[_Job]) -> int:
    results = [j.result for j in jobs]
    done = [r for r in results if r.ok]
    if done:
        print(f"{len(done)} notebook(s) written to {setup.target.label}")
    failed = [r for r in results if not r.ok]
    if not failed:
        return 0
    print(f"{len(failed)} notebook(s) failed (nothing of theirs was replaced):", file=sys.stderr)
    for r in failed:
        copy = r.failed_copy and _show(Path(r.failed_copy), setup.project)
        where = f"\n    executed copy with the traceback: {copy}" if copy else ""
        print(f"  {Path(r.notebook).stem}: {r.error}{where}", file=sys.stderr)
    return 1


def _show(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` when it is inside it (shorter messages), else absolute."""
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _log(setup: _Setup, jobs: list[_Job], status: str) -> None:
    rows = [
        {
            "notebook": j.plan.path.name,
            "ok": None if j.result is None else j.result.ok,
            "error": None if j.result is None else j.result.error,
            "wall_seconds": None if j.result is None else round(j.result.runtime, 2),
            "failed_copy": None if j.result is None else j.result.failed_copy,
            "parameters": j.plan.injected,
        }
        for j in jobs
    ]
    run = {
        "status": status,
        "profile": setup.profile,
        "target": setup.target.label,
        "jobs": setup.jobs,
        "command": setup.command,
    }
    setup.run_dir.mkdir(parents=True, exist_ok=True)
    write_log(setup.run_dir / "log.json", run, rows)


def _execute(setup: _Setup) -> int:
    staging = setup.run_dir / ".staging"
    jobs = [_Job(plan, staging / plan.path.stem) for plan in setup.plans]
    where = "the paper's record" if setup.paper else str(setup.run_dir)
    n = min(setup.jobs, len(jobs))
    print(
        f"running {len(jobs)} notebook(s), profile={setup.profile}, {n} at a time -> {where}",
        flush=True,
    )
    revision, source = git_revision(setup.project), source_hash()
    try:
        with _sigterm_interrupts():
            _run_all(setup, jobs)
    except KeyboardInterrupt:
        if staging.exists():
            os.replace(staging, setup.run_dir / "interrupted")
        _log(setup, jobs, "interrupted")
        where = setup.run_dir / "interrupted"
        print(f"interrupted: nothing was replaced; partial outputs in {where}", file=sys.stderr)
        return 130
    with _deferred_interrupts() as received:
        for job in jobs:
            if job.result.ok:
                _commit(setup, job, revision, source)
            else:
                _keep_failed(setup, job)
    shutil.rmtree(staging, ignore_errors=True)
    _log(setup, jobs, "finished")
    status = _report(setup, jobs)
    if received:
        print(
            "interrupted while writing the outputs: they were written completely", file=sys.stderr
        )
        return 130
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 ok, 1 a notebook failed, 2 bad
    arguments, 130 interrupted)."""
    args = _parser().parse_args(argv)
    try:
        setup = _prepare(args)
    except (UsageError, nbs.ParameterError, FileNotFoundError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    setup.command = " ".join(
        ["python -m corrlib.reproduce", *(sys.argv[1:] if argv is None else argv)]
    )
    if args.list:
        return _list(setup)
    if not setup.plans:
        print(f"no notebooks in {setup.project / 'notebooks'}")
        return 0
    return _execute(setup)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
