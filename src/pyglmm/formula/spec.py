"""Result types of formula parsing: terms, fixed-effects spec, random terms, parsed formula."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Term:
    """One model term; ``factors`` are canonical variable texts in R's variable order, e.g. ("lbase", "trt")."""

    factors: tuple[str, ...]

    @property
    def label(self) -> str:
        """R's term label, e.g. ``lbase:trt``."""
        return ":".join(self.factors)


@dataclass(frozen=True)
class FixedSpec:
    """A model part: intercept flag, terms ordered as R (interaction order, then appearance), offsets."""

    intercept: bool
    terms: tuple[Term, ...]
    offsets: tuple[str, ...] = ()

    @property
    def variables(self) -> tuple[str, ...]:
        """Distinct variable texts used by the terms, in first-use order."""
        seen: dict[str, None] = {}
        for t in self.terms:
            for f in t.factors:
                seen.setdefault(f, None)
        return tuple(seen)


@dataclass(frozen=True)
class RandomTerm:
    """A random-effect term ``(lhs | group)``; ``correlated`` is False for terms split from ``||``."""

    lhs: FixedSpec
    group: tuple[str, ...]
    correlated: bool
    text: str
    group_name: str = ""

    def __post_init__(self) -> None:
        if not self.group_name:
            object.__setattr__(self, "group_name", ":".join(self.group))


@dataclass(frozen=True)
class ParsedFormula:
    """A parsed lme4 formula: response text (None if one-sided), fixed part, random terms."""

    response: str | None
    fixed: FixedSpec
    random: tuple[RandomTerm, ...]
    text: str
    #: the response also appeared as a main-effect term on the right-hand side and was dropped
    #: (R's model.matrix: "the response appeared on the right-hand side and was dropped")
    response_dropped: bool = False
