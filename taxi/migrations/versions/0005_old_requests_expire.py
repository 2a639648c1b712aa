"""old requests expire: a schedule row for every request made before 0004

Before 0004 a request had no expiry: one made without a pick-up had no `dispatch_wave`
row at all, and a dispatched one's row has no `expires_at`, so either stayed REQUESTED
for ever. This gives each such trip a row due now; the dispatch worker's next pass reads
a missing `expires_at` as the request's time plus DISPATCH_TIMEOUT_SECONDS (the
operator's setting, which a migration does not know), records it, and cancels the trip
with NO_DRIVER_FOUND once that has passed.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import taxi.domain.models

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

trip = sa.table("trip", sa.column("id", sa.Uuid()), sa.column("status", sa.String(16)))
wave = sa.table(
    "dispatch_wave",
    sa.column("trip_id", sa.Uuid()),
    sa.column("wave", sa.Integer()),
    sa.column("due_at", taxi.domain.models.UTCDateTime(timezone=True)),
)


def upgrade() -> None:
    now = sa.literal(datetime.now(UTC), taxi.domain.models.UTCDateTime(timezone=True))
    unscheduled = sa.select(trip.c.id, sa.literal(1), now).where(
        trip.c.status == "REQUESTED",
        ~sa.exists().where(wave.c.trip_id == trip.c.id),
    )
    op.execute(wave.insert().from_select(["trip_id", "wave", "due_at"], unscheduled))


def downgrade() -> None:
    # The rows are what 0004's code would have written for these trips: they stay.
    pass
