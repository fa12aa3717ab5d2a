"""Audit trail v2: entries are written as pending rows (no shared lock on the write path) and
sealed into the chain later; the chain head carries a MAC.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ordercore.adapters.sqlalchemy.tables import Str, UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade(prefix: str = "", schema: str | None = None) -> None:
    def n(base: str) -> str:
        return f"{prefix}{base}"

    # A head row written before this revision has no MAC: the next seal authenticates it.
    op.add_column(n("audit_head"), sa.Column("mac", Str(64), nullable=True), schema=schema)
    op.create_table(
        n("audit_pending"),
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("nonce", Str(32), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("actor_kind", Str(16), nullable=False),
        sa.Column("actor_id", Str(128), nullable=False),
        sa.Column("actor_role", Str(64), nullable=True),
        sa.Column("entity_kind", Str(32), nullable=False),
        sa.Column("entity_id", Str(64), nullable=False),
        sa.Column("action", Str(64), nullable=False),
        sa.Column("before", sa.Text, nullable=True),
        sa.Column("after", sa.Text, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("entry_hash", Str(64), nullable=False),
        sa.UniqueConstraint("nonce", name=n("uq_audit_pending_nonce")),
        schema=schema,
    )
    op.create_index(
        n("ix_audit_pending_entity"),
        n("audit_pending"),
        ["entity_kind", "entity_id", "id"],
        schema=schema,
    )


def downgrade(prefix: str = "", schema: str | None = None) -> None:
    def n(base: str) -> str:
        return f"{prefix}{base}"

    op.drop_table(n("audit_pending"), schema=schema)
    with op.batch_alter_table(n("audit_head"), schema=schema) as batch:
        batch.drop_column("mac")
