"""Figure and table output shared by the notebooks.

Every figure of notebook ``NN_name`` is written to ``<figures root>/NN_name/`` as PNG (150 dpi)
and PDF, through :func:`corrlib.companion.io.atomic_path` so that a reader never sees a
half-written file. The output is byte-for-byte reproducible (no timestamps or version strings
in the metadata), so regenerating an unchanged figure does not change the file.

The figures root is :func:`corrlib.companion.runs.figures_dir`: ``$CORRLIB_FIGURES_DIR`` when
set (``python -m corrlib.reproduce`` sets it for every notebook it runs), else the run workspace
``runs/<run name>/figures`` in the current directory (see :mod:`corrlib.companion.runs` and
docs/workspace.md). Nothing here looks for a repository: an installed corrlib writes to the
same places as a checkout.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._util import warn_deprecated
from . import runs
from .io import atomic_path
from .runs import FIGURES_ENV

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "FIGURES_ENV",
    "apply_style",
    "collapse_panel",
    "errorbar_relative",
    "errorbar_vs_theory",
    "figures_dir",
    "fit_loglog_slope",
    "legends_by_color_and_style",
    "loglog_with_slope",
    "mark_point",
    "readable_log_ticks",
    "repo_root",
    "save_figure",
    "save_table",
]

#: Metadata that keeps PNG and PDF output free of versions and timestamps.
_PNG_METADATA = {"Software": None}
_PDF_METADATA = {"Creator": None, "Producer": None, "CreationDate": None, "ModDate": None}

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

STYLE: dict[str, Any] = {
    "figure.figsize": (4.8, 3.4),
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.05,
    "font.size": 9.0,
    "axes.titlesize": 10.0,
    "axes.labelsize": 9.0,
    "legend.fontsize": 8.0,
    "legend.frameon": False,
    "xtick.labelsize": 8.0,
    "ytick.labelsize": 8.0,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.5,
    "lines.markersize": 4.0,
    "errorbar.capsize": 2.0,
    "image.cmap": "viridis",
    "pdf.fonttype": 42,  # embed TrueType, text stays editable
    "svg.hashsalt": "corrlib",  # deterministic SVG ids
}


def _example_axes() -> tuple[Figure, Axes]:
    """A figure and axes under the non-interactive Agg backend, for the doctests below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots()


def repo_root(start: str | os.PathLike | None = None) -> Path:
    """Deprecated (removed in corrlib 0.3): the package no longer looks for a repository.

    Returns the nearest directory at or above ``start`` (default: cwd) holding
    ``pyproject.toml`` and ``corrlib/``, as before; raises FileNotFoundError if there is none.
    """
    warn_deprecated("corrlib.companion.plotting.repo_root()", "corrlib.companion.runs")
    here = Path(start if start is not None else Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "pyproject.toml").is_file() and (d / "corrlib").is_dir():
            return d
    raise FileNotFoundError(f"no directory holding pyproject.toml and corrlib/ at or above {here}")


def figures_dir() -> Path:
    """The figures root: ``$CORRLIB_FIGURES_DIR`` if set, else the run workspace's
    ``runs/<run name>/figures`` (:func:`corrlib.companion.runs.figures_dir`)."""
    return runs.figures_dir()


