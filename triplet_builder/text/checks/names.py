"""Names of things in a caption field that the land-cover and OSM checks have not judged: functions of
the area (port, urban area ..., triplet_builder/facts/functionality.py), object classes and OSM features
(schemas/vocabulary.py), and the terms no fact can support (`UNGROUNDED_TERMS`: rivers, forests ...).

- a function named must be derived from the facts (`check_functionality`, for every field);
- an object class or OSM feature named must be in the facts: labelled objects of that class, or an OSM
  feature mapped; in a clause about labels only the objects count; denied ("no aircraft") only for a
  class of `labels.classes_labelled` without objects or a feature of `ext.osm.queried` not mapped;
- any other term of `UNGROUNDED_TERMS` is unsupported.
"""

from __future__ import annotations

from schemas.vocabulary import OBJECT_CLASSES, OSM_FEATURES
from triplet_builder.facts.functionality import blank_strings, check_functionality, named_function_spans
from triplet_builder.text.checks.context import Context, cell_refs, clause_of, clause_spans, mask_spans
from triplet_builder.text.checks.vocab import Mention, mentions, negated
from triplet_builder.text.classes import LABELS_PHRASE_RE, labelled_classes, osm_section
from triplet_builder.text.conventions import object_class

Span = tuple[int, int]


def mask_places(ctx: Context, text: str) -> str:
    """Place names ("Port-Saint-Louis", "Bridgetown") are names, not claims of a port or a bridge."""
    return blank_strings(text, ctx.place_strings())


def check_vocabulary(ctx: Context, field: str, text: str) -> list[str]:
    """Functions, object classes / OSM features and ungrounded terms of a field (text already masked
    where the land-cover and OSM checks judged it)."""
    text = mask_places(ctx, text)
    out = [
        p.replace("functionality:", f"{field}:", 1) if field != "functionality" else p
        for p in check_functionality(text, ctx.facts)
    ]
    text = mask_spans(text, [(a, b) for _, a, b in named_function_spans(text)])
    clauses = clause_spans(text)
    ref_starts = [r.start for r in cell_refs(text, set())]
    judged: list[Span] = []
    for m in mentions(text):
        judged.append((m.start, m.end))
        a, b = clause_of(clauses, m.start)
        if any(a <= r < b for r in ref_starts) and negated(text, m.start, m.end, a):
            continue  # "no ships in cells 7 and 9": a claim about cells, judged by text/checks/cells.py
        problem = _check_class(ctx, field, text, m, a, LABELS_PHRASE_RE.search(text, a, b) is not None)
        out += [problem] if problem else []
    text = mask_spans(text, judged)
    out += [
        f"{field}: '{m.group('term')}' is not supported by the facts"
        for m in ctx.ungrounded_re.finditer(text)
    ]
    return out


def _check_class(ctx: Context, field: str, text: str, m: Mention, a: int, labels_only: bool) -> str | None:
    """One object class / OSM feature named (see the module docstring); None when the facts hold it."""
    key = m.key
    is_object = key in OBJECT_CLASSES
    osm = None if labels_only else osm_section(ctx.facts)
    feats = (osm or {}).get("features") or {}
    is_osm = key in OSM_FEATURES and osm is not None
    n_objects = sum(1 for o in ctx.objects if object_class(o) == key) if is_object else 0
    if negated(text, m.start, m.end, a):
        labelled = bool(ctx.facts.get("labels")) and key in labelled_classes(ctx.facts)
        queried = is_osm and key in ((osm or {}).get("queried") or [])
        if (is_object and labelled and n_objects == 0) or (queried and key not in feats):
            return None
        if n_objects or key in feats:
            return f"{field}: says no {key} but the facts have {n_objects or feats[key]['count']}"
        looked = "a labelled class" if labels_only else "a labelled class nor a queried OSM feature"
        return f"{field}: says no {key} but {key} is not {looked}"
    if n_objects or (is_osm and key in feats):
        return None
    sources = "labelled objects" + ("" if labels_only else " nor OpenStreetMap features")
    return f"{field}: '{m.words}' names {key}, which is not among the facts' {sources}"


__all__ = ["check_vocabulary", "mask_places"]
