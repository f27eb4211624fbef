"""Command line: `pyglmm fit data.csv "y ~ x + (1|g)" --family binomial`, `pyglmm demo` and
`pyglmm build data.csv --response y --group g --lower a,b --higher h` (bottom-up building)."""
from __future__ import annotations

import argparse
import sys
import time

DEMO_STEPS = [
    ("Step 1: null model with random intercepts",
     "incidents ~ 1 + (1 | rehab)"),
    ("Step 2: patient-level predictors (treatment, gender)",
     "incidents ~ treatment + gender + (1 | rehab)"),
    ("Step 3: adding the centre-level predictor hours",
     "incidents ~ treatment + gender + hours + (1 | rehab)"),
    ("Step 4: random treatment slope across centres",
     "incidents ~ treatment + gender + hours + (1 + treatment | rehab)"),
    ("Step 5: cross-level interaction treatment x hours",
     "incidents ~ treatment + gender + hours + treatment:hours + (1 + treatment | rehab)"),
]


def _read(path: str, args=None):
    import pandas as pd
    if path.endswith((".parquet", ".pq")):
        try:
            return pd.read_parquet(path)
        except ImportError as e:
            raise SystemExit(f"reading Parquet needs pyarrow: pip install pyarrow ({e})")
    from .readers import read_csv       # R's read.csv rules (NA strings, types, names)
    return read_csv(path, **_csv_options(args))


def _csv_options(args) -> dict:
    """read_csv keywords from the --na / --sep / --dec / --encoding / --text options."""
    if args is None:
        return {}
    opts = {"sep": getattr(args, "sep", None), "dec": getattr(args, "dec", None),
            "encoding": getattr(args, "encoding", None) or "utf-8"}
    na = getattr(args, "na", None)
    if na:                                  # given: replaces R's default na.strings = "NA"
        opts["na_strings"] = [s for spec in na for s in spec.split(",")]
    opts["text_columns"] = [c.strip() for spec in getattr(args, "text", None) or []
                            for c in spec.split(",") if c.strip()]
    return opts


def _add_csv_options(p) -> None:
    g = p.add_argument_group("CSV reading (R's read.csv rules)")
    g.add_argument("--na", action="append", default=None, metavar="STR[,STR...]",
                   help='strings that mean missing, replacing the default "NA" (R\'s na.strings); '
                        'repeatable or comma-separated; --na "NA," adds the empty field')
    g.add_argument("--sep", default=None, metavar="CHAR",
                   help="field separator (',', ';', tab, ...); default: sniffed from the header line")
    g.add_argument("--dec", default=None, choices=[".", ","], metavar="{.|,}",
                   help="decimal mark; default '.', or ',' per column when the separator is not ','")
    g.add_argument("--encoding", default="utf-8", help="text encoding of the file (default utf-8)")
    g.add_argument("--text", action="append", default=[], metavar="COL[,COL...]",
                   help="keep these columns as text, e.g. ids such as 007 (otherwise read as "
                        "numbers, 007 as 7, as R's read.csv does); repeatable")


def cmd_fit(args) -> int:
    from . import glmer, lmer
    data = _read(args.data, args)
    for col in [c.strip() for spec in args.factor for c in spec.split(",") if c.strip()]:
        if col not in data.columns:
            raise ValueError(f"--factor: column {col!r} not found in {args.data} "
                             f"(columns: {', '.join(map(str, data.columns))})")
        data[col] = data[col].astype("category")  # categories sorted, as R's factor()
    data.attrs["name"] = args.data
    if args.family in ("gaussian", "lmer") and args.nAGQ == 1 and not args.link:
        m = lmer(args.formula, data, REML=not args.ml, weights=args.weights, offset=args.offset)
    else:
        fam = args.family if not args.link else f"{args.family}(link='{args.link}')"
        m = glmer(args.formula, data, family=fam, nAGQ=args.nAGQ, weights=args.weights,
                  offset=args.offset, verbose=args.verbose)
    print(m.summary())
    if args.plots:
        write_plots(m, args.plots)
    return 0


def write_plots(m, directory: str, seed: int = 1) -> list[str]:
    """caterpillar.png, qq.png and residuals.png in ``directory`` (created if missing)."""
    import os
    from . import plots
    os.makedirs(directory, exist_ok=True)
    figs = {"caterpillar.png": lambda: plots.caterpillar(m), "qq.png": lambda: plots.qq_ranef(m),
            "residuals.png": lambda: plots.residuals(m, seed=seed)}
    out = []
    for name, make in figs.items():
        path = os.path.join(directory, name)
        make().savefig(path, dpi=110)
        out.append(path)
    print(f"pyglmm: wrote {', '.join(out)}", file=sys.stderr)
    return out


