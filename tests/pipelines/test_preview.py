"""`preview OUTPUT` on a fresh demo build (through the CLI), loaded in a REAL headless browser (Debian's
chromium): no console message, one card per chip shown, filters set from the URL hash hide the right
cards, a non-blank screenshot; and the parts without a browser: selection, boxes, false colours, errors.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import shapely
from PIL import Image

from pipelines.preview.anchors import false_colour, principal_axes
from pipelines.preview.collect import collect, select
from pipelines.preview.render import render
from schemas.aef import quantize
from tests.pipelines.demo import cli

ROOT = Path(__file__).resolve().parents[2]
MAX_CHIPS = 12
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium not installed (Debian: apt-get install chromium; .ci/run does it as root)",
)


@pytest.fixture(scope="module")
def page(built: Path) -> Path:
    dest = built.parent / "page" / "preview.html"
    r = cli("preview", str(built), "--out", str(dest), "--max-chips", str(MAX_CHIPS))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert f"{MAX_CHIPS} of 43 chip(s)" in r.stdout
    return dest


class _Elements(HTMLParser):
    """Every start tag with its attributes, and the text of the element with id=shown-count."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self._in_count = False
        self.count_text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_count = dict(attrs).get("id") == "shown-count"

    def handle_data(self, data: str) -> None:
        if self._in_count:
            self.count_text += data
            self._in_count = False


def parse(html: str) -> _Elements:
    p = _Elements()
    p.feed(html)
    return p


def cards(doc: _Elements) -> list[dict[str, str | None]]:
    return [a for t, a in doc.tags if t == "article" and "card" in (a.get("class") or "").split()]


def chromium(url: str, *extra: str) -> tuple[str, str]:
    """(DOM after the page's scripts ran, stderr) of a headless chromium load. All network goes to a
    closed loopback proxy, so a page that fetched anything would log a console error."""
    assert CHROMIUM is not None
    r = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            "--proxy-server=http://127.0.0.1:9",
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout, r.stderr


def console_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ":CONSOLE" in ln or "Uncaught" in ln]


def test_the_page_is_self_contained_and_leaks_no_local_path(built: Path, page: Path) -> None:
    html = page.read_text(encoding="utf-8")
    doc = parse(html)
    for tag, attrs in doc.tags:
        for key in ("src", "href"):
            v = attrs.get(key) or ""
            if (
                tag == "a" and key == "href" and attrs.get("class") == "osm"
            ):  # a link to follow online, not a load
                assert v.startswith("https://www.openstreetmap.org/?mlat="), v
                continue
            assert not v.startswith(("http:", "https:", "//", "file:")), (tag, key, v[:80])
        assert tag not in ("link", "iframe", "object", "embed"), tag
    imgs = [a["src"] for t, a in doc.tags if t == "img"]
    assert len(imgs) == 2 * MAX_CHIPS and all((s or "").startswith("data:image/png;base64,") for s in imgs)
    assert str(built) not in html and str(ROOT) not in html and "/tmp" not in html


@needs_chromium
def test_chromium_loads_it_without_console_messages_and_shows_every_card(page: Path) -> None:
    dom, err = chromium(page.as_uri(), "--dump-dom")
    assert console_lines(err) == []
    doc = parse(dom)
    shown = cards(doc)
    assert len(shown) == MAX_CHIPS and not any("hidden" in c for c in shown)
    assert doc.count_text == str(MAX_CHIPS)
    # the map holds every kept chip; the cards' chips link to their card
    fps = [a for t, a in doc.tags if t == "polygon" and "fp" in (a.get("class") or "").split()]
    assert len(fps) == 43
    links = {a.get("href") for t, a in doc.tags if t == "a"}
    assert {f"#{c['id']}" for c in shown} <= links


@needs_chromium
@pytest.mark.parametrize("hash_", ["split=train", "targets=yes", "targets=no", "split=test&targets=no"])
def test_a_filter_in_the_url_hash_hides_the_other_cards(page: Path, hash_: str) -> None:
    everything = cards(parse(page.read_text(encoding="utf-8")))
    want = dict(kv.split("=") for kv in hash_.split("&"))
    expected = {c["id"] for c in everything if all(c[f"data-{k}"] == v for k, v in want.items())}
    assert 0 < len(expected) < len(everything)  # the filter has something to hide and something to show
    dom, err = chromium(page.as_uri() + "#" + hash_, "--dump-dom")
    assert console_lines(err) == []
    doc = parse(dom)
    visible = {c["id"] for c in cards(doc) if "hidden" not in c}
    assert visible == expected
    assert doc.count_text == str(len(expected))
    dimmed = [a for t, a in doc.tags if t == "polygon" and "dim" in (a.get("class") or "").split()]
    assert dimmed and all(any(a[f"data-{k}"] != v for k, v in want.items()) for a in dimmed)


@needs_chromium
def test_the_screenshot_is_not_blank(page: Path, tmp_path: Path) -> None:
    shot = tmp_path / "preview.png"
    _, err = chromium(page.as_uri(), f"--screenshot={shot}", "--window-size=1400,1800")
    assert console_lines(err) == []
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (1800, 1400) and pixels.std() > 20  # a blank or one-colour page is ~0


