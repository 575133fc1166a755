"""An audit you can trust: an append-only, hash-chained event log; revisions, so an older write
never replaces a newer one; refused signals as decision rows; ansible-lint suggestions.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.add_column("change_requests", sa.Column("revision", sa.Integer, nullable=False, server_default="0"))
    op.add_column("change_requests", sa.Column("record", sa.JSON))
    op.add_column("steps", sa.Column("revision", sa.Integer, nullable=False, server_default="0"))

    op.add_column("decisions", sa.Column("kind", sa.String(16), nullable=False, server_default="decision"))
    op.alter_column("decisions", "who", nullable=True)
    op.drop_constraint("decisions_pkey", "decisions", type_="primary")
    op.create_primary_key("decisions_pkey", "decisions", ["change_request_id", "kind", "seq"])
    # Refusals were a JSON list on the request; they become rows beside the decisions.
    op.execute(
        "INSERT INTO decisions (change_request_id, kind, seq, who, verdict, note, decided_at) "
        "SELECT cr.id, 'refusal', r.n - 1, r.value ->> 'who', left(coalesce(r.value ->> 'name', ''), 16), "
        "r.value ->> 'reason', coalesce(r.value ->> 'at', '') "
        "FROM change_requests AS cr, json_array_elements(cr.refused) WITH ORDINALITY AS r(value, n) "
        "WHERE json_typeof(cr.refused) = 'array'"
    )

    op.create_table(
        "audit_events",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("change_request_id", sa.Text, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("at", sa.String(64), nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("change_request_id", "seq", name="audit_events_request_seq"),
    )
    op.create_table(
        "lint_suggestions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("change_request_id", sa.Text, nullable=False, index=True),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("task_id", sa.Text),
        sa.Column("playbook", sa.Text, nullable=False),
        sa.Column("rule", sa.Text, nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("line", sa.Integer),
        sa.Column("fixable", sa.Boolean, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, server_default="open"),
        sa.Column("decided_by", sa.Text),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("branch", sa.Text),
        sa.Column("fix_commit", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("lint_suggestions")
    op.drop_table("audit_events")
    op.execute("DELETE FROM decisions WHERE kind <> 'decision'")
    op.drop_constraint("decisions_pkey", "decisions", type_="primary")
    op.create_primary_key("decisions_pkey", "decisions", ["change_request_id", "seq"])
    op.alter_column("decisions", "who", nullable=False)
    op.drop_column("decisions", "kind")
    op.drop_column("steps", "revision")
    op.drop_column("change_requests", "record")
    op.drop_column("change_requests", "revision")
