"""Tests of corrlib.sweep: grids, seeding, backends (serial, local pool, Dask), cache, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import _sweep_fns as fns
import numpy as np
import pandas as pd
import pytest

from corrlib.companion.sweeps import (
    RESERVED_COLUMNS,
    SweepCacheWarning,
    normalize_grid,
    point_seed_sequence,
    sweep,
)
from corrlib.companion.sweeps.cache import cache_key

TESTS_DIR = str(Path(__file__).resolve().parent)


def _eq(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Bit-identical frames, ignoring the wall-clock column."""
    pd.testing.assert_frame_equal(
        a.drop(columns="runtime"), b.drop(columns="runtime"), check_exact=True
    )


def _run(fn, grid, **kw):
    kw.setdefault("rng", 7)
    kw.setdefault("backend", "serial")
    kw.setdefault("progress", False)
    return sweep(fn, grid, **kw)


# ------------------------------------------------------------------------------- grids


def test_cartesian_grid_order_and_columns():
    df = _run(fns.noisy, {"width": [2, 1], "C_W": [1.0, 2.0]})
    assert list(df.columns) == ["width", "C_W", "quantity", "value", "se", "n_samples", "runtime"]
    # last parameter varies fastest; within a point the dict's order
    assert df["width"].tolist() == [2, 2, 2, 2, 1, 1, 1, 1]
    assert df["C_W"].tolist() == [1.0, 1.0, 2.0, 2.0] * 2
    assert df["quantity"].tolist() == ["mean", "var"] * 4
    assert df["se"].isna().all() and df["n_samples"].isna().all()
    assert df["width"].dtype == np.int64 and df["C_W"].dtype == np.float64
    assert df.attrs["computed"] == 4 and df.attrs["from_cache"] == 0


def test_explicit_list_equals_mapping_grid():
    a = _run(fns.noisy, {"width": [1, 3], "C_W": [0.5]})
    b = _run(fns.noisy, [{"C_W": 0.5, "width": 1}, {"width": 3, "C_W": 0.5}])
    _eq(a, b.loc[:, a.columns])


@pytest.mark.parametrize(
    ("grid", "kw", "exc", "match"),
    [
        ({}, {}, ValueError, "grid is empty"),
        ([], {}, ValueError, "grid is empty"),
        ({"width": []}, {}, ValueError, r"grid\['width'\] is empty"),
        ({"width": [[16, 32]]}, {}, TypeError, "hashable scalar"),
        ({"width": [{"n": 1}]}, {}, TypeError, "hashable scalar"),
        ({"width": [(16, 32)]}, {}, TypeError, "hashable scalar"),
        ({"width": [1.0, float("nan")]}, {}, ValueError, "NaN"),
        ({"width": 16}, {}, TypeError, "must be a list of values"),
        ({"act": "relu"}, {}, TypeError, "must be a list of values"),
        ({"width": {1, 2}}, {}, TypeError, "ordered collection"),
        (
            {"widht": [1]},
            {"params": ["width", "depth"]},
            ValueError,
            "unknown grid parameter 'widht'",
        ),
        ({"my width": [1]}, {}, TypeError, "identifiers"),
        ({3: [1]}, {}, TypeError, "identifiers"),
        ({"value": [1]}, {}, ValueError, "reserved"),
        ([{"width": 1}, {"depth": 2}], {}, ValueError, "same parameters"),
        ([{"width": 1}, {"width": 1}], {}, ValueError, "duplicate point"),
        ({"width": [1, 1]}, {}, ValueError, "duplicate point"),
        ([{"width": 1}, 5], {}, TypeError, "must be a mapping"),
        ("width", {}, TypeError, "grid must be a mapping"),
    ],
)
def test_bad_grids_raise_clear_errors(grid, kw, exc, match):
    with pytest.raises(exc, match=match):
        _run(fns.noisy, grid, **kw)


def test_grid_values_are_normalized():
    names, points = normalize_grid({"n": np.arange(2), "act": np.array(["relu", "tanh"])})
    assert names == ["n", "act"]
    assert [type(p["n"]) for p in points] == [int] * 4
    assert [type(p["act"]) for p in points] == [str] * 4
    # 1, 1.0 and True are different points (and get different seeds)
    _, pts = normalize_grid({"x": [1, 1.0, True, None]})
    seeds = {tuple(point_seed_sequence(0, p).generate_state(4)) for p in pts}
    assert len(seeds) == 4


