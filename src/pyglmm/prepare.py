"""Preparing a model once per fit, shared by every estimation method: the formula and the
family arguments checked, the data's name, magnitude checks and the response's scale, and the
numerics' view (terms ordered as lme4 orders them, rows sorted by the first term's levels)."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._warn import user_stacklevel
from .arguments import arg_formula, arg_int
from .checks import check_dense_size
from .design import lme4_term_order
from .errors import ArgumentError, ArgumentTypeError, DataError, PyglmmError
from .families import make_family
from .formula import check_repeated_terms, parse_formula
from .linalg.restructure import ReStructure, TermStructure, stable_group_order
from .results.varcorr import TermInfo


def data_name(data) -> str:
    """The data's name for summaries ("Data: ..."): a DataFrame's attrs["name"], else "data".
    (attrs is read directly: a getattr miss on a DataFrame costs a column lookup.)"""
    attrs = data.attrs if isinstance(data, pd.DataFrame) else getattr(data, "attrs", None)
    name = attrs.get("name") if isinstance(attrs, dict) else None
    return str(name) if name else "data"


@dataclass
class Sorted:
    """Response, fixed effects, weights and offset with rows sorted by the first term's levels.

    The numerics want observations of one level contiguous (segment sums instead of scatter-adds);
    ``back`` restores the user's row order for fitted values.
    """

    y: np.ndarray
    X: np.ndarray
    weights: np.ndarray
    offset: np.ndarray
    perm: np.ndarray
    back: np.ndarray


def numerics_view(frame, sort: bool = True) -> tuple[ReStructure, list[TermInfo], Sorted]:
    """Order terms by decreasing number of levels (as lme4), sort rows, build the numerics' view.

    ``sort=False`` keeps the user's row order (numerics that reduce the rows once, such as the
    one-term lmer cross-products, gain nothing from sorting a million rows)."""
    if not frame.reterms:
        raise ValueError("the formula has no random-effects terms such as (1 | group); "
                         "use a GLM (e.g. statsmodels) for a model without random effects")
    order = lme4_term_order(frame.reterms)
    first = frame.reterms[order[0]]
    if not sort:
        perm = back = np.arange(frame.y.shape[0])
        take = np.asarray
        order_f = np.asarray               # row-order numerics take columns themselves
    else:
        order_f = np.asfortranarray
        perm = stable_group_order(np.asarray(first.codes), len(first.levels))
        back = np.empty_like(perm)
        back[perm] = np.arange(perm.size)

        def take(a):
            return np.asarray(a)[perm]
    terms, infos = [], []
    for k in order:
        rt = frame.reterms[k]
        terms.append(TermStructure(codes=np.ascontiguousarray(take(np.asarray(rt.codes, np.int64))),
                                   X=order_f(take(np.asarray(rt.X, float))),
                                   nlevels=len(rt.levels)))
        infos.append(TermInfo(group=rt.group_name, colnames=list(rt.colnames),
                              levels=[str(v) for v in rt.levels], correlated=rt.correlated))
    rs = ReStructure(terms)
    check_dense_size(rs, infos)
    view = Sorted(y=take(frame.y), X=order_f(take(frame.X)), weights=take(frame.weights),
                   offset=take(frame.offset), perm=perm, back=back)
    return rs, infos, view


def formula_text(formula) -> str:
    return formula if isinstance(formula, str) else getattr(formula, "text", str(formula))


# --- argument helpers of the entry points ------------------------------------------------------

def prepare_formula(formula, fn: str):
    """The parsed formula of an entry point: a string (or parsed formula) without a repeated
    random-effect term; warns as R's model.matrix when the response is also a predictor."""
    arg_formula(formula, fn)
    pf = parse_formula(formula) if isinstance(formula, str) else formula
    check_repeated_terms(pf)
    if pf.response_dropped:
        warnings.warn(f"the response '{pf.response}' appeared on the right-hand side and was dropped "
                      "(as R's model.matrix does)", UserWarning, stacklevel=user_stacklevel())
    return pf


