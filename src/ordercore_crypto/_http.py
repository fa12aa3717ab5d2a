"""How the crypto channels reach their gateways: a one-method :class:`Transport`.

:class:`UrllibTransport` (standard library) is the default; tests and hosts pass any object
with the same ``request`` method. A transport returns whatever HTTP answer arrived (any
status) and raises :class:`TransportError` only when no answer arrived at all (timeout,
refused or reset connection, TLS failure): the channels report both that and a 5xx as an
unknown outcome, never as a failure.
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

#: The largest gateway answer read, in bytes.
MAX_RESPONSE_SIZE = 4 * 1024 * 1024


class TransportError(Exception):
    """No answer from the gateway: the request may or may not have been processed."""


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
        """Send it; raise :class:`TransportError` when no answer came within ``timeout``."""
        ...


class UrllibTransport:
    """:class:`Transport` on ``urllib.request`` (certificates checked by the default SSL
    context; proxies from the usual environment variables)."""

    def request(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str],
        timeout: float,
    ) -> HttpResponse:
        req = urllib.request.Request(url, data=body, headers=dict(headers), method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
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