def test_the_selection_shows_every_split_scene_and_targets_group(built: Path) -> None:
    rows = pq.read_table(built / "metadata.parquet").to_pylist()
    picked = select(rows, MAX_CHIPS)
    assert len(picked) == MAX_CHIPS and len({r["chip_id"] for r in picked}) == MAX_CHIPS

    def key(r: dict) -> tuple:  # type: ignore[type-arg]
        return (r["split"], r["scene_id"], r["n_detections"] + r["n_objects"] > 0)

    assert {key(r) for r in picked} == {key(r) for r in rows}
    assert len(select(rows, 1000)) == len(rows)


def test_boxes_from_the_facts_and_from_the_qa_answers_coincide(built: Path) -> None:
    data = collect(built, 1000)
    with_targets = [c for c in data.cards if c.has_targets]
    assert with_targets and len(data.cards) == 43 and len(data.footprints) == 43
    for c in data.cards:
        facts = sorted(b.box for b in c.boxes if b.source == "facts")
        qa = sorted(b.box for b in c.boxes if b.source == "qa")
        assert len(facts) == c.n_detections + c.n_objects
        # the demo's boxes are whole pixels, so the answer's pixels normalize to the facts' bbox_norm
        assert qa == facts, c.chip_id
        assert all(0 <= v <= 1 for b in facts for v in b)


def test_principal_axes_match_an_svd_and_the_colours_are_shared_across_chips() -> None:
    rng = np.random.default_rng(0)
    g = 4
    # values varying mostly along one 64-d direction, plus small noise: PC1 is that direction
    direction = rng.normal(size=64)
    direction /= np.linalg.norm(direction)
    t = np.linspace(-1, 1, 2 * g * g)
    values = 0.1 * t[:, None] * direction + 0.002 * rng.normal(size=(2 * g * g, 64))
    _, axes, share = principal_axes(values)
    _, _, vt = np.linalg.svd(values - values.mean(0), full_matrices=False)
    for i in range(3):
        assert abs(float(axes[i] @ vt[i])) == pytest.approx(1.0, abs=1e-6)
    assert share[0] > 0.9
    codes = quantize(values).reshape(2, g * g, 64)
    valid = np.ones((2, g * g), dtype=bool)
    valid[1, 0] = False  # one invalid anchor: transparent
    images, fit = false_colour([codes[0], codes[1]], [valid[0], valid[1]], [g, g])
    a, b = images
    assert a is not None and b is not None and a.shape == (g, g, 4)
    assert fit["anchors"] == 2 * g * g - 1
    assert b[0, 0, 3] == 0 and (a[..., 3] == 255).all()
    # red (PC1) follows t across both chips (its sign is a convention): over the anchors in order
    red = np.concatenate([a[..., 0].ravel(), b[..., 0].ravel()[1:]]).astype(float)
    assert abs(np.corrcoef(red, np.delete(t, g * g))[0, 1]) > 0.99 and np.ptp(red) > 200
    # the same code vector gets the same colour in another chip
    again, _ = false_colour([codes[0], codes[1]], [valid[0], valid[1]], [g, g])
    assert again[0] is not None and np.array_equal(again[0], a)


def test_bad_folders_get_one_line_errors(
    tmp_path: Path, built: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.cli import main

    half = tmp_path / "half"
    half.mkdir()
    shutil.copy(built / "manifest.json", half / "manifest.json")
    cases = [
        ([str(tmp_path / "nothing")], "manifest.json: not found"),
        ([str(half)], "metadata.parquet: not found; this folder was built before"),
        ([str(built), "--max-chips", "0", "--out", str(tmp_path / "x.html")], "--max-chips 0: must be"),
    ]
    for args, message in cases:
        assert main(["preview", *args]) == 2
        err = capsys.readouterr().err
        assert message in err and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.html").exists()


def test_the_default_page_goes_into_the_build_folder(built: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    r = cli("preview", str(copy))
    assert r.returncode == 0, r.stderr
    html = (copy / "preview.html").read_text(encoding="utf-8")
    assert len(cards(parse(html))) == 43
    m = json.loads((copy / "manifest.json").read_text())
    assert m["pretty_name"] in html and "SYNTHETIC stand-in" in html
    assert str(m["text_quality"]["templates"]) in html


def test_a_large_build_draws_the_shown_chips_and_a_sample_but_whole_scene_extents(
    built: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipelines.preview.collect as collect_module

    full = collect(built, 5)
    monkeypatch.setattr(collect_module, "MAX_FOOTPRINTS", 10)
    capped = collect(built, 5)
    shown = {c.chip_id for c in capped.cards}
    drawn = {f.chip_id for f in capped.footprints}
    assert shown <= drawn and len(drawn) <= 10 + len(shown) and len(drawn) < 43
    assert capped.scene_hulls == full.scene_hulls and len(full.scene_hulls) == 2
    # each scene's extent holds every vertex of every kept chip of that scene
    for f in full.footprints:
        hull = shapely.Polygon(full.scene_hulls[f.scene_id]).buffer(1e-9)
        assert hull.contains(shapely.Polygon(f.ring)), f.chip_id
    assert f"{len(drawn)} of the 43 kept chips' footprints" in render(capped)
