"""Recursive-descent (precedence climbing) parser for R formulas with R operator precedence."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from .errors import FormulaError
from .lexer import Token, tokenize
from .nodes import BinOp, Call, Name, Node, Num, Paren, Str, Unary

# binary operators: precedence (higher binds tighter) and right-associativity, as in R's ?Syntax
_BINARY = {
    "|": (1, False), "||": (1, False),
    "&": (2, False), "&&": (2, False),
    "==": (4, False), "!=": (4, False), "<": (4, False), ">": (4, False), "<=": (4, False), ">=": (4, False),
    "+": (5, False), "-": (5, False),
    "*": (6, False), "/": (6, False),
    "%in%": (7, False), "%%": (7, False), "%/%": (7, False),
    ":": (8, False),
    "^": (10, True),
}
_NOT_PREC = 3
_UNARY_PREC = 9


@dataclass(frozen=True)
class FormulaAST:
    """Parsed two- or one-sided formula: ``lhs`` is None for ``~ rhs``."""

    lhs: Node | None
    rhs: Node
    tilde_pos: int


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = tokenize(text)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def advance(self) -> Token:
        t = self.toks[self.i]
        self.i += 1
        return t

    def error(self, msg: str, pos: int) -> FormulaError:
        return FormulaError(msg, self.text, pos)

    def unexpected(self, t: Token) -> FormulaError:
        if t.kind == "EOF":
            prev = self.toks[self.i - 1] if self.i > 0 else None
            after = f" after {prev.value!r}" if prev is not None and prev.kind == "OP" else ""
            return self.error(f"unexpected end of formula{after}", t.pos)
        if t.kind == "OP" and t.value == ")":
            prev = self.toks[self.i - 1] if self.i > 0 else None
            if prev is not None and prev.kind == "OP" and prev.value in ("|", "||"):
                return self.error("random-effect term has an empty grouping factor", t.pos)
            if prev is not None and prev.kind == "OP" and prev.value == "(":
                return self.error("empty parentheses", t.pos)
            return self.error("unexpected ')'", t.pos)
        if t.kind == "OP" and t.value == "~":
            return self.error("unexpected '~' (only one '~' is allowed, at the top level)", t.pos)
        return self.error(f"unexpected {t.value!r}", t.pos)

    def expect_close(self, open_tok: Token) -> Token:
        t = self.tok
        if t.kind == "OP" and t.value == ")":
            return self.advance()
        if t.kind == "EOF":
            raise self.error("unbalanced parentheses: '(' is never closed", open_tok.pos)
        raise self.error(f"expected ')' but found {t.value!r}", t.pos)

    # expression parsing -------------------------------------------------
    def expr(self, min_prec: int = 0) -> Node:
        left = self.prefix()
        while True:
            t = self.tok
            if t.kind != "OP" or t.value not in _BINARY:
                return left
            prec, right_assoc = _BINARY[t.value]
            if prec < min_prec:
                return left
            self.advance()
            right = self.expr(prec if right_assoc else prec + 1)
            left = BinOp(left.pos, t.value, left, right, t.pos)

    def prefix(self) -> Node:
        t = self.tok
        if t.kind == "OP" and t.value in ("-", "+"):
            self.advance()
            return Unary(t.pos, t.value, self.expr(_UNARY_PREC))
        if t.kind == "OP" and t.value == "!":
            self.advance()
            return Unary(t.pos, "!", self.expr(_NOT_PREC))
        return self.primary()

    def primary(self) -> Node:
        t = self.tok
        if t.kind in ("NAME", "BQNAME"):
            self.advance()
            if self.tok.kind == "OP" and self.tok.value == "(":
                return self.call(t)
            return Name(t.pos, t.value, t.kind == "BQNAME")
        if t.kind == "NUMBER":
            self.advance()
            return Num(t.pos, t.value)
        if t.kind == "STRING":
            self.advance()
            return Str(t.pos, t.value)
        if t.kind == "OP" and t.value == "(":
            self.advance()
            inner = self.expr(0)
            self.expect_close(t)
            return Paren(t.pos, inner)
        raise self.unexpected(t)

    def call(self, name_tok: Token) -> Node:
        open_tok = self.advance()
        args: list[tuple[str | None, Node]] = []
        if self.tok.kind == "OP" and self.tok.value == ")":
            self.advance()
            return Call(name_tok.pos, name_tok.value, ())
        while True:
            argname = None
            if (self.tok.kind in ("NAME", "BQNAME") and self.toks[self.i + 1].kind == "OP"
                    and self.toks[self.i + 1].value == "="):
                argname = self.advance().value
                self.advance()
            args.append((argname, self.expr(0)))
            if self.tok.kind == "OP" and self.tok.value == ",":
                self.advance()
                continue
            self.expect_close(open_tok)
            return Call(name_tok.pos, name_tok.value, tuple(args))

    def finish(self) -> None:
        t = self.tok
        if t.kind == "EOF":
            return
        if t.kind == "OP" and t.value == ")":
            raise self.error("unbalanced parentheses: unexpected ')'", t.pos)
        raise self.unexpected(t)


def parse_formula_ast(text: str) -> FormulaAST:
    """Parse a formula string into its left- and right-hand expression trees."""
    if not isinstance(text, str):
        raise FormulaError(f"formula must be a string, not {type(text).__name__}", "", 0)
    p = _Parser(text)
    if p.tok.kind == "EOF":
        raise p.error("empty formula", 0)
    lhs = None
    if not (p.tok.kind == "OP" and p.tok.value == "~"):
        lhs = p.expr(0)
        if p.tok.kind == "EOF":
            raise p.error("formula has no '~' (write 'response ~ predictors')", len(text))
        if not (p.tok.kind == "OP" and p.tok.value == "~"):
            p.finish()
    tilde = p.advance()
    if p.tok.kind == "EOF":
        raise p.error("formula has nothing after '~'", tilde.end)
    rhs = p.expr(0)
    p.finish()
    return FormulaAST(lhs, rhs, tilde.pos)


@lru_cache(maxsize=2048)
def parse_expression(text: str) -> Node:
    """Parse a single expression (no '~'), e.g. a variable text like ``log(x)``; cached (nodes
    are immutable)."""
    p = _Parser(text)
    if p.tok.kind == "EOF":
        raise p.error("empty expression", 0)
    node = p.expr(0)
    p.finish()
    return node
