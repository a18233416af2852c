"""The page's drawings as inline SVG, made offline: the map (region box, graticule, scene extents and chip
footprints in lon/lat) and the horizontal bar charts (per stage, per reject reason).

The map is a plate carree with x scaled by cos(mid latitude), so ground shapes keep their proportions
near the region; no basemap tiles, no coastline: nothing is drawn that the build folder does not state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape

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


def _bounds(xs: Sequence[float], ys: Sequence[float], pad_frac: float) -> tuple[float, float, float, float]:
    """(west, east, south, north) around the points, padded by `pad_frac` of the larger side."""
    w, e, s, n = min(xs), max(xs), min(ys), max(ys)
    pad = pad_frac * max(e - w, n - s, 1e-4)
    return w - pad, e + pad, s - pad, n + pad


def map_svg(
    footprints: Sequence[Footprint],
    region_bbox: Sequence[float] | None,
    scene_labels: dict[str, str],
    scene_hulls: dict[str, list[tuple[float, float]]],
    *,
    overview: bool = False,
) -> str:
    """The map: the region box (dashed), a graticule, the extent covered by each scene's kept chips (the
    convex hull of their footprints) and every kept chip's footprint coloured by split; the chips shown as
    cards link to their card and carry the filter attributes. Framed on the footprints; `overview` frames
    the region too, and draws the detail map's frame instead of labels and links."""
    xs = [x for f in footprints for x, _ in f.ring]
    ys = [y for f in footprints for _, y in f.ring]
    if region_bbox is not None and (overview or not xs):
        xs += [region_bbox[0], region_bbox[2]]
        ys += [region_bbox[1], region_bbox[3]]
    if not xs:
        return '<p class="empty">No footprint to draw.</p>'
    w, e, s, n = _bounds(xs, ys, 0.04 if overview else 0.08)
    kx = math.cos(math.radians((s + n) / 2))
    if not overview:  # widen the shorter side to a 4:3 .. 2:1 landscape frame, centred
        aspect = (e - w) * kx / (n - s)
        if aspect < 4 / 3:
            grow = ((n - s) * 4 / 3 / kx - (e - w)) / 2
            w, e = w - grow, e + grow
        elif aspect > 2:
            grow = ((e - w) * kx / 2 - (n - s)) / 2
            s, n = s - grow, n + grow
    scale = MAP_WIDTH / ((e - w) * kx)
    height = (n - s) * scale

    def pt(lon: float, lat: float) -> str:
        return f"{(lon - w) * kx * scale:.1f},{(n - lat) * scale:.1f}"

    def ring(coords: Sequence[tuple[float, float]]) -> str:
        return " ".join(pt(x, y) for x, y in coords)

    id_attr = "" if overview else 'id="map" '
    label = (
        "overview: the region and where the chips are" if overview else "chip footprints and scene extents"
    )
    parts = [
        f'<svg {id_attr}class="{"overview" if overview else "map"}" '
        f'viewBox="0 0 {MAP_WIDTH:.0f} {height:.0f}" role="img" aria-label="{label} in lon/lat" '
        'xmlns="http://www.w3.org/2000/svg">',
        f'<rect class="sea" x="0" y="0" width="{MAP_WIDTH:.0f}" height="{height:.0f}"/>',
    ]
    if not overview:
        parts += _graticule(
            w, e, s, n, pt, height, (lambda lon: (lon - w) * kx * scale), (lambda lat: (n - lat) * scale)
        )
    if region_bbox is not None:
        rw, rs, re_, rn = region_bbox
        parts.append(
            f'<polygon class="region" points="{ring([(rw, rs), (re_, rs), (re_, rn), (rw, rn)])}">'
            "<title>region bbox (manifest region.bbox)</title></polygon>"
        )
    for sid, hull in sorted(scene_hulls.items()):
        parts.append(
            f'<polygon class="scene" data-scene="{escape(sid)}" points="{ring(hull)}">'
            f"<title>{escape(scene_labels.get(sid, sid))}: extent of its kept chips</title></polygon>"
        )
    for f in footprints:
        if overview:
            parts.append(f'<polygon class="ov {escape(f.split)}" points="{ring(f.ring)}"/>')
            continue
        attrs = (
            f'class="fp {escape(f.split)}{" shown" if f.shown else ""}" data-split="{escape(f.split)}" '
            f'data-scene="{escape(f.scene_id)}" data-targets="{"yes" if f.has_targets else "no"}"'
        )
        poly = f'<polygon {attrs} points="{ring(f.ring)}"><title>{escape(f.chip_id)} ({escape(f.split)})</title></polygon>'
        parts.append(f'<a href="#chip-{escape(f.chip_id)}">{poly}</a>' if f.shown else poly)
    if overview:
        cx = [x for f in footprints for x, _ in f.ring]
        cy = [y for f in footprints for _, y in f.ring]
        if cx:
            fw, fe, fs, fn = _bounds(cx, cy, 0.08)
            parts.append(f'<polygon class="view" points="{ring([(fw, fs), (fe, fs), (fe, fn), (fw, fn)])}"/>')
    parts.append("</svg>")
    return "\n".join(parts)


def _graticule(
    w: float,
    e: float,
    s: float,
    n: float,
    pt: Callable[[float, float], str],
    height: float,
    x_of: Callable[[float], float],
    y_of: Callable[[float], float],
) -> list[str]:
    """Meridians and parallels every `nice_step` degrees, labelled at the bottom and the left edge."""
    parts = []
    step = nice_step(max(e - w, n - s))
    k = math.ceil(w / step)
    while k * step <= e:
        lon = k * step
        parts.append(f'<polyline class="grat" points="{pt(lon, s)} {pt(lon, n)}"/>')
        parts.append(
            f'<text class="gl" x="{x_of(lon) + 4:.1f}" y="{height - 6:.1f}">{_fmt_deg(lon, step, "E", "W")}</text>'
        )
        k += 1
    k = math.ceil(s / step)
    while k * step <= n:
        lat = k * step
        parts.append(f'<polyline class="grat" points="{pt(w, lat)} {pt(e, lat)}"/>')
        parts.append(f'<text class="gl" x="4" y="{y_of(lat) - 5:.1f}">{_fmt_deg(lat, step, "N", "S")}</text>')
        k += 1
    return parts


def bars_svg(rows: Sequence[tuple[str, int, int | None, str]], label_width: float = 120.0) -> str:
    """Horizontal bars: (label, value, of, note) -> a bar of `value` (over a light bar of `of` when given),
    all on one scale, the number written at its end."""
    if not rows:
        return '<p class="empty">Nothing to chart.</p>'
    top = max(max(v, o or 0) for _, v, o, _ in rows) or 1
    bar_w, row_h, width = 300.0, 24.0, label_width + 300.0 + 250.0
    parts = [
        f'<svg class="bars" viewBox="0 0 {width:.0f} {row_h * len(rows) + 4:.0f}" '
        'xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, (label, value, of, note) in enumerate(rows):
        y = i * row_h + 2
        parts.append(f'<text class="bl" x="{label_width - 6:.0f}" y="{y + 17:.0f}">{escape(label)}</text>')
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
            f'<text class="bn" x="{label_width + bar_w * max(value, of or 0) / top + 6:.1f}" y="{y + 17:.0f}">{escape(text)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


__all__ = ["bars_svg", "map_svg", "nice_step"]
