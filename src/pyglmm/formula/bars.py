"""lme4's findbars/nobars/expandDoubleVerts/expandSlash: split out and expand random-effect terms."""
from __future__ import annotations

from .errors import FormulaError
from .nodes import BinOp, Call, Name, Node, Paren, Unary, deparse
from .spec import FixedSpec, RandomTerm
from .terms import encode_terms

_BARS = ("|", "||")


def _strip_parens(node: Node) -> Node:
    while isinstance(node, Paren):
        node = node.inner
    return node


def _is_bar(node: Node) -> bool:
    return isinstance(node, BinOp) and node.op in _BARS


def find_bar(node: Node | None) -> Node | None:
    """First bar operator anywhere inside ``node`` (used to report misplaced bars), in the order a
    left-to-right reading meets them. Iterative: a sum of thousands of terms is a left-deep tree."""
    stack = [node]
    while stack:
        node = stack.pop()
        if node is None:
            continue
        if _is_bar(node):
            return node
        if isinstance(node, BinOp):
            stack.append(node.right)
            stack.append(node.left)
        elif isinstance(node, Unary):
            stack.append(node.operand)
        elif isinstance(node, Paren):
            stack.append(node.inner)
        elif isinstance(node, Call):
            stack.extend(a for _, a in reversed(node.args))
    return None


def split_bars(node: Node, text: str) -> tuple[Node | None, list[BinOp]]:
    """Separate the fixed part from parenthesised bar terms at the top level of the sum.

    The chain ``a + b - c + ...`` is a left-deep tree; it is walked iteratively (its left spine),
    so a formula with thousands of terms does not exhaust Python's recursion limit."""
    spine: list[BinOp] = []
    while isinstance(node, BinOp) and node.op in ("+", "-"):
        spine.append(node)
        node = node.left
    fixed, bars = _split_operand(node, text)
    for op_node in reversed(spine):
        if op_node.op == "+":
            rf, rb = split_bars(op_node.right, text)
            if fixed is None:
                fixed = rf
            elif rf is not None:
                fixed = BinOp(op_node.pos, "+", fixed, rf, op_node.op_pos)
            bars.extend(rb)
        else:
            _check_no_bar(op_node.right, text)
            fixed = Unary(op_node.op_pos, "-", op_node.right) if fixed is None else \
                BinOp(op_node.pos, "-", fixed, op_node.right, op_node.op_pos)
    return fixed, bars


def _split_operand(node: Node, text: str) -> tuple[Node | None, list[BinOp]]:
    """split_bars of one operand of the top-level sum (not itself a + or - node)."""
    if isinstance(node, Paren):
        inner = _strip_parens(node)
        if _is_bar(inner):
            return None, [inner]
        fixed, bars = split_bars(node.inner, text)
        if not bars:
            return node, []
        return (Paren(node.pos, fixed) if fixed is not None else None), bars
    _check_no_bar(node, text)
    return node, []


def _check_no_bar(node: Node, text: str) -> None:
    bar = find_bar(node)
    if bar is None:
        return
    if isinstance(node, BinOp) and node is bar:
        raise FormulaError("'|' outside parentheses: random-effect terms must be written as (lhs | group)",
                           text, bar.op_pos)
    raise FormulaError("random-effect term (lhs | group) must be a top-level term added with '+'",
                       text, bar.op_pos)


def _groups(node: Node, text: str) -> list[tuple[tuple[str, ...], str]]:
    """Expand a grouping expression into (variables, printed name) pairs; a/b -> b:a then a."""
    node = _strip_parens(node)
    if isinstance(node, BinOp) and node.op == ":":
        left, right = _groups(node.left, text), _groups(node.right, text)
        if len(left) != 1 or len(right) != 1:
            raise FormulaError("'/' inside ':' is not supported in a grouping factor", text, node.op_pos)
        (lv, ln), (rv, rn) = left[0], right[0]
        return [(lv + rv, f"{ln}:{_wrap(rn, len(rv))}")]
    if isinstance(node, BinOp) and node.op == "/":
        left, right = _groups(node.left, text), _groups(node.right, text)
        if len(right) != 1:
            raise FormulaError("nested grouping 'a/(b/c)' is not supported; write a/b/c", text, node.op_pos)
        (rv, rn), (lv, ln) = right[0], left[0]
        return [(rv + lv, f"{rn}:{_wrap(ln, len(lv))}")] + left
    if isinstance(node, (Name, Call)):
        if isinstance(node, Name) and node.id == "." and not node.backquoted:
            raise FormulaError("'.' is not supported as a grouping factor", text, node.pos)
        t = deparse(node)
        return [((t,), t)]
    raise FormulaError("invalid grouping factor: expected a variable name, a:b or a/b", text, node.pos)


def _wrap(name: str, nvars: int) -> str:
    return f"({name})" if nvars > 1 else name


def expand_bar(bar: BinOp, text: str) -> list[RandomTerm]:
    """Turn one ``(lhs | g)`` or ``(lhs || g)`` into lme4's list of random terms."""
    groups = _groups(bar.right, text)
    spec = encode_terms(bar.left, text, allow_offset=False)
    if not spec.intercept and not spec.terms:
        raise FormulaError("random-effect term has no columns (its left-hand side removes everything)",
                           text, bar.left.pos)
    out: list[RandomTerm] = []
    if bar.op == "|":
        lhs_text = deparse(bar.left)
        for gvars, gname in groups:
            out.append(RandomTerm(spec, gvars, True, f"{lhs_text} | {gname}", gname))
        return out
    pieces: list[tuple[FixedSpec, str]] = []
    if spec.intercept:
        pieces.append((FixedSpec(True, ()), "1"))
    for term in spec.terms:
        pieces.append((FixedSpec(False, (term,)), f"0 + {term.label}"))
    for piece, lhs_text in pieces:
        for gvars, gname in groups:
            out.append(RandomTerm(piece, gvars, False, f"{lhs_text} | {gname}", gname))
    return out