def _check_name(value: str, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str; got {type(value).__name__}")
    if not _NAME_RE.match(value):
        raise ValueError(
            f"{what} must be a plain file name (letters, digits, '_', '-', '.'; "
            f"no path separators); got {value!r}"
        )
    return value


def _notebook_stem(notebook: str) -> str:
    stem = notebook
    if isinstance(stem, str) and stem.endswith(".ipynb"):
        stem = stem[: -len(".ipynb")]
    return _check_name(stem, "notebook")


class OutputPath(type(Path())):
    """A written file's path; its repr names only ``<notebook>/<file>``, so that a notebook
    cell displaying it shows the same text on every machine (no absolute paths in outputs)."""

    def __repr__(self) -> str:
        return f"OutputPath('{self.parent.name}/{self.name}')"


def save_figure(fig: Figure, notebook: str, name: str) -> tuple[Path, Path]:
    """Write ``fig`` to ``figures/<notebook>/<name>.png`` (150 dpi) and ``.pdf``, atomically.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    notebook : str
        Notebook stem, e.g. ``"01_infinite_width"`` (a trailing ``.ipynb`` is dropped).
    name : str
        File name without extension.

    Returns
    -------
    (png_path, pdf_path) : tuple of pathlib.Path
    """
    stem = _notebook_stem(notebook)
    name = _check_name(name, "name")
    out = figures_dir() / stem
    png, pdf = OutputPath(out / f"{name}.png"), OutputPath(out / f"{name}.pdf")
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=150, metadata=_PNG_METADATA)
    with atomic_path(pdf) as tmp:
        fig.savefig(tmp, format="pdf", metadata=_PDF_METADATA)
    return png, pdf


def save_table(df: pd.DataFrame, notebook: str, name: str, **to_csv_kwargs: Any) -> Path:
    """Write ``df`` to ``figures/<notebook>/<name>.csv`` atomically (no index by default).

    Returns
    -------
    pathlib.Path
        The path written.
    """
    stem = _notebook_stem(notebook)
    name = _check_name(name, "name")
    path = OutputPath(figures_dir() / stem / f"{name}.csv")
    to_csv_kwargs.setdefault("index", False)
    to_csv_kwargs.setdefault("lineterminator", "\n")
    with atomic_path(path) as tmp:
        df.to_csv(tmp, **to_csv_kwargs)
    return path


def apply_style() -> None:
    """Set the project's matplotlib rcParams (safe under the non-interactive Agg backend)."""
    import matplotlib as mpl

    mpl.rcParams.update(STYLE)


def errorbar_vs_theory(
    ax: Axes,
    x: Sequence[float] | np.ndarray,
    mc: Sequence[float] | np.ndarray,
    mc_se: Sequence[float] | np.ndarray | None,
    theory: Sequence[float] | np.ndarray | None,
    label: str | None = None,
    *,
    color: Any = None,
    marker: str = "o",
    theory_x: Sequence[float] | np.ndarray | None = None,
    theory_style: str = "-",
) -> tuple[Any, Any]:
    """Monte Carlo points with +-1 standard-error bars and the theory curve in the same colour.

    Parameters
    ----------
    ax : matplotlib Axes
    x, mc, mc_se : array_like, shape (k,)
        Abscissae, Monte Carlo estimates and their standard errors (``mc_se`` may be None).
    theory : array_like or None
        Theory values at ``theory_x`` (default ``x``); None draws no curve.
    label : str, optional
        Legend label; the Monte Carlo points get ``label + " (MC)"``.

    Returns
    -------
    (errorbar_container, theory_line) : the artists (theory_line is None without theory).
    """
    x = np.asarray(x, dtype=float)
    mc = np.asarray(mc, dtype=float)
    if mc.shape != x.shape:
        raise ValueError(f"mc must have the shape of x {x.shape}; got {mc.shape}")
    se = None
    if mc_se is not None:
        se = np.asarray(mc_se, dtype=float)
        if se.shape != x.shape:
            raise ValueError(f"mc_se must have the shape of x {x.shape}; got {se.shape}")
    line = None
    if theory is not None:
        tx = x if theory_x is None else np.asarray(theory_x, dtype=float)
        th = np.asarray(theory, dtype=float)
        if th.shape != tx.shape:
            raise ValueError(f"theory must have the shape of theory_x {tx.shape}; got {th.shape}")
        (line,) = ax.plot(tx, th, theory_style, color=color, label=label)
        color = line.get_color()
    mc_label = None if label is None else (f"{label} (MC)" if theory is not None else label)
    cont = ax.errorbar(
        x, mc, yerr=se, fmt=marker, color=color, label=mc_label, markerfacecolor="none"
    )
    return cont, line


