"""Re-run the notebooks and record where every figure came from.

Usage::

    python -m corrlib.reproduce [--only NAME ...] [--profile {paper,quick}] [--jobs N] [--list]

Every ``notebooks/NN_*.ipynb`` is executed with papermill *in place*: the notebook runs into a
temporary file in the same folder, which replaces the notebook only when every cell succeeded.
On failure the executed copy is kept as ``NN_name.failed.ipynb`` (for inspection) and the
notebook itself is left untouched. Notebooks run in parallel subprocesses (2 by default), with
``notebooks/`` as working directory and the ``python3`` kernel.

Profiles
--------
``paper``
    No overrides: the defaults in each notebook's cell tagged ``parameters`` are the values used
    for the paper's figures.
``quick``
    Overrides taken from the notebook metadata ``metadata["corrlib"]["quick"]`` (a dict
    parameter -> value), for a fast look.

The parameter ``profile`` (``"paper"`` or ``"quick"``) is always injected.

Afterwards ``figures/manifest.json`` lists every file under ``figures/<notebook stem>/`` with the
notebook, the parameters used, the profile, the corrlib version, the git revision and the run
time. With ``--only`` the entries of the other notebooks are kept.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures as cf
import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .io import atomic_write_text

__all__ = ["NotebookResult", "discover_notebooks", "main", "run_notebook", "select_notebooks"]

PROFILES = ("paper", "quick")
KERNEL = "python3"
NOTEBOOK_RE = re.compile(r"^(\d{2})_[A-Za-z0-9_-]+\.ipynb$")
MANIFEST = "manifest.json"


@dataclass
class NotebookResult:
    """Outcome of executing one notebook."""

    notebook: str  # file name, e.g. "01_infinite_width.ipynb"
    ok: bool
    runtime: float
    parameters: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    failed_copy: str | None = None
    started: float = 0.0  # wall-clock time.time() when the run began


# --------------------------------------------------------------------------------------- discovery


def discover_notebooks(notebooks_dir: str | os.PathLike) -> list[Path]:
    """All ``NN_name.ipynb`` files in ``notebooks_dir``, sorted by name (failed copies and hidden
    temporary files excluded)."""
    d = Path(notebooks_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"notebooks_dir {d} is not a directory")
    return sorted(p for p in d.iterdir() if p.is_file() and NOTEBOOK_RE.match(p.name))


def select_notebooks(notebooks: Sequence[Path], only: Sequence[str] | None) -> list[Path]:
    """Filter by ``only``: each entry a number (``"03"``/``"3"``) or a stem (``"03_four_point"``,
    optionally with ``.ipynb``)."""
    if not only:
        return list(notebooks)
    chosen: list[Path] = []
    for name in only:
        key = name[: -len(".ipynb")] if name.endswith(".ipynb") else name
        key = Path(key).name
        if key.isdigit():
            hits = [p for p in notebooks if p.name[:2] == f"{int(key):02d}"]
        else:
            hits = [p for p in notebooks if p.stem == key]
        if not hits:
            available = ", ".join(p.stem for p in notebooks) or "(none)"
            raise ValueError(f"--only {name!r} matches no notebook; available: {available}")
        chosen.extend(h for h in hits if h not in chosen)
    return sorted(chosen)


# ------------------------------------------------------------------------------------- parameters


def _read_notebook(path: Path) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def quick_overrides(nb: dict) -> dict[str, Any]:
    """``metadata["corrlib"]["quick"]`` of a notebook (a dict; empty if absent)."""
    quick = nb.get("metadata", {}).get("corrlib", {}).get("quick", {})
    if not isinstance(quick, dict):
        raise ValueError('notebook metadata["corrlib"]["quick"] must be a dict parameter -> value')
    return dict(quick)


def default_parameters(path: Path) -> dict[str, Any]:
    """Defaults of the cell tagged ``parameters`` (as Python values where they are literals)."""
    import papermill

    out: dict[str, Any] = {}
    for name, info in papermill.inspect_notebook(str(path)).items():
        default = info.get("default")
        try:
            out[name] = ast.literal_eval(default)
        except (ValueError, SyntaxError, TypeError):
            out[name] = default
    return out


def injected_parameters(
    nb: dict, profile: str, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The parameters papermill injects for ``profile``, then the ``extra`` overrides."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}; got {profile!r}")
    params = quick_overrides(nb) if profile == "quick" else {}
    params.update(extra or {})
    params["profile"] = profile
    return params


def parse_param(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` -> (name, value); VALUE is a Python literal, else a string."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise ValueError(f"--param expects NAME=VALUE with NAME an identifier; got {text!r}")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value


# -------------------------------------------------------------------------------------- execution


def _first_error_line(exc: BaseException) -> str:
    ename = getattr(exc, "ename", None)
    evalue = getattr(exc, "evalue", None)
    if ename:
        line = f"{ename}: {evalue}" if evalue else str(ename)
    else:
        line = f"{type(exc).__name__}: {exc}"
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)  # strip ANSI colours from tracebacks
    for piece in line.splitlines():
        if piece.strip():
            return piece.strip()
    return type(exc).__name__


def _clean_metadata(path: Path, name: str) -> None:
    """Drop per-run timestamps and temporary paths so a re-run changes only real outputs."""
    nb = _read_notebook(path)
    pm = nb.get("metadata", {}).get("papermill")
    if isinstance(pm, dict):
        for key in ("start_time", "end_time", "duration", "exception"):
            pm.pop(key, None)
        pm["input_path"] = name
        pm["output_path"] = name
    for cell in nb.get("cells", []):
        md = cell.get("metadata", {})
        md.pop("papermill", None)
        md.pop("execution", None)
        if "injected-parameters" in md.get("tags", []) and "id" in cell:
            cell["id"] = "injected-parameters"  # papermill draws a random id on every run
    text = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    path.write_text(text, encoding="utf-8")


def run_notebook(
    path: str | os.PathLike,
    profile: str = "paper",
    figures_dir: str | os.PathLike | None = None,
    kernel: str = KERNEL,
    extra_params: dict[str, Any] | None = None,
) -> NotebookResult:
    """Execute one notebook in place with papermill (see the module docstring).

    Parameters
    ----------
    path : path of ``NN_name.ipynb``.
    profile : "paper" or "quick".
    figures_dir : exported to the kernel as ``CORRLIB_FIGURES_DIR`` when given.
    kernel : Jupyter kernel name.
    extra_params : parameters injected on top of the profile (``--param NAME=VALUE``).
    """
    import papermill

    path = Path(path).resolve()
    folder, name = path.parent, path.name
    failed = folder / f"{path.stem}.failed.ipynb"
    tmp = folder / f".{path.stem}.running-{os.getpid()}.ipynb"
    params = injected_parameters(_read_notebook(path), profile, extra_params)
    used = {**default_parameters(path), **params}
    if figures_dir is not None:
        os.environ["CORRLIB_FIGURES_DIR"] = str(Path(figures_dir).resolve())
    os.environ.setdefault("JUPYTER_PREFER_ENV_PATH", "1")
    started = time.time()
    t0 = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(path),
            str(tmp),
            parameters=params,
            kernel_name=kernel,
            cwd=str(folder),
            progress_bar=False,
            log_output=False,
        )
    except BaseException as exc:  # noqa: BLE001 - any failure keeps the notebook untouched
        runtime = time.perf_counter() - t0
        copy = None
        if tmp.exists():
            os.replace(tmp, failed)
            copy = str(failed)
        return NotebookResult(name, False, runtime, used, _first_error_line(exc), copy, started)
    runtime = time.perf_counter() - t0
    try:
        _clean_metadata(tmp, name)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    with contextlib.suppress(FileNotFoundError):
        failed.unlink()
    return NotebookResult(name, True, runtime, used, started=started)


def _run_in_worker(
    path: str, profile: str, figures_dir: str, kernel: str, extra: dict | None = None
) -> NotebookResult:
    try:
        return run_notebook(path, profile, figures_dir, kernel, extra)
    except Exception as exc:  # noqa: BLE001 - report, do not crash the pool
        return NotebookResult(Path(path).name, False, 0.0, {}, _first_error_line(exc))


# --------------------------------------------------------------------------------------- manifest


def git_revision(cwd: str | os.PathLike) -> str:
    """``git rev-parse HEAD`` in ``cwd``, or ``"unknown"``."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def stale_files(result: NotebookResult, figures_dir: Path) -> list[Path]:
    """Files under ``figures_dir/<stem>/`` that the run did not rewrite (older than its start)."""
    folder = figures_dir / Path(result.notebook).stem
    if not folder.is_dir():
        return []
    return sorted(
        f
        for f in folder.rglob("*")
        if f.is_file() and not f.name.startswith(".") and f.stat().st_mtime < result.started - 1.0
    )