@pytest.mark.parametrize(
    ("kw", "exc", "match"),
    [
        ({"rng": -1}, ValueError, "rng must be an int >= 0"),
        ({"rng": 1.5}, TypeError, "rng must be an int >= 0 or a numpy.random.SeedSequence"),
        ({"rng": None}, TypeError, "needs rng="),
        ({"rng": np.random.default_rng(7)}, TypeError, "Generator's state cannot identify"),
        ({"backend": "mpi"}, ValueError, "backend must be one of"),
        ({"backend": "locale"}, ValueError, "did you mean 'local'"),
        ({"chunk_blocks": 1.5}, TypeError, "chunk_blocks must be an integer >= 1"),
        ({"cahce": "x"}, TypeError, "unexpected keyword argument 'cahce' \\(did you mean 'cache'"),
        ({"backend": "local", "client": object()}, ValueError, "only used with backend='dask'"),
        ({"chunk_blocks": 0}, ValueError, "chunk_blocks must be an integer >= 1"),
        ({"backend": "local", "max_workers": 0}, ValueError, "max_workers must be an integer >= 1"),
        ({"max_workers": 2}, ValueError, "only used with backend='local'"),
    ],
)
def test_bad_options_raise(kw, exc, match):
    with pytest.raises(exc, match=match):
        _run(fns.noisy, {"width": [1]}, **kw)


def test_bad_return_type_raises():
    with pytest.raises(TypeError, match="fn must return"):
        _run(lambda p, rng: [1.0], {"width": [1]})
    with pytest.raises(TypeError, match="non-scalar value for quantity 'x'"):
        _run(lambda p, rng: {"x": [1.0, 2.0]}, {"width": [1]})


def test_corrlib_sweep_is_the_function_whatever_was_imported_first():
    """The sweep module is corrlib.companion.sweeps, so corrlib.sweep is always the function."""
    import importlib
    import types

    import corrlib

    importlib.import_module("corrlib.companion.sweeps.driver")
    assert isinstance(corrlib.sweep, types.FunctionType)
    grid = {"width": [1, 2]}
    _eq(
        _run(fns.noisy, grid),
        corrlib.sweep(fns.noisy, grid, rng=7, backend="serial", progress=False),
    )


# ----------------------------------------------------------------------------- seeding


def test_point_numbers_depend_only_on_seed_and_point():
    base = _run(fns.noisy, {"width": [1, 2, 3], "C_W": [1.0, 2.0]})
    # reordered grid, extra points, explicit-list form: the shared points do not change
    other = _run(fns.noisy, {"C_W": [2.0, 1.0, 4.0], "width": [5, 3, 2, 1]})
    merged = base.merge(other, on=["width", "C_W", "quantity"], suffixes=("", "_o"))
    assert len(merged) == len(base)
    np.testing.assert_array_equal(merged["value"], merged["value_o"])
    # a different seed changes the numbers
    changed = _run(fns.noisy, {"width": [1, 2, 3], "C_W": [1.0, 2.0]}, rng=8)
    assert not np.array_equal(changed["value"], base["value"])


def test_point_seed_sequence_is_sha256_of_canonical_point():
    import hashlib
    import struct

    ss = point_seed_sequence(5, {"b": 2.5, "a": "relu"})
    digest = hashlib.sha256(b'{"a":"relu","b":2.5}').digest()
    assert ss.entropy == 5 and ss.spawn_key == struct.unpack(">8I", digest)


def test_rng_int_and_seed_sequence_identify_the_same_run():
    grid = {"width": [1, 2]}
    a = _run(fns.noisy, grid, rng=7)
    b = _run(fns.noisy, grid, rng=np.random.SeedSequence(7))
    _eq(a, b)
    assert a.attrs["rng"] == {"entropy": 7, "spawn_key": [], "pool_size": 4}
    # a spawned child sequence is another run, and is reproducible from its identity
    child = np.random.SeedSequence(7).spawn(1)[0]
    c = _run(fns.noisy, grid, rng=child)
    assert not np.array_equal(c["value"], a["value"])
    again = np.random.SeedSequence(entropy=7, spawn_key=tuple(c.attrs["rng"]["spawn_key"]))
    _eq(c, _run(fns.noisy, grid, rng=again))


def test_seed_keyword_is_deprecated_alias_of_rng():
    grid = {"width": [1, 2]}
    with pytest.warns(DeprecationWarning, match=r"sweep\(seed=...\) is deprecated.*rng="):
        old = sweep(fns.noisy, grid, seed=7, backend="serial", progress=False)
    _eq(old, _run(fns.noisy, grid, rng=7))  # the same numbers as before the rename
    with pytest.raises(TypeError, match="both rng= and its deprecated alias seed="):
        sweep(fns.noisy, grid, rng=7, seed=7, backend="serial", progress=False)


