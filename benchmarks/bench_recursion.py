"""Run time of the order-1/n recursion ``corrlib.finite_width`` (T7), (T10), (T11) against the
number of channels c, and against the previous release where that is feasible.

Each case runs in a fresh worker process on one core (OMP/MKL/OpenBLAS threads pinned to 1);
the time is the worker's CPU time (``time.process_time``) of one ``finite_width`` call at
depth L = 100, width 64, critical initialization, including everything the call builds (no
cache is shared between cases). Activations: tanh (smooth) and ReLU (kinked). Configurations:

- ``circle``: c inputs at angles 2 pi j / c + 0.1 on the unit circle in R^2, no directions;
- ``r4``: c random unit inputs in R^4 (seed 0), no directions;
- ``mix``: m of those inputs with d random unit directions, c = m (1 + d) channels.

Printed next to each time: the number of distinct input subsets of size 2, 3 and 4 (C(m, k): the
low-dimensional integrals the channel engine computes per layer) and the number of distinct entries
of the four-point tensor, C(c + 3, 4) (four-channel multisets, what an entry-by-entry evaluation
would integrate). For c <= 3 the previous release (``--old PATH``, default: revision
``previous_release.PREVIOUS`` extracted from git) runs the same case in its own worker, and the
table gives its time and the difference of K, Delta and V, each as max |new - old| / max |old| over
all layers and entries (for Delta the denominator is at least K_max/n, its natural scale: ReLU's
Delta of one input is 0 exactly and both codes return rounding noise there). For ReLU with two
inputs (c = 2) both Deltas are also compared with (T11) evaluated with the exact derivatives of the
arc-cosine kernel (mpmath), which shows which code is right where they differ.

Writes ``results/recursion.csv`` (one row per case; date, machine, load averages before and
after the case). Usage::

    python benchmarks/bench_recursion.py [--quick] [--no-old] [--depth L] [--only LABEL]
"""

from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import datetime as dt  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
REPO = HERE.parent
WIDTH = 64
MIXES = [(1, 1), (1, 2), (2, 1), (1, 3), (3, 1), (2, 2), (4, 1), (2, 3)]
# columns of results/recursion.csv (those of a skipped part, e.g. --no-old, are left empty)
COLUMNS = (
    "act,config,c,m,d,L,width,input_subsets_2,input_subsets_3,input_subsets_4,"
    "four_channel_multisets,load_before,seconds_new,failed_new,seconds_old,failed_old,"
    "rel_diff_K,rel_diff_Delta,rel_diff_V,load_after,Delta_error_vs_exact_new,"
    "Delta_error_vs_exact_old,machine,python,numpy,date_utc"
).split(",")


# --------------------------------------------------------------------------------------------
# worker: one finite_width call, in its own process
# --------------------------------------------------------------------------------------------


def worker(case: dict) -> dict:
    import time

    import corrlib

    X = np.asarray(case["X"], dtype=float)
    U = None if case["U"] is None else np.asarray(case["U"], dtype=float)
    net = corrlib.Network.critical(case["act"], WIDTH, case["L"], n_in=X.shape[1])
    t0 = time.process_time()
    res = corrlib.finite_width(net, X, U)
    seconds = time.process_time() - t0
    np.savez(case["out"], K=res.K, Delta=res.Delta, V=res.V)
    return {"seconds": seconds}


def run_worker(case: dict, path: str) -> dict:
    """One case in a fresh process with corrlib from ``path`` (see previous_release.run_worker)."""
    from previous_release import run_worker as run

    return run(__file__, case, path)


# --------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------


def configs(c_max: int, quick: bool) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    rng = np.random.default_rng(0)
    R4 = rng.standard_normal((8, 4))
    R4 /= np.linalg.norm(R4, axis=1, keepdims=True)
    U4 = rng.standard_normal((3, 4))
    U4 /= np.linalg.norm(U4, axis=1, keepdims=True)
    cs = [1, 2, 3, 4] if quick else range(1, c_max + 1)
    out = []
    for c in cs:
        ang = 2 * np.pi * np.arange(c) / c + 0.1
        out.append(("circle", np.c_[np.cos(ang), np.sin(ang)], None))
    for c in cs:
        out.append(("r4", R4[:c], None))
    for m, d in MIXES:
        if not quick or m * (1 + d) <= 4:
            out.append(("mix", R4[:m], U4[:d]))
    return out


def _agreement(new: dict, old: dict) -> dict:
    """max |new - old| / max |old| per quantity; for Delta the denominator is at least K_max/n,
    its natural scale (ReLU's Delta of one input is 0 exactly and both codes return rounding
    noise there)."""
    row = {}
    K_max = float(np.max(np.abs(old["K"])))
    for q in ("K", "Delta", "V"):
        diff = float(np.max(np.abs(new[q] - old[q])))
        scale = float(np.max(np.abs(old[q])))
        if q == "Delta":
            scale = max(scale, K_max / WIDTH)
        row[f"rel_diff_{q}"] = diff / scale
    return row


