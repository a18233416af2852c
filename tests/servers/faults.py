"""A deterministic fault injector shared by the loopback servers (range / COG, STAC, Earth Engine, OpenAI).

Which request fails is decided by a hash of the request's IDENTITY (what it asks for: method, path,
range, body) and its ATTEMPT number (how many times that identity arrived before), never by arrival
order: concurrency and scheduling change when a request arrives, not whether it fails, so a run is
reproducible whatever the worker count. A share `rate` of (identity, attempt) pairs fails, with a kind
drawn by the same hash from `kinds`; `always` names identities that fail on every attempt (a service
that keeps failing for one asset). Every decision is recorded on arrival, before the answer.

    plan = FaultPlan(rate=0.3, seed=1)
    with serve(RangeHandler, **range_server_attrs(root, faults=plan)) as srv: ...
    plan.counts()  # {"429": 12, "reset": 9, ...}
"""

from __future__ import annotations

import hashlib
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

KINDS = ("429", "500", "503", "reset", "stall", "truncated", "garbage")


@dataclass(frozen=True)
class Decision:
    identity: str
    attempt: int
    fault: str | None


@dataclass
class FaultPlan:
    """Which requests fail and how. `stall_s` is how long a "stall" holds the request before dropping
    the connection: make it longer than the client's timeout, so the client gives up first."""

    rate: float = 0.3
    seed: int = 0
    kinds: tuple[str, ...] = KINDS
    always: Callable[[str], str | None] = field(default=lambda identity: None)
    stall_s: float = 2.0
    log: list[Decision] = field(default_factory=list)
    _attempts: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def decide(self, identity: str) -> str | None:
        """The fault for this arrival of `identity` (None: answer normally); recorded before returning."""
        with self._lock:
            attempt = self._attempts[identity]
            self._attempts[identity] += 1
            fault = self.always(identity)
            if fault is None:
                h = hashlib.sha256(f"{self.seed}\0{identity}\0{attempt}".encode()).digest()
                u = int.from_bytes(h[:8], "big") / 2**64
                fault = self.kinds[h[8] % len(self.kinds)] if u < self.rate else None
            self.log.append(Decision(identity, attempt, fault))
        return fault

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(d.fault or "ok" for d in self.log)


def send_fault(handler: BaseHTTPRequestHandler, fault: str, stall_s: float = 2.0) -> None:
    """Answer the handler's request with `fault` and end the connection where the fault breaks it."""
    if fault in ("429", "500", "503"):
        body = (
            b'{"error": {"code": %s, "message": "injected fault", "status": "UNAVAILABLE"}}' % fault.encode()
        )
        handler.send_response(int(fault))
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        if fault == "429":
            handler.send_header("Retry-After", "0")
        handler.end_headers()
        handler.wfile.write(body)
        return
    if fault == "stall":
        time.sleep(stall_s)  # past the client's timeout: it has given up (or gets a reset now)
        _reset(handler)
        return
    if fault == "reset":
        _reset(handler)
        return
    if fault == "truncated":  # announces more than it sends, then hangs up
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", "4096")
        handler.end_headers()
        handler.wfile.write(b'{"partial": "bo')
        handler.wfile.flush()
        _reset(handler)
        return
    if fault == "garbage":  # a complete answer whose body is not what the client asked for
        body = hashlib.sha256(handler.path.encode()).digest() * 8
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
        handler.close_connection = True
        return
    raise ValueError(f"unknown fault {fault!r}; use one of {KINDS}")


def _reset(handler: BaseHTTPRequestHandler) -> None:
    """Drop the connection with a TCP reset (SO_LINGER 0), as a crashed proxy does."""
    handler.close_connection = True
    try:
        handler.wfile.flush()
    except OSError:
        pass
    try:
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.connection.close()
    except OSError:
        pass


def inject(handler: BaseHTTPRequestHandler, identity: str) -> bool:
    """If the handler's server has a `fault_plan` and it fails this arrival of `identity`, answer with the
    fault and return True (the handler stops there); else False."""
    plan: FaultPlan | None = getattr(handler.server, "fault_plan", None)
    if plan is None:
        return False
    fault = plan.decide(identity)
    if fault is None:
        return False
    send_fault(handler, fault, plan.stall_s)
    return True


__all__ = ["KINDS", "Decision", "FaultPlan", "inject", "send_fault"]
