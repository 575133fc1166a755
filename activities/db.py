"""PostgreSQL schema (SQLAlchemy 2.0) and migrations (Alembic).

The tables are the audit trail: one row per change request, per decision, per step run and
per task result. Writes are upserts keyed so that a retried activity writes the same rows.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    func,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

MIGRATIONS = Path(__file__).parent / "migrations"
# Any fixed number: serialises concurrent `migrate()` calls from a fleet of workers.
_MIGRATION_LOCK = 0x5167_0FF


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[Mapping[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class ChangeRequestRow(Base):
    __tablename__ = "change_requests"

    id: Mapped[str] = mapped_column(Text, primary_key=True)  # the workflow id
    request: Mapped[str] = mapped_column(Text)
    requester: Mapped[str] = mapped_column(Text, index=True)  # PRECIS-normalised
    requester_raw: Mapped[str | None] = mapped_column(Text)  # as sent, when it differs
    inventory: Mapped[str | None] = mapped_column(Text)
    var_names: Mapped[list[Any]] = mapped_column(default=list)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    phase: Mapped[str] = mapped_column(String(32), index=True)
    risk: Mapped[str | None] = mapped_column(String(16))
    plan: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    plan_digest: Mapped[str | None] = mapped_column(String(71))  # sha256:<hex> of what will run
    refused: Mapped[list[Any]] = mapped_column(default=list)
    error: Mapped[str | None] = mapped_column(Text)
    audit_commit: Mapped[str | None] = mapped_column(String(64))
    revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # its last audit event's seq
    record: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # workflows.audit.RequestRecord at `revision`
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class DecisionRow(Base):
    """Approvals, rejections and operators' decisions (kind `decision`), and signals that were
    refused (kind `refusal`: verdict is the signal's name, note the reason)."""

    __tablename__ = "decisions"

    change_request_id: Mapped[str] = mapped_column(Text, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True, server_default="decision")
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)  # approvals, rejection, then operators' decisions
    who: Mapped[str | None] = mapped_column(Text)  # a refused name may not normalise at all
    verdict: Mapped[str] = mapped_column(String(16))  # approve | reject | retry | skip | abort
    step: Mapped[int | None] = mapped_column(Integer)  # the failed step a retry/skip/abort is about
    note: Mapped[str | None] = mapped_column(Text)
    raw: Mapped[str | None] = mapped_column(Text)  # the name as sent, when normalising changed it
    plan_digest: Mapped[str | None] = mapped_column(String(71))  # the plan the decision named
    key_fingerprint: Mapped[str | None] = mapped_column(Text)  # the verified key of a signed decision
    via: Mapped[str | None] = mapped_column(Text)  # the channel it came through (web, ...), as sent
    subject: Mapped[str | None] = mapped_column(Text)  # who that channel authenticated, as sent
    decided_at: Mapped[str] = mapped_column(String(64))


class StepRow(Base):
    __tablename__ = "steps"

    change_request_id: Mapped[str] = mapped_column(Text, primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    playbook: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(32))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    ok: Mapped[int] = mapped_column(Integer, default=0)
    changed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    failure_class: Mapped[str | None] = mapped_column(String(32))
    evidence: Mapped[str | None] = mapped_column(Text)
    runs: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class TaskRow(Base):
    __tablename__ = "tasks"

    task_id: Mapped[str] = mapped_column(Text, primary_key=True)
    change_request_id: Mapped[str] = mapped_column(Text, index=True)
    step: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    play: Mapped[str] = mapped_column(Text)
    task: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    host: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    msg: Mapped[str] = mapped_column(Text)
    duration: Mapped[float] = mapped_column(Float)


class TargetEventRow(Base):
    """A pause, resume or circuit-breaker trip of a target; the key makes a retried write one row."""

    __tablename__ = "target_events"

    target: Mapped[str] = mapped_column(Text, primary_key=True)
    at: Mapped[str] = mapped_column(Text, primary_key=True)  # ISO 8601, the lock workflow's time
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # pause | resume | trip
    by: Mapped[str] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)


