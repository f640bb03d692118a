"""The previous release of corrlib, extracted from git, and a fresh-process worker runner,
for side-by-side benchmarks.

``PREVIOUS`` is the last revision before the package was laid out by architecture (the first
release's code: flat modules ``corrlib/kernels.py``, ``corrlib/exact.py``, ...). Benchmarks that
compare against it import it in a separate process with ``sys.path`` pointing at the folder
:func:`previous_release` returns.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PREVIOUS = "e3642ea"


@contextlib.contextmanager
def previous_release(path: str | None = None, revision: str = PREVIOUS) -> Iterator[Path]:
    """A folder holding the previous release's ``corrlib`` package.

    ``path`` (a folder with a ``corrlib/`` inside) is used as given; otherwise ``revision`` is
    extracted from this repository's git history into a temporary folder, removed afterwards.
    """
    if path is not None:
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="corrlib-previous-") as tmp:
        archive = Path(tmp) / "previous.tar"
        subprocess.run(
            [
                "git",
                "-C",
                str(REPO),
                "archive",
                "--format=tar",
                "-o",
                str(archive),
                revision,
                "corrlib",
            ],
            check=True,
        )
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        yield Path(tmp)


def run_worker(script: str, case: dict, path: str) -> dict:
    """Run ``script --worker <case as JSON>`` in a fresh process with ``corrlib`` from ``path``.

    Returns the JSON object the worker prints last, or ``{"failed": <last stderr line>,
    "seconds": nan}`` if it fails (a release may refuse a case).
    """
    env = dict(os.environ, PYTHONPATH=path)
    proc = subprocess.run(
        [sys.executable, script, "--worker", json.dumps(case)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return {"failed": proc.stderr.strip().splitlines()[-1][:160], "seconds": float("nan")}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def add_worker_option(parser) -> None:
    """The hidden ``--worker <case as JSON>`` option through which :func:`run_worker` calls a
    benchmark script."""
    parser.add_argument("--worker", help=argparse.SUPPRESS)


def serve_worker(args, worker: Callable[[dict], dict]) -> bool:
    """If this process is a worker (``args.worker`` set by :func:`run_worker`), run ``worker`` on
    the case and print its result as the JSON line :func:`run_worker` reads; return whether it
    was one."""
    if not args.worker:
        return False
    print(json.dumps(worker(json.loads(args.worker))))
    return True
