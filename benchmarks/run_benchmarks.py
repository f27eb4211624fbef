"""Benchmark pyglmm against lme4, glmmTMB and the `glmm` PyPI package on the same data, same run.

    python benchmarks/run_benchmarks.py                  # lme4's data sets, every available tool
    python benchmarks/run_benchmarks.py --large          # the simulated large cases (reps = 1)
    python benchmarks/run_benchmarks.py --all            # both
    python benchmarks/run_benchmarks.py --smoke          # cbpp only, one rep, pyglmm only (CI)
    python benchmarks/run_benchmarks.py --tools pyglmm,lme4 --reps 5 --timeout 300 --csv out.csv

Every (tool, case) runs in its own fresh process (a Python child for pyglmm and glmm, Rscript
for lme4 and glmmTMB) that loads the data, fits it `reps` times and reports:

* seconds: the median wall-clock time of the fits (data loading and imports are not timed);
* peak MB: the peak resident set size of that process during the fits: after the data are
  loaded, the kernel's high-water mark is reset (`echo 5 > /proc/self/clear_refs`) and read
  back after the fits as `VmHWM` from /proc/self/status -- the counter that
  `getrusage(RUSAGE_SELF).ru_maxrss` reports -- in Python and in R alike. It includes the
  interpreter, the libraries and the data (without the reset, a transient peak from loading
  the data could hide the fit's);
* fit MB: that peak minus the RSS just before the first fit, i.e. what the fit itself added
  on top of the loaded interpreter and data;
* logLik of the last fit.

All tools read the same rows: the case's data frame is written once to a pickle (Python
children) and a CSV (R children; factor columns get the same level order via `factor(...,
levels=)`). lme4 runs with its defaults (`lmer(f, d)` / `glmer(f, d, family = ...)`), glmmTMB
with `glmmTMB(f, d, family = ...)` (`REML = TRUE` for the Gaussian cases, to match lmer),
`glmm` with `glmm.fit(d, f, family=..., nagq=1, anova_test="Wald", satterthwaite=False)`, i.e.
without the post-fit likelihood-ratio / Satterthwaite passes that lme4 does not do either.
A tool that exceeds `--timeout` seconds on a case is killed and reported as "timeout".
Nothing here asserts on time.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))

# (case id, data source, formula, family or None for lmer)
# data source: dataset name (pyglmm.datasets) or ("sim", simulate function, kwargs)
CASES = [
    ("cbpp binomial", "cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial"),
    ("sleepstudy lmer REML", "sleepstudy", "Reaction ~ Days + (Days | Subject)", None),
    ("penicillin lmer crossed", "penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", None),
    ("pastes lmer nested", "pastes", "strength ~ 1 + (1 | batch/cask)", None),
    ("epil poisson", "epil", "y ~ lbase*trt + lage + V4 + (1 | subject)", "poisson"),
    ("grouseticks poisson 3 terms", "grouseticks",
     "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)", "poisson"),
    ("rehab poisson slope", "rehab",
     "incidents ~ treatment + gender + hours + (1 + treatment | rehab)", "poisson"),
    ("VerbAgg binomial crossed", "verbagg", "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
     "binomial"),
]
LARGE_CASES = [
    ("sim poisson (1|g)", ("sim", "poisson_intercept", {"n": 100_000, "groups": 2_000}),
     "y ~ x + (1 | g)", "poisson"),
    ("sim poisson (1+x|g)", ("sim", "poisson_slopes", {}), "y ~ x + (1 + x | g)", "poisson"),
    ("sim binomial crossed", ("sim", "binomial_crossed", {}), "y ~ x + (1 | g) + (1 | h)", "binomial"),
    ("sim poisson (1|g) 1M", ("sim", "poisson_intercept", {}), "y ~ x + (1 | g)", "poisson"),
]
# growth in the number of levels of the second factor (dense vs block-diagonal Schur complement)
SCALE_CASES = [
    ("sim poisson nested (1|a/b) 1M", ("sim", "poisson_nested", {}), "y ~ x + (1 | a/b)", "poisson"),
    ("sim binomial crossed 1M", ("sim", "binomial_crossed", {"n": 1_000_000, "g1": 100_000, "g2": 500}),
     "y ~ x + (1 | g) + (1 | h)", "binomial"),
    ("sim lmer (1+x|g) 1M", ("sim", "gaussian_slopes", {}), "y ~ x + (1 + x | g)", None),
]
SMOKE = ["cbpp binomial"]
TOOLS = ["pyglmm", "lme4", "glmmTMB", "glmm"]
R_TOOLS = {"lme4", "glmmTMB"}


# --------------------------------------------------------------------------- data

def load_case_data(source) -> pd.DataFrame:
    if isinstance(source, str):
        from pyglmm import datasets
        return datasets.load_dataset(source)
    _, fn, kwargs = source
    sys.path.insert(0, HERE)
    import simulate
    return getattr(simulate, fn)(**kwargs)


def n_groups(df: pd.DataFrame, formula: str) -> str:
    """Levels of each grouping factor named after a '|' in the formula, e.g. '2000x100'."""
    out = []
    for bar in re.findall(r"\|\s*([^)]+)\)", formula):
        names = [g.strip() for g in re.split(r"[/:]", bar) if g.strip() in df.columns]
        if "/" in bar:       # a/b: levels of a, a:b, ...
            for k in range(1, len(names) + 1):
                out.append(str(len(df[names[:k]].drop_duplicates())))
        else:
            out.extend(str(df[g].nunique()) for g in names)
    return "x".join(out)


def write_r_csv(df: pd.DataFrame, path: str) -> str:
    """Write df as CSV (floats round-trip exactly) and return R code that reads it back."""
    df.to_csv(path, index=False)
    lines = [f'd <- read.csv("{path}", stringsAsFactors = FALSE)']
    for c in df.columns:
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            levs = ", ".join(json.dumps(str(v)) for v in df[c].cat.categories)
            lines.append(f'd[["{c}"]] <- factor(as.character(d[["{c}"]]), levels = c({levs}))')
    return "\n".join(lines)


# --------------------------------------------------------------------------- Python child

def _status_mb(key: str) -> float:
    with open("/proc/self/status") as fh:
        for ln in fh:
            if ln.startswith(key + ":"):
                return int(ln.split()[1]) / 1024.0  # kB
    raise KeyError(key)


def _reset_peak() -> float:
    """Reset the kernel's peak-RSS counter (VmHWM, which ru_maxrss also reads) to the current
    RSS, so that the peak read after the fit is the fit's own, not one left by loading the data.
    Returns the current RSS in MB. Falls back to ru_maxrss where /proc is unavailable."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return _status_mb("VmRSS")
    except OSError:
        return _peak_mb()


