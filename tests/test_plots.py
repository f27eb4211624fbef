"""pyglmm.plots: figures render headless (Agg, no pyplot) and show what they claim."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import pyglmm
from pyglmm import cli, plots

matplotlib = pytest.importorskip("matplotlib")

CBPP_FORMULA = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def cbpp_model():
    return pyglmm.glmer(CBPP_FORMULA, pyglmm.datasets.load_cbpp(), family="binomial")


@pytest.fixture(scope="module")
def sleep_model():
    return pyglmm.lmer("Reaction ~ Days + (Days | Subject)", pyglmm.datasets.load_sleepstudy())


def _is_png(path):
    with open(path, "rb") as fh:
        head = fh.read(8)
    return head == PNG_MAGIC and os.path.getsize(path) > 2000


def _highlighted(ax):
    """Level labels of the points drawn as unusual in one caterpillar panel."""
    labels = [t.get_text() for t in ax.get_yticklabels()]
    out = set()
    for coll in ax.collections:
        if coll.get_gid() == plots._ranef.UNUSUAL_GID:
            out |= {labels[int(round(y))] for y in coll.get_offsets()[:, 1]}
    return out


def test_plots_render_to_png(cbpp_model, tmp_path):
    figs = {"cat": plots.caterpillar(cbpp_model), "qq": plots.qq_ranef(cbpp_model),
            "res": plots.residuals(cbpp_model, nsim=50, seed=1)}
    for name, fig in figs.items():
        assert isinstance(fig, matplotlib.figure.Figure)
        path = tmp_path / f"{name}.png"
        fig.savefig(path)
        assert _is_png(path), name


def test_caterpillar_highlights_intervals_excluding_zero(sleep_model):
    fig = sleep_model.plot_caterpillar(level=0.95)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["Subject: (Intercept)", "Subject: Days"]
    tab = sleep_model.ranef_table(level=0.95)
    for ax, term in zip(axes, ["(Intercept)", "Days"]):
        d = tab[tab["term"] == term]
        expected = set(d.loc[(d["lower"] > 0) | (d["upper"] < 0), "level"])
        assert expected and len(expected) < len(d)          # a real mix of highlighted and not
        assert _highlighted(ax) == expected
        # levels are ordered by estimate (bottom to top)
        labels = [t.get_text() for t in ax.get_yticklabels()]
        assert labels == d.sort_values("estimate")["level"].tolist()
    # a wider level highlights fewer groups
    narrow = sleep_model.plot_caterpillar(term="Days", level=0.999)
    ax = [a for a in narrow.axes if a.get_visible()]
    assert len(ax) == 1 and _highlighted(ax[0]) < _highlighted(axes[1])


def test_caterpillar_cbpp_matches_table(cbpp_model):
    fig = cbpp_model.plot_caterpillar(group="herd")
    tab = cbpp_model.ranef_table()
    expected = set(tab.loc[(tab["lower"] > 0) | (tab["upper"] < 0), "level"])
    assert _highlighted(fig.axes[0]) == expected == {"7", "14"}


def test_caterpillar_bad_selection(cbpp_model):
    with pytest.raises(KeyError, match="grouping factor"):
        plots.caterpillar(cbpp_model, group="nope")
    with pytest.raises(KeyError, match="term"):
        plots.caterpillar(cbpp_model, term="x")


def test_qq_ranef_panels_and_reference_line(sleep_model):
    fig = sleep_model.plot_qq()
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 2
    for ax in axes:
        assert len(ax.collections[0].get_offsets()) == 18
        assert len(ax.lines) == 1                              # the qqline
        y = ax.collections[0].get_offsets()[:, 1]
        assert np.all(np.diff(y) >= 0)


def test_residual_plot_accepts_precomputed_residuals(cbpp_model):
    from pyglmm.diagnostics import quantile_residuals
    qr = quantile_residuals(cbpp_model, nsim=40, seed=2)
    fig = plots.residuals(qr)
    ax = fig.axes[0]
    np.testing.assert_allclose(np.sort(ax.collections[0].get_offsets()[:, 1]), np.sort(qr.residuals))
    assert "KS p" in ax.texts[0].get_text()


def test_cli_writes_plots(cbpp_model, tmp_path, capsys):
    csv = tmp_path / "cbpp.csv"
    pyglmm.datasets.load_cbpp().to_csv(csv, index=False)
    out_dir = tmp_path / "figs"
    rc = cli.main(["fit", str(csv), CBPP_FORMULA, "--family", "binomial", "--factor", "period",
                   "--plots", str(out_dir)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "Generalized linear mixed model" in out or "Laplace" in out
    for name in ("caterpillar.png", "qq.png", "residuals.png"):
        assert _is_png(out_dir / name), name
    assert "wrote" in err


def test_headless_subprocess_without_pyplot(tmp_path):
    """Plots render with MPLBACKEND=Agg and no DISPLAY; import pyglmm stays matplotlib-free."""
    code = textwrap.dedent(f"""
        import sys, pyglmm
        assert "matplotlib" not in sys.modules
        m = pyglmm.glmer({CBPP_FORMULA!r}, pyglmm.datasets.load_cbpp(), family="binomial")
        m.plot_caterpillar().savefig({str(tmp_path / 'c.png')!r})
        assert "matplotlib.pyplot" not in sys.modules
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["MPLBACKEND"] = "Agg"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert _is_png(tmp_path / "c.png")
