"""Expression tree nodes of a parsed formula and their R-style deparsing."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

from .numfmt import format_r_number

_SPACED = {"+", "-", "*", "~", "|", "||", "&", "&&", "==", "!=", "<", ">", "<=", ">=", "%in%"}


@dataclass(frozen=True)
class Node:
    """Base class; ``pos`` is the 0-based offset of the node's first character."""

    pos: int = field(compare=False)


@dataclass(frozen=True)
class Name(Node):
    """A variable name; ``backquoted`` if written `like this` (or it is not syntactic)."""

    id: str = ""
    backquoted: bool = False


@dataclass(frozen=True)
class Num(Node):
    """A numeric literal; ``text`` is the source spelling."""

    text: str = ""

    @property
    def value(self) -> float:
        return float(self.text.rstrip("L"))


@dataclass(frozen=True)
class Str(Node):
    """A string literal."""

    value: str = ""


@dataclass(frozen=True)
class Call(Node):
    """A function call ``func(args)``; args are (name or None, node) pairs."""

    func: str = ""
    args: tuple = ()


@dataclass(frozen=True)
class BinOp(Node):
    """A binary operator application; ``op_pos`` is the operator's offset."""

    op: str = ""
    left: Node | None = None
    right: Node | None = None
    op_pos: int = 0


@dataclass(frozen=True)
class Unary(Node):
    """Unary ``-``, ``+`` or ``!``."""

    op: str = ""
    operand: Node | None = None


@dataclass(frozen=True)
class Paren(Node):
    """Explicit parentheses, kept so deparsing reproduces them as R does."""

    inner: Node | None = None


@functools.lru_cache(maxsize=4096)
def is_syntactic(name: str) -> bool:
    """True if ``name`` is a syntactic R name (needs no backquotes); cached (every model frame
    deparses its column names again)."""
    if not name or name in {"if", "else", "for", "while", "function", "TRUE", "FALSE", "NULL", "NA", "Inf", "NaN"}:
        return False
    if not (name[0].isalpha() or name[0] == "."):
        return False
    if name[0] == "." and len(name) > 1 and name[1].isdigit():
        return False
    return all(c.isalnum() or c in "._" for c in name)


def quote_name(name: str) -> str:
    """Backquote a name if it is not syntactic, as R prints it."""
    return name if is_syntactic(name) else f"`{name}`"


def _quote_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'


def deparse(node: Node) -> str:
    """Canonical R text of an expression, e.g. ``I(age^2)``, ``C(x, ref = "B")``."""
    if isinstance(node, Name):
        return quote_name(node.id)
    if isinstance(node, Num):
        if node.text.endswith("L"):
            return node.text
        return format_r_number(node.value)
    if isinstance(node, Str):
        return _quote_string(node.value)
    if isinstance(node, Call):
        parts = []
        for argname, arg in node.args:
            parts.append(deparse(arg) if argname is None else f"{quote_name(argname)} = {deparse(arg)}")
        return f"{quote_name(node.func)}({', '.join(parts)})"
    if isinstance(node, BinOp):
        left, right = deparse(node.left), deparse(node.right)
        if node.op in _SPACED:
            return f"{left} {node.op} {right}"
        return f"{left}{node.op}{right}"
    if isinstance(node, Unary):
        return f"{node.op}{deparse(node.operand)}"
    if isinstance(node, Paren):
        return f"({deparse(node.inner)})"
    raise TypeError(f"unknown node {node!r}")
