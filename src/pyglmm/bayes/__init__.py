"""Bayesian GLMMs by MCMC from lme4 formulas: :func:`bglmer` (optional extra ``pyglmm[bayes]``).

``bglmer`` uses the same design code as the ML fit (``pyglmm.design.model_frame`` and
``pyglmm.models._structure``), so formulas, factor coding, weights, offsets, cbind() responses
and random-effects terms mean exactly what they mean in ``glmer``.

Model (non-centred)
    eta = offset + X beta + sum_k Z_k b_k, with, for term k and level l,
    b_k[l] = (L_k z_k[l]) * sd_k (elementwise), z_k[l] ~ N(0, I), L_k the Cholesky factor of
    the correlation matrix R_k (LKJ prior), sd_k the random-effect standard deviations, so that
    b_k[l] ~ N(0, diag(sd_k) R_k diag(sd_k)): sd_k and R_k are the sds and correlations of the
    effects themselves, as in lme4's VarCorr. Fixed effects
    are sampled with the predictors centred at their means (the intercept is then the mean
    linear predictor, nearly uncorrelated with the slopes); ``(Intercept)`` is reported on the
    usual uncentred scale. Default priors: see :mod:`pyglmm.bayes.priors`.

Sampler choice
    NumPyro's NUTS (JAX). Measured on a shared 2-core CPU box (timings are noisy, +-30%),
    4 chains x (1000 warmup + 1000 draws), wall time including compilation:

    ======================  ==============  ==============  ==================================
    sampler                 extra wheels    installed       speed
    ======================  ==============  ==============  ==================================
    NumPyro 0.22 + ArviZ    98 MB           ~420 MB (jaxlib  rehab (1+treatment|rehab): 37-70 s
                                            349 MB)          rehab (1|rehab): see README
                                                             VerbAgg (1|id)+(1|item): ~180 s
    PyMC 5.28 (bambi 0.17)  73-75 MB        ~260 MB + a C    rehab (1|rehab) via bambi: 36 s
                                            compiler/numba   (19 s sampling)
    BlackJAX                94 MB           ~ NumPyro        not run: NUTS kernel only (warmup
                                                             loop, chains, diagnostics by hand)
    nutpie                  91 MB           needs PyMC or    not run: samples PyMC/Stan models
                                            Stan models      only
    ======================  ==============  ==============  ==================================

    NumPyro was chosen although PyMC is lighter and similar in speed: the model is plain JAX
    (the family log densities in :mod:`pyglmm.bayes.jaxfam` are ~100 lines and tested against
    the numpy families), no C compiler or numba/llvmlite toolchain is needed at run time, and a
    mature NUTS with Stan-style windowed adaptation, several chains, divergence reporting and a
    progress bar comes in one call. bambi (on PyMC) failed to import with the newest
    matplotlib (3.11: arviz_plots uses ``matplotlib.style.core``) until matplotlib was pinned
    below 3.11 in its venv. ArviZ computes R-hat and bulk/tail ESS and holds the draws
    (``.idata``).

Without the extra (``pip install 'pyglmm[bayes]'``: numpyro, jax, jaxlib, arviz), calling
``bglmer`` raises ImportError naming the extra; importing :mod:`pyglmm.bayes` itself is cheap.
"""
from __future__ import annotations

import importlib

import numpy as np

from ..arguments import arg_bool, arg_choice, arg_formula, arg_int, arg_level
from ..errors import ArgumentError, ArgumentTypeError
from ..guard import public_entry
from .precision import X64, x64_scope

EXTRA_HINT = "pip install 'pyglmm[bayes]'"
__all__ = ["bglmer", "EXTRA_HINT"]


def _check_args(formula, priors, draws, tune, chains, seed, progress, target_accept,
                max_tree_depth, chain_method) -> None:
    """bglmer's arguments, each error naming the argument (before numpyro is imported)."""
    fn = "bglmer"
    arg_formula(formula, fn)
    if priors is not None and not isinstance(priors, dict):
        raise ArgumentTypeError(f"{fn}(): priors must be None or a dict such as "
                                f"{{'fixef': {{'x': ('normal', 0, 1)}}}}, not {type(priors).__name__}")
    arg_int("draws", draws, fn, lo=1)
    arg_int("tune", tune, fn, lo=0)
    arg_int("chains", chains, fn, lo=1)
    if seed is not None:
        arg_int("seed", seed, fn, lo=0)
    arg_bool("progress", progress, fn)
    arg_level("target_accept", target_accept, fn)
    arg_int("max_tree_depth", max_tree_depth, fn, lo=1, hi=30)
    arg_choice("chain_method", chain_method, ("sequential", "vectorized", "parallel"), fn,
               allow_none=True)


