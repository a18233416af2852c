"""The page's drawings as inline SVG, made offline: the map (region box, graticule, scene extents and chip
footprints in lon/lat) and the horizontal bar charts (per stage, per reject reason).

The map is a plate carree with x scaled by cos(mid latitude), so ground shapes keep their proportions
near the region; no basemap tiles, no coastline: nothing is drawn that the build folder does not state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

import shapely
from shapely.geometry import Polygon

from pipelines.preview.collect import Footprint

MAP_WIDTH = 1000.0  # viewBox units; the SVG scales to its container


def nice_step(span: float, target: int = 6) -> float:
    """A graticule step of 1, 2 or 5 x 10^k degrees giving about `target` lines over `span`."""
    if span <= 0:
        return 1.0
    raw = span / target
    k = 10.0 ** math.floor(math.log10(raw))
    return next(m * k for m in (1.0, 2.0, 5.0, 10.0) if m * k >= raw)


def _fmt_deg(v: float, step: float, pos: str, neg: str) -> str:
    decimals = max(0, -math.floor(math.log10(step)) if step < 1 else 0)
    return f"{abs(v):.{decimals}f}\u00b0{pos if v >= 0 else neg}"


def map_svg(
    footprints: Sequence[Footprint],
    region_bbox: Sequence[float] | None,
    scene_labels: dict[str, str],
) -> str:
    """The map: the region box (dashed), a graticule, the extent covered by each scene's kept chips (the
    convex hull of their footprints) and every kept chip's footprint coloured by split; the chips shown as
    cards link to their card and carry the filter attributes."""
    xs = [x for f in footprints for x, _ in f.ring]
    ys = [y for f in footprints for _, y in f.ring]
    if region_bbox is not None:
        xs += [region_bbox[0], region_bbox[2]]
        ys += [region_bbox[1], region_bbox[3]]
    if not xs:
        return '<p class="empty">No footprint to draw.</p>'
    w, e, s, n = min(xs), max(xs), min(ys), max(ys)
    pad = 0.04 * max(e - w, n - s, 1e-6)
    w, e, s, n = w - pad, e + pad, s - pad, n + pad
    kx = math.cos(math.radians((s + n) / 2))
    scale = MAP_WIDTH / ((e - w) * kx)
    height = (n - s) * scale

    def pt(lon: float, lat: float) -> str:
        return f"{(lon - w) * kx * scale:.1f},{(n - lat) * scale:.1f}"

    def ring(coords: Sequence[tuple[float, float]]) -> str:
        return " ".join(pt(x, y) for x, y in coords)

    parts = [
        f'<svg id="map" class="map" viewBox="0 0 {MAP_WIDTH:.0f} {height:.0f}" role="img" '
        'aria-label="chip footprints and scene extents in lon/lat" xmlns="http://www.w3.org/2000/svg">',
        f'<rect class="sea" x="0" y="0" width="{MAP_WIDTH:.0f}" height="{height:.0f}"/>',
    ]
    step = nice_step(max(e - w, n - s))
    lon0 = math.ceil(w / step) * step
    k = 0
    while lon0 + k * step <= e:
        lon = lon0 + k * step
        parts.append(f'<polyline class="grat" points="{pt(lon, s)} {pt(lon, n)}"/>')
        parts.append(
            f'<text class="gl" x="{(lon - w) * kx * scale + 3:.1f}" y="{height - 4:.1f}">'
            f"{_fmt_deg(lon, step, 'E', 'W')}</text>"
        )
        k += 1
    lat0 = math.ceil(s / step) * step
    k = 0
    while lat0 + k * step <= n:
        lat = lat0 + k * step
        parts.append(f'<polyline class="grat" points="{pt(w, lat)} {pt(e, lat)}"/>')
        parts.append(f'<text class="gl" x="3" y="{(n - lat) * scale - 3:.1f}">{_fmt_deg(lat, step, "N", "S")}</text>')
        k += 1
    if region_bbox is not None:
        rw, rs, re_, rn = region_bbox
        parts.append(
            f'<polygon class="region" points="{ring([(rw, rs), (re_, rs), (re_, rn), (rw, rn)])}">'
            "<title>region bbox (manifest region.bbox)</title></polygon>"
        )
    by_scene: dict[str, list[Polygon]] = {}
    for f in footprints:
        by_scene.setdefault(f.scene_id, []).append(Polygon(f.ring))
    for sid, polys in sorted(by_scene.items()):
        hull = shapely.convex_hull(shapely.union_all(polys))
        if isinstance(hull, Polygon):
            parts.append(
                f'<polygon class="scene" data-scene="{escape(sid)}" points="{ring(list(hull.exterior.coords))}">'
                f"<title>{escape(scene_labels.get(sid, sid))}: extent of its kept chips</title></polygon>"
            )
    for f in footprints:
        attrs = (
            f'class="fp {escape(f.split)}{" shown" if f.shown else ""}" data-split="{escape(f.split)}" '
            f'data-scene="{escape(f.scene_id)}" data-targets="{"yes" if f.has_targets else "no"}"'
        )
        poly = f'<polygon {attrs} points="{ring(f.ring)}"><title>{escape(f.chip_id)} ({escape(f.split)})</title></polygon>'
        parts.append(f'<a href="#chip-{escape(f.chip_id)}">{poly}</a>' if f.shown else poly)
    parts.append("</svg>")
    return "\n".join(parts)


def bars_svg(rows: Sequence[tuple[str, int, int | None, str]], label_width: float = 150.0) -> str:
    """Horizontal bars: (label, value, of, note) -> a bar of `value` (over a light bar of `of` when given),
    all on one scale, the number written at its end."""
    if not rows:
        return '<p class="empty">Nothing to chart.</p>'
    top = max(max(v, o or 0) for _, v, o, _ in rows) or 1
    bar_w, row_h, width = 420.0, 22.0, label_width + 420.0 + 260.0
    parts = [
        f'<svg class="bars" viewBox="0 0 {width:.0f} {row_h * len(rows) + 4:.0f}" '
        'xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, (label, value, of, note) in enumerate(rows):
        y = i * row_h + 2
        parts.append(f'<text class="bl" x="{label_width - 6:.0f}" y="{y + 15:.0f}">{escape(label)}</text>')
        if of is not None:
            parts.append(
                f'<rect class="of" x="{label_width:.0f}" y="{y + 2:.0f}" width="{bar_w * of / top:.1f}" height="{row_h - 6:.0f}"/>'
            )
        parts.append(
            f'<rect class="val" x="{label_width:.0f}" y="{y + 2:.0f}" width="{bar_w * value / top:.1f}" height="{row_h - 6:.0f}">'
            f"<title>{escape(label)}: {value}{f' of {of}' if of is not None else ''}</title></rect>"
        )
        text = f"{value}" + (f" / {of}" if of is not None else "") + (f"  {note}" if note else "")
        parts.append(
            f'<text class="bn" x="{label_width + bar_w * max(value, of or 0) / top + 6:.1f}" y="{y + 15:.0f}">{escape(text)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


__all__ = ["bars_svg", "map_svg", "nice_step"]
