"""The one way the channel reaches WeChat Pay: a one-method :class:`Transport`.

:class:`UrllibTransport` (the standard library) is the default; tests and hosts with their
own HTTP stack pass any object with the same ``request`` method. A transport returns whatever
HTTP answer arrived (any status) and raises :class:`TransportError` only when no answer arrived
at all (timeout, refused or reset connection, TLS failure): the channel reports both a missing
answer and a 5xx as an unknown outcome, never as a failure.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from attrs import field, frozen

__all__ = ["HttpResponse", "Transport", "TransportError", "UrllibTransport"]

#: The largest answer read, in bytes.
MAX_RESPONSE_SIZE = 4 * 1024 * 1024


class TransportError(Exception):
    """No answer: the request may or may not have been processed."""


@frozen
class HttpResponse:
    """An HTTP answer: status, header names lower-cased, raw body."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(factory=dict)


@runtime_checkable
class Transport(Protocol):
    """Sends one HTTP request and returns the answer."""

    def request(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str],
        timeout: float,
    ) -> HttpResponse:
        """Send ``method`` to ``url`` (``body`` None for a GET); raise
        :class:`TransportError` when no answer came within ``timeout`` seconds."""
        ...


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a redirect is an answer like any other, not a place to go


class UrllibTransport:
    """:class:`Transport` on ``urllib.request`` (HTTPS certificates checked by the default
    SSL context; redirects are not followed). Proxies come from the usual environment
    variables."""

    def __init__(self) -> None:
        self._opener = urllib.request.build_opener(_NoRedirect)

    def request(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str],
        timeout: float,
    ) -> HttpResponse:
        request = urllib.request.Request(url, data=body, headers=dict(headers), method=method)
        try:
            with self._opener.open(request, timeout=timeout) as response:
                return HttpResponse(
                    int(response.status),
                    _read(response),
                    {k.lower(): v for k, v in response.headers.items()},
                )
        except urllib.error.HTTPError as exc:
            with exc:
                try:
                    data = _read(exc)
                except (OSError, http.client.HTTPException):
                    data = b""
                return HttpResponse(
                    int(exc.code), data, {k.lower(): v for k, v in (exc.headers or {}).items()}
                )
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            where = urllib.parse.urlsplit(url)._replace(query="", fragment="").geturl()
            raise TransportError(f"no answer from {where}: {exc!r}"[:500]) from None


def _read(response: object) -> bytes:
    read = getattr(response, "read", None)
    if read is None:
        return b""
    data: bytes = read(MAX_RESPONSE_SIZE + 1)
    if len(data) > MAX_RESPONSE_SIZE:
        raise TransportError(f"the answer is larger than {MAX_RESPONSE_SIZE} bytes")
    return data
