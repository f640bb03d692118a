"""The record of a run: a deterministic manifest, and a log of the run-specific facts.

``manifest.json`` (``figures/manifest.json`` for the paper's record, ``runs/<name>/manifest.json``
for a workspace run) says where every file came from::

    {"format": 2,
     "description": "...",
     "notebooks": {"notebooks/03_four_point.ipynb": {
         "parameters": {...}, "profile": "paper", "corrlib_version": "0.2.0",
         "corrlib_source_sha256": "...", "git_revision": "<rev>[-dirty]",
         "notebook_source_sha256": "..."}},
     "files": {"03_four_point/normalized_kappa4.png": {
         "notebook": "notebooks/03_four_point.ipynb", "sha256": "..."}}}

Everything in it is a function of the inputs and the outputs, so running the same revision
twice writes the same bytes. ``git_revision`` is the last commit that changed the library
(``corrlib/``, ``pyproject.toml``), with ``-dirty`` when those have uncommitted changes; the
notebook's own code is identified by ``notebook_source_sha256`` (its cells' sources, not its
outputs). Wall times, host, date and Python version go to ``log.json`` of the run folder
(``runs/<name>/``, git-ignored).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .io import atomic_write_text

__all__ = [
    "MANIFEST",
    "MANIFEST_FORMAT",
    "LIBRARY_PATHS",
    "git_revision",
    "load_manifest",
    "sha256_file",
    "update_manifest",
    "write_log",
]

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 2
#: The inputs besides the notebook itself whose revision the manifest records.
LIBRARY_PATHS = ("corrlib", "pyproject.toml")


def _git(project: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=project, capture_output=True, text=True, check=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_revision(project: str | os.PathLike, paths: Iterable[str] = LIBRARY_PATHS) -> str:
    """The last commit that changed ``paths`` in the git checkout ``project`` (``-dirty`` if
    they have uncommitted changes), or ``"unknown"`` outside a checkout."""
    project = Path(project)
    paths = [p for p in paths if (project / p).exists()]
    rev = _git(project, "log", "-1", "--format=%H", "--", *paths) if paths else None
    if not rev:
        return "unknown"
    dirty = _git(project, "status", "--porcelain", "--untracked-files=no", "--", *paths)
    return f"{rev}-dirty" if dirty else rev


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest at ``path`` as ``{"notebooks": {...}, "files": {...}}`` (empty if absent or
    unreadable; a format-1 manifest keeps its files, whose entries are rewritten on the next run
    of their notebook)."""
    empty: dict[str, Any] = {"notebooks": {}, "files": {}}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return empty
    if not isinstance(data, dict):
        return empty
    notebooks = data.get("notebooks") if data.get("format") == MANIFEST_FORMAT else None
    files = data.get("files")
    return {
        "notebooks": dict(notebooks) if isinstance(notebooks, dict) else {},
        "files": dict(files) if isinstance(files, dict) else {},
    }


def update_manifest(
    path: str | os.PathLike,
    notebook: str,
    record: Mapping[str, Any],
    files: Mapping[str, str],
    description: str,
    keep_notebooks: Iterable[str] | None = None,
) -> None:
    """Replace the entries of ``notebook`` (its record and its files ``{key: sha256}``) in the
    manifest at ``path`` and write it atomically, sorted. With ``keep_notebooks``, entries of
    notebooks not in it are dropped (a full run forgets notebooks that no longer exist)."""
    data = load_manifest(path)
    stem = Path(notebook).stem
    nbs = {k: v for k, v in data["notebooks"].items() if k != notebook}
    old = {k: v for k, v in data["files"].items() if not k.startswith(f"{stem}/")}
    nbs[notebook] = dict(record)
    old.update({key: {"notebook": notebook, "sha256": digest} for key, digest in files.items()})
    if keep_notebooks is not None:
        keep = set(keep_notebooks)
        nbs = {k: v for k, v in nbs.items() if k in keep}
        old = {k: v for k, v in old.items() if isinstance(v, dict) and v.get("notebook") in keep}
    out = {
        "format": MANIFEST_FORMAT,
        "description": description,
        "notebooks": dict(sorted(nbs.items())),
        "files": dict(sorted(old.items())),
    }
    atomic_write_text(path, json.dumps(out, indent=1) + "\n")


def write_log(path: str | os.PathLike, run: Mapping[str, Any], notebooks: list[dict]) -> None:
    """Write the run-specific facts (date, host, Python, wall times) to ``path`` (JSON)."""
    data = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": platform.python_version(),
        **run,
        "notebooks": notebooks,
    }
    atomic_write_text(path, json.dumps(data, indent=1, default=str) + "\n")
