"""CPU time of the hierarchy ``corrlib.hierarchy`` (docs/theory.md 5b), one and several channels.

Cases: order J = 6, one input (c = 1), L = 1000 hidden layers of width n = 4096 (L/n ~ 1/4, where
the partial sums are meaningful; the cost does not depend on n), tanh and relu at their critical
points (Sigma^{(0)} = K^{(1)} from the input x = 1); plus the order dependence for tanh at
L = 1000 (J = 1, 2, 4, 6, 8, 10, 12). A HierarchyWarning (partial sums outside the range of the
series) is recorded in the ``warning`` column, not raised. Target (issue 11): order 6, c = 1,
L = 1000 in under 1 s on one core.

Several channels (T33)-(T40): order 2, c = 4 channels, L = 100, width n = 256, at the critical
point: tanh with 2 inputs and 1 direction, 4 inputs, 1 input and 3 directions; relu and gelu
with 2 inputs and 1 direction; relu with 4 distinct inputs (value rank 3 then 4: the
kink-split rule (T41)-(T43)) (fixed random inputs in R^3). Target (issue 11): under 20 s on one
core. These are timed once (no warm-up: a run is long enough).

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


def run_case(name: str, order: int, L: int, n: int, repeat: int, md=(1, 0)) -> dict:
    import corrlib
    from corrlib.theory import hierarchy

    m, d = md
    if md == (1, 0):
        net = corrlib.Network.critical(name, width=n, depth=L)
        X, U = [1.0], None
        run = lambda: cpu_time(lambda: hierarchy(net, X, U, order=order), repeat)  # noqa: E731
    else:
        rng = np.random.default_rng(0)
        net = corrlib.Network.critical(name, width=n, depth=L, n_in=3)
        X, U = rng.normal(size=(m, 3)), (rng.normal(size=(d, 3)) if d else None)

        def run():
            t0 = time.process_time()
            out = hierarchy(net, X, U, order=order)
            return time.process_time() - t0, out

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seconds, h = run()
    c = h.layout.c
    return {
        "activation": name,
        "order": order,
        "L": L,
        "n": n,
        "m": m,
        "d": d,
        "c": c,
        "method": h.method,
        "state_size": 1 + order * (order + 1) if c == 1 else np.nan,
        "cpu_seconds": seconds,
        "ms_per_layer": 1e3 * seconds / L,
        "var_over_K2": float(h.kappa(2)[-1, 0, 0, 0, 0] / h.K[-1, 0, 0] ** 2),
        "warning": str(caught[0].message) if caught else "",
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the two order-6 cases")
    parser.add_argument(
        "--several-only",
        action="store_true",
        help="only the several-channel order-2 cases (the c = 1 rows of the CSV are kept)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per case (best kept)")
    args = parser.parse_args(argv)

    import pandas as pd

    from corrlib.companion.io import atomic_path

    L, n = 1000, 4096
    cases = [("tanh", 6, L, n, (1, 0)), ("relu", 6, L, n, (1, 0))]
    if not args.quick:
        cases += [("tanh", J, L, n, (1, 0)) for J in (1, 2, 4, 8, 10, 12)]
    several = [("tanh", 2, 100, 256, md) for md in ((2, 1), (4, 0), (1, 3))]
    several += [("relu", 2, 100, 256, (2, 1)), ("gelu", 2, 100, 256, (2, 1))]
    several += [("relu", 2, 100, 256, (4, 0))]  # four distinct inputs: the kink rule (T41)
    if args.several_only:
        cases = []
    if not args.quick:
        cases += several
    rows = []
    for name, order, LL, nn, md in cases:
        row = run_case(name, order, LL, nn, args.repeat, md)
        rows.append(row)
        print(
            f"{name:5s} order {order:2d}  L = {LL}  m = {md[0]} d = {md[1]} c = {row['c']}  "
            f"CPU {row['cpu_seconds']:7.3f} s  ({row['ms_per_layer']:.3f} ms/layer)",
            flush=True,
        )
    df = pd.DataFrame(rows)
    df["date_utc"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    df["machine"] = f"{platform.machine()} {platform.processor() or platform.system()}"
    df["numpy"] = np.__version__
    target = RESULTS / "hierarchy.csv"
    if args.several_only and target.exists():  # keep the recorded single-channel rows
        old = pd.read_csv(target)
        if "c" in old:
            old = old[old.c == 1]
        df = pd.concat([old, df], ignore_index=True)
    with atomic_path(target) as tmp:
        df.to_csv(tmp, index=False)
    print(f"\nwrote {target}")
    six = df[(df.order == 6) & (df.c == 1)].set_index("activation").cpu_seconds
    if len(six):
        print(
            "order 6, c = 1, L = 1000 (target < 1 s): "
            + ", ".join(f"{a} {s:.3f} s" for a, s in six.items())
        )
    four = df[df.c == 4]
    if len(four):
        print(
            "order 2, c = 4, L = 100 (target < 20 s): "
            + ", ".join(
                f"{r.activation} m={r.m} d={r.d} {r.cpu_seconds:.1f} s" for r in four.itertuples()
            )
        )


if __name__ == "__main__":
    main()
