"""Receiving payment notifications in a FastAPI application: mount ordercore's ASGI app.

``POST /pay/callbacks/{channel}`` and ``GET /pay/health`` are served by ordercore; the
blocking engine runs in a worker thread, never on the event loop.

Run it with ``uvicorn --factory fastapi_app:app_from_environment``.
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from ordercore import OrderCore
from ordercore.web import make_asgi_app


# --8<-- [start:mount]
def create_app(core: OrderCore) -> FastAPI:
    """The host application with ordercore's endpoint mounted at /pay."""
    app = FastAPI()

    @app.get("/")
    def index() -> dict[str, str]:
        return {"shop": "open"}

    # /pay/callbacks/{channel} and /pay/health go to ordercore.
    app.mount("/pay", make_asgi_app(core))
    return app
    # --8<-- [end:mount]


def app_from_environment() -> FastAPI:
    url = os.environ.get("ORDERCORE_DATABASE_URL", "sqlite:///ordercore.db")
    return create_app(OrderCore.from_url(url))
