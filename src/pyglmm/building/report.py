"""The report of :func:`pyglmm.build_bottom_up`: step records, text and self-contained HTML."""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

RULE = "=" * 78


@dataclass
class StepRecord:
    """One step of the bottom-up building.

    number, title : step number (1-6) and what it does.
    formulas : the formula(s) fitted in this step (step 4: one per tested slope; step 6: one per
        tested interaction, plus the joint model when several are kept).
    models : the fitted models by label (``"step 2"``, ``"step 2 without gender"``,
        ``"step 4 slope treatment"``, ``"step 6 + treatment:hours"``, ``"final"``, ...).
    tables : DataFrames by title: estimates, variance components, LRT/AIC comparisons.
    decision : what was decided; reasons : why (test statistics, p-values, AIC); notes : warnings
        from fits and tests (convergence, singular fits, approximations).
    model : the step's resulting model (None for step 4, which only tests).
    intercept_variance : random-intercept variance of that model.
    chosen : step 4/5: the random slopes used; step 6: the (lower, higher) interactions kept.
    extra : step-specific values (step 3: ``variance_reduction``, ``variance_step2``,
        ``variance_step3``).
    """

    number: int
    title: str
    formulas: list[str]
    models: dict
    tables: dict
    decision: str
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    model: object = None
    intercept_variance: float = float("nan")
    chosen: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"<StepRecord {self.number}: {self.title} -- {self.decision}>"


def _is_p(col: str) -> bool:
    c = col.lower()
    return c.startswith("p ") or c == "p" or c.endswith(" p") or "pr(" in c or c.startswith("p(")


def _format_table(df: pd.DataFrame) -> pd.DataFrame:
    """Strings for printing: p-values as 1.2e-05 / 0.0123, other floats to 4 significant digits."""
    out = df.copy().astype(object)
    for c in df.columns:
        col = df[c]
        if pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
            out[c] = ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in col]
            continue
        vals = col.to_numpy(float)
        if _is_p(str(c)):
            out[c] = ["" if not np.isfinite(v) else "< 2e-16" if v < 2e-16 else f"{v:.3g}" if v < 1e-3
                      else f"{v:.4f}" for v in vals]
        elif pd.api.types.is_integer_dtype(col) or str(c) in ("Df", "LRT Df", "npar"):
            out[c] = ["" if not np.isfinite(v) else f"{v:.0f}" for v in vals]
        else:
            out[c] = ["" if not np.isfinite(v) else f"{v:.4g}" if abs(v) < 1e4 else f"{v:.2f}" for v in vals]
    return out


def _table_text(df: pd.DataFrame) -> str:
    if df is None or len(df) == 0:
        return "  (none)"
    s = _format_table(df).to_string()
    return "\n".join("  " + line for line in s.splitlines())


