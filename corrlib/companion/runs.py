"""The run workspace: where a notebook, a script or ``python -m corrlib.reproduce`` writes.

The committed notebooks and ``figures/`` of the repository are the paper's record; only a paper
run of ``python -m corrlib.reproduce`` (paper profile, no overrides) replaces them. Every other
run writes into the workspace, a folder ``runs/<name>/`` with its own ``figures/``,
``notebooks/`` (executed copies) and ``manifest.json``:

=======================  ============================================================
``CORRLIB_FIGURES_DIR``  the figures root, used as it is. ``reproduce`` sets it for every
                         notebook it runs; set it yourself to write somewhere else, e.g.
                         ``CORRLIB_FIGURES_DIR=$PWD/figures`` to let a notebook opened in
                         JupyterLab replace the paper's figures.
``CORRLIB_RUNS_DIR``     the workspace root (default: ``runs`` in the current directory;
                         ``make lab`` sets it to the repository's ``runs/``).
``CORRLIB_RUN_NAME``     the run's folder in it (default: ``interactive-<date>-<time>``, one
                         folder per Python process, i.e. per kernel session).
=======================  ============================================================

Without any of them, a notebook in JupyterLab, a plain ``papermill`` run or a script writes to
``./runs/interactive-<date>-<time>/figures/<notebook>/``; nothing in the package looks for a
repository, so an installed corrlib works the same anywhere.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "FIGURES_ENV",
    "RUNS_ENV",
    "RUN_NAME_ENV",
    "figures_dir",
    "make_run_name",
    "run_dir",
    "runs_dir",
    "session_name",
]

FIGURES_ENV = "CORRLIB_FIGURES_DIR"
RUNS_ENV = "CORRLIB_RUNS_DIR"
RUN_NAME_ENV = "CORRLIB_RUN_NAME"

_SAFE = re.compile(r"[^A-Za-z0-9_.=+-]+")
_session: dict[str, Any] = {}


def runs_dir() -> Path:
    """The workspace root: ``$CORRLIB_RUNS_DIR``, else ``./runs`` (absolute)."""
    env = os.environ.get(RUNS_ENV)
    return Path(env).expanduser().resolve() if env else (Path.cwd() / "runs").resolve()


def session_name() -> str:
    """``$CORRLIB_RUN_NAME``, else ``interactive-<date>-<time>`` fixed for this process."""
    env = os.environ.get(RUN_NAME_ENV)
    if env:
        return check_run_name(env)
    if "name" not in _session:
        _session["name"] = "interactive-" + _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return _session["name"]


def run_dir() -> Path:
    """The folder of the current run: ``runs_dir() / session_name()``."""
    return runs_dir() / session_name()


def figures_dir() -> Path:
    """The figures root of the current run: ``$CORRLIB_FIGURES_DIR``, else ``run_dir()/figures``.

    The first time the workspace default is used in a process, a line on stderr says where the
    outputs go (an explicit ``CORRLIB_FIGURES_DIR``, as ``reproduce`` sets it, prints nothing).
    """
    env = os.environ.get(FIGURES_ENV)
    if env:
        return Path(env).expanduser().resolve()
    out = run_dir() / "figures"
    if not _session.get("announced"):
        _session["announced"] = True
        print(
            f"corrlib: writing figures and tables to {out} (the run workspace; set "
            f"{FIGURES_ENV} to write elsewhere)",
            file=sys.stderr,
        )
    return out


def check_run_name(name: str) -> str:
    """``name`` if it is a plain folder name (letters, digits, ``_.=+-``), else ValueError."""
    if not isinstance(name, str):
        raise TypeError(f"run name must be a str; got {type(name).__name__}")
    if not name or name in (".", "..") or _SAFE.search(name) or name.startswith("."):
        raise ValueError(
            f"run name must be a plain folder name (letters, digits, '_', '.', '=', '+', '-', "
            f"not starting with '.'); got {name!r}"
        )
    return name


def make_run_name(profile: str, params: Mapping[str, Any], when: _dt.datetime | None = None) -> str:
    """A run name from the date and the parameters, e.g.
    ``20261202-101500_quick_width=50``.

    Examples
    --------
    >>> import datetime
    >>> make_run_name("paper", {"width": 50, "widths": [64, 128]}, datetime.datetime(2026, 12, 2))
    '20261202-000000_paper_width=50_widths=64+128'
    """
    when = when or _dt.datetime.now()
    parts = [when.strftime("%Y%m%d-%H%M%S"), profile]
    for key, value in params.items():
        text = str(value).replace(" ", "").replace(",", "+").strip("[]()")
        parts.append(f"{key}={text}")
    name = _SAFE.sub("", "_".join(parts))
    return name[:100].rstrip("_.") or "run"