def manifest_entries(
    result: NotebookResult, figures_dir: Path, profile: str, version: str, revision: str
) -> dict[str, dict[str, Any]]:
    """One entry per file under ``figures_dir/<stem>/``, keyed by its path relative to
    ``figures_dir`` (with ``/`` separators). Files the run did not rewrite are listed too
    (``main`` warns about them)."""
    stem = Path(result.notebook).stem
    folder = figures_dir / stem
    entries: dict[str, dict[str, Any]] = {}
    if not folder.is_dir():
        return entries
    for f in sorted(folder.rglob("*")):
        if not f.is_file() or f.name.startswith("."):
            continue
        entries[f.relative_to(figures_dir).as_posix()] = {
            "notebook": f"notebooks/{result.notebook}",
            "parameters": result.parameters,
            "profile": profile,
            "corrlib_version": version,
            "git_revision": revision,
            "runtime_seconds": round(result.runtime, 2),
            "sha256": _sha256(f),
        }
    return entries


def _load_manifest(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    return dict(files) if isinstance(files, dict) else {}


def write_manifest(
    figures_dir: Path,
    results: Sequence[NotebookResult],
    profile: str,
    merge: bool,
    revision: str,
) -> Path:
    """Write ``figures_dir/manifest.json`` atomically (merged into the old one if ``merge``)."""
    from .. import __version__

    path = figures_dir / MANIFEST
    files = _load_manifest(path) if merge else {}
    for r in results:
        if not r.ok:
            continue
        prefix = f"{Path(r.notebook).stem}/"
        files = {k: v for k, v in files.items() if not k.startswith(prefix)}
        files.update(manifest_entries(r, figures_dir, profile, __version__, revision))
    data = {
        "description": "Provenance of every file under figures/, written by "
        "python -m corrlib.reproduce",
        "files": dict(sorted(files.items())),
    }
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=False) + "\n")
    return path


