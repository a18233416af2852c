"""A loopback Earth Engine REST server that the REAL `ee` client talks to, with faults injected per test.

What it answers (the calls `ee.Initialize`, `ee.data.computePixels` and `ee.data.listImages` make with
the API version the client asks for, v1):
- GET  /$discovery/rest?version=v1  a HAND-WRITTEN v1 discovery document (earthengine_discovery_v1.json:
                                   the resources, methods, paths and typed parameters the client uses,
                                   in the live document's shape), its rootUrl rewritten to this server;
                                   any other version is a 404, as for an unknown API version.
- GET  /v1/projects/P/algorithms   the algorithms list the `ee` package ships (ee/tests/algorithms.json).
- GET  /v1/projects/earthengine-public/assets/C:listAssets?filter=...&view=FULL&pageSize=...
                                   the images of collection C in a small in-memory catalogue, filtered
                                   by every clause of the filter (startTime / endTime / intersects(...)
                                   / properties.K op V; an unknown clause is an error), paged; the
                                   BASIC view sets only type, name and id (unspecified = FULL).
- POST /v1/projects/P/image:computePixels   the serialized expression graph is read far enough to
                                   find the image (Image.load) or collection (ImageCollection.load) and
                                   its date filter, the selected bands (and new names) and the unmask
                                   sentinel, and `reduce(Reducer.mode())` (the per-pixel most common
                                   valid value, ties to the lowest, bands named <band>_mode as Earth
                                   Engine names them); the
                                   pixels come from local rasters reprojected (nearest) onto the grid,
                                   as NPY (a structured array, one field per band) or GeoTIFF.
Every API call (not the discovery document, which Google serves publicly) must carry
`Authorization: Bearer <token>` (`token`, default "test-token", what the test fixtures put in
EE_ACCESS_TOKEN); otherwise it is answered 401 UNAUTHENTICATED, as Earth Engine does.

AlphaEarth rasters (int8 codes, -128 nodata) are served de-quantized to the float values Earth Engine
holds (v = sign(q) (q / 127.5)^2), so a client that re-quantizes must get the codes back exactly.

Faults, latency and accounting live on the server object (see `ee_server_attrs`):
`list_faults` (HTTP statuses, e.g. ["503"]) is consumed one per listAssets request, and
`faults` is a list consumed one per computePixels request: "429", "500", "slow" (answers after
`slow_s`, past the client's deadline) or "too_large" (the 400 Earth Engine sends for oversized
requests); any request whose response would exceed `max_bytes` also gets that 400. `latency_s` delays
every computePixels answer; `gather` holds the first N computePixels requests until N are in flight at
once (tests.servers.Gather). `log` records every request; `inflight` / `max_inflight` and `events`
(time, +1 / -1) measure achieved concurrency.
"""

from __future__ import annotations

import io
import json
import math
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import ee
import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.enums import Resampling
from rasterio.io import MemoryFile
from rasterio.warp import reproject
from rasterio.warp import transform as rio_transform
from rasterio.windows import Window

from schemas.aef import NODATA as AEF_NODATA
from schemas.aef import dequantize
from tests.servers import Gather
from tests.servers.faults import inject

EE_DIR = Path(ee.__file__).parent / "tests"
DISCOVERY = Path(__file__).with_name("earthengine_discovery_v1.json")
ALGORITHMS = EE_DIR / "algorithms.json"
MAX_BYTES = 48 * 2**20


@dataclass(frozen=True)
class Raster:
    """A local raster standing in for an Earth Engine image: its file, band names in file order, its
    start time, and how its values are stored (`aef`: int8 codes to de-quantize, -128 nodata)."""

    path: Path
    bands: tuple[str, ...]
    start: datetime
    kind: str = "float"  # "float" or "aef"


@dataclass
class LoggedRequest:
    method: str
    kind: str  # discovery, algorithms, listAssets, computePixels, unauthenticated, other
    path: str
    status: int
    nbytes: int
    fault: str | None
    t0: float
    t1: float
    body: dict[str, Any] | None = None


