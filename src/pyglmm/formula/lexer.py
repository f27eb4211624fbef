"""Tokenizer for R model formulas (names, backquoted names, numbers, strings, operators)."""
from __future__ import annotations

from dataclasses import dataclass

from .errors import FormulaError

# multi-character operators first so that the longest match wins
_OPERATORS = ("||", "&&", "==", "!=", "<=", ">=", "**",
              "~", "+", "-", "*", "/", "^", ":", "(", ")", ",", "|", "&", "!", "<", ">", "=")
_PERCENT_OPS = ("%in%", "%%", "%/%")


@dataclass(frozen=True)
class Token:
    """One token: kind is NAME, BQNAME, NUMBER, STRING, OP or EOF."""

    kind: str
    value: str
    pos: int
    end: int


def _isdigit(ch: str) -> bool:
    return "0" <= ch <= "9"


def _is_name_start(ch: str) -> bool:
    return ch.isalpha() or ch == "."


def _is_name_char(ch: str) -> bool:
    return ch.isalnum() or ch in "._"


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens, raising FormulaError on unknown characters."""
    toks: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        start = i
        if _isdigit(ch) or (ch == "." and i + 1 < n and _isdigit(text[i + 1])):
            while i < n and _isdigit(text[i]):
                i += 1
            if i < n and text[i] == ".":
                i += 1
                while i < n and _isdigit(text[i]):
                    i += 1
            if i < n and text[i] in "eE":
                j = i + 1
                if j < n and text[j] in "+-":
                    j += 1
                if j < n and _isdigit(text[j]):
                    i = j
                    while i < n and _isdigit(text[i]):
                        i += 1
                else:
                    raise FormulaError("malformed number", text, start)
            if i < n and text[i] == "L":
                i += 1
            if i < n and _is_name_char(text[i]):
                raise FormulaError("unexpected character after number", text, i)
            toks.append(Token("NUMBER", text[start:i], start, i))
            continue
        if _is_name_start(ch):
            while i < n and _is_name_char(text[i]):
                i += 1
            toks.append(Token("NAME", text[start:i], start, i))
            continue
        if ch == "`":
            j = text.find("`", i + 1)
            if j < 0:
                raise FormulaError("unterminated backquoted name", text, start)
            if j == i + 1:
                raise FormulaError("empty backquoted name", text, start)
            toks.append(Token("BQNAME", text[i + 1:j], start, j + 1))
            i = j + 1
            continue
        if ch in "'\"":
            i += 1
            buf = []
            while i < n and text[i] != ch:
                if text[i] == "\\" and i + 1 < n:
                    nxt = text[i + 1]
                    buf.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
                    i += 2
                    continue
                buf.append(text[i])
                i += 1
            if i >= n:
                raise FormulaError("unterminated string", text, start)
            i += 1
            toks.append(Token("STRING", "".join(buf), start, i))
            continue
        if ch == "%":
            for op in _PERCENT_OPS:
                if text.startswith(op, i):
                    toks.append(Token("OP", op, start, i + len(op)))
                    i += len(op)
                    break
            else:
                raise FormulaError("unsupported %-operator (only %in%, %% and %/% are allowed)", text, start)
            continue
        for op in _OPERATORS:
            if text.startswith(op, i):
                toks.append(Token("OP", "^" if op == "**" else op, start, i + len(op)))
                i += len(op)
                break
        else:
            raise FormulaError(f"unexpected character {ch!r}", text, start)
    toks.append(Token("EOF", "", n, n))
    return toks
