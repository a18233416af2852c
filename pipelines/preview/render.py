"""The preview page: one self-contained HTML file (inline CSS, JS and SVG, images as data: URIs), so it
opens offline, from a mail attachment or a hub repository alike.

Rendered with Jinja2 (autoescaped: captions and ids are text, never markup). Only fields that describe
the dataset are shown: no path of the machine that built it (the manifest's config and scene URIs are
left out on purpose).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from pipelines.preview.collect import Card, Preview
from pipelines.preview.svg import bars_svg, map_svg

# What each text_quality figure means (manifest `text_quality`, triplet_builder/text/quality.py).
TEXT_QUALITY_HELP = {
    "captions": "kept captions measured",
    "sentences": "sentences in them",
    "templates": "distinct sentence templates (numbers, number words and names masked)",
    "template_ratio": "templates / sentences",
    "distinct_3gram_ratio": "distinct word 3-grams / all 3-grams",
    "repeated_sentence_share": "share of sentences found verbatim in repeat_captions or more captions",
    "repeat_captions": "captions a sentence must be in to count as repeated",
    "captions_repeating_a_percentage": "captions stating the same percentage in two sentences",
    "agreement_errors": "number-agreement slips found (a heuristic)",
    "words.min": "caption length in words: min",
    "words.median": "caption length in words: median",
    "words.p90": "caption length in words: 90th percentile",
    "words.max": "caption length in words: max",
    "checker.rows_checked": "rows the consistency checker ran on again",
    "checker.rows_with_problems": "rows where it found a problem",
    "checker.problems": "problems it found",
    "checker.sentences_with_checked_values": "share of sentences holding a value the checker verifies",
}


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out += _flatten(v, key + ".")
        else:
            out.append((key, v))
    return out


def _scene_labels(manifest: dict[str, Any]) -> dict[str, str]:
    return {
        s["scene_id"]: f"{s['acquired'][:10]} {s.get('sensor', '')} {'+'.join(s.get('polarisations', []))} "
        f"{s.get('backscatter', '')} ({s['scene_id']})"
        for s in manifest.get("scenes", [])
    }


def _stage_rows(manifest: dict[str, Any]) -> list[tuple[str, int, int | None, str]]:
    stages = manifest.get("stages", {})
    rows: list[tuple[str, int, int | None, str]] = []
    for name in manifest.get("stage_order") or sorted(stages):
        st = stages.get(name)
        if st is None:
            continue
        rej = ", ".join(f"{r} {n}" for r, n in sorted(st.get("rejected", {}).items()))
        rows.append((name, int(st["kept"]), int(st["seen"]), f"rejected: {rej}" if rej else ""))
    return rows


def _reason_rows(manifest: dict[str, Any]) -> list[tuple[str, int, int | None, str]]:
    reasons = (manifest.get("counts") or {}).get("rejected_by_reason") or {}
    return [(r, int(n), None, "") for r, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))]


def _box_rects(card: Card) -> Markup:
    """The boxes of a card as SVG rects in the normalized frame (viewBox 0 0 1 1 over the image)."""
    parts = []
    for b in card.boxes:
        x1, y1, x2, y2 = b.box
        parts.append(
            Markup(
                '<rect class="box {}" x="{:.5f}" y="{:.5f}" width="{:.5f}" height="{:.5f}"><title>{} ({})</title></rect>'
            ).format(b.source, x1, y1, max(x2 - x1, 0.0), max(y2 - y1, 0.0), b.label, b.source)
        )
    return Markup("").join(parts)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["boxes"] = _box_rects
    return env


def render(preview: Preview) -> str:
    """The page's HTML."""
    m = preview.manifest
    labels = _scene_labels(m)
    scenes = sorted({c.scene_id for c in preview.cards} | {f.scene_id for f in preview.footprints})
    splits = [s for s in ("train", "validation", "test") if any(f.split == s for f in preview.footprints)]
    tq = m.get("text_quality") or {}
    bbox = (m.get("region") or {}).get("bbox")
    hulls = preview.scene_hulls
    return (
        _environment()
        .get_template("page.html.j2")
        .render(
            m=m,
            cards=preview.cards,
            kept=preview.kept,
            pca=preview.pca,
            splits=splits,
            scenes=[(s, labels.get(s, s)) for s in scenes],
            scene_labels=labels,
            map_svg=Markup(map_svg(preview.footprints, bbox, labels, hulls)),
            overview_svg=Markup(map_svg(preview.footprints, bbox, labels, hulls, overview=True)),
            footprints_drawn=len(preview.footprints),
            stages_svg=Markup(bars_svg(_stage_rows(m))),
            reasons_svg=Markup(bars_svg(_reason_rows(m))) if _reason_rows(m) else None,
            text_quality=[(k, v, TEXT_QUALITY_HELP.get(k, "")) for k, v in _flatten(tq)],
            synthetic=bool(m.get("synthetic_embeddings")) or any(c.aef_synthetic for c in preview.cards),
        )
    )


__all__ = ["render"]
