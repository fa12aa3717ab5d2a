"""The connection pool's health checks (``adapters.sqlalchemy.engine``): no ping on a busy,
healthy pool; a ping — and a fresh connection when the old one died — after a connection sat
idle, and after a disconnect was seen. Run on the database servers, with connections really
killed by the server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from helpers import SERVER_BACKENDS, Backend
from ordercore.adapters.sqlalchemy import engine as engine_module
from ordercore.adapters.sqlalchemy import make_engine

pytestmark = pytest.mark.parametrize("backend", SERVER_BACKENDS, indirect=True)


@pytest.fixture
def pool(backend: Backend) -> Iterator[tuple[Engine, list[int]]]:
    """An engine with a pool of one connection, and the count of its pings."""
    engine = make_engine(backend.url, pool_size=1, max_overflow=0)
    pings: list[int] = []
    original = engine.dialect.do_ping

    def counting(dbapi_connection: Any) -> bool:
        pings.append(1)
        return original(dbapi_connection)

    engine.dialect.do_ping = counting  # type: ignore[method-assign]
    yield engine, pings
    engine.dispose()


def _session_id(engine: Engine) -> int:
    with engine.connect() as conn:
        name = conn.dialect.name
        query = "SELECT pg_backend_pid()" if name == "postgresql" else "SELECT CONNECTION_ID()"
        return int(conn.execute(text(query)).scalar_one())


def _kill(backend: Backend, session: int) -> None:
    admin = create_engine(backend.plain_url, poolclass=NullPool)
    try:
        with admin.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": session})
            else:
                conn.execute(text(f"KILL {session}"))
            conn.commit()
    finally:
        admin.dispose()


def test_a_busy_healthy_pool_never_pings(pool: tuple[Engine, list[int]]) -> None:
    engine, pings = pool
    first = _session_id(engine)
    for _ in range(20):
        assert _session_id(engine) == first  # the same pooled connection, reused
    assert pings == []


def test_a_connection_idle_past_the_limit_is_pinged_and_replaced_when_dead(
    pool: tuple[Engine, list[int]], backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, pings = pool
    first = _session_id(engine)
    monkeypatch.setattr(engine_module, "PING_IDLE_SECONDS", 0.0)  # everything is idle now
    assert _session_id(engine) == first  # pinged, alive, kept
    assert len(pings) == 1
    _kill(backend, first)
    second = _session_id(engine)  # pinged, dead, replaced: the caller sees nothing
    assert second != first
    assert len(pings) == 2


def test_a_connection_killed_within_the_idle_limit_fails_one_transaction_then_the_pool_renews(
    pool: tuple[Engine, list[int]], backend: Backend
) -> None:
    engine, _pings = pool
    first = _session_id(engine)
    _kill(backend, first)
    # Killed while the pool held it, used again within the idle limit: this transaction
    # fails (nothing was written) and the disconnect is noted...
    with pytest.raises(DBAPIError) as failed, engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert failed.value.connection_invalidated
    # ...and the pool drops every connection older than the failure: the next transaction
    # gets a fresh one, which is then reused.
    second = _session_id(engine)
    assert second != first
    assert _session_id(engine) == second