def fit_loglog_slope(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    se: Sequence[float] | np.ndarray | None = None,
) -> tuple[float, float, float]:
    """Slope of ``log y = a + s log x`` by least squares, with its standard error.

    With ``se`` (standard errors of ``y``) the fit is weighted by ``y / se`` (the standard
    error of ``log y`` is ``se / y`` to first order) and the slope's error is the propagated
    one (``np.polyfit(..., w=, cov="unscaled")``). Without ``se`` the points count equally and
    the error is the residual-scaled least-squares error (which for deterministic curves only
    measures how well a power law fits; it needs at least 3 points).

    Parameters
    ----------
    x, y : array_like, shape (k,)
        Positive abscissae and values.
    se : array_like, shape (k,), optional
        Standard errors of ``y``.

    Returns
    -------
    (slope, slope_se, intercept) : tuple of float
        ``intercept`` is ``a`` (natural log).

    Examples
    --------
    >>> x = np.array([1.0, 2.0, 4.0, 8.0])
    >>> s, s_se, a = fit_loglog_slope(x, 3 * x**2, se=0.01 * 3 * x**2)
    >>> round(s, 12), round(s_se, 4), round(float(np.exp(a)), 12)
    (2.0, 0.0065, 3.0)
    """
    with np.errstate(divide="ignore", invalid="ignore"):  # refused below, naming x and y
        lx, ly = np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float))
    if lx.shape != ly.shape or lx.ndim != 1:
        raise ValueError(f"x and y must be 1-D of equal shape; got {lx.shape} and {ly.shape}")
    if not (np.all(np.isfinite(lx)) and np.all(np.isfinite(ly))):
        raise ValueError("x and y must be positive and finite (their logs are fitted)")
    if se is None:
        if lx.size < 3:
            raise ValueError(f"an unweighted fit needs at least 3 points; got {lx.size}")
        coef, cov = np.polyfit(lx, ly, 1, cov=True)
    else:
        rel = np.asarray(se, dtype=float) / np.asarray(y, dtype=float)
        if rel.shape != lx.shape or not np.all(rel > 0):
            raise ValueError("se must be positive with the shape of y")
        coef, cov = np.polyfit(lx, ly, 1, w=1 / rel, cov="unscaled")
    return float(coef[0]), float(np.sqrt(cov[0, 0])), float(coef[1])


def loglog_with_slope(
    ax: Axes,
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    se: Sequence[float] | np.ndarray | None = None,
    *,
    label: str = "",
    color: Any = None,
    marker: str = "o",
) -> tuple[float, float]:
    """Points (with +-1 se bars if given) on log-log axes and their fitted power law, dashed.

    The legend entry is ``label`` followed by the fitted slope and its standard error
    (:func:`fit_loglog_slope`).

    Returns
    -------
    (slope, slope_se) : tuple of float

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> fig, ax = _example_axes()
    >>> x = np.array([1.0, 2.0, 4.0])
    >>> s, s_se = loglog_with_slope(ax, x, x**1.5, 0.02 * x**1.5, label="data")
    >>> round(s, 10), ax.get_legend_handles_labels()[1]
    (1.5, ['data: slope 1.500 +- 0.02'])
    >>> plt.close(fig)
    """
    slope, slope_se, a = fit_loglog_slope(x, y, se)
    xs = np.asarray(x, dtype=float)
    cont = ax.errorbar(xs, y, yerr=se, fmt=marker, color=color, markerfacecolor="none")
    color = cont.lines[0].get_color()
    xx = np.geomspace(xs.min(), xs.max(), 50)
    text = f"{label}: slope {slope:.3f} +- {slope_se:.2g}" if label else None
    ax.plot(xx, np.exp(a) * xx**slope, "--", color=color, lw=1, label=text)
    ax.set_xscale("log")
    ax.set_yscale("log")
    return slope, slope_se


