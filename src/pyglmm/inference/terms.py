"""Which columns of the fixed-effects model matrix belong to which formula term (R's ``assign``).

The design code (:mod:`pyglmm.design.matrix`) builds X term by term, in the order of
``parse_formula(formula).fixed.terms``, each column named as R's ``model.matrix`` does: the
``:``-joined product of one part per variable of the term, a part being the variable text
(numeric vector), variable text + level (factor; contrast or full dummy coding), or variable
text + column suffix (matrix-valued variables such as ``poly(x, 2)``).

It does not record the term of each column, so :func:`term_columns` rebuilds it with this rule:
walking the columns in order (the terms' blocks are contiguous and in term order), a column
belongs to the first term, at or after the current one, whose parts match the column name
exactly (factor parts tried against every level in ``frame.xlevels``); only if no term matches
exactly is a numeric variable allowed to match as a prefix (matrix columns). Columns dropped for
rank deficiency are simply absent; a term whose columns were all dropped maps to no column.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..formula import parse_formula


@dataclass(frozen=True)
class FixedTerm:
    label: str                   # R's term label ("(Intercept)", "treatment", "treatment:hours")
    factors: tuple[str, ...]     # variable texts; () for the intercept
    columns: tuple[int, ...]     # indices into the model's fixed effects (after rank-deficiency drops)


def _match(name: str, pos: int, parts: list[tuple[str, list[str]]], k: int, prefix_ok: bool) -> bool:
    if k == len(parts):
        return pos == len(name)
    var, opts = parts[k]
    last = k == len(parts) - 1
    for o in opts:
        if name.startswith(o, pos):
            end = pos + len(o)
            if (last and end == len(name)) or (not last and name.startswith(":", end)
                                                and _match(name, end + 1, parts, k + 1, prefix_ok)):
                return True
    if prefix_ok and not opts[1:] and name.startswith(var, pos):   # numeric matrix column
        stop = name.find(":", pos + len(var))
        if last:
            return stop < 0 and len(name) > pos + len(var)
        while stop >= 0:
            if _match(name, stop + 1, parts, k + 1, prefix_ok):
                return True
            stop = name.find(":", stop + 1)
    return False


def term_columns(model) -> list[FixedTerm]:
    """The fixed-effect terms of ``model`` with the indices of their columns (intercept first)."""
    pf = parse_formula(model.formula)
    names = list(model.frame.fixef_names)
    xlev = model.frame.xlevels
    terms: list[tuple[str, tuple[str, ...]]] = []
    if pf.fixed.intercept:
        terms.append(("(Intercept)", ()))
    terms += [(t.label, tuple(t.factors)) for t in pf.fixed.terms]
    parts = []
    for _, facs in terms:
        parts.append([(f, [f + str(lv) for lv in xlev[f]] if f in xlev else [f]) for f in facs])
    cols: list[list[int]] = [[] for _ in terms]
    cur = 0
    for j, nm in enumerate(names):
        hit = None
        for prefix_ok in (False, True):
            for t in range(cur, len(terms)):
                if not terms[t][1]:
                    ok = nm == "(Intercept)"
                else:
                    ok = _match(nm, 0, parts[t], 0, prefix_ok)
                if ok:
                    hit = t
                    break
            if hit is not None:
                break
        if hit is None:
            raise RuntimeError(f"cannot tell which formula term the fixed-effect column {nm!r} "
                               f"belongs to (terms: {', '.join(l for l, _ in terms)})")
        cols[hit].append(j)
        cur = hit
    return [FixedTerm(label, facs, tuple(c)) for (label, facs), c in zip(terms, cols)]
