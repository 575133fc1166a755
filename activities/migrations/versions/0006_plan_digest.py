"""Plan digests: the digest of the plan each request waits on, and the one each decision named.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.add_column("change_requests", sa.Column("plan_digest", sa.String(71)))
    op.add_column("decisions", sa.Column("plan_digest", sa.String(71)))


def downgrade() -> None:
    op.drop_column("decisions", "plan_digest")
    op.drop_column("change_requests", "plan_digest")
