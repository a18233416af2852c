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


class Gather:
    """Holds the first `n` requests until all `n` are in flight at once (or `timeout_s` passes), then lets
    every request through. A client that keeps `n` requests in flight is then SEEN doing so whatever the
    machine's load (no latency to tune); one that does not leaves `reached` False after the timeout."""

    def __init__(self, n: int, timeout_s: float = 10.0) -> None:
        self.n = n
        self.timeout_s = timeout_s
        self.barrier = threading.Barrier(n) if n > 1 else None
        self.lock = threading.Lock()
        self.taken = 0
        self.reached = False

    def __call__(self) -> None:
        """Call from a handler once its request counts as in flight."""
        if self.barrier is None:
            return
        with self.lock:
            if self.taken >= self.n:
                return
            self.taken += 1
        try:
            self.barrier.wait(self.timeout_s)
            self.reached = True
        except threading.BrokenBarrierError:
            pass


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