def _peak_mb() -> float:
    try:
        return _status_mb("VmHWM")
    except (OSError, KeyError):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _glmm_prepare(df: pd.DataFrame, formula: str):
    """glmm's cbind() takes two column names and its response must be numeric: rewrite
    `cbind(a, b - a)` with a derived column and code a two-level factor response as R does
    (first level = 0). Same model, same rows."""
    notes = []
    m = re.match(r"\s*cbind\(\s*(\w+)\s*,\s*(\w+)\s*-\s*(\w+)\s*\)\s*~(.*)", formula)
    if m:
        df = df.copy()
        df["_failures"] = df[m.group(2)] - df[m.group(3)]
        formula = f"cbind({m.group(1)}, _failures) ~{m.group(4)}"
        notes.append("cbind(a, n - a) rewritten with a derived column")
    resp = formula.split("~")[0].strip()
    if resp in df.columns and isinstance(df[resp].dtype, pd.CategoricalDtype):
        df = df.copy()
        df[resp] = (df[resp].cat.codes > 0).astype(np.int64)
        notes.append("factor response coded 0/1")
    return {c: df[c] for c in df.columns}, formula, notes


def child_python(tool: str, data_path: str, formula: str, family: str, reps: int) -> dict:
    import warnings
    if tool == "pyglmm":
        import pyglmm

        def fit(d, f):
            return pyglmm.lmer(f, d) if family == "gaussian" else pyglmm.glmer(f, d, family=family)
    else:
        import glmm

        def fit(d, f):
            return glmm.fit(d, f, family=family, nagq=1, anova_test="Wald", satterthwaite=False)
    with open(data_path, "rb") as fh:
        df = pickle.load(fh)
    notes = []
    data = df
    if tool == "glmm":
        data, formula, notes = _glmm_prepare(df, formula)
    base = _reset_peak()
    times, m, warns = [], None, []
    for _ in range(reps):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            m = fit(data, formula)
            times.append(time.perf_counter() - t0)
        warns = [str(x.message).splitlines()[0] for x in w]
    peak = _peak_mb()
    if tool == "glmm":
        warns += [str(x).splitlines()[0] for x in (m.warnings or [])]
        if not m.converged:
            warns.append("not converged")
    return {"seconds": float(np.median(times)), "loglik": float(m.loglik), "peak_mb": peak,
            "fit_mb": peak - base, "note": "; ".join(notes + sorted(set(warns)))}