# -------------------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m corrlib.reproduce",
        description="Execute the notebooks in place and record figure provenance in "
        "figures/manifest.json.",
    )
    p.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        help='notebooks to run, by number ("03") or stem ("03_four_point")',
    )
    p.add_argument("--profile", choices=PROFILES, default="paper", help="parameter profile")
    p.add_argument("--jobs", type=int, default=2, help="notebooks run at the same time (2)")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="inject a parameter into the selected notebooks (repeatable; VALUE is a Python "
        "literal or a string), e.g. --param scheduler=tcp://host:8786",
    )
    p.add_argument("--list", action="store_true", help="list the notebooks and exit")
    p.add_argument(
        "--notebooks-dir",
        type=Path,
        default=None,
        help="folder with the NN_*.ipynb notebooks (default: <repo>/notebooks)",
    )
    p.add_argument(
        "--figures-dir",
        type=Path,
        default=None,
        help="figures root (default: $CORRLIB_FIGURES_DIR, else next to the notebooks folder)",
    )
    p.add_argument("--kernel", default=KERNEL, help=argparse.SUPPRESS)
    return p


def _default_notebooks_dir() -> Path:
    from .plotting import repo_root

    try:
        return repo_root() / "notebooks"
    except FileNotFoundError:
        return Path(__file__).resolve().parent.parent / "notebooks"


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.jobs < 1:
        print(f"error: --jobs must be >= 1; got {args.jobs}", file=sys.stderr)
        return 2
    nb_dir = (args.notebooks_dir or _default_notebooks_dir()).resolve()
    try:
        extra = dict(parse_param(t) for t in args.param)
        notebooks = discover_notebooks(nb_dir)
        selected = select_notebooks(notebooks, args.only)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    if args.list:
        for p in notebooks:
            quick = quick_overrides(_read_notebook(p))
            extra = f"  quick: {json.dumps(quick)}" if quick else ""
            print(f"{p.name[:2]}  {p.stem}{extra}")
        return 0
    if not selected:
        print(f"no notebooks in {nb_dir}")
        return 0

    if args.figures_dir is not None:
        fig_dir = args.figures_dir.resolve()
    elif os.environ.get("CORRLIB_FIGURES_DIR"):
        fig_dir = Path(os.environ["CORRLIB_FIGURES_DIR"]).expanduser().resolve()
    else:
        fig_dir = nb_dir.parent / "figures"
    revision = git_revision(nb_dir)

    from tqdm.auto import tqdm

    results: list[NotebookResult] = []
    jobs = min(args.jobs, len(selected))
    print(
        f"running {len(selected)} notebook(s), profile={args.profile}, {jobs} at a time",
        flush=True,
    )
    with (
        cf.ProcessPoolExecutor(max_workers=jobs) as pool,
        tqdm(total=len(selected), unit="nb", file=sys.stderr) as bar,
    ):
        futures = {
            pool.submit(_run_in_worker, str(p), args.profile, str(fig_dir), args.kernel, extra): p
            for p in selected
        }
        for fut in cf.as_completed(futures):
            r = fut.result()
            results.append(r)
            status = "ok    " if r.ok else "FAILED"
            bar.write(f"{status} {Path(r.notebook).stem:<32s} {r.runtime:8.1f} s")
            bar.update(1)

    results.sort(key=lambda r: r.notebook)
    for r in results:
        if r.ok:
            for f in stale_files(r, fig_dir):
                print(
                    f"warning: {f.relative_to(fig_dir)} was not rewritten by "
                    f"{Path(r.notebook).stem} (left over from an earlier version?)",
                    file=sys.stderr,
                )
    merge = bool(args.only)
    if any(r.ok for r in results) or not merge:
        path = write_manifest(fig_dir, results, args.profile, merge, revision)
        print(f"manifest: {path}")
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"{len(failed)} notebook(s) failed:", file=sys.stderr)
        for r in failed:
            where = f" (executed copy: {r.failed_copy})" if r.failed_copy else ""
            print(f"  {Path(r.notebook).stem}: {r.error}{where}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
