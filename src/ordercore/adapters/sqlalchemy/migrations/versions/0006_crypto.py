"""Crypto payments: the coin amount, rate and expiry a gateway locked for a payment attempt,
and the coin amount that arrived.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ordercore.adapters.sqlalchemy.tables import Str, UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_COLUMNS = ("coin_currency", "coin_amount_minor", "coin_rate", "coin_pay_by", "coin_received_minor")


def upgrade(prefix: str = "", schema: str | None = None) -> None:
    table = f"{prefix}payment_attempts"
    for column in (
        sa.Column("coin_currency", Str(10), nullable=True),
        sa.Column("coin_amount_minor", sa.BigInteger, nullable=True),
        sa.Column("coin_rate", Str(40), nullable=True),
        sa.Column("coin_pay_by", UTCDateTime, nullable=True),
        sa.Column("coin_received_minor", sa.BigInteger, nullable=True),
    ):
        op.add_column(table, column, schema=schema)


def downgrade(prefix: str = "", schema: str | None = None) -> None:
    with op.batch_alter_table(f"{prefix}payment_attempts", schema=schema) as batch:
        for column in reversed(_COLUMNS):
            batch.drop_column(column)
