"""Decisions as a log: operators' retry/skip/abort on failed steps join approvals and rejections,
so one person may decide more than once. Keyed by request and position instead of by person.
Steps keep the class and evidence of their last failure and how often they were started.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.add_column("decisions", sa.Column("seq", sa.Integer))
    op.add_column("decisions", sa.Column("step", sa.Integer))
    op.execute(
        "UPDATE decisions SET seq = numbered.n FROM (SELECT change_request_id, who, verdict, "
        "row_number() OVER (PARTITION BY change_request_id ORDER BY decided_at, who) - 1 AS n "
        "FROM decisions) AS numbered "
        "WHERE decisions.change_request_id = numbered.change_request_id AND decisions.who = numbered.who "
        "AND decisions.verdict = numbered.verdict"
    )
    op.alter_column("decisions", "seq", nullable=False)
    op.drop_constraint("decisions_pkey", "decisions", type_="primary")
    op.create_primary_key("decisions_pkey", "decisions", ["change_request_id", "seq"])
    op.add_column("steps", sa.Column("failure_class", sa.String(32)))
    op.add_column("steps", sa.Column("evidence", sa.Text))
    op.add_column("steps", sa.Column("runs", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    for column in ("runs", "evidence", "failure_class"):
        op.drop_column("steps", column)
    op.drop_constraint("decisions_pkey", "decisions", type_="primary")
    op.execute("DELETE FROM decisions WHERE verdict NOT IN ('approve', 'reject')")
    op.create_primary_key("decisions_pkey", "decisions", ["change_request_id", "who", "verdict"])
    op.drop_column("decisions", "step")
    op.drop_column("decisions", "seq")
