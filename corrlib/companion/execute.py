"""Execute one notebook with papermill, and normalise the executed copy.

:func:`execute` runs a notebook into an output file (never in place) with the given parameters,
working directory and figures root. :func:`normalise` makes the executed notebook a
deterministic record: consecutive stream outputs are merged (the kernel splits them at random
under load), timings and per-run metadata are removed, kernel noise (shutdown tracebacks such as
``KeyboardInterrupt``, TCP/comm messages of Dask and tornado) is dropped from stderr, widget
views are dropped from displays, and memory addresses and the kernel's per-process cell file
names (``/tmp/ipykernel_<pid>/...``, quoted by warnings and tracebacks) are replaced by fixed
text.

``python -m corrlib.companion.execute SPEC.json`` runs :func:`execute` from a JSON spec and
writes its outcome to ``spec["result"]``; ``python -m corrlib.reproduce`` starts one such
process per notebook, so an interruption can stop a notebook and its kernel at once.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["KERNEL", "execute", "first_error_line", "normalise", "worker_main"]

KERNEL = "python3"

#: A stderr record is dropped when it matches one of these (kernel and cluster noise, never
#: the notebook's own warnings or errors).
NOISE = (
    re.compile(r"\bKeyboardInterrupt\b"),
    re.compile(r"\b(StreamClosedError|CommClosedError)\b"),
    re.compile(r"\bTCP\b"),
    re.compile(r"\b(distributed|tornado|asyncio)(\.\w+)*\s+-\s+(DEBUG|INFO|WARNING|ERROR)\b"),
)
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+>")
#: ipykernel compiles each cell to a file named after the kernel's process id (in $TMPDIR), which
#: warnings and tracebacks quote: /tmp/ipykernel_12345/938942395.py -> <cell>/938942395.py
_CELL_FILE = re.compile(r"[^\s\"'(]*ipykernel_\d+/")
_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def first_error_line(exc: BaseException) -> str:
    """The first non-empty line of an error (papermill's ``ename: evalue``), without colours."""
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if ename:
        line = f"{ename}: {evalue}" if evalue else str(ename)
    else:
        line = f"{type(exc).__name__}: {exc}"
    for piece in _ANSI.sub("", line).splitlines():
        if piece.strip():
            return piece.strip()
    return type(exc).__name__


def execute(
    source: str | os.PathLike,
    output: str | os.PathLike,
    parameters: Mapping[str, Any],
    cwd: str | os.PathLike,
    kernel: str = KERNEL,
) -> tuple[bool, str | None, float]:
    """Run ``source`` into ``output`` with papermill; returns (ok, first error line, seconds).

    The executed copy is written also when a cell fails (it then holds the traceback) and is
    normalised either way. The kernel inherits this process's environment (the caller sets
    ``CORRLIB_FIGURES_DIR`` and friends there).
    """
    import papermill

    os.environ.setdefault("JUPYTER_PREFER_ENV_PATH", "1")
    t0 = time.perf_counter()
    error = None
    try:
        papermill.execute_notebook(
            str(source),
            str(output),
            parameters=dict(parameters),
            kernel_name=kernel,
            cwd=str(cwd),
            progress_bar=False,
            log_output=False,
        )
    except Exception as exc:  # noqa: BLE001 - a failed notebook is a result, not a crash
        error = first_error_line(exc)
    runtime = time.perf_counter() - t0
    if Path(output).exists():
        normalise(output, Path(source).name)
    return error is None, error, runtime


# ---------------------------------------------------------------------------- normalisation


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _records(text: str) -> list[str]:
    """Split stderr into records: a line that starts at column 0 opens one, indented lines
    continue it; a traceback runs through its final (exception) line."""
    records: list[list[str]] = []
    in_traceback = False
    for line in text.splitlines(keepends=True):
        indented = line[:1] in (" ", "\t")
        if records and (indented or in_traceback):
            records[-1].append(line)
            if in_traceback and not indented:
                in_traceback = False
            continue
        records.append([line])
        in_traceback = line.startswith(("Traceback (most recent call last)", "Exception ignored"))
    return ["".join(r) for r in records]


def _drop_noise(text: str) -> str:
    return "".join(r for r in _records(text) if not any(p.search(r) for p in NOISE))


def _stable(text: str) -> str:
    """Text with the per-process parts removed (kernel cell files, memory addresses)."""
    return _ADDRESS.sub(" at 0x...>", _CELL_FILE.sub("<cell>/", text))


def _merge_streams(outputs: list[dict]) -> list[dict]:
    merged: list[dict] = []
    for out in outputs:
        if out.get("output_type") == "stream":
            text = _text(out.get("text", ""))
            if out.get("name") == "stderr":
                text = _drop_noise(text)
            text = _stable(text)
            if not text:
                continue
            prev = merged[-1] if merged else None
            if prev and prev.get("output_type") == "stream" and prev.get("name") == out.get("name"):
                prev["text"] = _text(prev["text"]) + text
                continue
            out = {**out, "text": text}
        merged.append(out)
    for out in merged:
        if out.get("output_type") == "stream":
            out["text"] = out["text"].splitlines(keepends=True)
    return merged


def _clean_display(out: dict) -> dict:
    data = out.get("data")
    if isinstance(data, dict):
        data.pop(_WIDGET_VIEW, None)
        plain = data.get("text/plain")
        if plain is not None:
            data["text/plain"] = _stable(_text(plain)).splitlines(keepends=True)
    return out


def _clean_error(out: dict) -> dict:
    out["traceback"] = [_stable(line) for line in out.get("traceback", [])]
    return out


def _clean_cell(cell: dict) -> None:
    md = cell.get("metadata", {})
    md.pop("papermill", None)
    md.pop("execution", None)
    if "injected-parameters" in md.get("tags", []) and "id" in cell:
        cell["id"] = "injected-parameters"  # papermill draws a random id on every run
    if cell.get("cell_type") == "code":
        outputs = _merge_streams(cell.get("outputs", []))
        cleaners = {"display_data": _clean_display, "execute_result": _clean_display,
                    "error": _clean_error}  # fmt: skip
        cell["outputs"] = [cleaners.get(o.get("output_type"), lambda o: o)(o) for o in outputs]


def normalise(path: str | os.PathLike, name: str) -> None:
    """Make an executed notebook a deterministic record (see the module docstring); ``name``
    replaces papermill's input/output paths (no machine-specific paths)."""
    path = Path(path)
    with open(path, encoding="utf-8") as fh:
        nb = json.load(fh)
    meta = nb.setdefault("metadata", {})
    pm = meta.get("papermill")
    if isinstance(pm, dict):
        for key in ("start_time", "end_time", "duration", "exception"):
            pm.pop(key, None)
        pm["input_path"] = name
        pm["output_path"] = name
    meta.pop("widgets", None)  # saved widget state: per-run model ids
    for cell in nb.get("cells", []):
        _clean_cell(cell)
    text = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    path.write_text(text, encoding="utf-8")


# ---------------------------------------------------------------------------------- worker


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def worker_main(spec_path: str) -> int:
    """Run :func:`execute` as described by a JSON spec (source, output, parameters, cwd,
    kernel, result) and write ``{"ok", "error", "runtime"}`` to ``spec["result"]``."""
    signal.signal(signal.SIGTERM, _terminate)  # the kernel is shut down on the way out
    with open(spec_path, encoding="utf-8") as fh:
        spec = json.load(fh)
    ok, error, runtime = execute(
        spec["source"], spec["output"], spec["parameters"], spec["cwd"], spec.get("kernel", KERNEL)
    )
    result = {"ok": ok, "error": error, "runtime": runtime}
    Path(spec["result"]).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":  # pragma: no cover - run by reproduce in a subprocess
    sys.exit(worker_main(sys.argv[1]))