def _relu_delta_reference(K: np.ndarray, V: np.ndarray) -> np.ndarray:
    """Delta (T11) of two ReLU inputs with the exact derivatives of the arc-cosine kernel
    (mpmath, 40 digits): sum_ef <d_e d_f (phi_a phi_b)> D_ef = 2 dG_ab[D] and
    sum_efgh <d^4 (phi_a phi_b)> V = 4 sum_ij H_ab,ij Cov(Sigma_i, Sigma_j), i, j over the unique
    entries (K11, K12, K22); fed with the given V (new and old agree on V to ~1e-12)."""
    import mpmath as mp

    mp.mp.dps = 40
    idx = [(0, 0), (0, 1), (1, 1)]
    e = np.eye(3, dtype=int)
    D = np.zeros(K.shape)
    C_W = 2.0
    for ell in range(1, K.shape[0]):
        x = [mp.mpf(float(K[ell - 1][i])) for i in idx]
        C = np.array([[V[ell - 1][i + j] for j in idx] for i in idx])
        for a, b in idx:

            def G(k11, k12, k22, a=a, b=b):
                if a == b:
                    return (k11 if a == 0 else k22) / 2
                c = k12 / mp.sqrt(k11 * k22)
                th = mp.acos(c)
                return mp.sqrt(k11 * k22) * (mp.sin(th) + (mp.pi - th) * c) / (2 * mp.pi)

            J = [float(mp.diff(G, x, tuple(e[i]))) for i in range(3)]
            H = [[float(mp.diff(G, x, tuple(e[i] + e[j]))) for j in range(3)] for i in range(3)]
            dG = sum(J[i] * D[ell - 1][idx[i]] for i in range(3))
            hc = sum(H[i][j] * C[i, j] for i in range(3) for j in range(3))
            D[ell][a, b] = D[ell][b, a] = C_W * dG + C_W / 2 * hc
    return D


def run_case(act: str, label: str, X, U, depth: int, old_path: str | None) -> dict:
    m, d = X.shape[0], 0 if U is None else U.shape[0]
    c = m * (1 + d)
    row = dict(act=act, config=label, c=c, m=m, d=d, L=depth, width=WIDTH)
    row.update({f"input_subsets_{k}": math.comb(m, k) for k in (2, 3, 4)})
    row["four_channel_multisets"] = math.comb(c + 3, 4)
    row["load_before"] = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        case = dict(act=act, L=depth, X=X.tolist(), U=None if U is None else U.tolist())
        new = run_worker(dict(case, out=f"{tmp}/new.npz"), str(REPO))
        row["seconds_new"] = new["seconds"]
        row["failed_new"] = new.get("failed", "")
        if old_path is not None and c <= 3:
            old = run_worker(dict(case, out=f"{tmp}/old.npz"), old_path)
            row["seconds_old"] = old["seconds"]
            row["failed_old"] = old.get("failed", "")
            if not row["failed_new"] and not row["failed_old"]:
                res_new, res_old = dict(np.load(f"{tmp}/new.npz")), dict(np.load(f"{tmp}/old.npz"))
                row.update(_agreement(res_new, res_old))
                if act == "relu" and label == "r4" and (m, d) == (2, 0):  # which one is right
                    # (not on the circle: two antipodal inputs, K singular, acos' diverges)
                    ref = _relu_delta_reference(res_new["K"], res_new["V"])
                    for key, res in (("new", res_new), ("old", res_old)):
                        err = np.max(np.abs(res["Delta"] - ref)) / np.max(np.abs(ref))
                        row[f"Delta_error_vs_exact_{key}"] = float(err)
    row["load_after"] = os.getloadavg()[0]
    agree = " ".join(
        f"{q} {row.get(f'rel_diff_{q}', np.nan):.1e}"
        for q in ("K", "Delta", "V")
        if "seconds_old" in row
    )
    if "Delta_error_vs_exact_new" in row:
        agree += (
            f"; Delta vs exact: new {row['Delta_error_vs_exact_new']:.1e}, "
            f"old {row['Delta_error_vs_exact_old']:.1e}"
        )
    print(
        f"{act:5s} {label:7s} c={c} m={m} d={d} C(m,4)={math.comb(m, 4):3d} "
        f"C(c+3,4)={math.comb(c + 3, 4):4d}: {row['seconds_new']:7.2f} s"
        + (f", old {row['seconds_old']:7.2f} s, diff {agree}" if "seconds_old" in row else "")
        + (f" FAILED {row['failed_new']}" if row["failed_new"] else ""),
        flush=True,
    )
    return row


def main(argv=None) -> None:
    from previous_release import add_worker_option, serve_worker

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="c <= 4 only")
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--c-max", type=int, default=8)
    ap.add_argument("--only", default="", help="run only configurations with this label")
    ap.add_argument("--act", default="tanh,relu", help="comma-separated activations")
    ap.add_argument("--old", default=None, help="folder holding the previous corrlib")
    ap.add_argument("--no-old", action="store_true", help="skip the previous release")
    ap.add_argument("--out", default="recursion.csv", help="file name under results/")
    add_worker_option(ap)
    args = ap.parse_args(argv)
    if serve_worker(args, worker):
        return
    import pandas as pd

    sys.path.insert(0, str(REPO))
    from corrlib.companion.io import atomic_path

    started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    from previous_release import previous_release

    with previous_release(args.old) as previous:
        old = None if args.no_old else str(previous)
        rows = [
            run_case(act, label, X, U, args.depth, old)
            for act in args.act.split(",")
            for label, X, U in configs(args.c_max, args.quick)
            if not args.only or label == args.only
        ]
    df = pd.DataFrame(rows).reindex(columns=COLUMNS[:-4])  # the same columns in every run
    df["machine"] = (
        f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cpus".strip()
    )
    df["python"] = platform.python_version()
    df["numpy"] = np.__version__
    df["date_utc"] = started
    RESULTS.mkdir(exist_ok=True)
    target = RESULTS / args.out
    with atomic_path(target) as tmp:
        df.to_csv(tmp, index=False)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