def _fig_png_base64(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return base64.b64encode(buf.getvalue()).decode("ascii")


class BottomUpReport:
    """Result of :func:`pyglmm.build_bottom_up`.

    Attributes: ``steps`` (list of :class:`StepRecord`), ``final`` (the chosen
    :class:`~pyglmm.MixedModel`), ``final_step`` (the step it comes from), ``chosen_slopes``,
    ``chosen_interactions`` (None when the builder stopped before the step choosing them),
    ``settings``, ``notes``, ``variance_table`` (random-intercept variance per step),
    ``variance_reduction`` (step 2 -> 3 proportion of between-group variance explained).
    Methods: ``to_text()``, ``to_html(path=None)``, ``plot_variance()``; ``str(report)`` is the
    text report.
    """

    def __init__(self, *, steps, final, final_step, settings, notes, chosen_slopes=None,
                 chosen_interactions=None, n_fits=0):
        self.steps: list[StepRecord] = list(steps)
        self.final = final
        self.final_step = final_step
        self.settings = dict(settings)
        self.notes = list(notes)
        self.chosen_slopes = None if chosen_slopes is None else list(chosen_slopes)
        self.chosen_interactions = None if chosen_interactions is None else list(chosen_interactions)
        self.n_fits = n_fits

    # --- values ------------------------------------------------------------------------------
    def step(self, number: int) -> StepRecord:
        for s in self.steps:
            if s.number == number:
                return s
        raise KeyError(f"step {number} was not run (steps run: {[s.number for s in self.steps]})")

    @property
    def stopped_after(self) -> int:
        return self.steps[-1].number

    @property
    def variance_reduction(self) -> float | None:
        """Proportion of the step-2 random-intercept variance explained by the higher-level
        predictors (step 3); None when step 3 was not run."""
        for s in self.steps:
            if s.number == 3:
                return s.extra.get("variance_reduction")
        return None

    @property
    def variance_table(self) -> pd.DataFrame:
        """Random-intercept variance of each step's model, its change and proportion explained."""
        rows = []
        for s in self.steps:
            if s.model is None:
                continue
            rows.append({"step": s.number, "Var(Intercept)": s.intercept_variance,
                         "formula": s.model.formula})
        df = pd.DataFrame(rows).set_index("step")
        v = df["Var(Intercept)"].to_numpy(float)
        prev = np.r_[np.nan, v[:-1]]
        with np.errstate(invalid="ignore", divide="ignore"):
            df.insert(1, "change", v - prev)
            df.insert(2, "proportion explained", (prev - v) / prev)
        return df

    # --- text --------------------------------------------------------------------------------
    def _header_lines(self) -> list[str]:
        st = self.settings
        lines = ["Bottom-up model building (Hox 2010)",
                 f"Data: {st['data']}  ({st['nobs']} observations, {st['ngroups']} groups of {st['group']})",
                 f"Response: {st['response']}    Family: {st['family']}",
                 f"Lower-level predictors: {', '.join(st['lower']) or 'none'}",
                 f"Higher-level predictors: {', '.join(st['higher']) or 'none'}",
                 f"Criterion: {st['criterion'].upper()}"
                 + (f" (alpha = {st['alpha']:g})" if st["criterion"] == "lrt" else " (lower AIC)")]
        if st.get("force"):
            lines.append(f"Forced choices: {st['force']}")
        if st.get("stop_after"):
            lines.append(f"Stopped after step {st['stop_after']} (as requested)")
        return lines

    def to_text(self) -> str:
        out = self._header_lines()
        for n in self.notes:
            out.append(f"Note: {n}")
        for s in self.steps:
            out += ["", RULE, f"Step {s.number}: {s.title}", RULE]
            label = "Formula" if len(s.formulas) == 1 else "Formulas"
            out.append(f"{label}:")
            out += [f"  {f}" for f in s.formulas]
            if s.model is not None:
                m = s.model
                out.append(f"logLik = {m.loglik:.2f}, AIC = {m.aic:.2f}, BIC = {m.bic:.2f}, "
                           f"npar = {m.n_params}")
            for title, tab in s.tables.items():
                out += ["", f"{title}:", _table_text(tab)]
            out += ["", f"Decision: {s.decision}"]
            if s.reasons:
                out.append("Why:")
                out += [f"  - {r}" for r in s.reasons]
            if s.notes:
                out.append("Notes:")
                out += [f"  ! {n}" for n in s.notes]
        out += ["", RULE, "Random-intercept variance by step", RULE, _table_text(self.variance_table.drop(columns="formula"))]
        if any(s.number >= 5 and s.model is not None and s.chosen for s in self.steps):
            out.append("  (with random slopes, the intercept variance is that at the reference level / zero "
                       "of the slope variables, so it is not directly comparable with steps 1-3)")
        out += ["", RULE, f"Final model (step {self.final_step}): {self.final.formula}", RULE,
                str(self.final.summary())]
        return "\n".join(out) + "\n"

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        return (f"<BottomUpReport: {len(self.steps)} step(s), final model {self.final.formula!r}>")

    # --- plots -------------------------------------------------------------------------------
    def plot_variance(self):
        """Bar chart of the random-intercept variance per step, labelled with the proportion of
        the previous step's variance explained (matplotlib Figure on the Agg canvas)."""
        from ..plots._common import new_figure
        vt = self.variance_table
        fig = new_figure(6.5, 3.8)
        ax = fig.subplots()
        x = np.arange(len(vt))
        v = vt["Var(Intercept)"].to_numpy(float)
        colors = ["#4c72b0" if s <= 3 else "#8c8c8c" for s in vt.index]
        ax.bar(x, v, color=colors, width=0.6)
        ax.plot(x, v, color="#c44e52", marker="o")
        for i, (vi, pe) in enumerate(zip(v, vt["proportion explained"].to_numpy(float))):
            lab = f"{vi:.3g}" + (f"\n{100 * pe:+.1f}% expl." if np.isfinite(pe) else "")
            ax.annotate(lab, (i, vi), textcoords="offset points", xytext=(0, 4), ha="center", fontsize=8)
        ax.set_xticks(x, [f"step {s}" for s in vt.index])
        ax.set_ylabel(f"Var(Intercept | {self.settings['group']})")
        ax.set_ylim(0, max(v[np.isfinite(v)].max() * 1.3, 1e-8) if np.isfinite(v).any() else 1)
        ax.set_title("Random-intercept variance by step (grey: with random slopes)", fontsize=10)
        return fig

    # --- HTML --------------------------------------------------------------------------------
    def to_html(self, path=None) -> str:
        """Self-contained HTML report (tables, decisions, embedded PNG plots); written to ``path``
        when given. Returns the HTML text."""
        esc = html.escape
        parts = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>",
                 f"<title>Bottom-up model building: {esc(self.settings['response'])}</title>",
                 "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
                 "table{border-collapse:collapse;margin:0.5em 0;font-size:0.9em}"
                 "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
                 "code,pre{background:#f5f5f5}pre{padding:0.5em;overflow-x:auto}"
                 ".decision{background:#eef5ee;padding:0.4em;border-left:4px solid #4a4}"
                 ".notes{color:#a60}</style></head><body>",
                 "<h1>Bottom-up model building (Hox 2010)</h1>"]
        hdr = self._header_lines()[1:]
        parts.append("<ul>" + "".join(f"<li>{esc(h)}</li>" for h in hdr + [f"Note: {n}" for n in self.notes]) + "</ul>")
        for s in self.steps:
            parts.append(f"<h2>Step {s.number}: {esc(s.title)}</h2>")
            parts.append("<p>" + "<br>".join(f"<code>{esc(f)}</code>" for f in s.formulas) + "</p>")
            if s.model is not None:
                m = s.model
                parts.append(f"<p>logLik = {m.loglik:.2f}, AIC = {m.aic:.2f}, BIC = {m.bic:.2f}, "
                             f"npar = {m.n_params}</p>")
            for title, tab in s.tables.items():
                parts.append(f"<h3>{esc(title)}</h3>")
                parts.append(_format_table(tab).to_html(escape=True) if len(tab) else "<p>(none)</p>")
            parts.append(f"<p class='decision'><b>Decision:</b> {esc(s.decision)}</p>")
            if s.reasons:
                parts.append("<ul>" + "".join(f"<li>{esc(r)}</li>" for r in s.reasons) + "</ul>")
            if s.notes:
                parts.append("<ul class='notes'>" + "".join(f"<li>{esc(n)}</li>" for n in s.notes) + "</ul>")
        parts.append("<h2>Random-intercept variance by step</h2>")
        parts.append(_format_table(self.variance_table).to_html(escape=True))
        parts.append(f"<img alt='random-intercept variance by step' "
                     f"src='data:image/png;base64,{_fig_png_base64(self.plot_variance())}'>")
        parts.append(f"<h2>Final model (step {self.final_step})</h2>")
        parts.append(f"<p><code>{esc(self.final.formula)}</code></p>")
        parts.append(f"<pre>{esc(str(self.final.summary()))}</pre>")
        parts.append(f"<img alt='caterpillar plot of the final model' "
                     f"src='data:image/png;base64,{_fig_png_base64(self.final.plot_caterpillar())}'>")
        parts.append("</body></html>")
        text = "\n".join(parts) + "\n"
        if path is not None:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
        return text
