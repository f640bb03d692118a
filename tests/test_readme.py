"""The README's tour runs as written (with warnings as errors) and its comments hold."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_the_readme_has_one_tour():
    assert len(_python_blocks()) == 1


def test_the_tour_runs_and_its_comments_hold():
    ns: dict = {}
    exec(compile(_python_blocks()[0], str(README), "exec"), ns)
    net, K, res, est, m = ns["net"], ns["K"], ns["res"], ns["est"], ns["m"]
    L = net.depth
    # K[l-1] is the kernel of z^(l), l = 1..L+1: ReLU at criticality keeps K = C_W/n_0 * |x|^2
    assert K.shape == (L + 1, 1, 1)
    np.testing.assert_allclose(K[:, 0, 0], 2.0, rtol=1e-12)
    # the two frames share their columns (the Monte Carlo frame adds tail_shape), so they merge
    shared = [c for c in est.to_frame().columns if c in res.to_frame().columns]
    assert shared == list(res.to_frame().columns)
    # the exact ratio (T15): 3 * (1 + 5/64)**8, to rounding
    np.testing.assert_allclose(m[4] / m[2] ** 2, 3 * (1 + 5 / 64) ** 8, rtol=1e-12)
