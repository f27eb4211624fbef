"""Progress reporting and verbose output."""
import io

import pyglmm
from pyglmm.fit.progress import Progress


def test_progress_silent_when_not_a_terminal():
    buf = io.StringIO()
    p = Progress(None, delay=0.0, every=0.0, stream=buf)
    p.update("stage 2", 3, 12.5)
    p.close()
    assert buf.getvalue() == ""


def test_progress_reports_when_enabled():
    buf = io.StringIO()
    p = Progress(True, delay=0.0, every=0.0, stream=buf)
    p.update("stage 2", 3, 12.5)
    p.close()
    out = buf.getvalue()
    assert "stage 2, 3 deviance evaluations, deviance 12.500000" in out and "done in" in out


def test_verbose_prints_iterations(capsys):
    pyglmm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)",
                 pyglmm.datasets.load_cbpp(), family="binomial", verbose=1)
    out = capsys.readouterr().out
    assert "stage 2 iteration: 1" in out and "f(x) = " in out


def test_lmer_reports_progress(monkeypatch):
    """lmer takes progress= as glmer does (a 1M-row crossed lmer runs for seconds)."""
    from pyglmm import models
    buf = io.StringIO()
    monkeypatch.setattr(models, "Progress",
                        lambda enabled: Progress(enabled, delay=0.0, every=0.0, stream=buf))
    pyglmm.lmer("Reaction ~ Days + (Days | Subject)", pyglmm.datasets.load_sleepstudy(),
                progress=True)
    out = buf.getvalue()
    assert "pyglmm: theta, " in out and "deviance evaluations" in out and "done in" in out
