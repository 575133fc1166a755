"""Audit tables: change requests, decisions, steps, tasks.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "change_requests",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("requester", sa.String(255), nullable=False, index=True),
        sa.Column("inventory", sa.String(255)),
        sa.Column("var_names", sa.JSON, nullable=False),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("phase", sa.String(32), nullable=False, index=True),
        sa.Column("risk", sa.String(16)),
        sa.Column("plan", sa.JSON),
        sa.Column("refused", sa.JSON, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("audit_commit", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_table(
        "decisions",
        sa.Column("change_request_id", sa.String(255), primary_key=True),
        sa.Column("who", sa.String(255), primary_key=True),
        sa.Column("verdict", sa.String(16), primary_key=True),
        sa.Column("note", sa.Text),
        sa.Column("decided_at", sa.String(64), nullable=False),
    )
    op.create_table(
        "steps",
        sa.Column("change_request_id", sa.String(255), primary_key=True),
        sa.Column("step", sa.Integer, primary_key=True),
        sa.Column("playbook", sa.String(1024), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("ok", sa.Integer, nullable=False),
        sa.Column("changed", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
    )
    op.create_table(
        "tasks",
        sa.Column("task_id", sa.String(512), primary_key=True),
        sa.Column("change_request_id", sa.String(255), nullable=False, index=True),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("play", sa.Text, nullable=False),
        sa.Column("task", sa.Text, nullable=False),
        sa.Column("action", sa.String(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("msg", sa.Text, nullable=False),
        sa.Column("duration", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in ("tasks", "steps", "decisions", "change_requests"):
        op.drop_table(table)
