"""Small servers on 127.0.0.1 that speak the protocols of the remote services (Earth Engine REST, an
OpenAI-compatible API, HTTP range requests, a STAC API), so the REAL client libraries can be tested
here with faults injected. `serve(handler_class)` runs one in a thread for the length of a `with`."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar


class LoopbackServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # clients such as GDAL open many connections at once

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


@contextmanager
def serve(handler: type[BaseHTTPRequestHandler], **attrs: object) -> Iterator[LoopbackServer]:
    """Run `handler` on an ephemeral port of 127.0.0.1; `attrs` are set on the server object (handlers
    reach them as self.server.<name>), e.g. a fault plan or a request log."""
    server = LoopbackServer(("127.0.0.1", 0), handler)
    for k, v in attrs.items():
        setattr(server, k, v)
    with running(server):
        yield server


S = TypeVar("S", bound=ThreadingHTTPServer)


@contextmanager
def running(server: S) -> Iterator[S]:
    """Serve an already built server in a thread for the length of a `with`, then shut it down."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
