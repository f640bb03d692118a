"""The previous release of corrlib, extracted from git, for side-by-side benchmarks.

``PREVIOUS`` is the last revision before the package was laid out by architecture (the first
release's code: flat modules ``corrlib/kernels.py``, ``corrlib/exact.py``, ...). Benchmarks that
compare against it import it in a separate process with ``sys.path`` pointing at the folder
:func:`previous_release` returns.
"""

from __future__ import annotations

import contextlib
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
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
