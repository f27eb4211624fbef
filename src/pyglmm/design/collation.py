"""R's sort order of factor levels: strings in the collation of R in a UTF-8 locale (ICU root,
approximated: ``a A b B``, not Python's ``A B a b``), numbers by value, FALSE before TRUE."""
from __future__ import annotations

import unicodedata

#: the printable ASCII characters in the order R's sort() gives them in a UTF-8 locale (ICU,
#: CLDR root collation; R 4.2 with ICU): space, punctuation, symbols, digits, then the letters
#: with each lower case letter before its upper case one
_R_ASCII_ORDER = (
    32, 95, 45, 44, 59, 58, 33, 63, 46, 39, 34, 40, 41, 91, 93, 123, 125, 64, 42, 47, 92, 38, 35,
    37, 96, 94, 43, 60, 61, 62, 124, 126, 36, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 97, 65, 98,
    66, 99, 67, 100, 68, 101, 69, 102, 70, 103, 71, 104, 72, 105, 73, 106, 74, 107, 75, 108, 76,
    109, 77, 110, 78, 111, 79, 112, 80, 113, 81, 114, 82, 115, 83, 116, 84, 117, 85, 118, 86, 119,
    87, 120, 88, 121, 89, 122, 90)


def _collation_tables() -> tuple[dict, dict]:
    primary: dict[int, str] = {cp: "\x01" for cp in range(32)}      # control characters first
    primary[127] = "\x01"
    rank = 1
    for cp in _R_ASCII_ORDER:
        ch = chr(cp)
        if ch.isupper():
            primary[cp] = primary[ord(ch.lower())]                      # a and A: one primary weight
        else:
            rank += 1
            primary[cp] = chr(rank)
    tertiary = {cp: ("\x02" if chr(cp).isupper() else "\x01") for cp in range(128)}
    return primary, tertiary


_PRIMARY, _TERTIARY = _collation_tables()
_SAME_CASE_ALNUM = (frozenset("0123456789abcdefghijklmnopqrstuvwxyz"),
                    frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"))


def _r_string_key(s: str) -> tuple[str, str, str, str]:
    """Sort key of a string in R's order (ICU root collation, approximated): letters compare
    without case first, then accents, then case (lower case first); punctuation and symbols
    before digits before letters; characters beyond Latin by code point after them."""
    if s.isascii():
        return s.translate(_PRIMARY), "\x01" * len(s), s.translate(_TERTIARY), s
    prim, sec, ter = [], [], []
    for ch in unicodedata.normalize("NFD", s):
        if unicodedata.combining(ch) and sec:
            sec[-1] += ch                                              # an accent of the last letter
            continue
        low = ch.lower() if len(ch.lower()) == 1 else ch
        cp = ord(low)
        prim.append(_PRIMARY[cp] if cp < 128 else chr(0x1000 + cp))
        sec.append("\x01")
        ter.append("\x02" if ch.isupper() else "\x01")
    return "".join(prim), "".join(sec), "".join(ter), s


def r_sorted(values: list) -> list:
    """``values`` (distinct, no missing value) sorted as R's sort() / factor() sorts them:
    strings in R's collation of a UTF-8 locale (``a A b B``, not Python's ``A B a b``), numbers
    by value, FALSE before TRUE."""
    if values and all(isinstance(v, str) for v in values):
        chars = set("".join(values))
        if chars <= _SAME_CASE_ALNUM[0] or chars <= _SAME_CASE_ALNUM[1]:
            return sorted(values)                   # code point order is R's order here
        return sorted(values, key=_r_string_key)
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)
