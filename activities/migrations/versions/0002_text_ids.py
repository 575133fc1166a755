"""Ids and names as text: any Temporal-legal workflow id (up to 1,000 characters) is audited.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"

_COLUMNS = {
    "change_requests": ("id", "requester", "inventory"),
    "decisions": ("change_request_id", "who"),
    "steps": ("change_request_id", "playbook"),
    "tasks": ("task_id", "change_request_id", "action", "host"),
}


def upgrade() -> None:
    for table, columns in _COLUMNS.items():
        for column in columns:
            op.alter_column(table, column, type_=sa.Text())
    op.add_column("change_requests", sa.Column("requester_raw", sa.Text()))
    op.add_column("decisions", sa.Column("raw", sa.Text()))


def downgrade() -> None:
    op.drop_column("decisions", "raw")
    op.drop_column("change_requests", "requester_raw")
    for table, columns in _COLUMNS.items():
        for column in columns:
            op.alter_column(table, column, type_=sa.String(255 if column != "task_id" else 512))