def test_reserved_columns_are_the_result_columns_plus_sweep_columns():
    from corrlib._util import FRAME_COLUMNS

    # tail_shape: the extra column of the Monte Carlo result frame
    expected = frozenset(FRAME_COLUMNS) | {"n_samples", "runtime", "tail_shape"}
    assert RESERVED_COLUMNS == expected


def test_a_grid_parameter_named_like_an_output_column_is_refused():
    with pytest.raises(ValueError, match="tail_shape"):
        sweep(fns.noisy, {"tail_shape": [1]}, rng=7, backend="serial", progress=False)
    # e, f: the channel indices of six-index quantities (the several-channel kappa_3 tensor)
    with pytest.raises(ValueError, match="grid parameter name 'f' is reserved"):
        sweep(fns.noisy, {"f": [1]}, rng=7, backend="serial", progress=False)


def test_local_pool_defaults_to_default_jobs(monkeypatch):
    from corrlib.companion.sweeps import executors

    monkeypatch.setattr(executors, "default_jobs", lambda: 1)
    ex = executors.make_executor("local", None, None, None, fns.noisy)
    try:
        assert ex.n_workers == 1
    finally:
        ex.close()


# -------------------------------------------------------------------- backends, chunks


def test_result_objects_and_chunked_tasks_local_pool():
    grid = {"n": [5500, 1000], "loc": [0.5, -1.0]}
    direct = _run(fns.fake_direct, grid)  # fn runs the whole task itself
    assert list(direct.columns[:12]) == ["n", "loc", "layer", "quantity", "a", "b", "c", "d",
                                         "e", "f", "value", "se"]  # fmt: skip
    assert direct["n_samples"].tolist() == [5500.0, 5500.0, 1000.0, 1000.0]
    assert direct["layer"].dtype == "Int64"
    # |mean - loc| within 4 se (the stand-in estimator is a plain sample mean)
    assert (np.abs(direct["value"] - direct["loc"]) <= 4 * direct["se"]).all()
    for chunk in (1, 2, None):
        chunked = _run(fns.fake_task, grid, backend="local", max_workers=2, chunk_blocks=chunk)
        _eq(direct, chunked)
    _eq(direct, _run(fns.fake_task, grid, chunk_blocks=4))


def test_local_pool_rejects_unpicklable_fn():
    with pytest.raises(TypeError, match="module-level `def`"):
        _run(lambda p, rng: {"x": 1.0}, {"width": [1]}, backend="local")

    def nested(p, rng):
        return {"x": 1.0}

    with pytest.raises(TypeError, match="module-level `def`"):
        _run(nested, {"width": [1]}, backend="local")
    # the serial backend takes any callable
    assert _run(nested, {"width": [1]})["value"].tolist() == [1.0]


def test_fn_error_names_point_and_keeps_finished_points(tmp_path):
    with pytest.raises(RuntimeError, match="boom at i=2") as info:
        _run(fns.failing, {"i": [0, 1, 2, 3]}, cache=tmp_path)
    if sys.version_info >= (3, 11):  # exception notes exist from Python 3.11
        assert "{'i': 2}" in info.value.__notes__[0]
    assert sorted(_cached_points(tmp_path)) == [0, 1]  # finished before the error
    with pytest.raises(RuntimeError, match="boom at i=2"):
        _run(fns.failing, {"i": [0, 1, 2, 3]}, backend="local", max_workers=2)


def test_dask_without_client_raises():
    # dask[distributed] is a dependency of the dev extra: no skip when it is missing
    from distributed.client import _get_global_client

    if _get_global_client() is not None:
        pytest.skip("a default Dask client exists in this process")
    with pytest.raises(ValueError, match="needs a dask.distributed Client"):
        _run(fns.noisy, {"width": [1]}, backend="dask")