def cmd_demo(args) -> int:
    from . import datasets, glmer
    rehab = datasets.load_rehab()
    rehab.attrs["name"] = "rehab"
    prev = None
    for title, f in DEMO_STEPS:
        print("=" * 78)
        print(title)
        print("=" * 78)
        t0 = time.perf_counter()
        m = glmer(f, rehab, family="poisson")
        dt = time.perf_counter() - t0
        print(m.summary())
        line = f"(fitted in {dt:.2f} s)"
        if prev is not None:
            from scipy import stats
            chisq = max(0.0, 2 * (m.loglik - prev.loglik))
            df = m.n_params - prev.n_params
            line += (f"   LRT against previous step: Chisq = {chisq:.2f}, Df = {df}, "
                     f"p = {stats.chi2.sf(chisq, df):.3g}")
            if len(m.theta) > len(prev.theta) and list(m.fixef.index) == list(prev.fixef.index):
                from .inference import mixture_pvalue
                line += (f" (variance on its boundary: 50:50 chi-square mixture p = "
                         f"{mixture_pvalue(chisq, df):.3g})")
        print(line + "\n")
        prev = m
    return 0


def _list_arg(text: str | None) -> list[str] | None:
    """Comma-separated names; "none" (or an empty string) is the empty list."""
    if text is None:
        return None
    return [] if text.strip().lower() in ("", "none") else [t.strip() for t in text.split(",") if t.strip()]


def cmd_build(args) -> int:
    from .building import build_bottom_up
    data = _read(args.data, args)
    for col in [c.strip() for spec in args.factor for c in spec.split(",") if c.strip()]:
        if col not in data.columns:
            raise ValueError(f"--factor: column {col!r} not found in {args.data}")
        data[col] = data[col].astype("category")
    data.attrs["name"] = args.data
    force = {}
    if args.force_slopes is not None:
        force["slopes"] = _list_arg(args.force_slopes)
    if args.force_interactions is not None:
        force["interactions"] = _list_arg(args.force_interactions)
    rep = build_bottom_up(data, response=args.response, group=args.group, lower=_list_arg(args.lower) or [],
                          higher=_list_arg(args.higher) or [], family=args.family, alpha=args.alpha,
                          stop_after=args.stop_after, force=force or None, criterion=args.criterion)
    print(rep.to_text())
    if args.html:
        rep.to_html(args.html)
        print(f"pyglmm: wrote {args.html}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pyglmm", description="Generalized linear mixed models (lme4 syntax)")
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit", help="fit a model to a CSV or Parquet file and print its summary")
    f.add_argument("data")
    f.add_argument("formula")
    f.add_argument("--family", default="gaussian",
                   help="poisson, binomial, gaussian, Gamma, inverse.gaussian, nbinom2")
    f.add_argument("--link", default=None)
    f.add_argument("--nAGQ", type=int, default=1)
    f.add_argument("--ml", action="store_true", help="gaussian: fit by ML instead of REML")
    f.add_argument("--weights", default=None, help="column of prior weights")
    f.add_argument("--offset", default=None, help="column to use as offset")
    f.add_argument("--factor", action="append", default=[], metavar="COL[,COL...]",
                   help="treat these columns as factors (CSV files store factors such as "
                        "cbpp's period as plain numbers); repeatable")
    _add_csv_options(f)
    f.add_argument("--verbose", type=int, default=0)
    f.add_argument("--plots", default=None, metavar="DIR",
                   help="also write caterpillar.png, qq.png and residuals.png (simulated quantile "
                        "residuals, seed 1) to DIR")
    f.set_defaults(func=cmd_fit)
    d = sub.add_parser("demo", help="fit the bottom-up teaching sequence on the rehab data")
    d.set_defaults(func=cmd_demo)
    b = sub.add_parser("build", help="bottom-up model building (Hox 2010): null model, lower- and "
                       "higher-level predictors, random slopes, cross-level interactions")
    b.add_argument("data")
    b.add_argument("--response", required=True)
    b.add_argument("--group", required=True, help="grouping factor")
    b.add_argument("--lower", default="", help="lower-level predictors, comma-separated")
    b.add_argument("--higher", default="", help="higher-level predictors, comma-separated")
    b.add_argument("--family", default="gaussian",
                   help="poisson, binomial, gaussian (fitted by ML), Gamma, nbinom2, ...")
    b.add_argument("--alpha", type=float, default=0.05)
    b.add_argument("--criterion", choices=["lrt", "aic"], default="lrt")
    b.add_argument("--stop-after", type=int, default=None, choices=range(1, 7), metavar="STEP",
                   help="stop after this step (1-6)")
    b.add_argument("--force-slopes", default=None, metavar="X[,X...]|none",
                   help="use exactly these random slopes (overrides step 4's choice)")
    b.add_argument("--force-interactions", default=None, metavar="X:H[,X:H...]|none",
                   help="keep exactly these cross-level interactions (overrides step 6's choice)")
    b.add_argument("--factor", action="append", default=[], metavar="COL[,COL...]",
                   help="treat these columns as factors; repeatable")
    _add_csv_options(b)
    b.add_argument("--html", default=None, metavar="FILE",
                   help="also write a self-contained HTML report with plots")
    b.set_defaults(func=cmd_build)
    args = p.parse_args(argv)
    from .design import DataError
    from .formula import FormulaError
    try:
        return args.func(args)
    except (FormulaError, DataError, ValueError, FileNotFoundError, NotImplementedError) as e:
        print(f"pyglmm: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
