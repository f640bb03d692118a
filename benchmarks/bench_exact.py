"""Run time of the non-perturbative single-input solver ``corrlib.exact.single_input``, against
the previous release's solver in the same run.

Each case runs in a fresh worker process on one core (BLAS threads pinned to 1), once with this
checkout's corrlib and once with the previous release (``--old PATH``, default: revision
``previous_release.PREVIOUS`` extracted from git), alternating; the time is the worker's CPU time
(``time.process_time``) of one ``single_input`` call, including building every transition
column (no cache is shared between cases). Columns: ``seconds_new``, ``seconds_old``, their
ratio ``new_over_old``, the relative change of E, Var and kappa_3 of Sigma^{(L)} between the two
(``rel_change_vs_old``), the new solver's own error estimate (``error_estimate_new``, max over
layers and cumulants) and, where an exact value exists ((T14) for ReLU and leaky ReLU), each
solver's relative error against it.

Default cases: tanh at criticality (C_W = 1, C_b = 0, Sigma^{(0)} = 1), width n in
{256, 1024, 4096}, depth L in {n/4, n, 2n, 8192} (L <= 8192), default settings; writes
``results/exact.csv``. With ``--small``: tanh n in {16, 32}, L = 2n; leaky_relu(0.1) n in
{2, 4, 8, 16}, L = 6 (against (T14)); critical gelu n = 64, L = 16; and ReLU at L/n = 20
(n = 64, L = 1280, the issue-13 reproducer, against (T14)); writes ``results/exact_small.csv``.

Usage::

    python benchmarks/bench_exact.py [--quick | --small] [--old PATH]
"""

from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import datetime as dt  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
REPO = HERE.parent
GELU = (1.98305826, 0.17292239)


# --------------------------------------------------------------------------------------------
# worker: one single_input call, in its own process
# --------------------------------------------------------------------------------------------


def _activation(name: str):
    import corrlib

    if name.startswith("leaky_relu"):
        return corrlib.leaky_relu(float(name[len("leaky_relu(") : -1]))
    return name


def worker(case: dict) -> dict:
    import time
    import warnings

    import corrlib
    from corrlib import exact

    net = corrlib.Network.uniform(
        _activation(case["act"]), case["n"], case["L"], C_W=case["C_W"], C_b=case["C_b"]
    )
    new_api = hasattr(exact, "AccuracyError")
    out: dict = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.process_time()
        try:
            r = exact.single_input(net, np.array([[1.0]]) if new_api else [1.0])
        except Exception as exc:  # the new solver may refuse: record why
            out["failed"] = f"{type(exc).__name__}: {str(exc)[:120]}"
            out["seconds"] = time.process_time() - t0
            return out
        out["seconds"] = time.process_time() - t0
    try:
        cum = [r.cumulants(k)[-1] for k in (1, 2, 3)]
    except (OverflowError, ValueError) as exc:
        cum = [float("nan")] * 3
        out["failed"] = f"{type(exc).__name__}: {str(exc)[:120]}"
    out["cumulants"] = [float(c) for c in cum]
    out["h"] = float(r.h)
    out["points"] = int(r.p.size)
    if new_api:
        out["error_estimate"] = float(np.max(r.error))
    out["warnings"] = "; ".join(sorted({str(w.message)[:60] for w in caught}))
    if case.get("exact"):
        m = exact.collective_moments(net, np.array([[1.0]]) if new_api else [1.0], 3)[-1]
        ref = (m[1], m[2] - m[1] ** 2, m[3] - 3 * m[1] * m[2] + 2 * m[1] ** 3)
        out["exact_rel_error"] = max(abs(c / e - 1) for c, e in zip(cum, ref, strict=True))
    return out


def run_worker(case: dict, path: str) -> dict:
    """One case in a fresh process with corrlib from ``path`` (see previous_release.run_worker)."""
    from previous_release import run_worker as run

    return run(__file__, case, path)


# --------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------


def cases(small: bool, quick: bool) -> list[dict]:
    if small:
        out = [dict(act="tanh", n=n, L=2 * n, C_W=1.0, C_b=0.0) for n in (16, 32)]
        out += [
            dict(act="leaky_relu(0.1)", n=n, L=6, C_W=2.0 / 1.01, C_b=0.0, exact=True)
            for n in (2, 4, 8, 16)
        ]
        out += [dict(act="gelu", n=64, L=16, C_W=GELU[0], C_b=GELU[1])]
        out += [dict(act="relu", n=64, L=1280, C_W=2.0, C_b=0.0, exact=True)]
        return out
    out = []
    for n in [256] if quick else [256, 1024, 4096]:
        for L in sorted({d for d in (n // 4, n, 2 * n, 8192) if d <= 8192}):
            out.append(dict(act="tanh", n=n, L=L, C_W=1.0, C_b=0.0))
    return out


def compare(case: dict, old_path: str) -> dict:
    new = run_worker(case, str(REPO))
    old = run_worker(case, old_path)
    row = {k: case[k] for k in ("act", "n", "L")}
    row["L_over_n"] = case["L"] / case["n"]
    row["seconds_new"] = new.get("seconds", np.nan)
    row["seconds_old"] = old.get("seconds", np.nan)
    row["new_over_old"] = row["seconds_new"] / row["seconds_old"]
    cn, co = new.get("cumulants"), old.get("cumulants")
    if cn and co:
        row["rel_change_vs_old"] = max(abs(a / b - 1) for a, b in zip(cn, co, strict=True))
        row["mean_S"], row["var_S"], row["kappa3_S"] = cn
        row["var_over_mean2"] = cn[1] / cn[0] ** 2
    row["error_estimate_new"] = new.get("error_estimate", np.nan)
    row["exact_rel_error_new"] = new.get("exact_rel_error", np.nan)
    row["exact_rel_error_old"] = old.get("exact_rel_error", np.nan)
    row["lattice_points_new"] = new.get("points", np.nan)
    row["failed_new"] = new.get("failed", "")
    row["failed_old"] = old.get("failed", "")
    row["warnings_old"] = old.get("warnings", "")
    print(
        f"{case['act']:>16s} n={case['n']:5d} L={case['L']:5d}: new {row['seconds_new']:7.2f} s, "
        f"old {row['seconds_old']:7.2f} s, new/old {row['new_over_old']:.2f}, "
        f"change {row.get('rel_change_vs_old', np.nan):.1e}, "
        f"est {row['error_estimate_new']:.1e} {row['failed_new'][:40]}",
        flush=True,
    )
    return row


def main(argv=None) -> None:
    from previous_release import add_worker_option, serve_worker

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only n = 256")
    ap.add_argument("--small", action="store_true", help="the small-width and deep cases")
    ap.add_argument("--old", default=None, help="folder holding the previous corrlib")
    add_worker_option(ap)
    args = ap.parse_args(argv)
    if serve_worker(args, worker):
        return
    import pandas as pd

    sys.path.insert(0, str(REPO))
    from previous_release import previous_release

    from corrlib.companion.io import atomic_path

    with previous_release(args.old) as old:
        df = pd.DataFrame([compare(c, str(old)) for c in cases(args.small, args.quick)])
    df["machine"] = f"{platform.machine()} {platform.processor() or ''}".strip()
    df["python"] = platform.python_version()
    df["load_average_1min"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else np.nan
    df["date_utc"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    RESULTS.mkdir(exist_ok=True)
    target = RESULTS / ("exact_small.csv" if args.small else "exact.csv")
    with atomic_path(target) as tmp:
        df.to_csv(tmp, index=False)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
