"""CPU time of the single-channel hierarchy ``corrlib.hierarchy`` (docs/theory.md 5b).

Cases: order J = 6, one input (c = 1), L = 1000 hidden layers of width n = 4096 (L/n ~ 1/4, where
the partial sums are meaningful; the cost does not depend on n), tanh and relu at their critical
points (Sigma^{(0)} = K^{(1)} from the input x = 1); plus the order dependence for tanh at
L = 1000 (J = 1, 2, 4, 6, 8, 10, 12). A HierarchyWarning (partial sums outside the range of the
series) is recorded in the ``warning`` column, not raised. Target (issue 11): order 6, c = 1,
L = 1000 in under 1 s on one core.

Every time is CPU time (``time.process_time``), best of ``--repeat`` runs, with the BLAS
threads pinned to 1 before numpy is imported. Writes ``results/hierarchy.csv`` (atomically)
and prints a table.

Usage::

    python benchmarks/bench_hierarchy.py [--quick] [--repeat R]
"""

from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import datetime as dt  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def cpu_time(fn, repeat: int) -> tuple[float, object]:
    """Best CPU time of ``repeat`` calls (after one warm-up call) and the last result."""
    out = fn()
    best = np.inf
    for _ in range(repeat):
        t0 = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t0)
    return best, out


def run_case(name: str, order: int, L: int, n: int, repeat: int) -> dict:
    import corrlib
    from corrlib.theory import hierarchy

    net = corrlib.Network.critical(name, width=n, depth=L)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seconds, h = cpu_time(lambda: hierarchy(net, [1.0], order=order), repeat)
    return {
        "activation": name,
        "order": order,
        "L": L,
        "n": n,
        "c": h.layout.c,
        "method": h.method,
        "state_size": 1 + order * (order + 1),
        "cpu_seconds": seconds,
        "ms_per_layer": 1e3 * seconds / L,
        "var_over_K2": float(h.kappa(2)[-1].item() / h.K[-1, 0, 0] ** 2),
        "warning": str(caught[0].message) if caught else "",
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the two order-6 cases")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per case (best kept)")
    args = parser.parse_args(argv)

    import pandas as pd

    from corrlib.companion.io import atomic_path

    L, n = 1000, 4096
    cases = [("tanh", 6), ("relu", 6)]
    if not args.quick:
        cases += [("tanh", J) for J in (1, 2, 4, 8, 10, 12)]
    rows = []
    for name, order in cases:
        row = run_case(name, order, L, n, args.repeat)
        rows.append(row)
        print(
            f"{name:5s} order {order:2d}  L = {L}  state {row['state_size']:4d}  "
            f"CPU {row['cpu_seconds']:7.3f} s  ({row['ms_per_layer']:.3f} ms/layer)",
            flush=True,
        )
    df = pd.DataFrame(rows)
    df["date_utc"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    df["machine"] = f"{platform.machine()} {platform.processor() or platform.system()}"
    df["numpy"] = np.__version__
    target = RESULTS / "hierarchy.csv"
    with atomic_path(target) as tmp:
        df.to_csv(tmp, index=False)
    print(f"\nwrote {target}")
    six = df[df.order == 6].set_index("activation").cpu_seconds
    print(
        "order 6, c = 1, L = 1000 (target < 1 s): "
        + ", ".join(f"{a} {s:.3f} s" for a, s in six.items())
    )


if __name__ == "__main__":
    main()
