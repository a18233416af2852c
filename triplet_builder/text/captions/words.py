"""Wording helpers of the caption fields: numbers, counts with number agreement, cell lists, dates,
lengths, and seeded combinatorial phrasing.

Why combinatorial: a sentence that carries no number (e.g. "no bright point targets") would be repeated
verbatim across a dataset whatever the number of whole-sentence templates; picking each PART of it
(opening, verb, closing) independently from the chip's seeded Random multiplies the phrasings.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import date

from triplet_builder.text.consistency import CELL_NAMES, NUMBER_WORDS, format_percent

DIRECTION_WORDS = {
    "N": "north", "NE": "north-east", "E": "east", "SE": "south-east",
    "S": "south", "SW": "south-west", "W": "west", "NW": "north-west",
}  # fmt: skip
_WORDS_OF = {v: k for k, v in NUMBER_WORDS.items()}
MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip


def num(x: float, decimals: int = 1) -> str:
    """A number with at most `decimals` decimals, no trailing .0."""
    r = round(float(x), decimals)
    if abs(r - round(r)) < 1e-9:
        return str(round(r))
    return f"{r:.{decimals}f}"


def cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def join(items: Sequence[str], word: str = "and") -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {word} " + items[-1]


def count(n: int, rng: random.Random, words: bool | None = None) -> str:
    """A count as digits or (up to twelve) as a word; words=None: a seeded choice."""
    if words is None:
        words = rng.random() < 0.5
    return _WORDS_OF[n] if words and n <= 12 else str(n)


def agree(n: int | bool, singular: str, plural: str) -> str:
    """The verb (or noun) form that agrees with a subject of n items (True: plural)."""
    many = n if isinstance(n, bool) else n != 1
    return plural if many else singular


def cells(cell_list: Sequence[int], rng: random.Random) -> str:
    """'cell 4' / 'cells 1, 2 and 7', sometimes with the cell names."""
    nums = [str(c) for c in cell_list]
    s = f"cell {nums[0]}" if len(nums) == 1 else f"cells {join(nums)}"
    if rng.random() < 0.4:
        s += " (" + join([CELL_NAMES[c] for c in cell_list]) + ")"
    return s


def date_text(d: date, rng: random.Random) -> str:
    style = rng.randrange(3)
    if style == 0:
        return d.isoformat()
    if style == 1:
        return f"{d.day} {MONTHS[d.month - 1]} {d.year}"
    return f"{MONTHS[d.month - 1]} {d.day}, {d.year}"


def lengths(values: Sequence[float]) -> list[str]:
    return [f"{num(v, 0)} m" for v in sorted(values)]


def distance(metres: float) -> str:
    """A length as '850 m' (under 1 km, to 10 m) or '2.4 km'."""
    if metres < 1000:
        return f"{num(round(metres, -1), 0)} m"
    return f"{num(metres / 1000, 1)} km"


def pct(fraction: float) -> str:
    """The dataset's percentage wording (consistency.format_percent)."""
    return format_percent(fraction)


def pick(rng: random.Random, *parts: Sequence[str]) -> str:
    """One choice from each part, concatenated (see the module docstring)."""
    return "".join(rng.choice(list(p)) for p in parts)


def article(phrase: str) -> str:
    """'a port' / 'an airport'."""
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


__all__ = [
    "DIRECTION_WORDS",
    "MONTHS",
    "agree",
    "article",
    "cap",
    "cells",
    "count",
    "date_text",
    "distance",
    "join",
    "lengths",
    "num",
    "pct",
    "pick",
]
