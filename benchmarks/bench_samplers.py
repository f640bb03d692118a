"""Samples per second of the Monte Carlo samplers, measured side by side in one run.

For each case (single input, activation in {tanh, relu}, width n in {64, 256, 1024}, depth
L = n/4) this measures the time to draw Sigma^{(L)} for a number of independent networks with

- ``collapsed``:   corrlib.sample_collective(method="collapsed")  (T3), O(L n) per sample;
                   the built-in activation takes its in-place fast path, chosen by inspecting
                   the object (tanh: ``f`` is the ufunc ``np.tanh``; relu: declared slopes
                   that ``f`` reproduces), never by its name;
- ``floor``:       numpy alone drawing the same number of standard Gaussians (L n per sample),
                   with the same block structure and the same thread count;
- ``general``:     the same sampler with a user activation computing the same function through
                   a Python lambda (``lambda z: np.tanh(z)``, ``lambda z: np.maximum(z, 0)``),
                   which no inspection can recognise: the price of the general path;
- ``estimate``:    corrlib.estimate_cumulants on the same networks: streaming power sums of
                   every layer plus the heavy-tail diagnostic (top values per layer);
- ``reference``:   the c = 1 loop of corrlib 0.1 (fast path chosen by ``act.name == "tanh"``),
                   kept here verbatim as the speed reference of the inspection-based selection:
                   ``collapsed``/``reference`` is the regression check, measured side by side;
- ``naive_numpy``: corrlib.sample_collective(method="naive"), full weight matrices, O(L n^2);
- ``naive_torch``: a batched PyTorch ensemble (float64, full weight matrices), if torch imports;
- ``naive_jax``:   a jitted JAX ensemble (float64), if jax imports.

Every method runs with the same number of threads (``--threads``, default 2). ``collapsed``,
``floor``, ``general``, ``estimate`` and ``reference`` are timed alternately in one loop, so their
ratios are measured side by side. Writes ``results/<out>.csv`` and ``results/<out>.png``
next to this file.

Usage::

    python benchmarks/bench_samplers.py [--threads 2] [--quick] [--out samplers]
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import sys
import time
import warnings
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


def _reference(net, n_samples: int, threads: int, seed: int = 0) -> None:
    """The corrlib 0.1 c = 1 hot loop (name-dispatched), same blocks and threads as collapsed.

    Speed reference only: it samples a user activation named "tanh" as np.tanh (the bug the
    inspection-based selection removed), so it is not used anywhere else.
    """
    from corrlib.montecarlo.blocks import (
        block_generator,
        block_sizes,
        n_blocks_for,
        root_seed_sequence,
        run_tasks,
    )
    from corrlib.montecarlo.samplers import block_size

    act = net.activation
    B = block_size(net, 1, "collapsed")
    root = root_seed_sequence(seed)
    homog = act.is_scale_invariant
    is_tanh = act.name == "tanh" and not act.params
    ap2, am2 = (float(act.a_plus) ** 2, float(act.a_minus) ** 2) if homog else (0.0, 0.0)

    def task(a, b):
        for i, size in zip(range(a, b), block_sizes(n_samples, B, a, b), strict=True):
            rng = block_generator(root, i)
            S = np.full(size, net.C_W + net.C_b)  # Sigma^(0) of x = 1, n_0 = 1
            bufs = {}
            for n in net.hidden_widths:
                buf = bufs.get(n)
                if buf is None:
                    buf = bufs[n] = np.empty((size, n))
                rng.standard_normal(out=buf)
                row, col = buf[:, None, :], buf[:, :, None]
                if homog and am2 == 0.0:
                    np.maximum(buf, 0.0, out=buf)
                    q = np.matmul(row, col).reshape(size) * ap2
                    q *= S
                elif homog:
                    raise NotImplementedError("reference covers relu and tanh only")
                else:
                    np.multiply(buf, np.sqrt(S)[:, None], out=buf)
                    if is_tanh:
                        np.tanh(buf, out=buf)
                    else:
                        buf[...] = act.f(buf)
                    q = np.matmul(row, col).reshape(size)
                q *= net.C_W / n
                if net.C_b:
                    q += net.C_b
                S = q
                if not float(S.max()) <= 1e300:
                    raise OverflowError("reference loop overflow")

    run_tasks(task, 0, n_blocks_for(n_samples, B), 1, threads)


def _general_twin(act: str):
    """The built-in activation's function behind a lambda: same values, general code path."""
    from corrlib.model.activations import Activation, get_activation

    builtin = get_activation(act)
    f = {"tanh": lambda z: np.tanh(z), "relu": lambda z: np.maximum(z, 0.0)}[act]
    return Activation(f"{act} (lambda)", f=f, df=builtin.df)


def _torch_ensemble(net, act: str, n_samples: int, threads: int):
    """Batched PyTorch ensemble: one randn call per layer for a batch of networks.

    The products use one matrix-vector call per network (torch.mv): on this CPU build
    torch.bmm with a single right-hand column was 40-300x slower than a loop of torch.mv.
    """
    import torch

    torch.set_num_threads(threads)
    act = {"tanh": torch.tanh, "relu": torch.relu}[act]
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


