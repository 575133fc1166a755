"""Pauses, resumes and circuit-breaker trips of targets (workflows/lock.py).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    op.create_table(
        "target_events",
        sa.Column("target", sa.Text(), primary_key=True),
        sa.Column("at", sa.Text(), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("by", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text()),
    )


def downgrade() -> None:
    op.drop_table("target_events")
