"""``python -m corrlib.reproduce``: re-run the notebooks (:mod:`corrlib.companion.reproduce`)."""

from __future__ import annotations

import sys

from .companion.reproduce import main

__all__ = ["main"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