def _jax_ensemble(net, act: str, n_samples: int):
    """Jitted JAX ensemble (float64): weights drawn by jax.random, layers by lax.fori_loop."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    act = {"tanh": jnp.tanh, "relu": jax.nn.relu}[act]
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


def _measure(act: str, n: int, target: float, threads: int, peers: dict) -> dict:
    """{method: (n_samples, (wall, cpu))} for one case; the fast methods side by side."""
    from corrlib import estimate_cumulants, sample_collective
    from corrlib.model.network import Network
    from corrlib.montecarlo import HeavyTailWarning
    from corrlib.montecarlo.samplers import scalar_kernel

    X = np.ones((1, 1))
    L = n // 4
    C_W = 2.0 if act == "relu" else 1.0
    net = Network.uniform(act, n, L, C_W=C_W)
    net_general = Network.uniform(_general_twin(act), n, L, C_W=C_W)
    assert scalar_kernel(net.activation)[0] != "general"
    assert scalar_kernel(net_general.activation)[0] == "general"
    gauss = L * n
    # size the runs so that each measurement takes ~target seconds
    n_fast = max(64, int(target * 1e7 / gauss))
    n_est = max(n_fast, 256)  # enough samples for the tail diagnostic to be kept
    n_slow = max(2, int(target * 3e7 / (gauss * n)))

    def collapsed(net=net, N=n_fast):
        sample_collective(net, X, N, rng=0, layers=[L + 1], n_jobs=threads)

    def floor(net=net, N=n_fast):
        _floor(net, N, threads)

    def general(net=net_general, N=n_fast):
        sample_collective(net, X, N, rng=0, layers=[L + 1], n_jobs=threads)

    def estimate(net=net, N=n_est):
        estimate_cumulants(net, X, N, rng=0, n_jobs=threads)

    def reference(net=net, N=n_fast):
        _reference(net, N, threads)

    def naive(net=net, N=n_slow):
        sample_collective(net, X, N, method="naive", rng=0, layers=[L + 1], n_jobs=threads)

    collapsed()  # warm up
    side = {"collapsed": collapsed, "floor": floor, "general": general, "estimate": estimate}
    side["reference"] = reference
    sizes = {key: n_fast for key in side} | {"estimate": n_est}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HeavyTailWarning)  # timing only
        t = _timeit_interleaved(side, target)
    res = {key: (sizes[key], t[key]) for key in side}
    res["naive_numpy"] = (n_slow, _timeit(naive, target, max_rep=2))
    if "naive_torch" in peers:
        run = _torch_ensemble(net, act, n_slow, threads)
        res["naive_torch"] = (n_slow, _timeit(run, target, max_rep=2))
    if "naive_jax" in peers:
        run = _jax_ensemble(net, act, n_slow)
        res["naive_jax"] = (n_slow, _timeit(run, target, max_rep=2))
    return res


def _rows(act: str, n: int, L: int, threads: int, res: dict) -> list[dict]:
    """Table rows (and a printed line) per method, with ratios to the floor and to collapsed."""
    N_f, (w_f, c_f) = res["floor"]
    N_c, (w_c, c_c) = res["collapsed"]
    rows = []
    for method, (N, (wall, cpu)) in res.items():
        rate = N / wall
        r = {
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
        rows.append(r)
        print(
            f"{act:5s} n={n:5d} L={L:4d} {method:12s} {rate:12.2f} samples/s  "
            f"time/floor wall {r['time_vs_floor']:8.3f} cpu {r['cpu_time_vs_floor']:8.3f}  "
            f"collapsed speedup wall {r['speedup_of_collapsed']:8.1f} "
            f"cpu {r['cpu_speedup_of_collapsed']:8.1f}",
            flush=True,
        )
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="threads for every method (default 2)")
    ap.add_argument("--quick", action="store_true", help="n in {64, 256} only, shorter timings")
    ap.add_argument("--target", type=float, default=1.0, help="seconds per measurement (approx)")
    ap.add_argument(
        "--out", default="samplers", help="results/<out>.csv and .png (default: samplers)"
    )
    args = ap.parse_args(argv)

    import pandas as pd

    from corrlib.companion.io import atomic_path

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
    rows = []
    for act in ("tanh", "relu"):
        for n in widths:
            res = _measure(act, n, args.target, args.threads, peers)
            rows += _rows(act, n, n // 4, args.threads, res)

    df = pd.DataFrame(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta = (
        f"# bench_samplers.py {' '.join(argv if argv is not None else sys.argv[1:])}; {stamp}; "
        f"{platform.processor() or platform.machine()}, os.cpu_count()={os.cpu_count()}, "
        f"numpy {np.__version__}\n"
    )
    with atomic_path(RESULTS / f"{args.out}.csv") as tmp:
        with open(tmp, "w") as fh:
            fh.write(meta)
            df.to_csv(fh, index=False, float_format="%.6g")
    _plot(df, args.threads, stamp, atomic_path, RESULTS / f"{args.out}.png")
    print(f"wrote {RESULTS / f'{args.out}.csv'} and {RESULTS / f'{args.out}.png'}")
    return 0


def _plot(df, threads, stamp, atomic_path, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {
        "collapsed": ("C0", "o", "collapsed (T3)"),
        "floor": ("k", "s", "RNG floor (numpy Gaussians only)"),
        "general": ("C4", "x", "collapsed, activation behind a lambda"),
        "estimate": ("C5", "+", "estimate_cumulants (sums + tail diagnostic)"),
        "reference": ("C6", "1", "corrlib 0.1 loop (name-dispatched)"),
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
                ls = "--" if method in ("floor", "general", "estimate", "reference") else "-"
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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
