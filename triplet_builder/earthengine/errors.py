"""What can go wrong with an Earth Engine call: the client's exceptions (setup, too large, transient,
unavailable), and `classify`, which sorts an exception out of an `ee` call into too large (split the
request), transient (retry it, bounded) or fatal, by its HTTP status and the messages Earth Engine uses."""

from __future__ import annotations

import json
import re

from triplet_builder import remote

# Messages Earth Engine uses for transient trouble (rate, quota, load, time) and for requests too large.
_TRANSIENT_MESSAGE = re.compile(
    r"too many (concurrent|requests)|rate limit|quota|resource.?exhausted|timed? ?out|deadline|"
    r"unavailable|internal error|backend error|try again|service.?unavailable",
    re.IGNORECASE,
)
_TOO_LARGE_MESSAGE = re.compile(
    r"total request size|too large|too many pixels|user memory limit|payload size|exceeds the limit",
    re.IGNORECASE,
)
_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class EarthEngineError(RuntimeError):
    """An Earth Engine request that failed for good; the message is one line."""


class EarthEngineSetupError(EarthEngineError):
    """Missing or unusable project / credentials; the message says which setting to fix."""


class RequestTooLargeError(EarthEngineError):
    """The server refused a request as too large: split it, never retry it as is."""


class TransientError(EarthEngineError):
    """Rate, quota, server or deadline trouble: worth a bounded, jittered retry."""


class ServiceUnavailable(EarthEngineError, remote.ServiceUnavailable):
    """Transient trouble that outlasted every retry: the chips that needed it are rejected with the
    reason (and retried by a later run), the task goes on."""


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


def classify(exc: BaseException) -> str:
    """'too_large', 'transient' or 'fatal' for an exception out of an `ee` call.

    `ee` turns googleapiclient's HttpError into an EEException carrying only the message; the HttpError
    (and its HTTP status) is kept as the exception's context, so both are looked at.
    """
    from http.client import HTTPException

    from googleapiclient.errors import HttpError

    # a dropped, stalled, truncated or garbled answer (httplib2 and the JSON decoding of `ee` raise these)
    broken = (
        TimeoutError,
        ConnectionError,
        HTTPException,
        UnicodeDecodeError,
        json.JSONDecodeError,
    )
    if isinstance(exc, broken) or isinstance(exc.__context__, broken):
        return "transient"
    http = exc if isinstance(exc, HttpError) else exc.__context__
    message = str(exc)
    status = None
    if isinstance(http, HttpError):
        status = int(getattr(http.resp, "status", 0) or 0)
        message = f"{message} {http._get_reason()}"
    if _TOO_LARGE_MESSAGE.search(message) and status in (None, 400, 413):
        return "too_large"
    if status in _TRANSIENT_STATUS or isinstance(http, TimeoutError | ConnectionError):
        return "transient"
    if status in (None, 400) and _TRANSIENT_MESSAGE.search(message):  # e.g. "Computation timed out." (400)
        return "transient"
    return "fatal"


def _credentials_refused(exc: BaseException) -> bool:
    """An HTTP 401, or the refresh google-auth attempts after one with a token that cannot refresh."""
    from google.auth.exceptions import RefreshError
    from googleapiclient.errors import HttpError

    for e in (exc, exc.__context__, exc.__cause__):
        if isinstance(e, RefreshError):
            return True
        if isinstance(e, HttpError) and int(getattr(e.resp, "status", 0) or 0) == 401:
            return True
    return False
