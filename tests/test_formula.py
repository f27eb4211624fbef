"""Tests of the lme4 formula parser: term algebra, random-term expansion, canonical texts, errors."""
from __future__ import annotations

import pathlib
import sys

try:
    import pyglmm  # noqa: F401
except ImportError:  # not installed: use the src layout directly
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "src"))

import pytest
from hypothesis import given, settings, strategies as st

from pyglmm.formula import FormulaError, parse_formula


def labels(f: str) -> list[str]:
    return [t.label for t in parse_formula(f).fixed.terms]


@pytest.mark.parametrize("formula, expected", [
    ("y ~ a*b*c", ["a", "b", "c", "a:b", "a:c", "b:c", "a:b:c"]),
    ("y ~ (a+b+c)^2", ["a", "b", "c", "a:b", "a:c", "b:c"]),
    ("y ~ (a+b+c)^2 - a:b", ["a", "b", "c", "a:c", "b:c"]),
    ("y ~ a/b", ["a", "a:b"]),
    ("y ~ (a+b)/c", ["a", "b", "a:b:c"]),
    ("y ~ a/b*c", ["a", "c", "a:b", "a:c", "a:b:c"]),
    ("y ~ a*b:c", ["a", "b:c", "a:b:c"]),
    ("y ~ b:c + a + c:a:b", ["a", "b:c", "b:c:a"]),  # factors in R's variable order
    ("y ~ a + b:a", ["a", "a:b"]),
    ("y ~ a + b %in% a", ["a", "a:b"]),
    ("y ~ a*b - a", ["b", "a:b"]),
    ("y ~ -a + b", ["b"]),
    ("y ~ a^2", ["a"]),
])
def test_term_expansion_matches_r(formula, expected):
    assert labels(formula) == expected


@pytest.mark.parametrize("formula, intercept", [
    ("y ~ a", True), ("y ~ a - 1", False), ("y ~ 0 + a", False), ("y ~ a + 0", False),
    ("y ~ -1 + a + 1", True), ("y ~ a - 0", True), ("y ~ 1", True), ("y ~ 0", False), ("y ~ a*b + 0", False),
])
def test_intercept(formula, intercept):
    assert parse_formula(formula).fixed.intercept is intercept


def test_canonical_texts_and_response():
    p = parse_formula("cbind(incidence, size-incidence) ~ I(age ^ 2) + log( x ) + C(x, ref='B') + `my col`")
    assert p.response == "cbind(incidence, size - incidence)"
    assert labels(p.text) == ["I(age^2)", "log(x)", 'C(x, ref = "B")', "`my col`"]
    assert parse_formula("incidence/size ~ 1").response == "incidence/size"
    assert parse_formula("~ x").response is None


def test_offsets():
    p = parse_formula("y ~ offset(log(n)) + x + offset(w)")
    assert labels(p.text) == ["x"]
    assert p.fixed.offsets == ("log(n)", "w")


def test_random_nested_and_interaction():
    p = parse_formula("y ~ x + (1|batch/cask) + (1 + treatment | rehab) + (1|a:b)")
    assert labels(p.text) == ["x"]
    got = [(r.group, r.group_name, r.text, r.correlated) for r in p.random]
    assert got == [
        (("cask", "batch"), "cask:batch", "1 | cask:batch", True),
        (("batch",), "batch", "1 | batch", True),
        (("rehab",), "rehab", "1 + treatment | rehab", True),
        (("a", "b"), "a:b", "1 | a:b", True),
    ]
    assert p.random[2].lhs.intercept and [t.label for t in p.random[2].lhs.terms] == ["treatment"]
    deep = parse_formula("y ~ (1|a/b/c)").random
    assert [r.group_name for r in deep] == ["c:(b:a)", "b:a", "a"]
    assert deep[0].group == ("c", "b", "a")


def test_double_bar_expansion():
    p = parse_formula("y ~ (1 + x + z || g) + (0 + f || g) + (a*b || h)")
    got = [(r.text, r.correlated, r.lhs.intercept) for r in p.random]
    assert got == [
        ("1 | g", False, True), ("0 + x | g", False, False), ("0 + z | g", False, False),
        ("0 + f | g", False, False),
        ("1 | h", False, True), ("0 + a | h", False, False), ("0 + b | h", False, False),
        ("0 + a:b | h", False, False),
    ]
    assert [r.text for r in parse_formula("y ~ (x || g)").random] == ["1 | g", "0 + x | g"]
    assert parse_formula("y ~ (1|g)").fixed.intercept is True


