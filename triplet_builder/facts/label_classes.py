"""The classes of labelled objects: which vocabulary classes a label file labels, checked when the region
file loads, and the fact sheet's `labels` section of one chip (per-class counts, zeros included).

A count of 0 is a negative the text may state ("no aircraft are labelled here"), so a class is labelled
only where the file says so: `facts.labels.classes`, else every vocabulary class found in the whole file
(the assumption that a file labels every object of each class it holds), never `other` (what maps to no
class: no file labels "everything else" exhaustively).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from schemas.vocabulary import OBJECT_CLASSES, normalise_object_class

UNLABELLABLE = "other"
LABELLABLE_CLASSES: tuple[str, ...] = tuple(c for c in OBJECT_CLASSES if c != UNLABELLABLE)


def check_classes(classes: Sequence[str] | None) -> list[str]:
    """Problems of `facts.labels.classes`, one line each naming `facts.labels.classes[i]`: each must be a
    vocabulary class other than `other`, listed once."""
    problems: list[str] = []
    seen: set[str] = set()
    for i, c in enumerate(classes or ()):
        where = f"facts.labels.classes[{i}]"
        if c == UNLABELLABLE:
            problems.append(
                f"{where}: {c!r} holds what maps to no class; a file cannot label it exhaustively"
            )
        elif c not in LABELLABLE_CLASSES:
            guess = normalise_object_class(c)
            hint = f" (did you mean {guess!r}?)" if guess != UNLABELLABLE else ""
            problems.append(
                f"{where}: unknown object class {c!r}{hint}; use one of {', '.join(LABELLABLE_CLASSES)}"
            )
        elif c in seen:
            problems.append(f"{where}: {c!r} is listed twice; list each class once")
        seen.add(c)
    return problems


def labels_section(
    source: str, classes_labelled: Sequence[str], objects: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """The fact sheet's `labels` of one chip: the file's name, the classes it labels (sorted) and how many
    of `objects` (the chip's `objects` items) are of each, zeros included."""
    n = Counter(o["class"] for o in objects)
    classes = sorted(classes_labelled)
    return {"source": source, "classes_labelled": classes, "counts": {c: int(n[c]) for c in classes}}