def _require() -> None:
    """Import the optional dependencies, or raise ImportError naming the extra."""
    missing = []
    for mod in ("jax", "numpyro", "arviz"):
        try:
            importlib.import_module(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise ImportError(f"pyglmm.bayes.bglmer needs the optional extra pyglmm[bayes] "
                          f"(missing: {', '.join(missing)}); install it with: {EXTRA_HINT}")


def bglmer(formula, data, family="binomial", *, priors: dict | None = None, draws: int = 1000,
           tune: int = 1000, chains: int = 4, seed=None, progress: bool = True, weights=None,
           offset=None, target_accept: float = 0.8, max_tree_depth: int = 10,
           chain_method: str | None = None):
    """Fit a GLMM by MCMC (NUTS via NumPyro) with weakly informative default priors.

    formula, data, family, weights, offset: as :func:`pyglmm.glmer` (families poisson, binomial
        (0/1, proportions with ``weights`` = trials, cbind(successes, failures)), gaussian, Gamma,
        inverse.gaussian, nbinom2; any of their links).
    priors: dict overriding the defaults, e.g.
        ``{"fixef": {"(Intercept)": ("normal", 0, 5), "hours": ("normal", 0, 1)},
        "sd": {"rehab": ("halfnormal", 1)}, "lkj": 2.0, "shape": ("gamma", 2, 0.1)}``;
        see :mod:`pyglmm.bayes.priors` for the distributions and the defaults. An unknown
        coefficient, group or distribution raises ``PriorError`` (a ValueError) naming it.
    draws, tune, chains: post-warmup draws per chain, warmup iterations per chain, chains.
    seed: integer seed (None: random). progress: NumPyro's progress bar (only when stderr is a
        terminal). target_accept, max_tree_depth: NUTS settings (raise target_accept to 0.9-0.99
        if there are divergent transitions). chain_method: NumPyro's "sequential", "vectorized"
        or "parallel" (default: "parallel" when JAX sees one device per chain, e.g. after
        ``numpyro.set_host_device_count(chains)`` at start-up, else "sequential").

    Returns a :class:`pyglmm.bayes.result.BayesMixedModel` (``summary()``, ``fixef``,
    ``coef_table()``, ``varcorr()``, ``ranef()``, ``idata``, ``posterior_predict()``, ...).
    """
    _check_args(formula, priors, draws, tune, chains, seed, progress, target_accept,
                max_tree_depth, chain_method)
    _require()

    from ..design import model_frame
    from ..checks import note_frame
    from ..prepare import data_name, family_arg, formula_text, numerics_view
    from ..results.varcorr import term_labels
    from .fit import Runner, build_spec, model_args
    from .priors import resolve_priors
    from .result import BayesMixedModel

    fam = family_arg(family, "bglmer")
    if fam.name == "nbinom2" and getattr(fam, "shape", None) is not None:
        raise ArgumentError("bglmer estimates the nbinom2 shape; pass family='nbinom2' without a shape "
                         "(or fix it with a tight prior: priors={'shape': ('lognormal', log(theta), 0.01)})")
    frame = model_frame(formula, data, weights=weights, offset=offset, binomial=fam.response_kind == "proportion")
    fam.validate(frame.y, frame.weights, frame.response_name)
    note_frame(frame)
    rs, infos, sv = numerics_view(frame)
    labels = term_labels(infos)
    names = list(frame.fixef_names)
    X = np.asarray(sv.X, float)
    pri = resolve_priors(priors, fixef_names=names, X=X, y=np.asarray(sv.y, float), family=fam.name,
                         link=fam.link.name, group_labels=labels,
                         correlated=[bool(i.correlated) and len(i.colnames) > 1 for i in infos])
    xbar = X.mean(axis=0) if X.shape[0] else np.zeros(X.shape[1])
    spec = build_spec(fam.name, fam.link.name, names, pri, rs, infos, labels)
    with x64_scope(X64):
        args = model_args(sv.y, X, sv.weights, sv.offset, rs, spec.int_col, xbar)
        runner = Runner(spec, draws=draws, tune=tune, chains=chains, progress=progress,
                        target_accept=target_accept, max_tree_depth=max_tree_depth,
                        chain_method=chain_method)
        samples, extra, elapsed = runner.run(args, seed)
    return BayesMixedModel(formula=formula_text(formula), data_name=data_name(data), frame=frame,
                           family=fam, terms=infos, sorted_view=sv, rs=rs, spec=spec, priors=pri,
                           xbar=xbar, samples=samples, extra=extra, elapsed=elapsed, runner=runner,
                           args=args, draws=int(draws), tune=int(tune), chains=int(chains))


bglmer = public_entry(bglmer)