def collapse_panel(
    ax: Axes,
    curves: dict[int, tuple[np.ndarray, np.ndarray]],
    *,
    style: str = "-",
    label: str = "$n={n}$",
    colors: dict[int, Any] | None = None,
    **plot_kwargs: Any,
) -> None:
    """One curve per width against ``l/n``: the collapse of finite-width quantities in depth
    over width (every curve of a quantity that depends on l/n only lies on one line).

    Parameters
    ----------
    curves : dict n -> (layers, values)
        ``layers`` are the depths l of each value; they are plotted at ``l / n``.
    style : str
        Line style (a format string for ``ax.plot``).
    label : str
        Legend label, formatted with ``n``; empty for no legend entries.
    colors : dict n -> colour, optional
        Default: the colour cycle in the order of ``curves``.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> fig, ax = _example_axes()
    >>> ell = np.arange(1, 9)
    >>> collapse_panel(ax, {4: (ell, ell / 4), 8: (ell, ell / 8)})
    >>> [float(line.get_xdata()[-1]) for line in ax.lines]
    [2.0, 1.0]
    >>> plt.close(fig)
    """
    for i, (n, (layers, values)) in enumerate(curves.items()):
        color = (colors or {}).get(n, f"C{i}")
        lab = label.format(n=n) if label else None
        ax.plot(np.asarray(layers) / n, values, style, color=color, label=lab, **plot_kwargs)
    ax.set_xlabel(r"$\ell/n$")


def mark_point(ax: Axes, x: float, y: float, label: str, *, marker: str = "*", **kwargs: Any):
    """A single marked point with its own legend entry (e.g. a critical point), drawn above
    every other artist and not clipped at the axes' edge.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> fig, ax = _example_axes()
    >>> line = mark_point(ax, 0.0, 1.0, "critical point")
    >>> line.get_label(), line.get_clip_on()
    ('critical point', False)
    >>> plt.close(fig)
    """
    kwargs.setdefault("color", "k")
    kwargs.setdefault("ms", 11)
    (line,) = ax.plot([x], [y], marker, label=label, zorder=10, clip_on=False, **kwargs)
    return line


def legends_by_color_and_style(
    ax: Axes,
    colors: dict[str, Any],
    styles: dict[str, dict[str, Any]],
    *,
    color_title: str | None = None,
    color_loc: str = "upper left",
    style_loc: str = "lower right",
    **legend_kwargs: Any,
) -> tuple[Any, Any]:
    """Two legends: one naming what the colours stand for (e.g. the width n), one naming what
    the line styles and markers stand for (e.g. exact, recursion, Monte Carlo).

    A figure that encodes two things (which network, which kind of curve) reads best with one
    legend per encoding instead of one list of every combination. The entries are proxy
    artists, so the curves themselves need no labels.

    Parameters
    ----------
    ax : matplotlib Axes
    colors : dict label -> colour
        One solid line per entry.
    styles : dict label -> dict of ``matplotlib.lines.Line2D`` keyword arguments
        E.g. ``{"exact": dict(ls="-"), "Monte Carlo": dict(ls="none", marker="o")}``; the
        colour defaults to dark grey.
    color_title : str, optional
        Title of the colour legend (e.g. ``"width"``).
    color_loc, style_loc : str
        Locations of the two legends.
    **legend_kwargs
        Passed to both ``ax.legend`` calls (e.g. ``fontsize``).

    Returns
    -------
    (color_legend, style_legend) : the two Legend artists.

    Examples
    --------
    >>> fig, ax = _example_axes()
    >>> c, s = legends_by_color_and_style(
    ...     ax, {"$n=8$": "C0", "$n=32$": "C1"},
    ...     {"exact": dict(ls="-"), "Monte Carlo": dict(ls="none", marker="o")})
    >>> [t.get_text() for t in c.get_texts()], [t.get_text() for t in s.get_texts()]
    (['$n=8$', '$n=32$'], ['exact', 'Monte Carlo'])
    >>> c in ax.get_children()
    True
    >>> fig.clf()
    """
    from matplotlib.lines import Line2D

    chandles = [Line2D([], [], color=c, lw=2.0) for c in colors.values()]
    shandles = [Line2D([], [], **{"color": "0.25", **kw}) for kw in styles.values()]
    first = ax.legend(chandles, list(colors), title=color_title, loc=color_loc, **legend_kwargs)
    ax.add_artist(first)
    second = ax.legend(shandles, list(styles), loc=style_loc, **legend_kwargs)
    return first, second