@pytest.mark.parametrize("formula, pos, fragment", [
    ("", 0, "empty formula"),
    ("y", 1, "no '~'"),
    ("y ~ x +", 7, "end of formula"),
    ("y ~ (x + z", 4, "unbalanced"),
    ("y ~ x)", 5, "unbalanced"),
    ("y ~ x $ z", 6, "unexpected character"),
    ("y ~ x + 1|g", 9, "outside parentheses"),
    ("y ~ x + (1|)", 11, "empty grouping factor"),
    ("y ~ .", 4, "'.'"),
    ("y ~ x + 2", 8, "invalid number 2"),
    ("y ~ x * (1|g)", 10, "top-level"),
    ("y ~ x ~ z", 6, "'~'"),
])
def test_errors_have_position_and_caret(formula, pos, fragment):
    with pytest.raises(FormulaError) as info:
        parse_formula(formula)
    err = info.value
    assert err.position == pos
    assert fragment in str(err)
    lines = str(err).split("\n")
    assert lines[-1] == "  " + " " * pos + "^"
    assert formula in lines[-2]


ALPHABET = list("yxabg01 ~+-*/:^()|,.`'\"%$") + ["||", "%in%", "log(", "I(", "offset(", "C(", "ref=", "é"]


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(ALPHABET), max_size=25).map("".join))
def test_fuzz_parse_or_formula_error(text):
    try:
        p = parse_formula(text)
    except FormulaError as exc:
        assert 0 <= exc.position <= len(text)
    else:
        assert p.text == text


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_fuzz_arbitrary_text(text):
    try:
        parse_formula(text)
    except FormulaError:
        pass


def test_deep_nesting_is_formula_error():
    with pytest.raises(FormulaError):
        parse_formula("y ~ " + "(" * 2000 + "x" + ")" * 2000)


# --- round trip of random valid formulas (issue #8) ------------------------------------------
_VARS = ["a", "b", "x", "`my var`", "log(z)", "I(w^2)"]
_fixed_term = st.lists(st.sampled_from(_VARS), min_size=1, max_size=3, unique=True).map(":".join)
_fixed = st.lists(_fixed_term, min_size=1, max_size=4).map(" + ".join)
_random = st.sampled_from(["(1 | g)", "(x | g)", "(1 + x | g)", "(0 + x | h)", "(x || g)",
                           "(1 | g/h)", "(1 | g:h)", "(1 + a | h)"])


def _canonical(pf):
    """A formula text rebuilt from the parsed structure (terms in R's order, one random term each)."""
    fixed = " + ".join(t.label for t in pf.fixed.terms) or "1"
    parts = [("1" if pf.fixed.intercept else "0") + " + " + fixed] if pf.fixed.terms else \
        ["1" if pf.fixed.intercept else "0"]
    for rt in pf.random:
        lhs = " + ".join(t.label for t in rt.lhs.terms)
        lhs = ("1" if rt.lhs.intercept else "0") + (" + " + lhs if lhs else "")
        parts.append(f"({lhs} | {rt.group_name})")
    return f"{pf.response} ~ " + " + ".join(parts)


def _structure(pf):
    return (pf.response, pf.fixed.intercept, [t.factors for t in pf.fixed.terms],
            [(rt.lhs.intercept, [t.factors for t in rt.lhs.terms], rt.group) for rt in pf.random])


@settings(max_examples=150, deadline=None)
@given(_fixed, st.lists(_random, min_size=0, max_size=3), st.booleans())
def test_random_valid_formulas_round_trip(fixed, randoms, no_intercept):
    text = "y ~ " + ("0 + " if no_intercept else "") + fixed + "".join(" + " + r for r in randoms)
    pf = parse_formula(text)
    again = parse_formula(_canonical(pf))
    s1, s2 = _structure(pf), _structure(again)
    # the factors of an interaction are ordered by first appearance of the variables (as R), which
    # a rebuilt text can change: compare each term as a set of variables
    assert s1[:2] == s2[:2]
    assert [frozenset(t) for t in s1[2]] == [frozenset(t) for t in s2[2]]
    assert [(a, sorted(map(tuple, b)), g) for a, b, g in s1[3]] == \
        [(a, sorted(map(tuple, b)), g) for a, b, g in s2[3]]
