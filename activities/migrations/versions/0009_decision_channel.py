"""The channel a decision came through and the subject it authenticated (the web inbox).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    op.add_column("decisions", sa.Column("via", sa.Text()))
    op.add_column("decisions", sa.Column("subject", sa.Text()))


def downgrade() -> None:
    op.drop_column("decisions", "subject")
    op.drop_column("decisions", "via")
