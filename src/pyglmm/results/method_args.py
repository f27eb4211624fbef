"""Argument checks of the fitted model's methods (simulate, predict, confint, ...), applied by
:func:`pyglmm.guard.public_method` in results/model.py."""
from __future__ import annotations

import numpy as np

from ..arguments import arg_bool, arg_choice, arg_int, arg_level, arg_seed, arg_vector
from ..errors import ArgumentError, ArgumentTypeError

def check_simulate(self, a):
    arg_int("nsim", a["nsim"], "simulate", lo=1)
    if a["re_form"] is not None and not isinstance(a["re_form"], str):
        raise ArgumentTypeError(f"simulate(): re_form must be None (condition on the estimated "
                                f"random effects) or '~0' (draw new ones), not "
                                f"{type(a['re_form']).__name__} {a['re_form']!r}")
    arg_seed("seed", a["seed"], "simulate")


def check_predict(self, a):
    for name in ("allow_new_levels", "se_fit", "marginal"):
        arg_bool(name, a[name], "predict")
    arg_choice("type", a["type"], ("link", "response"), "predict")
    arg_choice("interval", a["interval"], ("confidence",), "predict", allow_none=True)
    arg_level("level", a["level"], "predict")
    arg_choice("method", a["method"], ("quadrature", "mc"), "predict")
    arg_int("n_nodes", a["n_nodes"], "predict", lo=1)
    arg_int("n_draws", a["n_draws"], "predict", lo=1)
    arg_seed("seed", a["seed"], "predict")
    arg_vector("offset", a["offset"], "predict")


_CONFINT_KWARGS = {"wald": (), "profile": (), "boot": ("nsim", "seed", "workers", "progress")}


def check_confint(self, a):
    arg_level("level", a["level"], "confint")
    parm = a["parm"]
    if parm is not None and not isinstance(parm, str) and not (
            isinstance(parm, (list, tuple)) and all(
                isinstance(v, (str, int, np.integer)) and not isinstance(v, bool) for v in parm)):
        raise ArgumentTypeError(
            f"confint(): parm must be None, 'beta_', 'theta_', a parameter name or a list of names "
            f"/ 1-based indices (e.g. [2]), not {type(parm).__name__} {parm!r}")
    method = a["method"]
    if not isinstance(method, str):
        raise ArgumentTypeError(f"confint(): method must be 'wald', 'profile' or 'boot', not "
                                f"{type(method).__name__} {method!r}")
    if method.lower() not in _CONFINT_KWARGS:
        import difflib
        close = difflib.get_close_matches(method.lower(), list(_CONFINT_KWARGS), n=1, cutoff=0.5)
        raise ArgumentError(f"confint(): unknown confint method {method!r}; use 'wald', 'profile' "
                            "or 'boot'" + (f" (did you mean {close[0]!r}?)" if close else ""))
    method = method.lower()
    kw = a.get("kwargs", {})
    allowed = _CONFINT_KWARGS[method]
    for k in kw:
        if k not in allowed:
            raise ArgumentTypeError(
                f"confint(): unknown argument {k!r} for method={a['method']!r}; "
                + (f"it takes {', '.join(allowed)}" if allowed else "it takes no further arguments"))
    if method == "boot":
        if "nsim" in kw:
            arg_int("nsim", kw["nsim"], "confint", lo=1)
        if "seed" in kw:
            arg_seed("seed", kw["seed"], "confint")
        if "workers" in kw:
            arg_int("workers", kw["workers"], "confint", lo=1)
        if "progress" in kw:
            arg_bool("progress", kw["progress"], "confint", allow_none=True)
    if method == "profile" and getattr(self, "_response_scale", 1.0) != 1.0:
        raise ArgumentError("confint(): profile intervals are not available for this fit: its "
                            "response was rescaled internally (extreme magnitude); use "
                            "method='wald' or 'boot', or rescale the response yourself")


def check_level_only(fn):
    def check(self, a):
        arg_level("level", a["level"], fn)
    return check


