"""Error hierarchy of the Literal API client: one root, typed leaves, no secrets in messages.

::

    LiteralError(Exception)
    ├── ClientClosedError          a request on a LiteralAPI / AsyncLiteralAPI after close()
    ├── TransportError             connection refused/reset, DNS, timeouts
    │                              (httpx.TransportError mapped at the boundary)
    ├── HTTPStatusError            any status >= 400 not covered below (.status, .body)
    │   ├── BadRequestError        400/404/422 ... (4xx, not worth retrying)
    │   ├── AuthenticationError    401/403
    │   ├── RequestTooLargeError   413
    │   ├── RateLimitedError       429 (.retry_after: seconds or None)
    │   └── ServerError            5xx
    └── GraphQLError               top-level `errors`, or some alias answered `ok: false`
                                   (.errors, .failures: alias -> message, .data)

Every message says what to do next. Messages never contain the API key: builders only
ever see the response (status, body), never the request headers; as a second line of
defence `LiteralError.__init__` scrubs any key registered with :func:`register_secret`.
"""

from __future__ import annotations

import email.utils
import math
import time
from typing import Any

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "GraphQLError",
    "HTTPStatusError",
    "LiteralError",
    "RateLimitedError",
    "RequestTooLargeError",
    "ServerError",
    "TransportError",
    "error_for_status",
    "parse_retry_after",
    "register_secret",
]

_BODY_LIMIT = 500
_SECRETS: set[str] = set()


def register_secret(secret: str | None) -> None:
    """Remember a secret (an API key) so that no error message can ever contain it."""
    if secret and len(secret) >= 4:
        _SECRETS.add(secret)


def _scrub(text: str) -> str:
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "[REDACTED]")
    return text


class LiteralError(Exception):
    """Root of every error raised by the Literal API client."""

    def __init__(self, message: str) -> None:
        self.message = _scrub(message)
        super().__init__(self.message)


class ClientClosedError(LiteralError):
    """A request was made on an API client after its ``close()`` / ``aclose()`` (or the end
    of its ``with`` block): its connections are released; create a new client."""


class TransportError(LiteralError):
    """The request did not get an HTTP answer (connection refused/reset, DNS, timeout)."""


class HTTPStatusError(LiteralError):
    """The server answered with a status >= 400."""

    def __init__(self, message: str, *, status: int, body: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = _scrub(body)


class BadRequestError(HTTPStatusError):
    """4xx other than 401/403/413/429: the request itself is wrong; retrying will not help."""


class AuthenticationError(HTTPStatusError):
    """401/403: the API key is missing, wrong, or not allowed on this project."""


class RequestTooLargeError(HTTPStatusError):
    """413: the request body exceeds the server's limit."""


class RateLimitedError(HTTPStatusError):
    """429: slow down; ``retry_after`` is the server's hint in seconds (None if absent)."""

    def __init__(self, message: str, *, status: int, body: str, retry_after: float | None) -> None:
        super().__init__(message, status=status, body=body)
        self.retry_after = retry_after


class ServerError(HTTPStatusError):
    """5xx: the server failed; retrying later may help."""


class GraphQLError(LiteralError):
    """The GraphQL answer carried `errors`, or one or more aliases answered ``ok: false``.

    ``failures`` maps each failing alias to the server's message (e.g.
    ``{"step3": "invalid type"}``) so a batch sender can dead-letter only those items;
    ``data`` is the full ``data`` object of the answer (None when absent).
    """

    def __init__(
        self,
        message: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        failures: dict[str, str] | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.errors: list[dict[str, Any]] = errors or []
        self.failures: dict[str, str] = failures or {}
        self.data = data


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Parse a ``Retry-After`` header (delta-seconds or HTTP date) into seconds >= 0."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        current = time.time() if now is None else now
        return max(0.0, parsed.timestamp() - current)
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def _excerpt(body: str) -> str:
    body = body.strip()
    if len(body) > _BODY_LIMIT:
        return body[:_BODY_LIMIT] + "..."
    return body


def error_for_status(
    status: int, body: str, *, what: str, retry_after: str | None = None
) -> HTTPStatusError:
    """Build the typed error for an HTTP status >= 400 (``what`` names the operation)."""
    excerpt = _excerpt(body)
    prefix = f"Failed to {what}: HTTP {status}"
    if status in (401, 403):
        return AuthenticationError(
            f"{prefix} (the API key was rejected; check LITERAL_API_KEY or the api_key "
            f"argument, and that it belongs to this server): {excerpt}",
            status=status,
            body=body,
        )
    if status == 413:
        return RequestTooLargeError(
            f"{prefix} (request too large; reduce batch size or the size of step "
            f"input/output): {excerpt}",
            status=status,
            body=body,
        )
    if status == 429:
        seconds = parse_retry_after(retry_after)
        hint = f"retry after {seconds:g}s" if seconds is not None else "retry later"
        return RateLimitedError(
            f"{prefix} (rate limited; {hint} or send less often): {excerpt}",
            status=status,
            body=body,
            retry_after=seconds,
        )
    if status >= 500:
        return ServerError(
            f"{prefix} (server error; retry later, and check the server logs if it "
            f"persists): {excerpt}",
            status=status,
            body=body,
        )
    if 400 <= status < 500:
        return BadRequestError(
            f"{prefix} (the server rejected the request; check the arguments and "
            f"LITERAL_API_URL): {excerpt}",
            status=status,
            body=body,
        )
    return HTTPStatusError(f"{prefix}: {excerpt}", status=status, body=body)
