"""Audit rows in PostgreSQL: the change request, its decisions, steps and task results."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from temporalio import activity

from activities.db import Base, ChangeRequestRow, DecisionRow, StepRow, TaskRow
from activities.records import public_status
from workflows.types import AuditRecord


class AuditDbActivities:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @activity.defn(name="record_audit_rows")
    def record(self, rec: AuditRecord) -> None:
        """Upsert everything `rec` holds; a retry writes the same rows again."""
        status = rec.status
        assert status.request is not None, "the workflow records only validated requests"
        doc = public_status(status)
        request_row = {
            "id": status.workflow_id,
            "request": status.request.request,
            "requester": status.request.requester,
            "requester_raw": status.requester_raw,
            "inventory": status.request.inventory,
            "var_names": sorted(status.request.vars),
            "dry_run": status.request.dry_run,
            "phase": str(status.phase),
            "risk": str(status.plan.risk) if status.plan else None,
            "plan": doc["plan"],
            "refused": doc["refused"],
            "error": status.error,
            "audit_commit": status.audit_commit,
        }
        decisions = [
            {
                "change_request_id": status.workflow_id,
                "who": d.who,
                "verdict": str(d.verdict),
                "note": d.note,
                "raw": d.raw,
                "decided_at": d.at,
            }
            for d in [*status.approvals, *([status.rejection] if status.rejection else [])]
        ]
        steps = [
            {"change_request_id": status.workflow_id, **_without(dataclasses.asdict(s), "index", "task_ids"), "step": s.index}
            for s in status.steps
        ]
        tasks = [{"change_request_id": status.workflow_id, **dataclasses.asdict(t)} for t in rec.tasks]
        with Session(self._engine) as session, session.begin():
            _upsert(session, ChangeRequestRow, [request_row], extra={"updated_at": func.now()})
            _upsert(session, DecisionRow, decisions)
            _upsert(session, StepRow, steps)
            _upsert(session, TaskRow, tasks)


def _without(row: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in keys}


def _upsert(session: Session, model: type[Base], rows: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> None:
    if not rows:
        return
    table = model.__table__
    keys = [c.name for c in table.primary_key.columns]
    stmt = insert(table).values(rows)
    updates = {c: stmt.excluded[c] for c in rows[0] if c not in keys}
    session.execute(stmt.on_conflict_do_update(index_elements=keys, set_={**updates, **(extra or {})}))