@dataclass
class _Image:
    """What an expression evaluates to: which rasters, which bands, what masked pixels become."""

    rasters: list[Raster]
    bands: tuple[str, ...] | None = None
    sentinel: float | None = None
    reducer: str = "mosaic"  # or "mode": the most common valid value per pixel (ties: the lowest)
    names: dict[str, str] = field(default_factory=dict)  # band name -> the rasters' band it reads


@dataclass
class _Collection:
    id: str
    start: str | None = None
    end: str | None = None
    filters: list[str] = field(default_factory=list)


class BadRequest(Exception):
    pass


def _discovery(root: str) -> bytes:
    doc = json.loads(DISCOVERY.read_text())
    doc["rootUrl"] = root + "/"
    doc["baseUrl"] = root + "/"
    return json.dumps(doc).encode()


class EEHandler(BaseHTTPRequestHandler):
    """See the module docstring; state lives on the server (`ee_server_attrs`)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    # --------------------------------------------------------------------------------- plumbing
    @property
    def srv(self) -> Any:
        return self.server

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (deadline): fine
            pass

    def _error(self, status: int, message: str, reason: str) -> bytes:
        body = json.dumps({"error": {"code": status, "message": message, "status": reason}}).encode()
        self._send(status, body)
        return body

    def _record(
        self, kind: str, status: int, nbytes: int, fault: str | None, t0: float, body: Any = None
    ) -> None:
        with self.srv.lock:
            self.srv.log.append(
                LoggedRequest(
                    self.command,
                    kind,
                    urlsplit(self.path).path,
                    status,
                    nbytes,
                    fault,
                    t0,
                    time.monotonic(),
                    body,
                )
            )

    def _authorized(self) -> bool:
        token = getattr(self.srv, "token", None)
        return token is None or self.headers.get("Authorization") == f"Bearer {token}"

    # ------------------------------------------------------------------------------------- GET
    def do_GET(self) -> None:
        t0 = time.monotonic()
        url = urlsplit(self.path)
        if url.path.startswith("/$discovery/rest"):
            version = parse_qs(url.query).get("version", [""])[0]
            if version != "v1":
                self._record("discovery", 404, 0, None, t0)
                self._error(404, f"discovery document of version {version!r} not found", "NOT_FOUND")
                return
            body = _discovery(self.srv.url)
            self._record("discovery", 200, len(body), None, t0)
            self._send(200, body)
        elif not self._authorized():
            self._record("unauthenticated", 401, 0, None, t0)
            self._error(401, "Request is missing required authentication credential.", "UNAUTHENTICATED")
        elif re.fullmatch(r"/v1/projects/[^/]+/algorithms", url.path):
            body = ALGORITHMS.read_bytes()
            self._record("algorithms", 200, len(body), None, t0)
            self._send(200, body)
        elif url.path.endswith(":listAssets"):
            if inject(self, f"GET {self.path}"):  # server.fault_plan: deterministic faults
                return
            with self.srv.lock:
                fault = self.srv.list_faults.pop(0) if self.srv.list_faults else None
            if fault is not None:
                self._record("listAssets", int(fault), 0, fault, t0)
                self._error(int(fault), "The service is currently unavailable.", "UNAVAILABLE")
                return
            query = parse_qs(url.query)
            status, body = self._list_assets(url.path, query)
            self._record("listAssets", status, len(body), None, t0, {k: v[0] for k, v in query.items()})
            self._send(status, body)
        else:
            self._record("other", 404, 0, None, t0)
            self._error(404, f"no such resource {url.path}", "NOT_FOUND")

    def _list_assets(self, path: str, query: dict[str, list[str]]) -> tuple[int, bytes]:
        m = re.match(r"^/v1/projects/earthengine-public/assets/(?P<parent>.+):listAssets$", path)
        if m is None or m["parent"] not in self.srv.catalogue:
            return 404, json.dumps({"error": {"code": 404, "message": f"{path} not found"}}).encode()
        images = [
            img for img in self.srv.catalogue[m["parent"]] if _matches(img, query.get("filter", [""])[0])
        ]
        size = int(query.get("pageSize", [self.srv.page_size])[0])
        offset = int(query.get("pageToken", ["0"])[0])
        # EarthEngineAssetView: unspecified = FULL; BASIC sets only type, name and id
        if query.get("view", ["FULL"])[0] == "BASIC":
            images = [{k: img[k] for k in ("type", "name", "id") if k in img} for img in images]
        page: dict[str, Any] = {"assets": images[offset : offset + size]}
        if offset + size < len(images):
            page["nextPageToken"] = str(offset + size)
        return 200, json.dumps(page).encode()

    # ------------------------------------------------------------------------------------ POST
    def do_POST(self) -> None:
        t0 = time.monotonic()
        n = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(n)
        if not self._authorized():
            self._record("unauthenticated", 401, 0, None, t0)
            self._error(401, "Request is missing required authentication credential.", "UNAUTHENTICATED")
            return
        if not re.fullmatch(r"/v1/projects/[^/]+/image:computePixels", self.path.split("?")[0]):
            self._record("other", 404, 0, None, t0)
            self._error(404, f"no such method {self.path}", "NOT_FOUND")
            return
        if inject(self, f"POST {self.path} {raw.decode(errors='replace')}"):
            return
        req = json.loads(raw)
        with self.srv.lock:
            fault = self.srv.faults.pop(0) if self.srv.faults else None
            self.srv.inflight += 1
            self.srv.max_inflight = max(self.srv.max_inflight, self.srv.inflight)
            self.srv.events.append((t0, +1))
        try:
            self.srv.gather()
            status, body, ctype = self._compute(req, fault)
            # recorded on arrival, before any latency or deadline fault: a client that gives up on a
            # slow answer has already been counted (no race with a test counting requests)
            self._record("computePixels", status, len(body), fault, t0, req)
            if self.srv.latency_s:
                time.sleep(self.srv.latency_s)
            if fault == "slow":
                time.sleep(self.srv.slow_s)
        finally:
            with self.srv.lock:
                self.srv.inflight -= 1
                self.srv.events.append((time.monotonic(), -1))
        self._send(status, body, ctype)

    def _compute(self, req: dict[str, Any], fault: str | None) -> tuple[int, bytes, str]:
        def err(status: int, message: str, reason: str) -> tuple[int, bytes, str]:
            body = json.dumps({"error": {"code": status, "message": message, "status": reason}}).encode()
            return status, body, "application/json"

        if fault == "429":
            return err(429, "Too many concurrent aggregations.", "RESOURCE_EXHAUSTED")
        if fault == "500":
            return err(500, "An internal error has occurred.", "INTERNAL")
        try:
            image = _evaluate(req["expression"], self.srv.rasters)
            grid = req["grid"]
            width, height = int(grid["dimensions"]["width"]), int(grid["dimensions"]["height"])
            bands = image.bands or (image.rasters[0].bands if image.rasters else ())
            size = width * height * len(bands) * 4
            if fault == "too_large" or size > self.srv.max_bytes:
                return err(
                    400,
                    f"Total request size ({size} bytes) must be less than or equal to {self.srv.max_bytes} bytes.",
                    "INVALID_ARGUMENT",
                )
            values = _render(image, bands, grid, width, height)
        except BadRequest as e:
            return err(400, str(e), "INVALID_ARGUMENT")
        fmt = req.get("fileFormat", "NPY")
        if fmt == "NPY":
            arr = np.empty((height, width), dtype=[(b, "<f4") for b in bands])
            for i, b in enumerate(bands):
                arr[b] = values[i]
            bio = io.BytesIO()
            np.save(bio, arr, allow_pickle=False)
            return 200, bio.getvalue(), "application/octet-stream"
        if fmt == "GEO_TIFF":
            return 200, _geotiff(values, bands, grid, width, height), "image/tiff"
        return err(400, f"fileFormat {fmt} is not served here", "INVALID_ARGUMENT")


# ------------------------------------------------------------------------------------------- filters
_CLAUSE = re.compile(
    r'^\s*(?:(?P<field>startTime|endTime|properties\.[\w:]+)\s*(?P<op>>=|<=|!=|=|<|>)\s*(?P<value>"[^"]*"|[-\w.]+)'
    r'|intersects\("(?P<geom>[^"]*)"\))\s*$'
)


def _matches(img: dict[str, Any], filt: str) -> bool:
    """Does a catalogue image pass an AIP-160 filter of the form listImages writes (clauses joined by AND)?"""
    if not filt:
        return True
    for clause in filt.split(" AND "):
        m = _CLAUSE.match(clause)
        if m is None:
            raise ValueError(f"filter clause not understood by the loopback server: {clause!r}")
        if m["geom"] is not None:
            geom = shapely.geometry.shape(json.loads(m["geom"].replace("'", '"')))
            if not shapely.geometry.shape(img["geometry"]).intersects(geom):
                return False
            continue
        name = m["field"]
        have = img[name] if not name.startswith("properties.") else img["properties"].get(name[11:])
        want: Any = m["value"].strip('"')
        if have is None:
            return False
        if isinstance(have, int | float) and not isinstance(have, bool):
            want = float(want)
        ops = {
            "=": have == want,
            "!=": have != want,
            ">=": have >= want,
            "<=": have <= want,
            ">": have > want,
            "<": have < want,
        }
        if not ops[m["op"]]:
            return False
    return True


# ---------------------------------------------------------------------------------------- expressions
def _evaluate(expression: dict[str, Any], rasters: dict[str, list[Raster]]) -> _Image:
    values = expression["values"]

    def ev(node: dict[str, Any]) -> Any:
        if "valueReference" in node:
            return ev(values[node["valueReference"]])
        if "constantValue" in node:
            return node["constantValue"]
        if "functionInvocationValue" not in node:
            raise BadRequest(f"expression node {list(node)} not understood")
        fn = node["functionInvocationValue"]["functionName"]
        args = node["functionInvocationValue"].get("arguments", {})
        a = {k: ev(v) for k, v in args.items()}
        return _call(fn, a, rasters)

    out = ev(values[expression["result"]])
    if not isinstance(out, _Image):
        raise BadRequest("expression does not evaluate to an image")
    return out


def _call(fn: str, a: dict[str, Any], rasters: dict[str, list[Raster]]) -> Any:
    if fn == "ImageCollection.load":
        if a["id"] not in rasters:
            raise BadRequest(f"ImageCollection.load: collection {a['id']} not found")
        return _Collection(a["id"])
    if fn == "Image.load":
        if a["id"] not in rasters:
            raise BadRequest(f"Image.load: asset {a['id']} not found")
        return _Image(list(rasters[a["id"]]))
    if fn == "DateRange":
        return (a["start"], a.get("end"))
    if fn == "Filter.dateRangeContains":
        return ("date", *a["leftValue"])
    if fn.startswith(("Filter.", "GeometryConstructors.")) or fn == "Feature":
        return ("ignored", fn)
    if fn == "Collection.filter":
        col = a["collection"]
        f = a["filter"]
        if f[0] == "date":
            return _Collection(col.id, f[1], f[2], col.filters)
        return _Collection(col.id, col.start, col.end, [*col.filters, f[1]])
    if fn == "ImageCollection.mosaic":
        return _Image(_select_dates(a["collection"], rasters))
    if fn == "Reducer.mode":
        return ("reducer", "mode")
    if fn == "ImageCollection.reduce":
        if a["reducer"] != ("reducer", "mode"):
            raise BadRequest(f"ImageCollection.reduce: reducer {a['reducer']} is not served here")
        chosen = _select_dates(a["collection"], rasters)
        bands = rasters[a["collection"].id][0].bands if rasters[a["collection"].id] else ()
        return _Image(chosen, reducer="mode", names={f"{b}_mode": b for b in bands})  # EE's output names
    if fn == "Image.select":
        img = a["input"]
        sel = tuple(a["bandSelectors"])
        have = tuple(img.names) if img.names else (img.rasters[0].bands if img.rasters else sel)
        missing = [b for b in sel if b not in have]
        if missing:
            raise BadRequest(f"Image.select: bands {missing} not found")
        new = tuple(a.get("newNames") or sel)
        names = {n: img.names.get(b, b) for n, b in zip(new, sel, strict=True)}
        return _Image(img.rasters, new, img.sentinel, img.reducer, names)
    if fn == "Image.constant":
        return ("constant", a["value"])
    if fn == "Image.toFloat":
        return a["value"]  # the server always answers float32
    if fn == "Image.unmask":
        img = a["input"]
        return _Image(img.rasters, img.bands, float(a["value"][1]), img.reducer, img.names)
    raise BadRequest(f"function {fn} is not served by the loopback server")


def _select_dates(col: _Collection, rasters: dict[str, list[Raster]]) -> list[Raster]:
    def day(s: str) -> datetime:
        return datetime.fromisoformat(s.replace("Z", "+00:00")).replace(tzinfo=None)

    out = []
    for r in rasters[col.id]:
        t = r.start.replace(tzinfo=None)
        if col.start is not None and t < day(col.start):
            continue
        if col.end is not None and t >= day(col.end):
            continue
        out.append(r)
    return out


# --------------------------------------------------------------------------------------------- pixels
def _affine(grid: dict[str, Any]) -> Affine:
    t = grid["affineTransform"]
    return Affine(
        t.get("scaleX", 0.0),
        t.get("shearX", 0.0),
        t.get("translateX", 0.0),
        t.get("shearY", 0.0),
        t.get("scaleY", 0.0),
        t.get("translateY", 0.0),
    )


def _render(
    image: _Image, bands: tuple[str, ...], grid: dict[str, Any], width: int, height: int
) -> np.ndarray:
    """(B, H, W) float32: the mosaic (last raster on top) on the grid, masked pixels unmasked."""
    dst_t = _affine(grid)
    values = np.zeros((len(bands), height, width), dtype=np.float32)
    valid = np.zeros((height, width), dtype=bool)
    stack: list[np.ndarray] = []  # mode: every image's values, NaN where masked
    for r in image.rasters:
        with rasterio.open(r.path) as ds:
            win = _source_window(ds, dst_t, grid["crsCode"], width, height)
            if win is None:
                continue
            idx = [r.bands.index(image.names.get(b, b)) + 1 for b in bands]
            src = ds.read(idx, window=win)
            nodata = AEF_NODATA if r.kind == "aef" else ds.nodata
            dst = np.full(
                (len(bands), height, width), nodata if nodata is not None else np.nan, dtype=src.dtype
            )
            reproject(
                src,
                dst,
                src_transform=ds.window_transform(win),
                src_crs=ds.crs,
                dst_transform=dst_t,
                dst_crs=grid["crsCode"],
                resampling=Resampling.nearest,
                src_nodata=nodata,
                dst_nodata=nodata,
            )
        if r.kind == "aef":
            ok = ~(dst == AEF_NODATA).any(axis=0)
            vals = np.moveaxis(dequantize(np.moveaxis(dst, 0, -1)), -1, 0)
        else:
            vals = dst.astype(np.float32)
            ok = np.isfinite(vals).all(axis=0)
            if nodata is not None and np.isfinite(nodata):
                ok &= ~(vals == np.float32(nodata)).any(axis=0)
        if image.reducer == "mode":
            stack.append(np.where(ok, vals, np.nan))
            continue
        values[:, ok] = vals[:, ok]
        valid |= ok
    if image.reducer == "mode" and stack:
        values, valid = _mode(np.stack(stack))
    values[:, ~valid] = image.sentinel if image.sentinel is not None else 0.0
    return values


def _mode(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(R, B, H, W) values with NaN where masked -> the most common value per pixel and band (ties: the
    lowest), and (H, W) whether any image had a value."""
    valid = np.isfinite(stack).any(axis=(0, 1))
    codes = np.unique(stack[np.isfinite(stack)])
    counts = np.stack([(stack == c).sum(axis=0) for c in codes]) if codes.size else None
    out = np.zeros(stack.shape[1:], dtype=np.float32)
    if counts is not None:
        out = codes[np.argmax(counts, axis=0)].astype(np.float32)  # argmax: the first (lowest) of ties
    return out, valid


