"""Samples per second of the Monte Carlo samplers, measured side by side in one run.

For each case (single input, activation in {tanh, relu}, width n in {64, 256, 1024}, depth
L = n/4) this measures the time to draw Sigma^{(L)} for a number of independent networks with

- ``collapsed``:   corrlib.sample_collective(method="collapsed")  (T3), O(L n) per sample;
- ``floor``:       numpy alone drawing the same number of standard Gaussians (L n per sample),
                   with the same block structure and the same thread count;
- ``naive_numpy``: corrlib.sample_collective(method="naive"), full weight matrices, O(L n^2);
- ``naive_torch``: a batched PyTorch ensemble (float64, full weight matrices), if torch imports;
- ``naive_jax``:   a jitted JAX ensemble (float64), if jax imports.

Every method runs with the same number of threads (``--threads``, default 2). Writes
``results/samplers.csv`` and ``results/samplers.png`` next to this file.

Usage::

    python benchmarks/bench_samplers.py [--threads 2] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def _clock(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds summed over threads) of one call."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def _timeit(fn, target: float, max_rep: int = 3) -> tuple[float, float]:
    """Best-of (wall, CPU) seconds of fn(); repeats while the total stays below ~target s."""
    return _timeit_interleaved({"f": fn}, target / 3, max_rep)["f"]


def _timeit_interleaved(fns: dict, target: float, max_rep: int = 15) -> dict:
    """Best-of (wall, CPU) seconds of several functions, run alternately.

    Many short repetitions, minimum per function and per clock: on a shared machine the
    minimum is the least disturbed run of each side. CPU time (all threads of the process)
    is insensitive to other processes competing for the cores.
    """
    best = {k: [math.inf, math.inf] for k in fns}
    spent = 0.0
    for _ in range(max_rep):
        for key, fn in fns.items():
            wall, cpu = _clock(fn)
            best[key][0] = min(best[key][0], wall)
            best[key][1] = min(best[key][1], cpu)
            spent += wall
        if spent > 3 * target * len(fns):
            break
    return {k: tuple(v) for k, v in best.items()}


def _floor(net, n_samples: int, threads: int, seed: int = 0) -> None:
    """Draw sum(hidden widths) Gaussians per sample, blocked and threaded like the sampler."""
    from corrlib.montecarlo.blocks import (
        block_generator,
        block_sizes,
        n_blocks_for,
        root_seed_sequence,
        run_tasks,
    )
    from corrlib.montecarlo.samplers import block_size

    B = block_size(net, 1, "collapsed")
    root = root_seed_sequence(seed)

    def task(a, b):
        for i, size in zip(range(a, b), block_sizes(n_samples, B, a, b), strict=True):
            rng = block_generator(root, i)
            bufs = {}
            for n in net.hidden_widths:
                buf = bufs.get(n)
                if buf is None:
                    buf = bufs[n] = np.empty((size, n))
                rng.standard_normal(out=buf)

    run_tasks(task, 0, n_blocks_for(n_samples, B), 1, threads)


def _torch_ensemble(net, n_samples: int, threads: int):
    """Batched PyTorch ensemble: one randn call per layer for a batch of networks.

    The products use one matrix-vector call per network (torch.mv): on this CPU build
    torch.bmm with a single right-hand column was 40-300x slower than a loop of torch.mv.
    """
    import torch

    torch.set_num_threads(threads)
    act = {"tanh": torch.tanh, "relu": torch.relu}[net.activation.name]
    ws = net.widths
    gen = torch.Generator().manual_seed(0)
    batch = max(1, 2**22 // max(ws[i] * ws[i + 1] for i in range(len(ws) - 1)))

    def run():
        done = 0
        out = []
        while done < n_samples:
            b = min(batch, n_samples - done)
            h = torch.ones(b, ws[0], dtype=torch.float64)
            for ell in range(1, len(ws) - 1):
                W = torch.randn(b, ws[ell], ws[ell - 1], generator=gen, dtype=torch.float64)
                z = torch.stack([torch.mv(W[i], h[i]) for i in range(b)])
                h = act(z * math.sqrt(net.C_W / ws[ell - 1]))
            out.append(net.C_W / ws[-2] * (h * h).sum(dim=1))
            done += b
        return torch.cat(out)

    return run


def _jax_ensemble(net, n_samples: int):
    """Jitted JAX ensemble (float64): weights drawn by jax.random, layers by lax.fori_loop."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    act = {"tanh": jnp.tanh, "relu": jax.nn.relu}[net.activation.name]
    n0, n, L = net.n_in, net.hidden_widths[0], net.depth
    batch = max(1, 2**22 // (n * n))
    c1, c = math.sqrt(net.C_W / n0), math.sqrt(net.C_W / n)

    def make(b):
        @jax.jit
        def f(key):
            key, sub = jax.random.split(key)
            W1 = jax.random.normal(sub, (b, n, n0), dtype=jnp.float64)
            h = act(c1 * jnp.sum(W1, axis=2))

            def body(_, carry):
                h, key = carry
                key, sub = jax.random.split(key)
                W = jax.random.normal(sub, (b, n, n), dtype=jnp.float64)
                return act(c * jnp.einsum("bij,bj->bi", W, h)), key

            h, _ = jax.lax.fori_loop(1, L, body, (h, key))
            return net.C_W / n * jnp.sum(h * h, axis=1)

        return f

    fns = {}

    def run():
        key = jax.random.PRNGKey(0)
        done = 0
        while done < n_samples:
            b = min(batch, n_samples - done)
            if b not in fns:
                fns[b] = make(b)
            key, sub = jax.random.split(key)
            fns[b](sub).block_until_ready()
            done += b

    run()  # compile outside the timing
    return run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="threads for every method (default 2)")
    ap.add_argument("--quick", action="store_true", help="n in {64, 256} only, shorter timings")
    ap.add_argument("--target", type=float, default=1.0, help="seconds per measurement (approx)")
    args = ap.parse_args(argv)

    import pandas as pd

    from corrlib import sample_collective
    from corrlib.companion.io import atomic_path
    from corrlib.model.network import Network

    peers = {}
    try:
        import torch  # noqa: F401

        peers["naive_torch"] = "torch"
    except ImportError:
        print("torch not installed: skipping the PyTorch ensemble")
    if os.environ.get("CORRLIB_BENCH_JAX", "1") != "0":
        try:
            import jax  # noqa: F401

            peers["naive_jax"] = "jax"
        except ImportError:
            print("jax not installed: skipping the JAX ensemble")

    widths = [64, 256] if args.quick else [64, 256, 1024]
    threads = args.threads
    X = np.ones((1, 1))
    rows = []
    for act in ("tanh", "relu"):
        for n in widths:
            L = n // 4
            C_W = 2.0 if act == "relu" else 1.0
            net = Network.uniform(act, n, L, C_W=C_W)
            gauss = L * n
            # size the runs so that each measurement takes ~target seconds
            n_fast = max(64, int(args.target * 1e7 / gauss))
            n_slow = max(2, int(args.target * 3e7 / (gauss * n)))
            res = {}

            def collapsed(net=net, N=n_fast, L=L):
                sample_collective(net, X, N, rng=0, layers=[L + 1], n_jobs=threads)

            def floor(net=net, N=n_fast):
                _floor(net, N, threads)

            collapsed()  # warm up
            t = _timeit_interleaved({"collapsed": collapsed, "floor": floor}, args.target)
            res["collapsed"] = (n_fast, t["collapsed"])
            res["floor"] = (n_fast, t["floor"])

            def naive(net=net, N=n_slow, L=L):
                sample_collective(net, X, N, method="naive", rng=0, layers=[L + 1], n_jobs=threads)

            res["naive_numpy"] = (n_slow, _timeit(naive, args.target, max_rep=2))
            if "naive_torch" in peers:
                run = _torch_ensemble(net, n_slow, threads)
                res["naive_torch"] = (n_slow, _timeit(run, args.target, max_rep=2))
            if "naive_jax" in peers:
                run = _jax_ensemble(net, n_slow)
                res["naive_jax"] = (n_slow, _timeit(run, args.target, max_rep=2))
            N_f, (w_f, c_f) = res["floor"]
            N_c, (w_c, c_c) = res["collapsed"]
            for method, (N, (wall, cpu)) in res.items():
                rate = N / wall
                rows.append(
                    {
                        "activation": act,
                        "n": n,
                        "L": L,
                        "method": method,
                        "threads": threads,
                        "n_samples": N,
                        "seconds": wall,
                        "cpu_seconds": cpu,
                        "samples_per_s": rate,
                        "time_vs_floor": (wall / N) / (w_f / N_f),
                        "cpu_time_vs_floor": (cpu / N) / (c_f / N_f),
                        "speedup_of_collapsed": (wall / N) / (w_c / N_c),
                        "cpu_speedup_of_collapsed": (cpu / N) / (c_c / N_c),
                    }
                )
                r = rows[-1]
                print(
                    f"{act:5s} n={n:5d} L={L:4d} {method:12s} {rate:12.2f} samples/s  "
                    f"time/floor wall {r['time_vs_floor']:8.3f} cpu {r['cpu_time_vs_floor']:8.3f}  "
                    f"collapsed speedup wall {r['speedup_of_collapsed']:8.1f} "
                    f"cpu {r['cpu_speedup_of_collapsed']:8.1f}",
                    flush=True,
                )

    df = pd.DataFrame(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta = (
        f"# bench_samplers.py {' '.join(argv if argv is not None else sys.argv[1:])}; {stamp}; "
        f"{platform.processor() or platform.machine()}, os.cpu_count()={os.cpu_count()}, "
        f"numpy {np.__version__}\n"
    )
    with atomic_path(RESULTS / "samplers.csv") as tmp:
        with open(tmp, "w") as fh:
            fh.write(meta)
            df.to_csv(fh, index=False, float_format="%.6g")
    _plot(df, threads, stamp, atomic_path)
    print(f"wrote {RESULTS / 'samplers.csv'} and {RESULTS / 'samplers.png'}")
    return 0


def _plot(df, threads, stamp, atomic_path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {
        "collapsed": ("C0", "o", "collapsed (T3)"),
        "floor": ("k", "s", "RNG floor (numpy Gaussians only)"),
        "naive_numpy": ("C1", "^", "naive numpy (full weights)"),
        "naive_torch": ("C2", "v", "naive PyTorch ensemble"),
        "naive_jax": ("C3", "D", "naive JAX ensemble"),
    }
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, act in zip(axes, ("tanh", "relu"), strict=True):
        sub = df[df.activation == act]
        for method, (color, marker, label) in styles.items():
            s = sub[sub.method == method].sort_values("n")
            if len(s):
                ls = "--" if method == "floor" else "-"
                ax.loglog(s.n, s.samples_per_s, ls, color=color, marker=marker, label=label)
        ax.set_title(f"{act}, L = n/4, single input")
        ax.set_xlabel("width n")
        ax.set_xticks(sorted(df.n.unique()))
        ax.set_xticklabels([str(v) for v in sorted(df.n.unique())])
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel(f"samples of Sigma^(L) per second ({threads} threads)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Monte Carlo samplers, measured {stamp}", fontsize=10)
    fig.tight_layout()
    with atomic_path(RESULTS / "samplers.png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
