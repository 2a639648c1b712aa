"""dispatch: trip pick-up/drop-off coordinates, offers, the wave schedule

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import taxi.domain.models

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS = ("pick_up_latitude", "pick_up_longitude", "drop_off_latitude", "drop_off_longitude")


def upgrade() -> None:
    with op.batch_alter_table("trip") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.Float(), nullable=True))
    op.create_table(
        "trip_offer",
        sa.Column("trip_id", sa.Uuid(), nullable=False),
        sa.Column("driver_id", sa.Integer(), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("created", taxi.domain.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["trip_id"], ["trip.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["driver_id"], ["user.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("trip_id", "driver_id"),
    )
    op.create_table(
        "dispatch_wave",
        sa.Column("trip_id", sa.Uuid(), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("due_at", taxi.domain.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["trip_id"], ["trip.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("trip_id"),
    )
    op.create_index("ix_dispatch_wave_due", "dispatch_wave", ["due_at"])


def downgrade() -> None:
    op.drop_index("ix_dispatch_wave_due", table_name="dispatch_wave")
    op.drop_table("dispatch_wave")
    op.drop_table("trip_offer")
    with op.batch_alter_table("trip") as batch:
        for name in COLUMNS:
            batch.drop_column(name)
