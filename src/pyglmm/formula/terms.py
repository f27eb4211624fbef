"""R's term algebra (terms.formula's EncodeVars): expand + - * / : ^ %in% into ordered terms."""
from __future__ import annotations

from .errors import FormulaError
from .nodes import BinOp, Call, Name, Node, Num, Paren, Str, Unary, deparse
from .spec import FixedSpec, Term

_FORMULA_OPS = {"+", "-", "*", "/", ":", "%in%", "^"}


class _Encoder:
    """Stateful encoder mirroring R's C implementation (intercept flag, deletion parity)."""

    def __init__(self, text: str, variables: list[str] | None = None) -> None:
        self.text = text
        self.variables: list[str] = list(variables or [])
        self.intercept = True
        self.deleting = False
        self.offsets: list[str] = []
        self.offset_vars: set[int] = set()

    def var(self, node: Node) -> int:
        if isinstance(node, Name) and node.id == "." and not node.backquoted:
            raise FormulaError("'.' (all other columns) is not supported; list the predictors explicitly",
                               self.text, node.pos)
        text = deparse(node)
        if text not in self.variables:
            self.variables.append(text)
            if isinstance(node, Call) and node.func == "offset":
                if len(node.args) != 1 or node.args[0][0] is not None:
                    raise FormulaError("offset() takes exactly one unnamed argument", self.text, node.pos)
                self.offsets.append(deparse(node.args[0][1]))
        idx = self.variables.index(text)
        if isinstance(node, Call) and node.func == "offset":
            self.offset_vars.add(idx)
        return idx

    def encode(self, node: Node) -> list[frozenset]:
        if isinstance(node, Paren):
            return self.encode(node.inner)
        if isinstance(node, Num):
            if node.text.rstrip("L") in ("0", "1") or node.value in (0.0, 1.0):
                is_one = node.value == 1.0
                self.intercept = is_one != self.deleting
                return []
            raise FormulaError(f"invalid number {node.text} in formula term (only 0 and 1 are allowed)",
                               self.text, node.pos)
        if isinstance(node, Str):
            raise FormulaError("a string is not a valid formula term", self.text, node.pos)
        if isinstance(node, Unary) and node.op in "+-":
            if node.op == "+":
                return self.encode(node.operand)
            self.deleting = not self.deleting
            self.encode(node.operand)
            self.deleting = not self.deleting
            return []
        if isinstance(node, BinOp) and node.op in ("|", "||"):
            raise FormulaError("'|' outside parentheses: random-effect terms must be written as (lhs | group)",
                               self.text, node.op_pos)
        if isinstance(node, BinOp) and node.op in ("+", "-"):
            return self.sum(node)
        if isinstance(node, BinOp) and node.op in _FORMULA_OPS:
            return self.binop(node)
        return [frozenset({self.var(node)})]

    def sum(self, node: BinOp) -> list[frozenset]:
        """A chain ``a + b - c + ...`` (a left-deep tree), walked along its left spine without
        recursion, so formulas with thousands of terms encode in linear time."""
        spine: list[BinOp] = []
        while isinstance(node, BinOp) and node.op in ("+", "-"):
            spine.append(node)
            node = node.left
        out = _unique(self.encode(node))
        seen = set(out)
        for op_node in reversed(spine):
            if op_node.op == "+":
                for t in self.encode(op_node.right):
                    if t and t not in seen:
                        seen.add(t)
                        out.append(t)
            else:
                self.deleting = not self.deleting
                drop = set(self.encode(op_node.right))
                self.deleting = not self.deleting
                if drop & seen:
                    out = [t for t in out if t not in drop]
                    seen = set(out)
        return out

    def binop(self, node: BinOp) -> list[frozenset]:
        op = node.op
        if op == "^":
            left = self.encode(node.left)
            power = node.right.inner if isinstance(node.right, Paren) else node.right
            if not isinstance(power, Num) or power.value != int(power.value) or power.value < 1:
                raise FormulaError("'^' in a formula needs a positive whole number on its right", self.text,
                                   node.right.pos)
            result = list(left)
            for _ in range(int(power.value) - 1):
                result = _unique(result + [a | b for a in result for b in left])
            return result
        left = self.encode(node.left)
        right = self.encode(node.right)
        if op in (":", "%in%"):
            return _unique([a | b for a in left for b in right])
        if op == "*":
            return _unique(left + right + [a | b for a in left for b in right])
        # op == "/": a/b = a + (all variables of a):b
        allvars = frozenset().union(*left) if left else frozenset()
        return _unique(left + [allvars | b for b in right])


def _unique(terms: list[frozenset]) -> list[frozenset]:
    out: list[frozenset] = []
    seen: set[frozenset] = set()
    for t in terms:
        if t and t not in seen:
            seen.add(t)
            out.append(t)
    return out


def encode_terms(node: Node | None, text: str, variables: list[str] | None = None,
                 allow_offset: bool = True) -> FixedSpec:
    """Expand a right-hand side into a FixedSpec; ``variables`` seeds R's variable order (the response)."""
    enc = _Encoder(text, variables)
    terms = enc.encode(node) if node is not None else []
    if enc.offsets and not allow_offset:
        raise FormulaError("offset() is not allowed inside a random-effect term", text, node.pos if node else 0)
    kept = [t for t in terms if not (t & enc.offset_vars)]
    kept.sort(key=len)  # stable: by interaction order, then appearance
    out = tuple(Term(tuple(enc.variables[i] for i in sorted(t))) for t in kept)
    return FixedSpec(enc.intercept, out, tuple(enc.offsets))
