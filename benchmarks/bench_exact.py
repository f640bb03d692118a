"""Run time of the non-perturbative single-input solver ``corrlib.exact.single_input``.

Cases: tanh at criticality (C_W = 1, C_b = 0, Sigma^{(0)} = 1), width n in {256, 1024, 4096},
depth L in {n/4, n, 2n, 8192} (L <= 8192), default accuracy settings (h_factor = 2, tol = 1e-14).
Each case runs once on one core (BLAS threads pinned to 1 before numpy is imported); the
wall time includes building every transition column (no cache is shared between cases).
A refinement column reports the largest relative change of E, Var and kappa_3 of Sigma^{(L)}
when the lattice is refined (h_factor 2 -> 1), for the cases with L <= 2048.

Writes ``results/exact.csv`` next to this file.

Usage::

    python benchmarks/bench_exact.py [--quick]
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


def run_case(n: int, L: int, refine: bool) -> dict:
    import corrlib
    from corrlib.exact import single_input

    net = corrlib.Network.uniform("tanh", n, L, C_W=1.0, C_b=0.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        t0 = time.perf_counter()
        r = single_input(net, [1.0])
        seconds = time.perf_counter() - t0
        row = {
            "activation": "tanh",
            "n": n,
            "L": L,
            "L_over_n": L / n,
            "seconds": seconds,
            "mean_S": r.mean[-1],
            "var_S": r.var[-1],
            "kappa3_S": r.k3[-1],
            "var_over_mean2": r.var[-1] / r.mean[-1] ** 2,
            "lattice_h": r.h,
            "lattice_points_final": r.p.size,
            "refinement_rel_change": np.nan,
        }
        if refine:
            r2 = single_input(net, [1.0], h_factor=1.0)
            row["refinement_rel_change"] = max(
                abs(r.mean[-1] / r2.mean[-1] - 1),
                abs(r.var[-1] / r2.var[-1] - 1),
                abs(r.k3[-1] / r2.k3[-1] - 1),
            )
    row["warnings"] = "; ".join(sorted({str(w.message)[:60] for w in caught}))
    return row


def main(argv=None) -> None:
    import pandas as pd

    from corrlib._io import atomic_path

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only n = 256")
    args = ap.parse_args(argv)
    widths = [256] if args.quick else [256, 1024, 4096]
    rows = []
    for n in widths:
        depths = sorted({d for d in (n // 4, n, 2 * n, 8192) if d <= 8192})
        for L in depths:
            row = run_case(n, L, refine=L <= 2048)
            rows.append(row)
            print(
                f"tanh n={n:5d} L={L:5d} L/n={L / n:6.2f}: {row['seconds']:6.2f} s  "
                f"Var S/(E S)^2={row['var_over_mean2']:.4g}  "
                f"refine={row['refinement_rel_change']:.1e}",
                flush=True,
            )
    df = pd.DataFrame(rows)
    df["machine"] = f"{platform.machine()} {platform.processor() or ''}".strip()
    df["python"] = platform.python_version()
    df["load_average_1min"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else np.nan
    df["date_utc"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    RESULTS.mkdir(exist_ok=True)
    with atomic_path(RESULTS / "exact.csv") as tmp:
        df.to_csv(tmp, index=False)
    print(f"wrote {RESULTS / 'exact.csv'}")


if __name__ == "__main__":
    main()
