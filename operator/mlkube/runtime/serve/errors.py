"""Errors that carry their HTTP status, and the one place that turns them into responses.

The dataplane raises a ``ServeError`` subclass naming what the client got wrong; the
transport calls ``error_response`` for it. Anything else that escapes is a server bug and
becomes a 500 with a generic message, so a client's mistake can never surface as a 500
just because it was reported through the wrong exception type.
"""

from __future__ import annotations

from typing import ClassVar

import orjson

Headers = list[tuple[bytes, bytes]]


class ServeError(Exception):
    """A request that cannot be served; ``status`` is its HTTP status code."""

    status: ClassVar[int] = 500

    def __init__(self, message: str, headers: Headers | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers: Headers = headers or []


class BadRequestError(ServeError):
    status = 400


class NotFoundError(ServeError):
    status = 404


class MethodNotAllowedError(ServeError):
    status = 405

    def __init__(self, method: str, path: str, allowed: tuple[str, ...]) -> None:
        super().__init__(
            f"method {method} is not allowed on {path}; use {' or '.join(allowed)}",
            [(b"allow", ", ".join(allowed).encode())],
        )


class RequestTimeoutError(ServeError):
    """The body did not arrive in time; the connection is closed after the answer."""

    status = 408

    def __init__(self, message: str) -> None:
        super().__init__(message, [(b"connection", b"close")])


class PayloadTooLargeError(ServeError):
    status = 413


class UnsupportedMediaTypeError(ServeError):
    status = 415


class UnavailableError(ServeError):
    status = 503

    def __init__(self, message: str, retry_after_seconds: int = 1) -> None:
        super().__init__(message, [(b"retry-after", str(retry_after_seconds).encode())])


JSON_HEADERS: Headers = [(b"content-type", b"application/json")]


def error_response(error: ServeError) -> tuple[int, Headers, bytes]:
    """Status, headers and V2-style body (``{"error": message}``) for a ``ServeError``."""
    return error.status, JSON_HEADERS + error.headers, orjson.dumps({"error": error.message})


def internal_error_response() -> tuple[int, Headers, bytes]:
    """The response for a bug in the server; details go to the server log, not the client."""
    body = orjson.dumps({"error": "internal server error; see the server log"})
    return 500, JSON_HEADERS, body
