"""Module-level sweep functions for tests/test_sweep.py.

They live in an importable module (not in the test file) so that worker processes of the
local pool, Dask workers and the subprocess of the interruption test can import them.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass

import numpy as np
import pandas as pd

MARKERS_ENV = "CORRLIB_TEST_SWEEP_MARKERS"


def noisy(point, rng):
    """A dict of scalars that depends on the point and on the generator."""
    x = rng.standard_normal(1000)
    return {"mean": point["width"] * x.mean(), "var": float(x.var()) + point.get("C_W", 0.0)}


def slow(point, rng):
    """Sleeps, and leaves a marker file per call in $CORRLIB_TEST_SWEEP_MARKERS."""
    time.sleep(float(os.environ.get("CORRLIB_TEST_SWEEP_SLEEP", "0.3")))
    folder = os.environ.get(MARKERS_ENV)
    if folder:
        open(os.path.join(folder, f"{point['i']}-{uuid.uuid4().hex}"), "w").close()
    return {"u": rng.uniform(), "i": float(point["i"])}


def failing(point, rng):
    if point["i"] == 2:
        raise RuntimeError("boom at i=2")
    return {"u": rng.uniform()}


# --- a tiny stand-in for corrlib.montecarlo.MonteCarloTask that follows the block contract ------


@dataclass
class FakeResult:
    mean: float
    se: float
    n_samples: int

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "layer": pd.array([1], dtype="Int64"),
                "quantity": ["mean"],
                "a": pd.array([0], dtype="Int64"),
                "b": pd.array([0], dtype="Int64"),
                "c": pd.array([pd.NA], dtype="Int64"),
                "d": pd.array([pd.NA], dtype="Int64"),
                "e": pd.array([pd.NA], dtype="Int64"),
                "f": pd.array([pd.NA], dtype="Int64"),
                "value": [self.mean],
                "se": [self.se],
            }
        )


@dataclass
class FakeStats:
    start: int
    stop: int
    sums: list  # per block (n, sum x, sum x^2), in block order

    def merge(self, other: FakeStats) -> FakeStats:
        if other.start != self.stop:
            raise ValueError("blocks must be merged in range order")
        return FakeStats(self.start, other.stop, self.sums + other.sums)

    def result(self) -> FakeResult:
        n = s1 = s2 = 0.0
        for bn, b1, b2 in self.sums:  # fold in block order
            n += bn
            s1 += b1
            s2 += b2
        mean = s1 / n
        var = s2 / n - mean**2
        return FakeResult(mean, float(np.sqrt(var / n)), int(n))


@dataclass(frozen=True)
class FakeTask:
    n_samples: int
    loc: float = 0.0
    block: int = 1000

    @property
    def n_blocks(self) -> int:
        return -(-self.n_samples // self.block)

    def run_blocks(self, root: np.random.SeedSequence, start: int, stop: int) -> FakeStats:
        sums = []
        for i in range(start, stop):
            ss = np.random.SeedSequence(entropy=root.entropy, spawn_key=root.spawn_key + (i,))
            size = min(self.block, self.n_samples - i * self.block)
            x = self.loc + np.random.default_rng(ss).standard_normal(size)
            sums.append((float(size), float(x.sum()), float((x * x).sum())))
        return FakeStats(start, stop, sums)


def fake_task(point, rng):
    return FakeTask(n_samples=point["n"], loc=point["loc"])


def fake_direct(point, rng):
    """The same numbers as ``fake_task``, computed in one piece inside fn."""
    root = np.random.SeedSequence(rng.integers(2**63, size=4))  # the contract's rule
    task = FakeTask(n_samples=point["n"], loc=point["loc"])
    return task.run_blocks(root, 0, task.n_blocks).result()


# --- the real Monte Carlo task (corrlib.montecarlo.estimators) -----------------------------


def _mc_args(point):
    from corrlib.model.network import Network

    net = Network.uniform("relu", point["width"], point["depth"])
    X = np.array([[1.0], [-0.5]])
    return net, X


def mc_task(point, rng):
    from corrlib.montecarlo.estimators import MonteCarloTask

    net, X = _mc_args(point)
    return MonteCarloTask(net=net, X=X, n_samples=point["n"])


def mc_direct(point, rng):
    from corrlib.montecarlo.estimators import estimate_cumulants

    net, X = _mc_args(point)
    return estimate_cumulants(net, X, point["n"], rng=rng)
