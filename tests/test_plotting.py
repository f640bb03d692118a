"""corrlib.companion.plotting: figure/table locations, atomic and reproducible output, helpers."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from corrlib.companion import plotting, runs  # noqa: E402


@pytest.fixture
def figdir(tmp_path, monkeypatch):
    out = tmp_path / "figs"
    monkeypatch.setenv(plotting.FIGURES_ENV, str(out))
    return out


def _figure():
    fig, ax = plt.subplots()
    x = np.arange(1.0, 6.0)
    plotting.errorbar_vs_theory(ax, x, x**2 + 0.1, np.full(5, 0.2), x**2, label="k")
    ax.set_xlabel("layer")
    ax.legend()
    return fig


@pytest.fixture
def no_workspace_env(monkeypatch):
    for name in (runs.FIGURES_ENV, runs.RUNS_ENV, runs.RUN_NAME_ENV):
        monkeypatch.delenv(name, raising=False)


def test_figures_dir_env_override(figdir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert plotting.figures_dir() == figdir.resolve()


def test_default_is_the_run_workspace_in_the_current_directory(
    tmp_path, monkeypatch, no_workspace_env, capsys
):
    """Without any setting, outputs go to ./runs/<session>/figures, wherever that is: a
    checkout (pyproject.toml and corrlib/ right here) is not treated specially."""
    (tmp_path / "corrlib").mkdir()
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\n")
    monkeypatch.chdir(tmp_path)
    out = plotting.figures_dir()
    assert out.parent.parent == tmp_path.resolve() / "runs"
    assert out.name == "figures" and out.parent.name.startswith("interactive-")
    assert plotting.figures_dir() == out  # one folder per process
    fig = plt.figure()
    png, _ = plotting.save_figure(fig, "07_demo", "curve")
    plt.close(fig)
    assert png == out / "07_demo" / "curve.png" and png.exists()
    assert not (tmp_path / "figures").exists()


def test_workspace_root_and_run_name_from_environment(tmp_path, monkeypatch, no_workspace_env):
    monkeypatch.setenv(runs.RUNS_ENV, str(tmp_path / "ws"))
    monkeypatch.setenv(runs.RUN_NAME_ENV, "my-run")
    path = plotting.save_table(pd.DataFrame({"x": [1]}), "07_demo", "t")
    assert path == tmp_path.resolve() / "ws" / "my-run" / "figures" / "07_demo" / "t.csv"
    monkeypatch.setenv(runs.RUN_NAME_ENV, "../escape")
    with pytest.raises(ValueError, match="run name must be a plain folder name"):
        plotting.figures_dir()


def test_repo_root_is_deprecated(tmp_path):
    (tmp_path / "corrlib").mkdir()
    (tmp_path / "pyproject.toml").write_text("")
    with pytest.warns(DeprecationWarning, match="repo_root.*deprecated"):
        assert plotting.repo_root(tmp_path) == tmp_path.resolve()


def test_save_figure_writes_png_and_pdf(figdir):
    fig = _figure()
    png, pdf = plotting.save_figure(fig, "07_demo.ipynb", "curve")
    plt.close(fig)
    assert png == figdir.resolve() / "07_demo" / "curve.png"
    assert pdf == figdir.resolve() / "07_demo" / "curve.pdf"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert sorted(p.name for p in png.parent.iterdir()) == ["curve.pdf", "curve.png"]


def test_saved_figures_are_byte_reproducible(figdir, monkeypatch):
    """Same figure, another "now": the same bytes. matplotlib stamps PDFs with the date from
    SOURCE_DATE_EPOCH (else today) and PNGs with its version, unless told not to."""
    import io

    fig = _figure()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1000000000")
    png, pdf = plotting.save_figure(fig, "07_demo", "curve")
    first = (png.read_bytes(), pdf.read_bytes())
    # negative control: plain savefig writes what the checks below look for
    plain_png, plain_pdf = io.BytesIO(), io.BytesIO()
    fig.savefig(plain_png, format="png")
    fig.savefig(plain_pdf, format="pdf")
    assert b"Matplotlib version" in plain_png.getvalue()
    assert b"CreationDate (D:20010909" in plain_pdf.getvalue()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "2000000000")  # a different "now"
    plotting.save_figure(fig, "07_demo", "curve")
    plt.close(fig)
    assert (png.read_bytes(), pdf.read_bytes()) == first
    assert b"CreationDate" not in first[1] and b"ModDate" not in first[1]
    assert b"Matplotlib" not in first[0] and b"Software" not in first[0]


def test_png_resolution_is_150_dpi(figdir):
    from PIL import Image

    fig = plt.figure(figsize=(2.0, 1.0))
    fig.add_subplot().plot([0, 1], [0, 1])
    png, _ = plotting.save_figure(fig, "07_demo", "dpi")
    plt.close(fig)
    with Image.open(png) as im:
        dpi = im.info.get("dpi")
    assert dpi is not None and round(dpi[0]) == 150


@pytest.mark.parametrize("bad", ["../escape", "a/b", "", ".hidden"])
def test_save_figure_rejects_path_like_names(figdir, bad):
    fig = plt.figure()
    with pytest.raises(ValueError, match="name"):
        plotting.save_figure(fig, "07_demo", bad)
    with pytest.raises(ValueError, match="notebook"):
        plotting.save_figure(fig, bad, "ok")
    plt.close(fig)


def test_save_table_roundtrip(figdir):
    df = pd.DataFrame({"activation": ["gelu", "swish"], "C_W": [1.98305826, 1.98800468]})
    path = plotting.save_table(df, "07_demo", "critical")
    assert path == figdir.resolve() / "07_demo" / "critical.csv"
    back = pd.read_csv(path)
    pd.testing.assert_frame_equal(back, df)
    assert "\r" not in path.read_text()


def test_apply_style_sets_rcparams_under_agg():
    with matplotlib.rc_context():
        plotting.apply_style()
        assert matplotlib.rcParams["savefig.dpi"] == 150
        assert matplotlib.rcParams["axes.spines.top"] is False
        assert matplotlib.get_backend().lower() == "agg"


def test_errorbar_vs_theory_shares_colour_and_data():
    fig, ax = plt.subplots()
    x = np.array([1.0, 2.0, 3.0])
    cont, line = plotting.errorbar_vs_theory(
        ax, x, [1.1, 2.0, 2.9], [0.1, 0.2, 0.3], [1, 2, 3], "a"
    )
    np.testing.assert_array_equal(line.get_ydata(), [1, 2, 3])
    data_line = cont.lines[0]
    np.testing.assert_array_equal(data_line.get_ydata(), [1.1, 2.0, 2.9])
    assert data_line.get_color() == line.get_color()
    labels = [t.get_text() for t in ax.legend().get_texts()]
    assert labels == ["a", "a (MC)"]
    with pytest.raises(ValueError, match="mc_se"):
        plotting.errorbar_vs_theory(ax, x, [1, 2, 3], [0.1], None)
    plt.close(fig)


def test_returned_paths_display_without_machine_specific_parts(figdir):
    """Notebook cells that end in save_table(...) show the result: it must not contain the
    absolute path of the machine that ran it (committed outputs would differ per machine)."""
    import pandas as pd

    path = plotting.save_table(pd.DataFrame({"x": [1]}), "07_demo", "t")
    assert repr(path) == "OutputPath('07_demo/t.csv')"
    assert path.exists() and path.is_absolute()


def test_fit_loglog_slope_weighted_error_is_the_propagated_one():
    # slope error of a weighted straight-line fit: sigma / sqrt(S_xx) for equal relative errors
    x = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    s, s_se, a = plotting.fit_loglog_slope(x, 2 * x**0.5, se=0.03 * 2 * x**0.5)
    lx = np.log(x)
    assert s == pytest.approx(0.5, abs=1e-12)
    assert np.exp(a) == pytest.approx(2.0, rel=1e-12)
    assert s_se == pytest.approx(0.03 / np.sqrt(np.sum((lx - lx.mean()) ** 2)), rel=1e-10)


def test_fit_loglog_slope_recovers_a_slope_within_its_error():
    rng = np.random.default_rng(5)
    x = np.geomspace(1, 100, 12)
    y = 3 * x**1.7
    se = 0.05 * y
    z = []
    for _ in range(200):
        s, s_se, _ = plotting.fit_loglog_slope(x, y * np.exp(rng.normal(0, 0.05, x.size)), se)
        z.append((s - 1.7) / s_se)
    # the standardized slopes have unit spread (chi^2 with 199 dof: 4-sigma band is +-0.4)
    assert abs(np.std(z) - 1) < 0.2 and abs(np.mean(z)) < 4 / np.sqrt(200)


def test_fit_loglog_slope_refuses_bad_input():
    with pytest.raises(ValueError, match="positive"):
        plotting.fit_loglog_slope([1.0, 2.0, 3.0], [1.0, -1.0, 2.0])
    with pytest.raises(ValueError, match="at least 3"):
        plotting.fit_loglog_slope([1.0, 2.0], [1.0, 2.0])


def test_collapse_panel_and_mark_point():
    fig, ax = plt.subplots()
    ell = np.arange(1, 5)
    plotting.collapse_panel(ax, {2: (ell, ell), 4: (ell, ell)}, style="--")
    assert [ln.get_label() for ln in ax.lines] == ["$n=2$", "$n=4$"]
    star = plotting.mark_point(ax, 0.0, 1.0, "critical point")
    assert star.get_zorder() > max(ln.get_zorder() for ln in ax.lines[:-1])
    plt.close(fig)


def test_two_legends_keep_both_encodings():
    fig, ax = plt.subplots()
    colors = {"$n=8$": "C0", "$n=32$": "C1"}
    styles = {"exact": dict(ls="-"), "recursion": dict(ls="--", color="k")}
    first, second = plotting.legends_by_color_and_style(ax, colors, styles, color_title="width")
    legends = [a for a in ax.get_children() if isinstance(a, matplotlib.legend.Legend)]
    assert first in legends and second in legends
    assert first.get_title().get_text() == "width"
    assert [h.get_color() for h in first.legend_handles] == ["C0", "C1"]
    assert [h.get_linestyle() for h in second.legend_handles] == ["-", "--"]
    plt.close(fig)


def test_errorbar_relative_values_and_bars():
    fig, ax = plt.subplots()
    ref = np.array([2.0, -4.0])
    z = plotting.errorbar_relative(ax, [1, 2], [2.2, -4.4], [0.1, 0.2], ref)
    np.testing.assert_allclose(z, [2.0, -2.0])
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.1, 0.1])
    seg = ax.collections[0].get_segments()  # the +-1 se bars, relative to |reference|
    np.testing.assert_allclose([s[1, 1] - s[0, 1] for s in seg], [0.1, 0.1])
    with pytest.raises(ValueError, match="equal shapes"):
        plotting.errorbar_relative(ax, [1, 2], [1.0], [0.1, 0.1], ref)
    plt.close(fig)


def test_readable_log_ticks_rejects_bad_axis():
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="axis must be 'x' or 'y'; got 'z'"):
        plotting.readable_log_ticks(ax, "z")
    plt.close(fig)