def _source_window(ds: Any, dst_t: Affine, dst_crs: str, width: int, height: int) -> Window | None:
    """The part of the file under the grid (plus a margin), whatever its orientation; None if none."""
    xs = [dst_t.c, dst_t.c + dst_t.a * width, dst_t.c, dst_t.c + dst_t.a * width]
    ys = [dst_t.f, dst_t.f, dst_t.f + dst_t.e * height, dst_t.f + dst_t.e * height]
    x, y = rio_transform(dst_crs, ds.crs, xs, ys)
    inv = ~ds.transform
    cols = [inv.a * a + inv.b * b + inv.c for a, b in zip(x, y, strict=True)]
    rows = [inv.d * a + inv.e * b + inv.f for a, b in zip(x, y, strict=True)]
    c0, c1 = max(0, math.floor(min(cols)) - 2), min(ds.width, math.ceil(max(cols)) + 2)
    r0, r1 = max(0, math.floor(min(rows)) - 2), min(ds.height, math.ceil(max(rows)) + 2)
    if c1 <= c0 or r1 <= r0:
        return None
    return Window(c0, r0, c1 - c0, r1 - r0)


def _geotiff(
    values: np.ndarray, bands: tuple[str, ...], grid: dict[str, Any], width: int, height: int
) -> bytes:
    with MemoryFile() as mem:
        with mem.open(
            driver="GTiff",
            width=width,
            height=height,
            count=len(bands),
            dtype="float32",
            crs=grid["crsCode"],
            transform=_affine(grid),
        ) as ds:
            ds.write(values)
            for i, b in enumerate(bands):
                ds.set_band_description(i + 1, b)
        return bytes(mem.read())