# --------------------------------------------------------------------------- R child

R_TEMPLATE = r"""suppressMessages(library({pkg}))
st <- function(k) {{ s <- readLines("/proc/self/status"); as.numeric(gsub("[^0-9]", "", grep(paste0("^", k, ":"), s, value = TRUE))) / 1024 }}
invisible(gc())
try(writeLines("5", "/proc/self/clear_refs"), silent = TRUE)  # reset VmHWM to the current RSS
{read}
notes <- character(0)
base <- st("VmRSS")
ts <- numeric(0)
for (i in seq_len({reps})) {{
  notes <- character(0)
  t0 <- proc.time()[["elapsed"]]
  m <- withCallingHandlers({call},
    warning = function(w) {{ notes <<- c(notes, conditionMessage(w)); invokeRestart("muffleWarning") }},
    message = function(w) {{ notes <<- c(notes, conditionMessage(w)); invokeRestart("muffleMessage") }})
  ts <- c(ts, proc.time()[["elapsed"]] - t0)
}}
peak <- st("VmHWM")
notes <- unique(trimws(gsub("\\s+", " ", notes)))
cat("RESULT", median(ts), format(as.numeric(logLik(m)), digits = 15), peak, peak - base, "\n")
cat("NOTES", paste(notes, collapse = "; "), "\n")
"""


def r_script(tool: str, read: str, formula: str, family: str, reps: int) -> str:
    if tool == "lme4":
        call = f"lmer({formula}, d)" if family == "gaussian" else f"glmer({formula}, d, family = {family})"
    else:
        fam = "gaussian, REML = TRUE" if family == "gaussian" else family
        call = f"glmmTMB({formula}, d, family = {fam})"
    return R_TEMPLATE.format(pkg=tool, read=read, call=call, reps=reps)


# --------------------------------------------------------------------------- runner