def arg_verbose(verbose, fn: str) -> int:
    """verbose: a bool or a non-negative integer (lme4's verbose levels)."""
    if isinstance(verbose, (bool, np.bool_)):
        return int(verbose)
    return arg_int("verbose", verbose, fn, lo=0, what=" or a bool")


def family_arg(family, fn: str):
    """make_family with the argument named in its errors."""
    try:
        return make_family(family)
    except PyglmmError:
        raise
    except TypeError as exc:
        raise ArgumentTypeError(f"{fn}(): family: {exc}") from exc
    except ValueError as exc:
        raise ArgumentError(f"{fn}(): family: {exc}") from exc


RESCALE_BEYOND = 1e50          # lmer: a response beyond 1e+-50 is fitted divided by a power of two
CONTINUOUS_LIMIT = 1e100       # glmer: continuous responses and random-effect columns within 1e+-100
COUNT_LIMIT = 1e9              # glmer: Poisson / negative binomial counts up to 1e9


def magnitude(a: np.ndarray) -> float:
    """max |a| (NaN when a holds NaN, which the response and frame checks refuse anyway)."""
    return max(float(a.max()), -float(a.min())) if a.size else 0.0


def rescaling(name: str, v: float) -> str:
    """How to bring values of magnitude v to about 1: 'y / 1e160' or 'y * 1e160'."""
    k = int(round(math.log10(v))) if v > 0 else 0
    return f"{name} / 1e{k}" if k >= 0 else f"{name} * 1e{-k}"


def check_some_weight(frame) -> None:
    """At least one row with a positive prior weight (else every matrix of the fit is singular)."""
    w = np.asarray(frame.weights, float)
    if w.size and not (w > 0).any():
        raise DataError("weights are zero in every row: no observation contributes to the fit; "
                        "check the weights argument")


def check_magnitudes(frame, fam, counts: bool = True) -> None:
    """Refuse magnitudes the numerics cannot represent (rather than return a wrong fit with a
    generic warning): random-effect columns beyond 1e+-100 (their variance parameters over- or
    underflow), and for glmer a continuous response beyond 1e+-100 or counts above 1e9 (the
    Poisson deviance's curvature at such means defeats the optimizer)."""
    check_some_weight(frame)
    for rt in frame.reterms:
        for j, col in enumerate(rt.colnames):
            if col == "(Intercept)":
                continue
            mx = magnitude(np.asarray(rt.X[:, j], float))
            if mx > CONTINUOUS_LIMIT or 0.0 < mx < 1.0 / CONTINUOUS_LIMIT:
                raise DataError(
                    f"random-effect column '{col}' in the term (... | {rt.group_name}) has values of "
                    f"magnitude {mx:.1e}: its variance cannot be estimated at this scale; rescale it, "
                    f"e.g. {rescaling(col, mx)} (the estimates scale back exactly)")
    if fam.is_linear_model:
        return                                   # lmer rescales the response itself
    y = np.asarray(frame.y, float)
    mx = magnitude(y)
    if counts and fam.response_kind == "count" and mx > COUNT_LIMIT:
        raise DataError(
            f"response '{frame.response_name}' has counts up to {mx:.3g}: a {fam.name} GLMM with "
            f"means above {COUNT_LIMIT:.0e} is beyond what the Laplace fit resolves reliably (the "
            "random effects are then almost exactly determined); model log("
            f"{frame.response_name}) with lmer, or use a Gamma / gaussian(link='log') glmer")
    if fam.response_kind == "continuous" and \
            (mx > CONTINUOUS_LIMIT or 0.0 < mx < 1.0 / CONTINUOUS_LIMIT):
        raise DataError(
            f"response '{frame.response_name}' has values of magnitude {mx:.1e}: the {fam.name} "
            f"family's variance function overflows at this scale; rescale it, e.g. "
            f"{rescaling(frame.response_name, mx)} (with a log link only the intercept changes)")


def response_scale(frame) -> float:
    """A power of two near the response's magnitude when it is extreme (lmer), else 1."""
    mx = magnitude(np.asarray(frame.y, float))
    if mx == 0.0 or 1.0 / RESCALE_BEYOND <= mx <= RESCALE_BEYOND:
        return 1.0
    return 2.0 ** round(math.log2(mx))