def errorbar_relative(
    ax: Axes,
    x: Sequence[float] | np.ndarray,
    value: Sequence[float] | np.ndarray,
    se: Sequence[float] | np.ndarray,
    reference: Sequence[float] | np.ndarray,
    *,
    color: Any = None,
    marker: str = "o",
    filled: bool = False,
    label: str | None = None,
) -> np.ndarray:
    """Monte Carlo estimates relative to a reference, ``value / reference - 1``, with +-1
    standard-error bars ``se / reference``: the residual view in which error bars are visible
    even where the quantity itself spans orders of magnitude.

    Parameters
    ----------
    x, value, se, reference : array_like, shape (k,)
        Abscissae, estimates, their standard errors and the reference (e.g. the exact law).
    filled : bool
        Filled markers (default open), to tell two series of one colour apart.

    Returns
    -------
    ndarray, shape (k,)
        The z-scores ``(value - reference) / se`` of the plotted points.

    Examples
    --------
    >>> fig, ax = _example_axes()
    >>> z = errorbar_relative(ax, [1, 2], [1.1, 3.8], [0.05, 0.1], [1.0, 4.0])
    >>> [round(float(v), 6) for v in z]
    [2.0, -2.0]
    >>> [round(float(v), 6) for v in ax.lines[0].get_ydata()]
    [0.1, -0.05]
    >>> fig.clf()
    """
    x, value, se, ref = (np.asarray(a, dtype=float) for a in (x, value, se, reference))
    if not (x.shape == value.shape == se.shape == ref.shape):
        raise ValueError(
            "x, value, se and reference must have equal shapes; got "
            f"{x.shape}, {value.shape}, {se.shape}, {ref.shape}"
        )
    face = color if filled else "none"
    ax.errorbar(
        x, value / ref - 1, yerr=se / np.abs(ref), fmt=marker, color=color, mfc=face, label=label
    )
    return (value - ref) / se


def readable_log_ticks(ax: Axes, axis: str = "y", subs: Sequence[float] = (1.0, 2.0, 5.0)) -> None:
    """Label a log axis at 1, 2, 5 times each power of ten in plain numbers (not only at the
    powers of ten, which leaves a short axis with one label or none).

    Examples
    --------
    >>> fig, ax = _example_axes()
    >>> _ = ax.plot([1, 2], [3.0, 40.0])
    >>> ax.set_yscale("log")
    >>> readable_log_ticks(ax)
    >>> _ = ax.set_ylim(3, 40)
    >>> fig.canvas.draw()
    >>> [t.get_text() for t in ax.get_yticklabels() if 3 <= t.get_position()[1] <= 40]
    ['5', '10', '20']
    >>> fig.clf()
    """
    from matplotlib import ticker

    if axis not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y'; got {axis!r}")
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_locator(ticker.LogLocator(base=10.0, subs=tuple(subs)))
    target.set_major_formatter(ticker.FuncFormatter(lambda v, _pos: f"{v:g}"))
    target.set_minor_formatter(ticker.NullFormatter())


# ---- notebook 11

__all__ += ["plot_partial_sums", "plot_series_errors"]  # noqa: PLE0605