class AuditEventRow(Base):
    """The append-only log: one row per fact, chained. `hash` is the SHA-256 of the previous
    row's hash and this row's canonical content (activities.audit_chain), so an edited, deleted
    or inserted row breaks every hash after it. Appended under an advisory lock: one chain."""

    __tablename__ = "audit_events"
    __table_args__ = (UniqueConstraint("change_request_id", "seq", name="audit_events_request_seq"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    change_request_id: Mapped[str] = mapped_column(Text)
    seq: Mapped[int] = mapped_column(Integer)  # 1, 2, ... per change request, given by the workflow
    kind: Mapped[str] = mapped_column(String(32))
    at: Mapped[str] = mapped_column(String(64))  # workflow time, ISO 8601
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class LintSuggestionRow(Base):
    """What ansible-lint suggests for the playbook of a failed step, linked to the failed task."""

    __tablename__ = "lint_suggestions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # a hash of what identifies it
    change_request_id: Mapped[str] = mapped_column(Text, index=True)
    step: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    task_id: Mapped[str | None] = mapped_column(Text)  # the failed task, when one failed
    playbook: Mapped[str] = mapped_column(Text)  # relative to the playbook dir
    rule: Mapped[str] = mapped_column(Text)  # ansible-lint's rule id, e.g. no-changed-when
    category: Mapped[str] = mapped_column(String(32))  # idempotency | error handling | security | deprecated | style
    message: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)  # the file ansible-lint named, relative
    line: Mapped[int | None] = mapped_column(Integer)
    fixable: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16), default="open", server_default="open")  # open|accepted|acknowledged
    decided_by: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    branch: Mapped[str | None] = mapped_column(Text)  # where an accepted fix was committed
    fix_commit: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class PlaybookCacheRow(Base):
    """One playbook file as discovery read it; reused while its size and mtime, or else its
    content hash, are unchanged and it was parsed by the same parser version."""

    __tablename__ = "playbook_cache"

    root: Mapped[str] = mapped_column(Text, primary_key=True)  # the resolved playbook dir
    path: Mapped[str] = mapped_column(Text, primary_key=True)  # relative, posix
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    parser: Mapped[int] = mapped_column(Integer)
    item: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


def table_of(model: type[Base]) -> Table:
    """The Core table of a model: statements on it run as executemany, without the ORM."""
    table = model.__table__
    assert isinstance(table, Table), "every model is mapped to one table"
    return table


def make_engine(url: str) -> Engine:
    # hide_parameters: statements' values (records, task output) never reach error messages or logs
    return create_engine(url, pool_pre_ping=True, hide_parameters=True)


# The newest migration: a worker whose database is there already never loads Alembic.
SCHEMA_HEAD = "0009"


def schema_revision(engine: Engine) -> str | None:
    """The database's migration revision; None for a database signoff has not migrated."""
    with engine.connect() as connection:
        if not connection.execute(text("SELECT to_regclass('alembic_version') IS NOT NULL")).scalar():
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def migrate(engine: Engine) -> None:
    """Bring the schema to head; safe to call from many workers at once."""
    from alembic import command  # only here: ~12 MiB a long-running worker need not keep
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def migrate_in_child(engine: Engine) -> None:
    """`migrate`, in a process of its own when the schema is behind, so Alembic's modules never
    stay resident in the worker. The URL goes by environment, not argv (`ps` shows argv)."""
    if schema_revision(engine) == SCHEMA_HEAD:
        return
    env = {**os.environ, _URL_ENV: engine.url.render_as_string(hide_password=False)}
    code = "import os; from activities.db import make_engine, migrate; migrate(make_engine(os.environ[%r]))"
    done = subprocess.run([sys.executable, "-c", code % _URL_ENV], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"database migration failed:\n{done.stderr[-4000:]}")


_URL_ENV = "SIGNOFF_MIGRATE_DATABASE_URL"