@pytest.fixture(scope="module")
def dask_client():
    import distributed  # a dependency of the dev extra

    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (TESTS_DIR, old) if p)
    try:
        with (
            distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            yield client
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def test_local_and_dask_frames_are_bit_identical(dask_client):
    assert len(dask_client.scheduler_info()["workers"]) == 2
    grid = {"width": [1, 2, 3], "C_W": [1.0, 2.0]}
    local = _run(fns.noisy, grid, backend="local", max_workers=2)
    dask = _run(fns.noisy, grid, backend="dask", client=dask_client)
    _eq(local, dask)

    tgrid = {"n": [5500, 2000, 300], "loc": [0.25]}
    local = _run(fns.fake_task, tgrid, backend="local", max_workers=2)
    for chunk in (1, 3, None):
        _eq(
            local,
            _run(fns.fake_task, tgrid, backend="dask", client=dask_client, chunk_blocks=chunk),
        )


# Real Monte Carlo tasks (corrlib.montecarlo): chunked sweeps equal estimate_cumulants bit for bit.


def test_monte_carlo_task_chunked_equals_estimate_cumulants(dask_client):
    """ReLU, width 16, depth 3, 20 000 samples: a fn returning MonteCarloTask, run in block
    chunks on a local pool or on Dask, equals estimate_cumulants(rng=point generator)."""
    grid = {"width": [16], "depth": [3], "n": [20_000]}
    assert fns.mc_task({"width": 16, "depth": 3, "n": 20_000}, None).n_blocks >= 3
    direct = _run(fns.mc_direct, grid)
    assert set(direct["quantity"]) >= {"mean", "V"}
    assert (direct["n_samples"] == 20_000).all()
    _eq(direct, _run(fns.mc_task, grid))  # one chunk, run where fn ran
    local = _run(fns.mc_task, grid, backend="local", max_workers=2, chunk_blocks=1)
    _eq(direct, local)
    for chunk in (2, None):
        _eq(local, _run(fns.mc_task, grid, backend="dask", client=dask_client, chunk_blocks=chunk))


# ------------------------------------------------------------------------------- cache


def _markers(folder: Path) -> list[int]:
    return sorted(int(p.name.split("-")[0]) for p in folder.iterdir())


def _cached_points(cache: Path) -> dict[int, Path]:
    """``{i: file}`` of the cache entries, read from their JSON headers."""
    out = {}
    for f in cache.glob("[!.]*.sweep"):  # not the temporary files of unfinished writes
        header = json.loads(f.read_bytes().split(b"\n")[1])
        out[header["point"]["i"]] = f
    return out


@pytest.fixture
def markers(tmp_path, monkeypatch):
    folder = tmp_path / "markers"
    folder.mkdir()
    monkeypatch.setenv(fns.MARKERS_ENV, str(folder))
    monkeypatch.setenv("CORRLIB_TEST_SWEEP_SLEEP", "0")
    return folder


def test_rerun_reads_cache(tmp_path, markers):
    cache = tmp_path / "cache"
    grid = {"i": [0, 1, 2]}
    first = _run(fns.slow, grid, cache=cache)
    assert _markers(markers) == [0, 1, 2] and len(_cached_points(cache)) == 3
    again = _run(fns.slow, grid, cache=cache)
    assert _markers(markers) == [0, 1, 2]  # nothing recomputed
    assert again.attrs["computed"] == 0 and again.attrs["from_cache"] == 3
    pd.testing.assert_frame_equal(first, again)  # including the recorded runtime
    # a grown grid computes only the new point
    grown = _run(fns.slow, {"i": [0, 1, 2, 3]}, cache=cache)
    assert _markers(markers) == [0, 1, 2, 3]
    _eq(first, grown.iloc[: len(first)])
    # other seed, fn_version or fn -> other keys
    _run(fns.slow, grid, cache=cache, rng=8)
    _run(fns.slow, grid, cache=cache, fn_version="2")
    assert _markers(markers) == sorted([0, 1, 2, 3] + [0, 1, 2] * 2)
    # backend and chunking are not part of the key
    _run(fns.slow, grid, cache=cache, backend="local", max_workers=2)
    assert len(_markers(markers)) == 10


def test_corrupt_or_partial_cache_entries_are_recomputed(tmp_path, markers):
    cache = tmp_path / "cache"
    grid = {"i": [0, 1, 2, 3, 4]}
    first = _run(fns.slow, grid, cache=cache)
    files = _cached_points(cache)
    data = files[0].read_bytes()
    files[0].write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # one flipped bit in the payload
    files[1].write_bytes(files[1].read_bytes()[:-10])  # a partial write
    files[2].write_bytes(b"garbage")
    files[3].write_bytes(files[4].read_bytes())  # a valid entry under the wrong key
    with pytest.warns(SweepCacheWarning) as record:
        again = _run(fns.slow, grid, cache=cache)
    reasons = " | ".join(str(w.message) for w in record)
    for why in ("checksum", "bytes", "not a corrlib", "key does not match"):
        assert why in reasons
    assert _markers(markers) == sorted([0, 1, 2, 3, 4] + [0, 1, 2, 3])
    assert again.attrs["computed"] == 4
    _eq(first, again)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        final = _run(fns.slow, grid, cache=cache)  # entries were rewritten valid
    assert final.attrs["computed"] == 0


def test_cache_must_be_a_directory(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="cache must be a directory"):
        _run(fns.noisy, {"width": [1]}, cache=f)


def test_interrupted_sweep_resumes_missing_points_only(tmp_path, monkeypatch):
    """Kill a running sweep (and its pool) midway; the rerun computes only missing points."""
    cache, m1, m2 = tmp_path / "cache", tmp_path / "m1", tmp_path / "m2"
    m1.mkdir()
    m2.mkdir()
    n_points = 8
    script = textwrap.dedent(
        f"""
        import _sweep_fns
        from corrlib.companion.sweeps import sweep
        if __name__ == "__main__":
            sweep(_sweep_fns.slow, {{"i": list(range({n_points}))}}, rng=7, backend="local",
                  max_workers=2, cache={str(cache)!r}, progress=False)
        """
    )
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([TESTS_DIR, os.environ.get("PYTHONPATH", "")])
    )
    env[fns.MARKERS_ENV] = str(m1)
    env["CORRLIB_TEST_SWEEP_SLEEP"] = "0.4"
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while len(_cached_points(cache)) < 3:
            assert proc.poll() is None, "the sweep finished or died before it could be killed"
            assert time.monotonic() < deadline, "the sweep did not cache 3 points in 60 s"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its pool workers, mid-sweep
    finally:
        proc.wait(timeout=30)
    cached = set(_cached_points(cache))
    done = len(cached)
    assert 3 <= done < n_points

    monkeypatch.setenv(fns.MARKERS_ENV, str(m2))
    monkeypatch.setenv("CORRLIB_TEST_SWEEP_SLEEP", "0")
    resumed = _run(fns.slow, {"i": list(range(n_points))}, cache=cache)
    # only the missing points ran, each once
    assert _markers(m2) == sorted(set(range(n_points)) - cached)
    assert resumed.attrs["from_cache"] == done and resumed.attrs["computed"] == n_points - done
    _eq(resumed, _run(fns.slow, {"i": list(range(n_points))}))  # same numbers as uncached