def run_child(cmd: list[str], timeout: float) -> tuple[str, str, str]:
    """Run cmd in its own process group; on timeout kill that group. Returns (status, out, err)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        return "timeout", "", ""
    return ("ok" if p.returncode == 0 else "error"), out, err


def run_tool(tool, tmp, df, formula, family, reps, timeout) -> dict:
    fam = family or "gaussian"
    if tool in R_TOOLS:
        csv = os.path.join(tmp, "d.csv")
        if not os.path.exists(csv):
            with open(os.path.join(tmp, "read.R"), "w") as fh:
                fh.write(write_r_csv(df, csv))
        with open(os.path.join(tmp, "read.R")) as fh:
            read = fh.read()
        rf = os.path.join(tmp, f"{tool}.R")
        with open(rf, "w") as fh:
            fh.write(r_script(tool, read, formula, fam, reps))
        status, out, err = run_child(["Rscript", rf], timeout)
        if status == "ok":
            res = out.split("RESULT", 1)[1].split("\n")[0].split()
            note = out.split("NOTES", 1)[1].strip() if "NOTES" in out else ""
            return {"seconds": float(res[0]), "loglik": float(res[1]), "peak_mb": float(res[2]),
                    "fit_mb": float(res[3]), "note": note}
    else:
        pkl = os.path.join(tmp, "d.pkl")
        if not os.path.exists(pkl):
            with open(pkl, "wb") as fh:
                pickle.dump(df, fh)
        cmd = [sys.executable, os.path.abspath(__file__), "--_child", tool, pkl, formula, fam, str(reps)]
        status, out, err = run_child(cmd, timeout)
        if status == "ok":
            return json.loads(out.strip().splitlines()[-1])
    if status == "timeout":
        return {"note": f"timeout (> {timeout:g} s)", "status": "timeout"}
    msg = [ln for ln in err.strip().splitlines() if ln.strip()]
    return {"note": "error: " + (msg[-1] if msg else "exit status != 0"), "status": "error"}


def available_tools(wanted: list[str]) -> tuple[list[str], dict]:
    """Which of the wanted tools are installed, and their versions."""
    have, versions = [], {}
    if "pyglmm" in wanted:
        have.append("pyglmm")
    if "glmm" in wanted:
        try:
            import importlib.metadata as md
            versions["glmm"] = md.version("glmm")
            have.append("glmm")
        except Exception:
            print("glmm (PyPI) not installed: skipped", file=sys.stderr)
    r_wanted = [t for t in wanted if t in R_TOOLS]
    if r_wanted:
        if shutil.which("Rscript") is None:
            print("Rscript not found: R tools skipped", file=sys.stderr)
        else:
            code = ('cat("R", paste(R.version$major, R.version$minor, sep = "."), "\\n");'
                    + "".join(f'if (requireNamespace("{t}", quietly = TRUE)) cat("{t}", '
                              f'as.character(packageVersion("{t}")), "\\n");' for t in r_wanted))
            out = subprocess.run(["Rscript", "-e", code], capture_output=True, text=True).stdout
            for ln in out.splitlines():
                k, v = ln.split()[:2]
                versions[k] = v
            for t in r_wanted:
                if t in versions:
                    have.append(t)
                else:
                    print(f"R package {t} not installed: skipped", file=sys.stderr)
    return [t for t in wanted if t in have], versions


def machine_line(versions: dict) -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            for ln in fh:
                if ln.startswith("model name"):
                    cpu = ln.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    ram = ""
    try:
        with open("/proc/meminfo") as fh:
            kb = int(fh.readline().split()[1])
        ram = f", {kb / 1024 ** 2:.0f} GB RAM"
    except (OSError, ValueError, IndexError):
        pass
    import scipy
    import pyglmm
    parts = [f"{cpu}, {os.cpu_count()} cores{ram}, {platform.system()} {platform.machine()}",
             f"Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
             f"pyglmm {pyglmm.__version__}"]
    extra = [f"{k} {v}" for k, v in versions.items()]
    if extra:
        parts.append(", ".join(extra))
    return "; ".join(parts)


def fmt_table(tab: pd.DataFrame) -> str:
    def num(v, spec):
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)
    shown = pd.DataFrame({
        "case": tab["case"], "rows": tab["rows"], "groups": tab["groups"], "tool": tab["tool"],
        "seconds": [num(v, ".3g") if s == "ok" else s for v, s in zip(tab["seconds"], tab["status"])],
        "ratio": [num(v, ".2f") for v in tab["ratio"]],
        "peak MB": [num(v, ".0f") for v in tab["peak_mb"]],
        "fit MB": [num(v, ".0f") for v in tab["fit_mb"]],
        "logLik": [num(v, ".3f") for v in tab["loglik"]],
    })
    return shown.to_string(index=False)


def fmt_markdown(tab: pd.DataFrame) -> str:
    def num(v, spec):
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)
    lines = ["| case | rows | groups | tool | seconds | ratio | peak MB | fit MB | logLik |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in tab.to_dict("records"):
        sec = num(r["seconds"], ".3g") if r["status"] == "ok" else r["status"]
        case = r["case"].replace("|", "\\|")
        lines.append(f"| {case} | {r['rows']:,} | {r['groups']} | {r['tool']} | {sec} | "
                     f"{num(r['ratio'], '.2f')} | {num(r['peak_mb'], '.0f')} | {num(r['fit_mb'], '.0f')} | "
                     f"{num(r['loglik'], '.3f')} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="cbpp only, one rep, pyglmm only (CI)")
    ap.add_argument("--large", action="store_true", help="run the simulated large cases instead")
    ap.add_argument("--all", action="store_true", help="run lme4's data sets and the large cases")
    ap.add_argument("--scale", action="store_true",
                    help="run the 1,000,000-row nested and crossed cases (lme4 takes many minutes)")
    ap.add_argument("--only", help="run only the cases whose name contains this text")
    ap.add_argument("--tools", default=",".join(TOOLS), help="comma-separated subset of " + ",".join(TOOLS))
    ap.add_argument("--no-r", action="store_true", help="exclude the R tools (lme4, glmmTMB)")
    ap.add_argument("--reps", type=int, default=None, help="fits per tool and case (default 3; 1 for large)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per tool and case (default 600)")
    ap.add_argument("--csv", help="also write the results to this CSV file")
    ap.add_argument("--markdown", help="also write the results as a Markdown table to this file")
    ap.add_argument("--_child", nargs=5, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    if a._child:
        tool, path, formula, family, reps = a._child
        print(json.dumps(child_python(tool, path, formula, family, int(reps))))
        return None

    wanted = [t.strip() for t in a.tools.split(",") if t.strip()]
    unknown = set(wanted) - set(TOOLS)
    if unknown:
        ap.error(f"unknown tool(s) {sorted(unknown)}; choose from {TOOLS}")
    if a.smoke:
        wanted = ["pyglmm"]
    if a.no_r:
        wanted = [t for t in wanted if t not in R_TOOLS]
    if "pyglmm" not in wanted:
        wanted.insert(0, "pyglmm")  # the ratio column is relative to pyglmm
    tools, versions = available_tools(wanted)

    if a.smoke:
        cases = [(c, True) for c in CASES if c[0] in SMOKE]
    elif a.all:
        cases = [(c, False) for c in CASES] + [(c, True) for c in LARGE_CASES]
    elif a.large:
        cases = [(c, True) for c in LARGE_CASES]
    elif a.scale:
        cases = [(c, True) for c in SCALE_CASES]
    else:
        cases = [(c, False) for c in CASES]
    if a.only:
        cases = [c for c in cases if a.only in c[0][0]]
        if not cases:
            ap.error(f"no case of this selection contains {a.only!r}")

    machine = machine_line(versions)
    print("machine: " + machine)
    rows = []
    for (cid, source, formula, family), large in cases:
        df = load_case_data(source)
        reps = 1 if a.smoke else (a.reps if a.reps is not None else (1 if large else 3))
        groups = n_groups(df, formula)
        with tempfile.TemporaryDirectory() as tmp:
            t_py = None
            for tool in tools:
                t0 = time.perf_counter()
                r = run_tool(tool, tmp, df, formula, family, reps, a.timeout)
                status = r.pop("status", "ok")
                sec = r.get("seconds")
                if tool == "pyglmm" and status == "ok":
                    t_py = sec
                rows.append({"case": cid, "rows": len(df), "groups": groups, "tool": tool, "reps": reps,
                             "status": status, "seconds": sec,
                             "ratio": (sec / t_py) if (sec is not None and t_py) else None,
                             "peak_mb": r.get("peak_mb"), "fit_mb": r.get("fit_mb"),
                             "loglik": r.get("loglik"), "note": r.get("note", "")})
                print(f"done: {cid} / {tool} ({status}, {time.perf_counter() - t0:.1f} s wall incl. startup)",
                      file=sys.stderr)
    tab = pd.DataFrame(rows)
    print(fmt_table(tab))
    print("seconds: median wall-clock of the fits in a fresh process; ratio: tool seconds / pyglmm "
          "seconds; peak MB: peak RSS of that process during the fits (VmHWM, reset after loading the "
          "data); fit MB: peak minus the RSS before the first fit.")
    if any(t in R_TOOLS for t in tools):
        print("lme4 runs with its defaults (lmer(f, d) / glmer(f, d, family = ...)); glmmTMB with "
              "glmmTMB(f, d, family = ...), REML = TRUE for lmer cases.")
    if "glmm" in tools:
        print("glmm: glmm.fit(d, f, family=..., nagq=1, anova_test='Wald', satterthwaite=False).")
    notes = tab[tab["note"].astype(bool)]
    for r in notes.to_dict("records"):
        print(f"note [{r['case']} / {r['tool']}]: {r['note'][:300]}")
    for cid, g in tab.groupby("case", sort=False):
        ref = g.loc[g["tool"] == "pyglmm", "loglik"]
        if len(ref) and ref.notna().all():
            for r in g[g["tool"] != "pyglmm"].to_dict("records"):
                if r["loglik"] is not None and not math.isnan(r["loglik"]) \
                        and abs(r["loglik"] - ref.iloc[0]) > 0.01:
                    print(f"logLik differs [{cid}]: {r['tool']} {r['loglik']:.4f} vs pyglmm "
                          f"{ref.iloc[0]:.4f} (diff {r['loglik'] - ref.iloc[0]:+.4f})")
    if a.csv:
        tab.assign(machine=machine).to_csv(a.csv, index=False)
    if a.markdown:
        with open(a.markdown, "w") as fh:
            fh.write(fmt_markdown(tab) + "\n\nMachine: " + machine + "\n")
    return tab


if __name__ == "__main__":
    main()
