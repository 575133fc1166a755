"""PostgreSQL schema (SQLAlchemy 2.0) and migrations (Alembic).

The tables are the audit trail: one row per change request, per decision, per step run and
per task result. Writes are upserts keyed so that a retried activity writes the same rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from alembic import command
from alembic.config import Config
from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, Integer, String, Text, create_engine, func, text
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
    refused: Mapped[list[Any]] = mapped_column(default=list)
    error: Mapped[str | None] = mapped_column(Text)
    audit_commit: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class DecisionRow(Base):
    __tablename__ = "decisions"

    change_request_id: Mapped[str] = mapped_column(Text, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)  # approvals, rejection, then operators' decisions
    who: Mapped[str] = mapped_column(Text)
    verdict: Mapped[str] = mapped_column(String(16))  # approve | reject | retry | skip | abort
    step: Mapped[int | None] = mapped_column(Integer)  # the failed step a retry/skip/abort is about
    note: Mapped[str | None] = mapped_column(Text)
    raw: Mapped[str | None] = mapped_column(Text)  # the name as sent, when normalising changed it
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


def make_engine(url: str) -> Engine:
    return create_engine(url, pool_pre_ping=True)


def migrate(engine: Engine) -> None:
    """Bring the schema to head; safe to call from many workers at once."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
