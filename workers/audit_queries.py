"""What an auditor asks of signoff, as importable functions (the CLI, the web and scripts use
them): one request's whole record, recent failures, one task, and `verify`.

Every function takes a database URL; None means the one the environment configures
(`SIGNOFF_DATABASE_URL`, else the embedded server `signoff dev` runs).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from activities.audit_chain import Broken, verify_chain, verify_request
from activities.audit_repo import AuditRepo
from activities.audit_trail import document, request_file
from activities.db import AuditEventRow, ChangeRequestRow, DecisionRow, LintSuggestionRow, StepRow, TaskRow, make_engine
from workers.devstack import embedded_database_url
from workers.settings import Settings


class NotFound(LookupError):
    """No such request or task in the audit."""


def database_url(url: str | None = None) -> str:
    if url:
        return url
    settings = Settings.from_env()
    found = settings.database_url or embedded_database_url(settings.data_dir)
    if not found:
        raise NotFound("no database: set SIGNOFF_DATABASE_URL, or start `signoff dev`")
    return found


@contextmanager
def _session(url: str | None) -> Iterator[Session]:
    engine = make_engine(database_url(url))
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


def _row(obj: Any, *skip: str) -> dict[str, Any]:
    return {c.key: getattr(obj, c.key) for c in obj.__table__.columns if c.key not in skip}


def get_request(request_id: str, url: str | None = None) -> dict[str, Any]:
    """The request, its plan, decisions and refusals, steps, every attempt's tasks with their
    hosts, its audit events and its commit."""
    with _session(url) as session:
        return request_audit(session, request_id)


def request_audit(session: Session, request_id: str) -> dict[str, Any]:
    request = session.get(ChangeRequestRow, request_id)
    if request is None:
        raise NotFound(f"no audit record for {request_id!r} in the database")
    where = {"change_request_id": request_id}
    decisions = session.scalars(
        select(DecisionRow).filter_by(**where).order_by(DecisionRow.kind, DecisionRow.seq)
    ).all()
    steps = session.scalars(select(StepRow).filter_by(**where).order_by(StepRow.step))
    tasks = session.scalars(select(TaskRow).filter_by(**where).order_by(TaskRow.step, TaskRow.attempt, TaskRow.seq))
    events = session.scalars(select(AuditEventRow).filter_by(**where).order_by(AuditEventRow.seq))
    return {
        "request": _row(request, "record"),
        "decisions": [_row(d, "change_request_id") for d in decisions if d.kind == "decision"],
        "refusals": [_row(d, "change_request_id") for d in decisions if d.kind == "refusal"],
        "steps": [_row(s, "change_request_id") for s in steps],
        "tasks": [_row(t, "change_request_id") for t in tasks],
        "events": [_row(e, "change_request_id", "data") | {"data": e.data} for e in events],
    }


def get_failures(days: float = 7, url: str | None = None) -> list[dict[str, Any]]:
    """Failed and unreachable tasks of requests active in the last `days`, with their step's
    failure class and evidence; a step that failed before any task ran is listed once, without a
    task."""
    with _session(url) as session:
        since = func.now() - timedelta(days=days)
        failed_steps = session.execute(
            select(StepRow, ChangeRequestRow.request, ChangeRequestRow.requester, ChangeRequestRow.updated_at)
            .join(ChangeRequestRow, ChangeRequestRow.id == StepRow.change_request_id)
            .where(StepRow.failure_class.is_not(None), ChangeRequestRow.updated_at >= since)
            .order_by(ChangeRequestRow.updated_at.desc(), StepRow.step)
        ).all()
        found: list[dict[str, Any]] = []
        for step, request, requester, at in failed_steps:
            base = {
                "change_request_id": step.change_request_id,
                "request": request,
                "requester": requester,
                "at": at.isoformat(),
                "step": step.step,
                "playbook": step.playbook,
                "state": step.state,
                "failure_class": step.failure_class,
                "evidence": step.evidence,
            }
            tasks = session.scalars(
                select(TaskRow)
                .filter_by(change_request_id=step.change_request_id, step=step.step)
                .where(TaskRow.status.in_(("failed", "unreachable")))
                .order_by(TaskRow.attempt, TaskRow.seq)
            ).all()
            if not tasks:
                found.append(base | {"task_id": None, "attempt": step.attempt, "host": None, "task": None, "msg": None})
            for task in tasks:
                found.append(
                    base
                    | {
                        "task_id": task.task_id,
                        "attempt": task.attempt,
                        "host": task.host,
                        "task": task.task,
                        "status": task.status,
                        "msg": task.msg,
                    }
                )
        return found


def get_task(task_id: str, url: str | None = None) -> dict[str, Any]:
    """One task result, with its request and the lint suggestions linked to it."""
    with _session(url) as session:
        task = session.get(TaskRow, task_id)
        if task is None:
            raise NotFound(f"no task {task_id!r} in the audit")
        request = session.get(ChangeRequestRow, task.change_request_id)
        suggestions = session.scalars(select(LintSuggestionRow).filter_by(task_id=task_id))
        return _row(task) | {
            "request": request.request if request else None,
            "suggestions": [_row(s) for s in suggestions],
        }


@dataclass
class Verification:
    events: int = 0  # audit events whose hash and link were checked
    requests: int = 0  # git records compared with the database
    broken: list[str] = field(default_factory=list)  # the first broken link of each kind, in words

    @property
    def ok(self) -> bool:
        return not self.broken


def verify(request_id: str | None = None, url: str | None = None, audit_repo: Path | None = None) -> Verification:
    """Check the event chain (all of it, or one request's links), then each audited request's
    git record against the document the database gives for the same chain head."""
    repo = AuditRepo(audit_repo or Settings.from_env().audit_repo)
    report = Verification()
    with _session(url) as session:
        count, broken = verify_request(session, request_id) if request_id else verify_chain(session)
        report.events = count
        if broken:
            report.broken.append(str(broken))
        # Requests audited by an earlier release (revision 0) have no chained record to compare.
        query = select(ChangeRequestRow.id, ChangeRequestRow.audit_commit).where(
            ChangeRequestRow.audit_commit.is_not(None), ChangeRequestRow.revision > 0
        )
        if request_id:
            if session.get(ChangeRequestRow, request_id) is None:
                raise NotFound(f"no audit record for {request_id!r} in the database")
            query = query.where(ChangeRequestRow.id == request_id)
        for rid, commit in session.execute(query):
            report.requests += 1
            problem = _git_problem(session, repo, rid, commit or "")
            if problem:
                report.broken.append(str(Broken(None, rid, problem)))
                break
    return report


def _git_problem(session: Session, repo: AuditRepo, request_id: str, commit: str) -> str | None:
    path = request_file(request_id)
    raw = repo.read(path)
    if raw is None:
        return f"git has no {path}"
    if raw != repo.read(path, commit):
        return f"{path} in git was changed after audit commit {commit[:12]}"
    try:
        kept = json.loads(raw)
        seq = kept["chain_head"]["seq"]
    except (ValueError, KeyError, TypeError):
        return f"{path} in git is not an audit record"
    expected = document(session, request_id, upto_seq=seq)
    if kept != json.loads(json.dumps(expected)):
        fields = sorted(k for k in set(kept) | set(expected or {}) if kept.get(k) != (expected or {}).get(k))
        return f"{path} in git differs from the database in {', '.join(fields)}"
    return None
