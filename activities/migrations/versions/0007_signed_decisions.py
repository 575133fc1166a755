"""Signed decisions: the fingerprint of the key that signed each decision.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.add_column("decisions", sa.Column("key_fingerprint", sa.Text()))


def downgrade() -> None:
    op.drop_column("decisions", "key_fingerprint")
