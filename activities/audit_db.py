"""Audit rows in PostgreSQL: the change request, its decisions, steps and task results."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Table, func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.db import Base, ChangeRequestRow, DecisionRow, StepRow, TaskRow
from activities.records import public_status
from workflows.runs import TaskRecord
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
        # Approvals come first, then a rejection, then operators' decisions: each list only
        # grows, so a decision keeps its position (its key) from one write to the next.
        decisions = [
            {
                "change_request_id": status.workflow_id,
                "seq": seq,
                "who": d.who,
                "verdict": str(d.verdict),
                "step": d.step,
                "note": d.note,
                "raw": d.raw,
                "decided_at": d.at,
            }
            for seq, d in enumerate(
                [*status.approvals, *([status.rejection] if status.rejection else []), *status.decisions]
            )
        ]
        steps = [
            {
                "change_request_id": status.workflow_id,
                **_without(dataclasses.asdict(s), "index", "task_ids"),
                "step": s.index,
            }
            for s in status.steps
        ]
        with _permanent_errors_not_retried(), Session(self._engine) as session, session.begin():
            _upsert(session, ChangeRequestRow, [request_row], extra={"updated_at": func.now()})
            _upsert(session, DecisionRow, decisions)
            _upsert(session, StepRow, steps)
            _upsert(session, TaskRow, _task_rows(rec.tasks, status.workflow_id))

    def write_tasks(self, tasks: list[TaskRecord], workflow_id: str) -> None:
        """The playbook activity's own write of an attempt's tasks (not an activity itself)."""
        with _permanent_errors_not_retried(), Session(self._engine) as session, session.begin():
            _upsert(session, TaskRow, _task_rows(tasks, workflow_id))


def _task_rows(tasks: list[TaskRecord], workflow_id: str) -> list[dict[str, Any]]:
    return [{"change_request_id": workflow_id, **dataclasses.asdict(t)} for t in tasks]


@contextmanager
def _permanent_errors_not_retried() -> Iterator[None]:
    """A lost connection or a database that is down is retried (without limit, by the workflow's
    policy); a statement PostgreSQL refuses would be refused again, so it fails at once."""
    try:
        yield
    except (OperationalError, InterfaceError):
        raise
    except DBAPIError as err:
        if err.connection_invalidated:
            raise
        raise ApplicationError(
            f"the database refused the audit rows: {err.orig}", type="AuditRefused", non_retryable=True
        ) from err


def _without(row: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in keys}


_BATCH = 1000  # rows per statement: PostgreSQL takes at most 65,535 parameters in one


def _upsert(
    session: Session, model: type[Base], rows: list[dict[str, Any]], extra: dict[str, Any] | None = None
) -> None:
    table = model.__table__
    assert isinstance(table, Table), "every audit model is mapped to one table"
    keys = [c.name for c in table.primary_key.columns]
    for start in range(0, len(rows), _BATCH):
        stmt = insert(table).values(rows[start : start + _BATCH])
        updates = {c: stmt.excluded[c] for c in rows[0] if c not in keys}
        session.execute(stmt.on_conflict_do_update(index_elements=keys, set_={**updates, **(extra or {})}))
