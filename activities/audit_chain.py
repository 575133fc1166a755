"""The audit events' hash chain: append under an advisory lock, and verify.

Each event's hash is SHA-256 over the previous event's hash and the event's canonical JSON
(request, seq, kind, time, data). Editing a row changes its hash; deleting or inserting one
breaks the next row's link; deleting a request's last events leaves its revision pointing past
them. One chain for the whole database, appended one writer at a time, so it cannot fork.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from activities.db import AuditEventRow, ChangeRequestRow, table_of
from workflows.audit import AuditEvent

GENESIS = "0" * 64
_CHAIN_LOCK = 0x5167_0FF + 1  # beside the migration lock; any fixed number


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def event_hash(prev: str, request_id: str, seq: int, kind: str, at: str, data: Any) -> str:
    content = {"request": request_id, "seq": seq, "kind": kind, "at": at, "data": data}
    return hashlib.sha256(prev.encode() + b"\n" + canonical(content)).hexdigest()


def append_events(session: Session, request_id: str, events: Sequence[AuditEvent]) -> int:
    """Append the events this request does not have yet; returns its last seq. Idempotent:
    a retried write finds its events there and appends nothing."""
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHAIN_LOCK})
    have = session.scalar(select(func.max(AuditEventRow.seq)).where(AuditEventRow.change_request_id == request_id))
    have = have or 0
    new = [e for e in events if e.seq > have]
    if not new:
        return have
    if new[0].seq != have + 1:
        raise RuntimeError(f"audit events of {request_id!r} would skip from #{have} to #{new[0].seq}")
    prev = session.scalar(select(AuditEventRow.hash).order_by(AuditEventRow.id.desc()).limit(1)) or GENESIS
    rows = []
    for event in new:
        digest = event_hash(prev, request_id, event.seq, event.kind, event.at, event.data)
        rows.append(
            {
                "change_request_id": request_id,
                "seq": event.seq,
                "kind": event.kind,
                "at": event.at,
                "data": event.data,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
    session.execute(insert(table_of(AuditEventRow)), rows)  # executemany
    return new[-1].seq


@dataclass(frozen=True)
class Broken:
    """The first link that does not hold, in words."""

    event_id: int | None
    request_id: str | None
    reason: str

    def __str__(self) -> str:
        where = f"event {self.event_id}" if self.event_id is not None else "request"
        return f"{where} of {self.request_id!r}: {self.reason}" if self.request_id else f"{where}: {self.reason}"


def _rows(session: Session, request_id: str | None = None) -> Iterator[AuditEventRow]:
    query = select(AuditEventRow).order_by(AuditEventRow.id).execution_options(yield_per=2000)
    if request_id is not None:
        query = query.where(AuditEventRow.change_request_id == request_id)
    yield from session.scalars(query)


def _content_holds(row: AuditEventRow) -> bool:
    return row.hash == event_hash(row.prev_hash, row.change_request_id, row.seq, row.kind, row.at, row.data)


def verify_chain(session: Session) -> tuple[int, Broken | None]:
    """Walk the whole chain in order: (events checked, the first broken link or None)."""
    prev = GENESIS
    count = 0
    last_seq: dict[str, int] = {}
    for row in _rows(session):
        count += 1
        if row.prev_hash != prev:
            return count, Broken(row.id, row.change_request_id, "its link to the event before it is broken "
                                 "(an event before it was deleted, inserted or edited)")  # fmt: skip
        if not _content_holds(row):
            return count, Broken(row.id, row.change_request_id, f"#{row.seq} ({row.kind}) was edited")
        expected = last_seq.get(row.change_request_id, 0) + 1
        if row.seq != expected:
            return count, Broken(row.id, row.change_request_id, f"#{row.seq} follows #{expected - 1}")
        last_seq[row.change_request_id] = row.seq
        prev = row.hash
    broken = _revisions(session, last_seq)
    return count, broken


def verify_request(session: Session, request_id: str) -> tuple[int, Broken | None]:
    """This request's events: each one's content, its link to the event just before it in the
    chain, their numbering and the request's revision."""
    count = 0
    seq = 0
    for row in _rows(session, request_id):
        count += 1
        before = session.scalar(
            select(AuditEventRow.hash).where(AuditEventRow.id < row.id).order_by(AuditEventRow.id.desc()).limit(1)
        )
        if row.prev_hash != (before or GENESIS):
            return count, Broken(row.id, request_id, "its link to the event before it is broken")
        if not _content_holds(row):
            return count, Broken(row.id, request_id, f"#{row.seq} ({row.kind}) was edited")
        if row.seq != seq + 1:
            return count, Broken(row.id, request_id, f"#{row.seq} follows #{seq}")
        seq = row.seq
    return count, _revisions(session, {request_id: seq}, only=[request_id])


def _revisions(session: Session, last_seq: dict[str, int], only: Iterable[str] | None = None) -> Broken | None:
    """A request's revision is the seq of its last event: a higher one means events are missing."""
    query = select(ChangeRequestRow.id, ChangeRequestRow.revision).where(ChangeRequestRow.revision > 0)
    if only is not None:
        query = query.where(ChangeRequestRow.id.in_(list(only)))
    for request_id, revision in session.execute(query):
        have = last_seq.get(request_id, 0)
        if revision != have:
            return Broken(None, request_id, f"its record is at event #{revision} but the chain holds #{have}")
    return None
