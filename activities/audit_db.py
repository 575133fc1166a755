"""Audit rows in PostgreSQL: the change request, its decisions, steps and task results."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.db import Base, ChangeRequestRow, DecisionRow, StepRow, TargetEventRow, TaskRow, table_of
from activities.records import plain, public_status
from workflows.audit import RequestRecord, submitted
from workflows.runs import TaskRecord
from workflows.targets import TargetEvent
from workflows.types import AuditRecord


def write_record(session: Session, record: RequestRecord, revision: int) -> None:
    """Upsert the request, its steps and its decisions as `record` has them. Rows carry the
    revision they were written at: a write older than what is there changes nothing."""
    doc = plain(record)
    request_row = {
        "id": record.workflow_id,
        **submitted(record),
        "phase": record.phase,
        "risk": record.risk,
        "plan": record.plan,
        "plan_digest": (record.plan or {}).get("plan_digest") or None,
        "refused": doc["refusals"],
        "error": record.error,
        "revision": revision,
        "record": doc,
    }
    wid = record.workflow_id
    decisions = [
        {"change_request_id": wid, "kind": "decision", **_without(d, "at"), "decided_at": d["at"]}
        for d in doc["decisions"]
    ] + [
        {
            "change_request_id": wid,
            "kind": "refusal",
            "seq": r["seq"],
            "who": r["who"],
            "verdict": r["signal"][:16],
            "note": r["reason"],
            "decided_at": r["at"],
            "step": None,
            "raw": None,
            "plan_digest": None,
            "key_fingerprint": None,
            "via": None,
            "subject": None,
        }
        for r in doc["refusals"]
    ]
    steps = [{"change_request_id": wid, **s, "revision": revision} for s in doc["steps"]]
    _upsert(session, ChangeRequestRow, [request_row], extra=("updated_at",), guarded=True)
    _upsert(session, StepRow, steps, guarded=True)
    if decisions:  # facts: once written, never rewritten
        session.execute(insert(table_of(DecisionRow)).on_conflict_do_nothing(), decisions)


class AuditDbActivities:
    """Requests started by an earlier release record their whole status through `record`;
    current ones go through activities.audit_trail."""

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
                # A signed decision sent to a request of an earlier release: the claims with the key.
                "key_fingerprint": d.key_fingerprint,
                "via": d.via,
                "subject": d.subject,
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
        with permanent_errors_not_retried(), Session(self._engine) as session, session.begin():
            _upsert(session, ChangeRequestRow, [request_row], extra=("updated_at",))
            _upsert(session, DecisionRow, decisions)
            _upsert(session, StepRow, steps)
            _upsert(session, TaskRow, _task_rows(rec.tasks, status.workflow_id))

    @activity.defn(name="record_target_event")
    def record_target_event(self, event: TargetEvent) -> None:
        """A pause, resume or breaker trip of a target (workflows/lock.py); a retry writes one row."""
        with permanent_errors_not_retried(), Session(self._engine) as session, session.begin():
            _upsert(session, TargetEventRow, [dataclasses.asdict(event)])

    def write_tasks(self, tasks: list[TaskRecord], workflow_id: str) -> None:
        """The playbook activity's own write of an attempt's tasks (not an activity itself)."""
        with permanent_errors_not_retried(), Session(self._engine) as session, session.begin():
            _upsert(session, TaskRow, _task_rows(tasks, workflow_id))


def _task_rows(tasks: list[TaskRecord], workflow_id: str) -> list[dict[str, Any]]:
    return [{"change_request_id": workflow_id, **plain(t)} for t in tasks]


@contextmanager
def permanent_errors_not_retried() -> Iterator[None]:
    """A lost connection or a database that is down is retried (without limit, by the workflow's
    policy); a statement PostgreSQL refuses would be refused again, so it fails at once."""
    try:
        yield
    except (OperationalError, InterfaceError) as err:
        raise _unavailable(err) from None
    except DBAPIError as err:
        if err.connection_invalidated:
            raise _unavailable(err) from None
        raise ApplicationError(
            f"the database refused the audit rows: {err.orig}", type="AuditRefused", non_retryable=True
        ) from err
    except SQLAlchemyError as err:  # a statement that cannot even be built: a bug, not an outage
        raise ApplicationError(
            f"the audit rows cannot be written: {err}", type="AuditRefused", non_retryable=True
        ) from err


def _unavailable(err: DBAPIError) -> ApplicationError:
    """A short, retried error: SQLAlchemy's own carries the statement, its parameters and a
    traceback, which Temporal's server drops as too large, so an outage would show no cause."""
    first_line = str(err.orig).strip().splitlines()[0] if str(err.orig).strip() else type(err.orig).__name__
    return ApplicationError(
        f"database unavailable: {first_line}", type="DatabaseUnavailable", category=ApplicationErrorCategory.BENIGN
    )


def _without(row: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in keys}


def _upsert(
    session: Session,
    model: type[Base],
    rows: list[dict[str, Any]],
    extra: tuple[str, ...] = (),
    guarded: bool = False,
) -> None:
    """Insert or update `rows`: one statement, compiled once and cached, executed for all rows
    (executemany; SQLAlchemy sends them in multi-row pages, well under PostgreSQL's parameter
    limit). `guarded`: a row is updated only by a write of a higher revision."""
    if not rows:
        return
    session.execute(_upsert_statement(model, tuple(rows[0]), extra, guarded), rows)


@functools.cache
def _upsert_statement(model: type[Base], columns: tuple[str, ...], now: tuple[str, ...], guarded: bool) -> Any:
    """Built once per shape: building `excluded` costs more than SQLAlchemy's compiled cache
    saves (~0.6 ms a statement). `now`: columns set to the time of the write."""
    table = table_of(model)
    keys = [c.name for c in table.primary_key.columns]
    stmt = insert(table)
    updates = {c: stmt.excluded[c] for c in columns if c not in keys}
    where = table.c.revision < stmt.excluded.revision if guarded else None
    set_ = {**updates, **dict.fromkeys(now, func.now())}
    return stmt.on_conflict_do_update(index_elements=keys, set_=set_, where=where)
