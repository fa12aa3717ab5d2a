"""The HTTP endpoint that receives payment notifications: a WSGI app and an ASGI app, written
with the standard library only, so that any host — Flask, FastAPI, Django, gunicorn, uvicorn —
can mount it.

Routes, below an optional mount ``prefix``:

``POST /callbacks/{channel}``
    A platform's notification. ``channel`` must match ``[a-z0-9_-]{1,32}`` (404 otherwise).
    The raw body (at most ``MAX_BODY_SIZE`` bytes, 413 above) is passed byte for byte, with
    the header names lower-cased (at most ``MAX_HEADER_SIZE`` bytes of headers in all, 431
    above), to ``core.payments.handle_callback``, and the
    ``HttpReply`` it returns is sent back as it is: status, body and
    headers (``Content-Length`` is added when the reply has none).
``GET /health`` (and ``HEAD``)
    ``200 {"status":"ok"}``. When the core has an ``engine``, a ``SELECT 1`` runs first, and a
    database that does not answer gives ``503 {"status":"unavailable"}``.

Any other path is a 404; a known path with another method is a 405 with an ``Allow`` header.
The endpoint's own error answers are JSON: ``{"code":"FAIL","message":"..."}``. An exception
escaping ``handle_callback`` is logged (logger ``ordercore.web``) and answered with a 500, so
that the platform delivers the notification again.

Header values reach ``handle_callback`` as WSGI carries them: ``str`` decoded as latin-1, so
``value.encode("latin-1")`` gives back the bytes on the wire. Repeated headers are joined with
``", "``. ``remote_addr`` is the peer address the server saw; behind a proxy, fix it in the
server or middleware (e.g. werkzeug's ``ProxyFix``, uvicorn's ``--forwarded-allow-ips``).

``serve`` runs the WSGI app on ``wsgiref`` with a bounded set of worker threads (as many as
the core's database connections), answering 503 with ``Retry-After`` when they and their
backlog are full, for development (``ordercore serve``); use a production server (gunicorn,
uvicorn, waitress...) in production.
"""

from __future__ import annotations

from ._apps import (
    MAX_BODY_SIZE,
    MAX_HEADER_SIZE,
    AsgiApp,
    CallbackCore,
    PaymentCallbacks,
    WsgiApp,
    deliver_callback,
    make_asgi_app,
    make_wsgi_app,
)
from ._server import (
    DEFAULT_READ_TIMEOUT,
    DEFAULT_THREADS,
    BackgroundServer,
    serve,
    start_background_server,
    threads_for,
)

__all__ = [
    "DEFAULT_READ_TIMEOUT",
    "DEFAULT_THREADS",
    "MAX_BODY_SIZE",
    "MAX_HEADER_SIZE",
    "AsgiApp",
    "BackgroundServer",
    "CallbackCore",
    "PaymentCallbacks",
    "WsgiApp",
    "deliver_callback",
    "make_asgi_app",
    "make_wsgi_app",
    "serve",
    "start_background_server",
    "threads_for",
]
