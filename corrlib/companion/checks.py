"""Regime-aware checks for the notebooks' final cells.

A notebook asserts what it shows: Monte Carlo within a few standard errors of the recursion, an
exact identity to 1e-10, a slope within its stated error. Each such statement holds under an
assumption (the 1/n expansion is sharp at these layers, the tails are light enough for sample
moments, the depth is large enough for an asymptotic form). With the paper's parameters every
assumption holds; with a reader's parameters some may not, and then a failing assertion would
say nothing useful. :class:`Checks` therefore

* states what each check assumes (a :class:`Regime`: a sentence and whether it holds here),
* reports a check whose regime does not hold as *outside the regime this check covers* (with
  what it measured, for information) instead of failing,
* and when a check fails inside its regime, names the quantity, the measured deviation (in
  standard errors for statistical checks) and what the failure means.

Nothing is printed when every check passes inside its regime, so a notebook run at the paper's
parameters shows exactly what it showed before. :meth:`Checks.done` raises :class:`CheckFailed`
(an ``AssertionError``) listing every failed check. With the environment variable
``CORRLIB_CHECKS_FILE`` set, :meth:`Checks.done` also appends its records, one JSON object per
line, to that file (the notebook tests read them).

Examples
--------
>>> import numpy as np
>>> checks = Checks("demo")
>>> sharp = checks.regime("order-1/n agreement, valid for L/n <= 0.1", 8 / 64 <= 0.1,
...                       here="L/n = 0.125")
>>> checks.within_se("Var Sigma, recursion vs Monte Carlo", np.array([1.02]), np.array([1.0]),
...                  np.array([0.004]), z_max=4.0, regime=sharp,
...                  meaning="the 1/n recursion misses a term larger than its O(1/n^2) remainder")
>>> checks.relative("E z^2 against Sigma^(0)", 2.0 + 1e-13, 2.0, tol=1e-10,
...                 meaning="the exact moments are wrong")
>>> checks.done()  # doctest: +NORMALIZE_WHITESPACE
demo: 1 check outside the regime it covers (not a failure):
  - Var Sigma, recursion vs Monte Carlo: outside the regime this check covers (assumes
    order-1/n agreement, valid for L/n <= 0.1; here L/n = 0.125); measured 5 standard errors
    (allowed <= 4)
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import textwrap
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["CHECKS_FILE_ENV", "CheckFailed", "CheckResult", "Checks", "Regime", "show_warnings"]

#: Environment variable: append the check records (JSON lines) to this file.
CHECKS_FILE_ENV = "CORRLIB_CHECKS_FILE"


class CheckFailed(AssertionError):
    """A notebook check failed inside the regime it covers."""


@dataclass(frozen=True)
class Regime:
    """What a check assumes, and whether it holds for the parameters of this run.

    Parameters
    ----------
    statement : str
        The assumption in words, e.g. ``"order-1/n agreement, valid for L/n <= 0.1"``.
    holds : bool
        Whether the parameters of this run satisfy it.
    here : str
        The value of the controlling quantity in this run, e.g. ``"L/n = 0.3"`` (shown when the
        regime does not hold).
    """

    statement: str
    holds: bool
    here: str = ""

    def __bool__(self) -> bool:
        return bool(self.holds)


@dataclass
class CheckResult:
    """One check: ``status`` is ``"passed"``, ``"failed"`` or ``"outside"`` (its regime does not
    hold, or a precondition of its computation is not met)."""

    notebook: str
    quantity: str
    status: str
    measured: str
    allowed: str
    assumes: str
    here: str
    meaning: str
    value: float | None = None  # the worst deviation (standard errors, relative or absolute)

    def message(self) -> str:
        if self.status == "outside":
            here = f"; here {self.here}" if self.here else ""
            what = f"; measured {self.measured} (allowed {self.allowed})" if self.measured else ""
            return (
                f"{self.quantity}: outside the regime this check covers "
                f"(assumes {self.assumes}{here}){what}"
            )
        text = f"{self.quantity}: {self.measured} (allowed {self.allowed})"
        if self.assumes:
            text += f". Assumes {self.assumes}" + (f" (here {self.here})" if self.here else "")
        if self.status == "failed" and self.meaning:
            text += f". If this fails: {self.meaning}"
        return text


def _labels(values: Any, labels: Sequence[Any] | None, size: int) -> list[str]:
    if labels is not None:
        labels = [str(v) for v in labels]
        if len(labels) != size:
            raise ValueError(f"labels must have one entry per value ({size}); got {len(labels)}")
        return labels
    index = getattr(values, "index", None)  # a pandas Series names its entries
    if index is not None and not callable(index) and len(index) == size:
        return [str(i) for i in index]
    return [f"entry {i}" for i in range(size)] if size > 1 else [""]


def _worst(dev: np.ndarray) -> int:
    """Index of the largest deviation; NaN counts as the worst (it never passes)."""
    nan = np.flatnonzero(~np.isfinite(dev))
    return int(nan[0]) if nan.size else int(np.argmax(dev))


def _at(label: str) -> str:
    return f" at {label}" if label else ""


class Checks:
    """The checks of one notebook's final cell (see the module docstring).

    Parameters
    ----------
    notebook : str
        The notebook's name, used in messages and records.
    """

    def __init__(self, notebook: str) -> None:
        self.notebook = str(notebook)
        self.results: list[CheckResult] = []

    # ------------------------------------------------------------------------------- regimes

    def regime(self, statement: str, holds: Any, here: str = "") -> Regime:
        """A :class:`Regime` (``holds`` converted to bool; use it as ``regime=`` of a check and,
        where a check cannot even be computed outside it, as ``if regime: ...``)."""
        return Regime(str(statement), bool(holds), str(here))

    def outside(self, quantity: str, regime: Regime, meaning: str = "") -> None:
        """Record a check that was not computed because its regime does not hold here."""
        self._add(quantity, None, "", "", regime, meaning, None)

    # -------------------------------------------------------------------------------- checks
    # The check methods share their keyword lists (quantity, ..., meaning, regime, labels) on
    # purpose: each is a public method with its own typed signature (help() shows one at a
    # time) and all record through _deviation / _add, where the shared logic lives.

    # Deliberate parallel: same keyword list as z_scores, relative and absolute below (see the
    # section comment above).
    def within_se(
        self,
        quantity: str,
        estimate: Any,
        reference: Any,
        se: Any,
        *,
        z_max: float,
        meaning: str,
        regime: Regime | None = None,
        labels: Sequence[Any] | None = None,
    ) -> None:
        """|estimate - reference| <= z_max * se, elementwise (a statistical check)."""
        est, ref, s = np.broadcast_arrays(
            *(np.asarray(v, dtype=float) for v in (estimate, reference, se))
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.abs(est - ref) / s
        self.z_scores(quantity, z, z_max=z_max, meaning=meaning, regime=regime, labels=labels)

    # Deliberate parallel: same keyword list as within_se above and relative / absolute below
    # (see the section comment above).
    def z_scores(
        self,
        quantity: str,
        z: Any,
        *,
        z_max: float,
        meaning: str,
        regime: Regime | None = None,
        labels: Sequence[Any] | None = None,
    ) -> None:
        """|z| <= z_max for every given z-score (deviation in standard errors)."""
        dev = np.abs(np.asarray(z, dtype=float)).ravel()
        if dev.size == 0:
            return self._add(quantity, True, "no values", f"<= {z_max:g}", regime, meaning, 0.0)
        i = _worst(dev)
        where = _labels(z, labels, dev.size)[i]
        ok = bool(np.all(dev <= z_max))
        n = f" (worst of {dev.size})" if dev.size > 1 else ""
        measured = f"{dev[i]:.3g} standard errors{_at(where)}{n}"
        self._add(quantity, ok, measured, f"<= {z_max:g}", regime, meaning, float(dev[i]))

    # Deliberate parallel: same keyword list as absolute below and within_se / z_scores above
    # (see the section comment above); the shared work is _deviation.
    def relative(
        self,
        quantity: str,
        value: Any,
        reference: Any,
        *,
        tol: float,
        meaning: str,
        regime: Regime | None = None,
        labels: Sequence[Any] | None = None,
    ) -> None:
        """max |value / reference - 1| < tol."""
        v, r = np.broadcast_arrays(np.asarray(value, dtype=float), np.asarray(reference, float))
        with np.errstate(divide="ignore", invalid="ignore"):
            dev = np.abs(v / r - 1).ravel()
        self._deviation(quantity, dev, tol, "relative error", value, labels, regime, meaning)

    # Deliberate parallel: same keyword list as relative above and within_se / z_scores (see the
    # section comment above); the shared work is _deviation.
    def absolute(
        self,
        quantity: str,
        value: Any,
        reference: Any,
        *,
        tol: float,
        meaning: str,
        regime: Regime | None = None,
        labels: Sequence[Any] | None = None,
    ) -> None:
        """max |value - reference| < tol."""
        v, r = np.broadcast_arrays(np.asarray(value, dtype=float), np.asarray(reference, float))
        dev = np.abs(v - r).ravel()
        self._deviation(quantity, dev, tol, "absolute error", value, labels, regime, meaning)

    # Deliberate parallel: the keyword list of relative / absolute above with rtol, atol (see
    # the section comment above).
    def allclose(
        self,
        quantity: str,
        value: Any,
        reference: Any,
        *,
        rtol: float,
        atol: float = 0.0,
        meaning: str,
        regime: Regime | None = None,
    ) -> None:
        """``numpy.allclose(value, reference, rtol, atol)``: |v - r| <= atol + rtol |r|."""
        v, r = np.broadcast_arrays(np.asarray(value, dtype=float), np.asarray(reference, float))
        ok = bool(np.allclose(v, r, rtol=rtol, atol=atol))
        with np.errstate(divide="ignore", invalid="ignore"):
            dev = (np.abs(v - r) / (atol + rtol * np.abs(r))).ravel()
        i = _worst(dev) if dev.size else 0
        worst = float(dev[i]) if dev.size else 0.0
        measured = f"|difference| = {worst:.3g} x (atol + rtol |reference|) at worst"
        allowed = f"<= 1 (rtol={rtol:g}, atol={atol:g})"
        self._add(quantity, ok, measured, allowed, regime, meaning, worst)

    # Deliberate parallel: the tail of the keyword list of allclose above (see the section
    # comment above).
    def that(
        self,
        quantity: str,
        ok: Any,
        *,
        measured: str,
        expected: str,
        meaning: str,
        regime: Regime | None = None,
    ) -> None:
        """Any other condition, with the measured value and the expectation in words."""
        self._add(quantity, bool(ok), str(measured), str(expected), regime, meaning, None)

    # ------------------------------------------------------------------------------ reporting

    def done(self) -> None:
        """Report: print the checks outside their regime (if any), record every result (with
        ``CORRLIB_CHECKS_FILE`` set), and raise :class:`CheckFailed` if any check failed."""
        self._record()
        outside = [r for r in self.results if r.status == "outside"]
        failed = [r for r in self.results if r.status == "failed"]
        if outside:
            n = len(outside)
            print(
                f"{self.notebook}: {n} check{'s' * (n != 1)} outside the regime "
                f"{'they cover' if n != 1 else 'it covers'} (not a failure):"
            )
            for r in outside:
                print(f"  - {r.message()}")
        if failed:
            n = len(failed)
            lines = "\n".join(f"  - {r.message()}" for r in failed)
            raise CheckFailed(f"{self.notebook}: {n} check{'s' * (n != 1)} failed:\n{lines}")

    def _deviation(self, quantity, dev, tol, kind, value, labels, regime, meaning) -> None:
        if dev.size == 0:
            return self._add(quantity, True, "no values", f"< {tol:g}", regime, meaning, 0.0)
        i = _worst(dev)
        where = _labels(value, labels, dev.size)[i]
        ok = bool(np.max(dev) < tol)  # NaN never passes
        measured = f"{kind} {dev[i]:.3g}{_at(where)}"
        self._add(quantity, ok, measured, f"< {tol:g}", regime, meaning, float(dev[i]))

    def _add(self, quantity, ok, measured, allowed, regime, meaning, value) -> None:
        if regime is not None and not regime.holds:
            status = "outside"
        else:
            status = "passed" if ok else "failed"
        if value is not None and not math.isfinite(value):
            value = None
        self.results.append(
            CheckResult(
                notebook=self.notebook,
                quantity=str(quantity),
                status=status,
                measured=measured,
                allowed=allowed,
                assumes="" if regime is None else regime.statement,
                here="" if regime is None else regime.here,
                meaning=str(meaning),
                value=value,
            )
        )

    def _record(self) -> None:
        path = os.environ.get(CHECKS_FILE_ENV)
        if not path:
            return
        with open(path, "a", encoding="utf-8") as fh:
            for r in self.results:
                fh.write(json.dumps(asdict(r), sort_keys=True) + "\n")


@contextlib.contextmanager
def show_warnings(width: int = 100) -> Iterator[list[warnings.WarningMessage]]:
    """Run a block, then print every warning it raised: its category and full message.

    A notebook cell that expects a warning (e.g. :class:`corrlib.HeavyTailWarning` where a Monte
    Carlo standard error cannot be trusted) shows it this way, wrapped to ``width`` columns and
    without the file paths of the default display (so the output is the same on every
    machine); identical messages are shown once. Nothing is silenced: the caught warnings are
    also returned (the list yielded by the context manager) for the cell to inspect.

    Examples
    --------
    >>> with show_warnings() as caught:
    ...     warnings.warn("sample variance of V untrustworthy at layer 7", RuntimeWarning)
    RuntimeWarning: sample variance of V untrustworthy at layer 7
    >>> len(caught)
    1
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
    seen: set[tuple[str, str]] = set()
    for w in caught:
        key = (w.category.__name__, str(w.message))
        if key in seen:
            continue
        seen.add(key)
        print(textwrap.fill(f"{key[0]}: {key[1]}", width, break_on_hyphens=False))
