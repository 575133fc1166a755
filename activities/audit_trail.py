"""The audit activities of current change requests: append the request's new facts to the
database (`append_audit`), and at the end also commit its document to git (`finish_audit`).

The git document of a request is built from the database rows, never from what the workflow
sent: `signoff audit verify` builds it again the same way and compares.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from temporalio import activity

from activities.audit_chain import append_events
from activities.audit_db import permanent_errors_not_retried, write_record
from activities.audit_paths import PERMANENT_ERRNOS, safe_name
from activities.audit_repo import AuditRepo
from activities.db import AuditEventRow, ChangeRequestRow, TaskRow
from workflows.audit import AUDIT_FORMAT, AuditAppend, AuditEvent, EventKind
from workflows.types import AuditCommitResult

_TASK_FIELDS = ("task_id", "step", "attempt", "seq", "play", "task", "action", "host", "status", "msg", "duration")


def request_file(request_id: str) -> str:
    return f".audit/requests/{safe_name(request_id)}.json"


def dumps(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def document(session: Session, request_id: str, upto_seq: int | None = None) -> dict[str, Any] | None:
    """What git keeps of a request: its record, its events up to `upto_seq` with their hashes,
    every attempt's task results, and the chain head it covers. None before its first write."""
    record = session.scalar(select(ChangeRequestRow.record).where(ChangeRequestRow.id == request_id))
    if record is None:
        return None
    query = select(AuditEventRow).where(AuditEventRow.change_request_id == request_id).order_by(AuditEventRow.seq)
    if upto_seq is not None:
        query = query.where(AuditEventRow.seq <= upto_seq)
    events = list(session.scalars(query))
    tasks = session.scalars(
        select(TaskRow)
        .where(TaskRow.change_request_id == request_id)
        .order_by(TaskRow.step, TaskRow.attempt, TaskRow.seq)
    )
    head = events[-1] if events else None
    return {
        "format": AUDIT_FORMAT,
        "record": record,
        "events": [{"seq": e.seq, "kind": e.kind, "at": e.at, "data": e.data, "hash": e.hash} for e in events],
        "tasks": [{name: getattr(t, name) for name in _TASK_FIELDS} for t in tasks],
        "chain_head": {"event": head.id, "seq": head.seq, "hash": head.hash} if head else None,
    }


class AuditTrail:
    def __init__(self, engine: Engine, repo: AuditRepo) -> None:
        self._engine = engine
        self._repo = repo

    @activity.defn(name="append_audit")
    def append(self, batch: AuditAppend) -> None:
        """Idempotent: events are keyed by their seq, rows guarded by the revision."""
        self._write(batch)

    @activity.defn(name="finish_audit")
    def finish(self, batch: AuditAppend) -> AuditCommitResult:
        """Write the final facts, commit the request's document to git (and push it where a
        remote is set), then record the commit as the request's last fact."""
        self._write(batch)
        request_id = batch.record.workflow_id
        path = request_file(request_id)
        with Session(self._engine) as session:
            doc = document(session, request_id, upto_seq=batch.revision)
        assert doc is not None, "written just now"
        message = _message(batch, doc)
        try:
            sha = self._repo.commit({path: dumps(doc)}, message).sha
        except OSError as err:
            if err.errno not in PERMANENT_ERRNOS:
                raise  # retried by the workflow's policy
            failure = f"git audit commit failed: {err}"
            self._committed(batch, {"error": failure}, error=failure)
            return AuditCommitResult(sha="", files=[], error=failure)
        self._repo.push()
        self._committed(batch, {"sha": sha})
        return AuditCommitResult(sha=sha, files=[path])

    def _write(self, batch: AuditAppend) -> None:
        with permanent_errors_not_retried(), Session(self._engine) as session, session.begin():
            write_record(session, batch.record, batch.revision)
            append_events(session, batch.record.workflow_id, batch.events)

    def _committed(self, batch: AuditAppend, data: dict[str, Any], error: str | None = None) -> None:
        """The commit (or why there is none) as fact `revision + 1`, the workflow's next."""
        at = batch.events[-1].at if batch.events else ""
        event = AuditEvent(batch.revision + 1, str(EventKind.AUDIT_COMMIT), at, data)
        request_id = batch.record.workflow_id
        values: dict[str, Any] = {"revision": event.seq, "audit_commit": data.get("sha")}
        if error:
            values["error"] = f"{batch.record.error}; {error}" if batch.record.error else error
        with permanent_errors_not_retried(), Session(self._engine) as session, session.begin():
            append_events(session, request_id, [event])
            session.execute(
                update(ChangeRequestRow)
                .where(ChangeRequestRow.id == request_id, ChangeRequestRow.revision < event.seq)
                .values(**values)
            )


def _message(batch: AuditAppend, doc: dict[str, Any]) -> str:
    record = batch.record
    message = f"{record.workflow_id}: {record.phase}\n\n{record.request}\n"
    if record.error:
        message += f"\n{record.error}\n"
    head = doc["chain_head"]
    return message + f"\nAudit-Chain-Head: {head['event']} {head['hash']}\n"
