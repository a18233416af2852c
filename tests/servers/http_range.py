"""A static file server with HTTP range requests, as object stores serve COGs to GDAL's /vsicurl/.

Like the public AlphaEarth mirror it answers 403 to a request without an explicit User-Agent of our own
(Python's, curl's and GDAL's defaults, "GDAL/<version>" since GDAL 3.7, are refused), and it logs every request with the bytes it sent so tests
and benchmarks can count requests and bytes per chip. Faults and latency are injected per server:

    with serve(RangeHandler, root=folder, latency_s=0.2, fail_next={"503": 1}) as srv:
        ... srv.log  # [Request(method, path, range, status, nbytes, user_agent), ...]
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tests.servers.faults import FaultPlan, inject

REFUSED_AGENTS = re.compile(r"^(Python-urllib|curl/|GDAL/|$)")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    range: str | None
    status: int
    nbytes: int
    user_agent: str


class RangeHandler(BaseHTTPRequestHandler):
    """Serves `server.root`; honours `server.latency_s`, `server.fail_next` ({"503": n} answers the next n
    requests with 503) and records to `server.log` (with `server.lock`)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    # -- helpers -------------------------------------------------------------------------------------
    def _record(self, status: int, nbytes: int) -> None:
        srv = self.server
        with srv.lock:  # type: ignore[attr-defined]
            srv.log.append(  # type: ignore[attr-defined]
                Request(
                    self.command,
                    urlsplit(self.path).path,
                    self.headers.get("Range"),
                    status,
                    nbytes,
                    self.headers.get("User-Agent", ""),
                )
            )

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self._record(status, len(body) if self.command != "HEAD" else 0)  # before the answer: no race
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _fault(self) -> bool:
        srv = self.server
        with srv.lock:  # type: ignore[attr-defined]
            left = srv.fail_next.get("503", 0)  # type: ignore[attr-defined]
            if left > 0:
                srv.fail_next["503"] = left - 1  # type: ignore[attr-defined]
        if left > 0:
            self._send(503, b"slow down")
            return True
        return False

    # -- verbs ---------------------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        time.sleep(getattr(self.server, "latency_s", 0.0))
        if REFUSED_AGENTS.match(self.headers.get("User-Agent", "")):
            self._send(403, b"send a User-Agent")
            return
        if self._fault():
            return
        if inject(self, f"{self.command} {urlsplit(self.path).path} {self.headers.get('Range')}"):
            return
        root = Path(self.server.root)  # type: ignore[attr-defined]
        rel = unquote(urlsplit(self.path).path).lstrip("/")
        path = (root / rel).resolve()
        if root.resolve() not in path.parents or not path.is_file():
            self._send(404, b"not found")
            return
        size = path.stat().st_size
        rng = self.headers.get("Range")
        if rng is None:
            self._send(200, path.read_bytes(), {"Accept-Ranges": "bytes"})
            return
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
        if m is None or int(m[1]) >= size:
            self._send(416, b"", {"Content-Range": f"bytes */{size}"})
            return
        start = int(m[1])
        end = min(int(m[2]) if m[2] else size - 1, size - 1)
        with path.open("rb") as f:
            f.seek(start)
            body = f.read(end - start + 1)
        self._send(
            206,
            body,
            {
                "Content-Type": "image/tiff",
                "Content-Range": f"bytes {start}-{end}/{size}",
                "Accept-Ranges": "bytes",
            },
        )


def range_server_attrs(
    root: Path, *, latency_s: float = 0.0, fail_503: int = 0, faults: FaultPlan | None = None
) -> dict[str, object]:
    """The attributes `serve(RangeHandler, **range_server_attrs(...))` needs; `faults` injects
    deterministic faults (tests.servers.faults) into every request."""
    return {
        "fault_plan": faults,
        "root": root,
        "latency_s": latency_s,
        "fail_next": {"503": fail_503},
        "log": [],
        "lock": threading.Lock(),
    }
