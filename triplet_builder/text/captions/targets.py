"""The targets caption field: labelled objects per vocabulary class (`objects[].class`, or the label
normalised by schemas.vocabulary.normalise_object_class; objects of class `other` keep their own label),
with counts, cells and lengths; the classes the label file annotates but this chip lacks (`labels`,
the only classes a negative may be stated for); and the CFAR detections as bright point targets.
"""

from __future__ import annotations

import random
from typing import Any

from triplet_builder.facts.functionality import object_class
from triplet_builder.text.captions import words as w
from triplet_builder.text.consistency import canonical_label, cells_of, label_words, plural


def keys_of_objects(facts: dict[str, Any]) -> list[tuple[str, str]]:
    """(class key, the first label of that key) for the labelled objects, sorted by key (the QA side's
    grouping, by the checker's canonical label)."""
    seen: dict[str, str] = {}
    for o in facts.get("objects") or []:
        seen.setdefault(canonical_label(o["label"]), o["label"])
    return sorted(seen.items())


def object_groups(facts: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(noun, objects) per vocabulary class, sorted by noun; class `other` splits by its own labels."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for o in facts.get("objects") or []:
        cls = object_class(o)
        noun = cls if cls != "other" else label_words(o["label"])
        groups.setdefault(noun, []).append(o)
    return sorted(groups.items())


def _group_sentence(noun: str, ts: list[dict[str, Any]], rng: random.Random) -> str:
    n, cl = len(ts), cells_of(ts)
    c, many = w.cells(cl, rng), len(cl) > 1
    if n == 1:
        one = rng.choice(["one", "a single"])
        return rng.choice(
            [
                f"{w.cap(one)} labelled {noun} lies in {c}.",
                f"There is {one} labelled {noun}, in {c}.",
                f"The labels mark a single {noun}, located in {c}.",
                f"{w.cap(c)} {w.agree(many, 'holds', 'hold')} the only labelled {noun}.",
            ]
        )
    k, nouns = w.count(n, rng), plural(noun)
    return rng.choice(
        [
            f"{w.cap(k)} labelled {nouns} lie in {c}.",
            f"There are {k} labelled {nouns} in {c}.",
            f"The labels mark {k} {nouns}, located in {c}.",
            f"{w.cap(c)} {w.agree(many, 'holds', 'hold')} {k} labelled {nouns}.",
        ]
    )


def _negatives(facts: dict[str, Any], present: set[str], rng: random.Random) -> list[str]:
    """Classes the label file annotates with zero objects here (`labels.counts`)."""
    labels = facts.get("labels")
    if not labels:
        return []
    absent = [c for c in labels.get("classes_labelled") or [] if c not in present and c != "other"]
    if not absent:
        return []
    names = w.join([plural(c) for c in absent], "or")
    return [
        rng.choice(
            [
                f"The labels mark no {names} here.",
                f"No labelled {names} occur in the chip.",
                f"There are no labelled {names}.",
            ]
        )
    ]


def _lengths(known: list[float], n: int, rng: random.Random) -> list[str]:
    if not known:
        return []
    ls = w.lengths(known)
    if n == 1:
        return [rng.choice([f"It is {ls[0]} long.", f"Its length is {ls[0]}.", f"It measures {ls[0]}."])]
    if len(known) < n:
        if len(ls) == 1:
            return [f"The one with a known length measures {ls[0]}."]
        return [f"Those with a known length measure {ls[0]} to {ls[-1]}."]
    if len(set(ls)) == 1:
        return [f"Each is {ls[0]} long."]
    if n <= 3:
        return [rng.choice([f"They are {w.join(ls)} long.", f"They measure {w.join(ls)}."])]
    return [
        rng.choice(
            [
                f"Their lengths range from {ls[0]} to {ls[-1]}.",
                f"They measure {ls[0]} to {ls[-1]} in length.",
                f"Their lengths lie between {ls[0]} and {ls[-1]}.",
            ]
        )
    ]


def _point_sentence(unknown: int, n: int, rng: random.Random) -> list[str]:
    """Detections too small to measure (length_m null): point targets of unknown size."""
    if unknown == 0:
        return []
    if n == 1:
        return [
            rng.choice(
                ["It is a point target of unknown size.", "Its size is unknown: it is a point target."]
            )
        ]
    if unknown == n:
        return [rng.choice(["All of them are point targets of unknown size.", "Their sizes are unknown."])]
    if unknown == 1:
        return [
            "The other is a point target of unknown size."
            if n == 2
            else "One is a point target of unknown size."
        ]
    return [f"{w.cap(w.count(unknown, rng))} of them are point targets of unknown size."]


def _detections(dets: list[dict[str, Any]], rng: random.Random) -> list[str]:
    n = len(dets)
    if n == 0:
        return [
            w.pick(
                rng,
                ["No bright point targets "],
                ["are detected", "stand out", "show up", "are found by the CFAR detector"],
                [".", " in the chip.", " in this image.", " here."],
            )
        ]
    cl = cells_of(dets)
    c, many = w.cells(cl, rng), len(cl) > 1
    if n == 1:
        out = [
            rng.choice(
                [
                    f"One bright point target stands out in {c}.",
                    f"The CFAR detector finds a single bright point target, in {c}.",
                    f"There is one bright point target, located in {c}.",
                    f"{w.cap(c)} {w.agree(many, 'holds', 'hold')} a single bright point target.",
                ]
            )
        ]
    else:
        k = w.count(n, rng)
        out = [
            rng.choice(
                [
                    f"{w.cap(k)} bright point targets stand out in {c}.",
                    f"The CFAR detector finds {k} bright point targets in {c}.",
                    f"There are {k} bright point targets, located in {c}.",
                    f"{w.cap(c)} {w.agree(many, 'holds', 'hold')} {k} bright point targets.",
                ]
            )
        ]
    wet = sum(1 for d in dets if d["on_water"])
    if n == 1:
        out.append(
            rng.choice(["It lies on open water.", "It sits on open water."]) if wet else "It lies on land."
        )
    elif wet == n:
        out.append(
            rng.choice(
                [
                    "All of them lie on open water.",
                    "Both lie on open water." if n == 2 else "Each lies on open water.",
                ]
            )
        )
    elif wet == 0:
        out.append(rng.choice(["All of them lie on land.", "None of them lies on open water."]))
    else:
        words = rng.random() < 0.5
        out.append(
            f"{w.cap(w.count(wet, rng, words))} of them {w.agree(wet, 'lies', 'lie')} on open water and "
            f"{w.count(n - wet, rng, words)} on land."
        )
    known = [float(d["length_m"]) for d in dets if d.get("length_m") is not None]
    return out + _lengths(known, n, rng) + _point_sentence(n - len(known), n, rng)


def targets(facts: dict[str, Any], rng: random.Random) -> str:
    """Labelled objects by class (and the label file's absent classes), else the CFAR detections."""
    groups = object_groups(facts)
    dets = (facts.get("detections") or {}).get("items", [])
    if not groups:
        return " ".join(_detections(dets, rng))
    sentences: list[str] = []
    for noun, ts in groups:
        sentences.append(_group_sentence(noun, ts, rng))
        known = [float(t["length_m"]) for t in ts if t.get("length_m") is not None]
        sentences += _lengths(known, len(ts), rng)
    sentences += _negatives(facts, {object_class(o) for o in facts.get("objects") or []}, rng)
    return " ".join(sentences)


__all__ = ["keys_of_objects", "object_groups", "targets"]
