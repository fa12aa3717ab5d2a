"""The database a test gets (tests/conftest.py): a migrated schema or database that an earlier
test used comes back as if freshly migrated — no rows but the migrations' own, ids from 1, a
sound audit chain — and one whose structure a test changed is dropped, never handed on."""

from __future__ import annotations

from typing import Any

from helpers import Backend, count_rows
from ordercore import Actor

ADMIN = Actor.operator("alice", "admin")


def _use(server: Any, container: str) -> Backend:
    return Backend(server.name, *server.address(container), migrated=True)


def test_a_used_database_is_emptied_for_the_next_test(database_server: Any) -> None:
    server = database_server
    container = server.take()
    backend = _use(server, container)
    try:
        core = backend.core()
        for n in range(3):
            core.customers.add(name=f"c{n}", email=f"c{n}@example.com", actor=ADMIN)
        core.audit.seal_all()
    finally:
        backend.dispose()
    server.release(container, True)
    assert container in server.pool, server.last_refusal

    again = server.take()
    assert again == container
    backend = _use(server, again)
    try:
        core = backend.core()
        assert core.customers.list() == []
        assert count_rows(core, core.tables.audit_log) == 0
        customer = core.customers.add(name="first", email="first@example.com", actor=ADMIN)
        assert customer.id == 1
        assert core.audit.verify().ok
    finally:
        backend.dispose()
    server.release(again, True)


def test_a_database_whose_structure_changed_is_dropped(database_server: Any) -> None:
    server = database_server
    container = server.take()
    with server.admin.connect() as conn:
        conn.exec_driver_sql(f"ALTER TABLE {server.quote(container, 'customers')} ADD extra INT")
    server.release(container, True)
    assert container not in server.pool
    assert container not in server.made
    with server.admin.connect() as conn:
        if server.postgresql:
            sql = "SELECT count(*) FROM pg_namespace WHERE nspname = %s"
        else:
            sql = "SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s"
        assert conn.exec_driver_sql(sql, (container,)).scalar_one() == 0
