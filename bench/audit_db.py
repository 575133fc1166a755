"""The PostgreSQL side of the audit benchmark (bench/audit.py prints these rows): audit writes per
second through `append_audit` with one pooled engine, and `signoff audit verify` over 10,000
events, each against a raw baseline measured in the same run."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from activities.audit_chain import verify_chain
from activities.audit_repo import AuditRepo
from activities.audit_trail import AuditTrail
from activities.db import AuditEventRow, make_engine, migrate
from workers.devstack import EmbeddedPostgres
from workflows.audit import AuditAppend, AuditEvent, record_of
from workflows.types import ChangeRequestInput, ChangeRequestStatus, Decision, Phase, StepState, StepStatus, Verdict

REQUESTS = 1000
EVENTS = 10  # per request: 10,000 in all, the size the verify target names
THREADS = 8
TARGET_VERIFY = 2.0  # seconds over 10,000 events
AT = "2026-01-01T00:00:00+00:00"


def batch(n: int) -> AuditAppend:
    """A finished request of 3 steps and 2 approvals, and its 10 facts, in one write."""
    status = ChangeRequestStatus(
        workflow_id=f"cr-bench-{n:05d}",
        phase=Phase.SUCCEEDED,
        request=ChangeRequestInput("Deploy hello and configure hello", "alice", vars={"greeting": "hi"}),
        steps=[StepStatus(i, f"step{i}.yml", StepState.SUCCEEDED, attempt=1, runs=1, ok=3) for i in (1, 2, 3)],
        approvals=[Decision(who, Verdict.APPROVE, "go", AT) for who in ("bob", "carol")],
    )
    events = [AuditEvent(seq, "step", AT, {"step": seq, "state": "succeeded", "ok": 3}) for seq in range(1, EVENTS + 1)]
    return AuditAppend(revision=EVENTS, record=record_of(status), events=events)


def rows_of(b: AuditAppend) -> int:
    return len(b.events) + 1 + len(b.record.steps) + len(b.record.decisions)


def timed_threads(work: Sequence[AuditAppend], fn: Callable[[AuditAppend], object]) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(fn, work))
    return time.perf_counter() - start


def raw_insert(engine: Engine, batches: Sequence[AuditAppend]) -> float:
    """Anchor: the same event rows as plain executemany inserts, no chain, no lock, no upserts."""

    def write(b: AuditAppend) -> None:
        rows = [
            {
                "change_request_id": f"raw-{b.record.workflow_id}",
                "seq": e.seq,
                "kind": e.kind,
                "at": e.at,
                "data": e.data,
                "prev_hash": "0" * 64,
                "hash": f"{b.record.workflow_id}-{e.seq}",
            }
            for e in b.events
        ]
        with Session(engine) as session, session.begin():
            session.execute(insert(AuditEventRow), rows)

    return timed_threads(batches, write)


def database_figures(work: Path) -> list[str]:
    server = EmbeddedPostgres.start(work / "postgres")
    try:
        engine = make_engine(server.create_database("audit_bench"))
        migrate(engine)
        batches = [batch(n) for n in range(REQUESTS)]
        trail = AuditTrail(engine, AuditRepo(work / "unused-audit-repo"))
        signoff_s = timed_threads(batches, trail.append)
        raw_s = raw_insert(engine, batches)
        with Session(engine) as session:
            session.execute(delete(AuditEventRow).where(AuditEventRow.change_request_id.like("raw-%")))
            session.commit()
        with Session(engine) as session:
            start = time.perf_counter()
            count, broken = verify_chain(session)
            verify_s = time.perf_counter() - start
        if broken is not None or count != REQUESTS * EVENTS:
            raise SystemExit(f"verify found {count} events, broken: {broken}")
        with Session(engine) as session:
            start = time.perf_counter()
            read = len(session.execute(select(AuditEventRow)).all())
            read_s = time.perf_counter() - start
        engine.dispose()
    finally:
        server.stop()
    rows = sum(rows_of(b) for b in batches)
    events = REQUESTS * EVENTS
    return [
        f"| audit rows per second, `append_audit` from {THREADS} threads, one pooled engine "
        f"({REQUESTS} requests: {events:,} chained events + request, step and decision rows, {rows:,} rows) "
        f"| {rows / signoff_s:,.0f} rows/s ({events / signoff_s:,.0f} events/s) "
        f"| the same events as plain executemany inserts, no chain | {events / raw_s:,.0f} events/s "
        f"| {raw_s / signoff_s:.2f}× (events/s ÷ anchor) | |",
        f"| `signoff audit verify` over {count:,} events, s | {verify_s:.3f} "
        f"| `SELECT` of the same {read:,} rows | {read_s:.3f} | {verify_s / read_s:.2f}× "
        f"| < {TARGET_VERIFY:g} s {'met' if verify_s < TARGET_VERIFY else 'MISSED'} |",
    ]
