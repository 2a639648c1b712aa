"""normalized unique usernames, session families, ids never reused

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 20:30:00

- user.username_key: NFKC + case folding of the username, unique. Existing names that
  collide under it stop the migration with a message naming them (nothing is changed).
- auth_session: one row per log-in; refresh_token.session_id ties each token to it.
- SQLite: the user table gets AUTOINCREMENT, so a deleted user's id is never reused.
"""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa
from alembic import op

import taxi.domain.models
from taxi.domain.usernames import normalize

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


class UsernameCollision(RuntimeError):
    """Existing usernames that would become one under the new rule."""


def _keys(conn: sa.Connection) -> dict[int, str]:
    rows = conn.execute(sa.text('SELECT id, username FROM "user"')).all()
    groups: dict[str, list[str]] = defaultdict(list)
    for _id, name in rows:
        groups[normalize(name)].append(name)
    clashes = {k: names for k, names in groups.items() if len(names) > 1}
    if clashes:
        listed = "; ".join(" = ".join(sorted(names)) for names in clashes.values())
        raise UsernameCollision(
            "Usernames are now unique without regard to case and Unicode width, and these "
            f"existing names collide: {listed}. Rename all but one of each group (e.g. in "
            '/admin/ or with an UPDATE of "user".username), then run `taxi migrate` again. '
            "Nothing was changed."
        )
    return {id_: normalize(name) for id_, name in rows}


def upgrade() -> None:
    conn = op.get_bind()
    sqlite = conn.dialect.name == "sqlite"
    keys = _keys(conn)  # before any change: a collision leaves the database as it was
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.add_column(sa.Column("username_key", sa.String(length=150), nullable=True))
    user = sa.table("user", sa.column("id", sa.Integer), sa.column("username_key", sa.String))
    for id_, key in keys.items():
        conn.execute(sa.update(user).where(user.c.id == id_).values(username_key=key))
    with op.batch_alter_table(
        "user",
        schema=None,
        recreate="always" if sqlite else "auto",
        table_kwargs={"sqlite_autoincrement": True},
    ) as batch_op:
        batch_op.alter_column("username_key", existing_type=sa.String(length=150), nullable=False)
        batch_op.create_index(batch_op.f("ix_user_username_key"), ["username_key"], unique=True)

    op.create_table(
        "auth_session",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created", taxi.domain.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", taxi.domain.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("auth_session", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_auth_session_user_id"), ["user_id"], unique=False)
    with op.batch_alter_table("refresh_token", schema=None) as batch_op:
        batch_op.add_column(sa.Column("session_id", sa.String(length=32), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_refresh_token_session_id"), ["session_id"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_refresh_token_session_id_auth_session"),
            "auth_session",
            ["session_id"],
            ["id"],
            ondelete="CASCADE",
        )


def downgrade() -> None:
    with op.batch_alter_table("refresh_token", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_refresh_token_session_id_auth_session"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_refresh_token_session_id"))
        batch_op.drop_column("session_id")
    with op.batch_alter_table("auth_session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_session_user_id"))
    op.drop_table("auth_session")
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_username_key"))
        batch_op.drop_column("username_key")
