"""lme4 formula parser: tokenizer + recursive-descent parser + R term algebra (no numerics here).

Canonical variable texts are R's deparse of the expression: ``log(x)``, ``I(age^2)``, ``a * b`` spaced,
backquotes kept for non-syntactic names (```my col```), strings in double quotes, so ``C(x, ref='B')``
becomes ``C(x, ref = "B")``.
"""
from __future__ import annotations

from functools import lru_cache

from .bars import find_bar, expand_bar, split_bars
from ..errors import ArgumentTypeError
from .errors import FormulaError
from .nodes import deparse
from .parser import parse_expression, parse_formula_ast
from .spec import FixedSpec, ParsedFormula, RandomTerm, Term
from .terms import encode_terms

__all__ = ["FormulaError", "check_repeated_terms", "FixedSpec", "ParsedFormula", "RandomTerm", "Term", "parse_formula",
           "parse_expression", "deparse"]


def parse_formula(text: str) -> ParsedFormula:
    """Parse an lme4 formula such as ``y ~ x + (1 + x | g)``; raises FormulaError on bad input.
    The result is immutable, so parses are cached by text (refits and loops parse once)."""
    if not isinstance(text, str):
        raise ArgumentTypeError(not_a_formula(text))
    try:
        return _parse_cached(text)
    except RecursionError:
        raise FormulaError(
            "formula is too deeply nested (hundreds of levels of parentheses, function calls, "
            "unary operators or chained ':' / '*' / '^'): remove the redundant nesting", text, 0) from None


def not_a_formula(value) -> str:
    """The message for a formula argument that is not a string."""
    hint = ""
    if isinstance(value, (bytes, bytearray)):
        hint = " (decode it first, e.g. formula.decode())"
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        hint = " (pass one formula, not a sequence of them)"
    return (f"formula must be a string such as 'y ~ x + (1 | g)', not {type(value).__name__}"
            f"{hint}")


@lru_cache(maxsize=512)
def _parse_cached(text: str) -> ParsedFormula:
    return _parse(text)


def _parse(text: str) -> ParsedFormula:
    ast = parse_formula_ast(text)
    response = None
    if ast.lhs is not None:
        bar = find_bar(ast.lhs)
        if bar is not None:
            raise FormulaError("'|' is not allowed in the response", text, bar.op_pos)
        response = deparse(ast.lhs)
    fixed_node, bars = split_bars(ast.rhs, text)
    fixed = encode_terms(fixed_node, text, [response] if response is not None else [])
    dropped = False
    if response is not None and any(t.factors == (response,) for t in fixed.terms):
        # R's model.matrix drops the response from the right-hand side (with a warning, which
        # the model functions give: parses are cached, so warning here would warn only once)
        fixed = FixedSpec(fixed.intercept, tuple(t for t in fixed.terms if t.factors != (response,)),
                          fixed.offsets)
        dropped = True
    random = tuple(rt for b in bars for rt in expand_bar(b, text))
    return ParsedFormula(response, fixed, random, text, dropped)


def check_repeated_terms(pf: ParsedFormula) -> None:
    """Refuse a random-effect term given twice, e.g. ``(1 | g) + (1 | g)`` or ``(1 | g) + (x || g)``
    (same grouping factor, same columns): the likelihood depends only on the sum of the copies'
    variances, so the split between them is arbitrary. (The parser accepts the formula; the
    model functions refuse it.)"""
    seen: dict[tuple, RandomTerm] = {}
    for rt in pf.random:
        key = (rt.group, rt.lhs.intercept, frozenset(rt.lhs.terms))
        if key in seen:
            pos = 0
            try:                                   # the second copy's position, for the caret
                _, bars = split_bars(parse_formula_ast(pf.text).rhs, pf.text)
                count = 0
                for b in bars:
                    for other in expand_bar(b, pf.text):
                        count += (other.group, other.lhs.intercept, frozenset(other.lhs.terms)) == key
                        if count == 2:
                            pos = b.pos
                            raise StopIteration
            except StopIteration:
                pass
            raise FormulaError(
                f"the random-effect term ({rt.text}) is given twice (also as ({seen[key].text})): "
                "the likelihood depends only on the sum of the copies' variances, so they cannot "
                "be estimated separately; remove one copy", pf.text, pos)
        seen[key] = rt
