"""Collapsed Monte Carlo of the kernel's mean and covariance for tests/test_hierarchy_mc.py.

Three several-channel cases (c = 2), each at widths n = 32, 64, 128 with the depth fixed, so
that the order-1 miss (~ n^-2) and the order-2 remainder (~ n^-3) of
``corrlib.hierarchy`` can be measured against the simulation:

- ``two_inputs``: tanh, C_W = 2.0, C_b = 0.1, L = 16, X = [[1, 0], [0.6, 0.8]];
- ``tanh_direction``: tanh at criticality (C_W = 1, C_b = 0), L = 16, X = [[1, 0.3]],
  direction [[0, 1]];
- ``gelu_direction``: gelu at criticality, L = 4, X = [[1, 0.3]], direction [[0, 1]].

Every run is ``corrlib.estimate_cumulants(net, X, N, U, method="collapsed", rng=seed)`` with
``seed = numpy.random.SeedSequence(ROOT_SEED).spawn(9)[i]`` (i = the run's position in
``RUNS``); the estimates do not depend on the thread count (one thread is used). Stored per
run: the mean E Sigma and V = Cov Sigma at every layer with their delta-method standard
errors, the sample count, the seed, the CPU time and any warning. Same seed, same numbers.

Run from the repository root (about 16 minutes of CPU on one core)::

    PYTHONPATH=$PWD python tests/data/hierarchy_mc/generate.py

It writes tests/data/hierarchy_mc/hierarchy_mc.json (atomically).
"""

from __future__ import annotations

import datetime
import json
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import corrlib
from corrlib.companion.io import atomic_write_text

ROOT_SEED = 20261202
HERE = Path(__file__).resolve().parent
OUT = HERE / "hierarchy_mc.json"

#: name -> (activation, C_W (None: critical), C_b, depth L, inputs X, directions U)
CASES = {
    "two_inputs": ("tanh", 2.0, 0.1, 16, [[1.0, 0.0], [0.6, 0.8]], None),
    "tanh_direction": ("tanh", None, None, 16, [[1.0, 0.3]], [[0.0, 1.0]]),
    "gelu_direction": ("gelu", None, None, 4, [[1.0, 0.3]], [[0.0, 1.0]]),
}

#: (case, width n, samples N); sized from a pilot run (standard errors ~ N^-1/2)
RUNS = [
    ("two_inputs", 32, 1_500_000),
    ("two_inputs", 64, 1_500_000),
    ("two_inputs", 128, 500_000),
    ("tanh_direction", 32, 1_500_000),
    ("tanh_direction", 64, 1_500_000),
    ("tanh_direction", 128, 500_000),
    ("gelu_direction", 32, 2_000_000),
    ("gelu_direction", 64, 2_000_000),
    ("gelu_direction", 128, 1_000_000),
]


def network(case: str, n: int) -> corrlib.Network:
    """The network of ``case`` at hidden width ``n`` (also used by the test)."""
    act, C_W, C_b, L, _, _ = CASES[case]
    if C_W is None:
        return corrlib.Network.critical(act, n, L, n_in=2)
    return corrlib.Network.uniform(act, n, L, n_in=2, C_W=C_W, C_b=C_b)


def _git(*args: str) -> str:
    root = HERE.parents[2]
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True
    ).stdout.strip()


def main() -> None:
    seeds = np.random.SeedSequence(ROOT_SEED).spawn(len(RUNS))
    runs = []
    cpu_total = 0.0
    for (case, n, N), seed in zip(RUNS, seeds, strict=True):
        _, _, _, _, X, U = CASES[case]
        net = network(case, n)
        t0 = time.process_time()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est = corrlib.estimate_cumulants(
                net, np.array(X), N, None if U is None else np.array(U), method="collapsed",
                rng=seed, n_jobs=1,
            )  # fmt: skip
        cpu = time.process_time() - t0
        cpu_total += cpu
        runs.append(
            {
                "case": case,
                "n": n,
                "L": net.depth,
                "C_W": net.C_W,
                "C_b": net.C_b,
                "n_samples": N,
                "seed": {"entropy": seed.entropy, "spawn_key": list(seed.spawn_key)},
                "cpu_seconds": round(cpu, 2),
                "warnings": [str(w.message) for w in caught],
                "mean": est.mean.tolist(),
                "mean_se": est.mean_se.tolist(),
                "V": est.V.tolist(),
                "V_se": est.V_se.tolist(),
            }
        )
        print(f"{case} n={n} N={N}: {cpu:.1f} s CPU", flush=True)
    status = _git("status", "--porcelain", "--untracked-files=no")
    data = {
        "description": (
            "Collapsed Monte Carlo (T3) of E Sigma and Cov Sigma at every layer, with "
            "delta-method standard errors, for tests/test_hierarchy_mc.py"
        ),
        "provenance": {
            "command": "PYTHONPATH=$PWD python tests/data/hierarchy_mc/generate.py",
            "argv": sys.argv,
            "corrlib_revision": _git("rev-parse", "HEAD") + ("-dirty" if status else ""),
            "corrlib_version": corrlib.__version__,
            "numpy_version": np.__version__,
            "python_version": platform.python_version(),
            "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "root_seed": ROOT_SEED,
            "seeding": "numpy.random.SeedSequence(root_seed).spawn(len(runs))[i] for run i",
            "method": "collapsed",
            "n_jobs": 1,
            "cpu_seconds_total": round(cpu_total, 1),
        },
        "cases": {
            k: {"activation": v[0], "critical": v[1] is None, "L": v[3], "X": v[4], "U": v[5]}
            for k, v in CASES.items()
        },
        "runs": runs,
    }
    atomic_write_text(OUT, json.dumps(data, indent=1) + "\n")
    print(f"wrote {OUT} ({cpu_total:.0f} s CPU)")


if __name__ == "__main__":
    main()