# ----------------------------------------------------- the corrlib source is part of the key


def _copy_corrlib(dest: Path) -> Path:
    import shutil

    import corrlib

    src = Path(corrlib.__file__).resolve().parent
    shutil.copytree(src, dest / "corrlib", ignore=shutil.ignore_patterns("__pycache__"))
    return dest / "corrlib"


def test_cache_key_changes_with_one_byte_of_corrlib_source(tmp_path):
    from corrlib._util import source_hash

    a, b, c = (_copy_corrlib(tmp_path / name) for name in "abc")
    kernels = c / "theory" / "kernels.py"
    kernels.write_bytes(kernels.read_bytes() + b"#")  # one byte more
    assert source_hash(a) == source_hash(b)  # same files, same hash (paths do not enter)
    assert source_hash(a) != source_hash(c)
    args = ({"width": 1}, "tests:fn|version:1", {"entropy": 7, "spawn_key": [], "pool_size": 4})
    assert cache_key(*args, source_hash(a)) == cache_key(*args, source_hash(b))
    assert cache_key(*args, source_hash(a)) != cache_key(*args, source_hash(c))


def test_changed_corrlib_source_invalidates_cached_points(tmp_path):
    """A sweep run by a copy of corrlib reads its cache; after one byte of that copy changes
    (a bug fix, say) every point is recomputed."""
    copy = _copy_corrlib(tmp_path / "src")
    cache = tmp_path / "cache"
    script = textwrap.dedent(
        f"""
        import corrlib, _sweep_fns
        assert corrlib.__file__.startswith({str(copy)!r}), corrlib.__file__
        df = corrlib.sweep(_sweep_fns.noisy, {{"width": [1, 2, 3]}}, rng=7, backend="serial",
                           cache={str(cache)!r}, progress=False)
        print(df.attrs["computed"], df.attrs["from_cache"])
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(copy.parent), TESTS_DIR]))

    def run() -> str:
        proc = subprocess.run(
            [sys.executable, "-c", script],
            env=env,
            cwd=tmp_path,  # not the repository, whose corrlib/ would come first on sys.path
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.split()

    assert run() == ["3", "0"]
    assert run() == ["0", "3"]  # unchanged source: all points from the cache
    util = copy / "_util.py"
    util.write_bytes(util.read_bytes() + b"\n")
    assert run() == ["3", "0"]  # changed source: a fresh cache
