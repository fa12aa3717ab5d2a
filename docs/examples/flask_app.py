"""Receiving payment notifications in a Flask application.

Two ways, pick one:

* mount ordercore's WSGI app under a path with werkzeug's ``DispatcherMiddleware``
  (``POST /pay/callbacks/<channel>`` and ``GET /pay/health``, nothing else to write);
* or a Flask route that passes the raw body through ``ordercore.web.deliver_callback``, when
  the callback must live among your own routes (your URL scheme, your before-request hooks).

Run it with ``python flask_app.py`` (or ``flask --app flask_app run``).
"""

from __future__ import annotations

import os

from flask import Flask, Response, request
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from ordercore import OrderCore
from ordercore.web import MAX_BODY_SIZE, deliver_callback, make_wsgi_app


# --8<-- [start:mount]
def create_app(core: OrderCore) -> Flask:
    """The host application with ordercore's endpoint mounted at /pay."""
    app = Flask(__name__)

    @app.get("/")
    def index() -> str:
        return "the shop"

    # /pay/callbacks/<channel> and /pay/health go to ordercore, everything else to Flask.
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/pay": make_wsgi_app(core)})
    return app
    # --8<-- [end:mount]


# --8<-- [start:route]
def create_app_with_route(core: OrderCore) -> Flask:
    """The host application with a Flask route of its own for the callbacks."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_SIZE  # larger bodies: 413 before reading

    @app.post("/shop/payments/<channel>/notify")
    def payment_notify(channel: str) -> Response:
        # get_data() before anything touches request.form, so the body stays byte for byte.
        reply = deliver_callback(
            core, channel, request.headers, request.get_data(), request.remote_addr
        )
        response = Response(reply.body, status=reply.status)
        del response.headers["Content-Type"]  # send the channel's headers, and only those
        response.headers.update(reply.headers)
        return response

    return app
    # --8<-- [end:route]


if __name__ == "__main__":
    shop = OrderCore.from_url(os.environ.get("ORDERCORE_DATABASE_URL", "sqlite:///ordercore.db"))
    create_app(shop).run(port=8000)