def _relu_convergence_example() -> pd.DataFrame:
    """The doctests' table: ReLU, n = 64, L = 8, orders 1..3 against the exact Var Sigma (T15)."""
    from ..model import Network
    from ..theory import hierarchy, hierarchy_convergence

    h = hierarchy(Network.critical("relu", width=64, depth=8), [1.0], order=3)
    exact = {2: h.K[:, 0, 0] ** 2 * ((1 + 5 / 64) ** np.arange(9) - 1)}  # (T15)
    return hierarchy_convergence(h, exact)


def _orders_colors(orders: Sequence[int]) -> dict[int, Any]:
    import matplotlib as mpl

    cmap = mpl.colormaps["viridis"]
    span = max(len(orders) - 1, 1)
    return {J: cmap(0.9 * i / span) for i, J in enumerate(orders)}


def plot_partial_sums(ax: Axes, frame: pd.DataFrame, quantity: str, *, exact_label: str = "exact"):
    """Partial sums of a normalized cumulant, order by order, against L/n, and the exact curve.

    Parameters
    ----------
    ax : matplotlib Axes
    frame : pandas.DataFrame
        One network's table from :func:`corrlib.theory.hierarchy_convergence` (columns
        ``L_over_n, quantity, order, exact, partial_sum``).
    quantity : str
        ``"mean/K"``, ``"Var/K^2"`` or ``"kappa3/K^3"``.
    exact_label : str
        Legend label of the reference curve (drawn black).

    Returns
    -------
    list of matplotlib Line2D
        The exact curve first, then one line per order (viridis, low order dark).

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> fig, ax = _example_axes()
    >>> len(plot_partial_sums(ax, _relu_convergence_example(), "Var/K^2"))
    4
    >>> plt.close(fig)
    """
    sub = frame[frame.quantity == quantity]
    if sub.empty:
        raise ValueError(f"quantity must be one of {sorted(set(frame.quantity))}; got {quantity!r}")
    orders = sorted(sub.order.unique())
    colors = _orders_colors(orders)
    ref = sub[sub.order == orders[0]]
    lines = ax.plot(ref.L_over_n, ref.exact, color="k", lw=2.2, label=exact_label)
    for J in orders:
        g = sub[sub.order == J]
        lines += ax.plot(g.L_over_n, g.partial_sum, color=colors[J], lw=1.1, label=f"order {J}")
    ax.set_xlabel(r"$L/n$")
    return lines


def plot_series_errors(
    ax: Axes, frame: pd.DataFrame, quantity: str, *, linestyle: str = "-", label: bool = True
):
    """Relative error of every partial sum against L/n on a log scale, one line per order.

    Parameters
    ----------
    ax : matplotlib Axes
    frame : pandas.DataFrame
        One network's table from :func:`corrlib.theory.hierarchy_convergence`
        (columns ``L_over_n, quantity, order, rel_error``).
    quantity : str
        ``"mean/K"``, ``"Var/K^2"`` or ``"kappa3/K^3"``.
    linestyle : str
        Line style of this network (e.g. one per width, so curves of several widths overlay).
    label : bool
        Label the lines ``order J`` (set False for the second and later widths).

    Returns
    -------
    list of matplotlib Line2D, one per order.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> fig, ax = _example_axes()
    >>> lines = plot_series_errors(ax, _relu_convergence_example(), "Var/K^2")
    >>> [ln.get_label() for ln in lines]
    ['order 1', 'order 2', 'order 3']
    >>> plt.close(fig)
    """
    sub = frame[(frame.quantity == quantity) & (frame.rel_error > 0)]
    if sub.empty:
        raise ValueError(f"no positive errors of {quantity!r} in frame")
    orders = sorted(sub.order.unique())
    colors = _orders_colors(orders)
    lines = []
    for J in orders:
        g = sub[sub.order == J]
        lines += ax.plot(
            g.L_over_n,
            g.rel_error,
            linestyle,
            color=colors[J],
            lw=1.1,
            label=f"order {J}" if label else None,
        )
    ax.set_yscale("log")
    ax.set_xlabel(r"$L/n$")
    ax.set_ylabel("relative error")
    return lines