# -------------------------------------------------------------------------------------------- helpers
def ee_server_attrs(
    rasters: dict[str, list[Raster]],
    catalogue: dict[str, list[dict[str, Any]]] | None = None,
    *,
    faults: list[str] | None = None,
    latency_s: float = 0.0,
    slow_s: float = 2.0,
    max_bytes: int = MAX_BYTES,
    page_size: int = 1000,
    list_faults: list[str] | None = None,
    token: str | None = "test-token",
    gather: int = 0,
) -> dict[str, object]:
    """The attributes `serve(EEHandler, **ee_server_attrs(...))` needs."""
    return {
        "token": token,
        "gather": Gather(gather),
        "rasters": rasters,
        "catalogue": catalogue or {},
        "faults": list(faults or []),
        "latency_s": latency_s,
        "slow_s": slow_s,
        "max_bytes": max_bytes,
        "page_size": page_size,
        "list_faults": list(list_faults or []),
        "log": [],
        "lock": threading.Lock(),
        "inflight": 0,
        "max_inflight": 0,
        "events": [],
    }


def request_log(srv: Any) -> list[LoggedRequest]:
    """Every request the server has answered so far (a copy, in arrival order of the answers)."""
    with srv.lock:
        return list(srv.log)


def pixel_requests(srv: Any) -> list[LoggedRequest]:
    """The computePixels requests among them."""
    return [r for r in request_log(srv) if r.kind == "computePixels"]


def s1_asset(
    collection: str,
    image_id: str,
    start: datetime,
    footprint: dict[str, Any],
    *,
    platform: str = "A",
    mode: str = "IW",
    orbit_pass: str = "DESCENDING",
    polarisations: tuple[str, ...] = ("VV", "VH"),
) -> dict[str, Any]:
    """A catalogue entry shaped like a COPERNICUS/S1_GRD image in a listAssets FULL answer."""
    iso = start.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return {
        "type": "IMAGE",
        "name": f"projects/earthengine-public/assets/{collection}/{image_id}",
        "id": f"{collection}/{image_id}",
        "startTime": iso,
        "endTime": iso,
        "geometry": footprint,
        "properties": {
            "platform_number": platform,
            "instrumentMode": mode,
            "orbitProperties_pass": orbit_pass,
            "transmitterReceiverPolarisation": list(polarisations),
            "resolution_meters": 10,
            "productType": "GRD",
            "system:time_start": int(start.timestamp() * 1000),
        },
    }
