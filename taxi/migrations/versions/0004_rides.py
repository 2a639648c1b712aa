"""rides: fares, cancel reasons, arrival, the expiry of requests (rides.graphql)

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import taxi.domain.models

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

WHEN = ("arrived_at", "picked_up_at", "ended_at")
MONEY = ("fare_quoted", "quoted_meters", "fare_final", "driven_meters")


def upgrade() -> None:
    with op.batch_alter_table("trip") as batch:
        batch.add_column(sa.Column("cancel_reason", sa.String(24), nullable=True))
        for name in WHEN:
            batch.add_column(
                sa.Column(name, taxi.domain.models.UTCDateTime(timezone=True), nullable=True)
            )
        batch.add_column(
            sa.Column("fare_surge", sa.Float(), nullable=False, server_default=sa.text("1.0"))
        )
        batch.add_column(
            sa.Column("fare_currency", sa.String(3), nullable=False, server_default="EUR")
        )
        for name in MONEY:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=True))
    op.create_index("ix_trip_created", "trip", ["created"])
    op.create_index("ix_trip_driver_ended", "trip", ["driver_id", "ended_at"])
    with op.batch_alter_table("dispatch_wave") as batch:
        batch.add_column(
            sa.Column("expires_at", taxi.domain.models.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("dispatch_wave") as batch:
        batch.drop_column("expires_at")
    op.drop_index("ix_trip_driver_ended", table_name="trip")
    op.drop_index("ix_trip_created", table_name="trip")
    with op.batch_alter_table("trip") as batch:
        for name in (*MONEY, "fare_currency", "fare_surge", *WHEN, "cancel_reason"):
            batch.drop_column(name)
