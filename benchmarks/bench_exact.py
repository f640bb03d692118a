"""Run time of the non-perturbative single-input solver ``corrlib.exact.single_input``.

Cases: tanh at criticality (C_W = 1, C_b = 0, Sigma^{(0)} = 1), width n in {256, 1024, 4096},
depth L in {n/4, n, 2n, 8192} (L <= 8192), default accuracy settings (h_factor = 2, tol = 1e-14).
Each case runs once on one core (BLAS threads pinned to 1 before numpy is imported); the
wall time includes building every transition column (no cache is shared between cases).
A refinement column reports the largest relative change of E, Var and kappa_3 of Sigma^{(L)}
when the lattice is refined (h_factor 2 -> 1), for the cases with L <= 2048.

Writes ``results/exact.csv`` next to this file. With ``--small``, times the small-width cases
instead (tanh n in {16, 32}, L = 2n; leaky_relu(0.1) n in {2, 4, 8, 16}, L = 6, against the
closed form (T14); critical gelu n = 64, L = 16) with their refinement changes (h_factor 2 -> 1,
24 panels), and writes ``results/exact_small.csv``.

Usage::

    python benchmarks/bench_exact.py [--quick | --small]
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


def run_small() -> list[dict]:
    import corrlib
    from corrlib.exact import collective_moments, single_input

    cases = [("tanh", n, 2 * n, 1.0, 0.0) for n in (16, 32)]
    cases += [("leaky_relu(0.1)", n, 6, 2.0 / 1.01, 0.0) for n in (2, 4, 8, 16)]
    cases += [("gelu", 64, 16, 1.98305826, 0.17292239)]
    rows = []
    for name, n, L, C_W, C_b in cases:
        act = corrlib.leaky_relu(0.1) if name.startswith("leaky") else name
        net = corrlib.Network.uniform(act, n, L, C_W=C_W, C_b=C_b)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            t0 = time.perf_counter()
            r = single_input(net, [1.0])
            seconds = time.perf_counter() - t0
        if name.startswith("leaky"):
            m = collective_moments(net, [1.0], 3)
            m1, m2, m3 = m[:, 1], m[:, 2], m[:, 3]
            ref = (m1, m2 - m1**2, m3 - 3 * m1 * m2 + 2 * m1**3)
            against = "closed form (T14)"
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                r2 = single_input(net, [1.0], h_factor=1.0, quad_panels=24)
            ref = (r2.mean, r2.var, r2.k3)
            against = "refined run"
        got = (r.mean, r.var, r.k3)
        err = max(float(np.max(np.abs(g[1:] / e[1:] - 1))) for g, e in zip(got, ref, strict=True))
        rows.append(
            {
                "activation": name,
                "n": n,
                "L": L,
                "seconds": seconds,
                "max_rel_error": err,
                "against": against,
                "warnings": "; ".join(sorted({str(w.message)[:60] for w in caught})),
            }
        )
        print(f"{name} n={n} L={L}: {seconds:.2f} s, max rel. error {err:.1e} vs {against}")
    return rows


def main(argv=None) -> None:
    import pandas as pd

    from corrlib.companion.io import atomic_path

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only n = 256")
    ap.add_argument("--small", action="store_true", help="the small-width cases only")
    args = ap.parse_args(argv)
    if args.small:
        df = pd.DataFrame(run_small())
        df["load_average_1min"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else np.nan
        df["date_utc"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
        RESULTS.mkdir(exist_ok=True)
        with atomic_path(RESULTS / "exact_small.csv") as tmp:
            df.to_csv(tmp, index=False)
        print(f"wrote {RESULTS / 'exact_small.csv'}")
        return
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
