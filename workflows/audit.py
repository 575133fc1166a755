"""What the audit keeps of a change request: versioned records of their own, not the `status`
query's dataclass, so changing what `status` shows never changes the database or git formats.

The workflow keeps an AuditLog. Each write sends the request's record as it stands now and the
events (facts) that happened since the last write that completed. Events are numbered 1, 2, ...
per request by the workflow, so a retried or repeated write appends each fact once, and the
request record carries the number of its last event as its revision, so an older write never
replaces a newer one.

Standard library only: this module is imported inside the workflow sandbox.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any

from workflows.types import ChangeRequestStatus, Decision, StepState

AUDIT_FORMAT = 1  # bump when a record's fields change meaning; readers dispatch on it


class EventKind(enum.StrEnum):
    SUBMITTED = "submitted"  # who asked for what
    PLANNED = "planned"  # what plan was shown
    PHASE = "phase"  # the request moved on
    DECISION = "decision"  # an approval, rejection or operator's decision
    REFUSAL = "refusal"  # a signal refused: who, what, why
    STEP = "step"  # a step ran (state, attempt, counts, failure class and evidence)
    AUDIT_COMMIT = "audit_commit"  # the git commit that holds the request's outcome


@dataclass(frozen=True)
class AuditEvent:
    seq: int
    kind: str
    at: str  # workflow time, ISO 8601
    data: dict[str, Any]


@dataclass(frozen=True)
class DecisionFact:
    seq: int  # approvals, then a rejection, then operators' decisions, in arrival order
    who: str
    verdict: str
    note: str | None
    at: str
    raw: str | None = None
    step: int | None = None
    plan_digest: str | None = None  # the plan it named
    key_fingerprint: str | None = None  # the verified key of a signed decision (SHA256:...)
    via: str | None = None  # the channel it came through and who that channel authenticated,
    subject: str | None = None  # as the sender said (the signing key is what proves it)


@dataclass(frozen=True)
class RefusalFact:
    seq: int
    signal: str
    who: str | None
    reason: str
    at: str


@dataclass(frozen=True)
class StepFact:
    step: int
    playbook: str
    state: str
    attempt: int
    runs: int
    ok: int
    changed: int
    failed: int
    error: str | None
    failure_class: str | None
    evidence: str | None


@dataclass(frozen=True)
class RequestRecord:
    """A change request as the audit keeps it at one revision."""

    format: int
    workflow_id: str
    request: str
    requester: str
    requester_raw: str | None
    inventory: str | None
    vars: dict[str, Any]  # as the approver saw them: secrets as `(secret, sha256:...)`
    dry_run: bool
    phase: str
    risk: str | None
    plan: dict[str, Any] | None
    error: str | None
    decisions: list[DecisionFact] = field(default_factory=list)
    refusals: list[RefusalFact] = field(default_factory=list)
    steps: list[StepFact] = field(default_factory=list)


@dataclass(frozen=True)
class AuditAppend:
    """One write: the record at `revision` (the seq of the last event so far) and the events
    not yet known to be written."""

    revision: int
    record: RequestRecord
    events: list[AuditEvent]


def record_of(status: ChangeRequestStatus) -> RequestRecord:
    request = status.request
    assert request is not None, "only validated requests are audited"
    return RequestRecord(
        format=AUDIT_FORMAT,
        workflow_id=status.workflow_id,
        request=request.request,
        requester=request.requester,
        requester_raw=status.requester_raw,
        inventory=request.inventory,
        vars=dict(request.vars),
        dry_run=request.dry_run,
        phase=str(status.phase),
        risk=str(status.plan.risk) if status.plan else None,
        plan=dataclasses.asdict(status.plan) if status.plan else None,
        error=status.error,
        decisions=[_decision(seq, d) for seq, d in enumerate(_decisions(status))],
        refusals=[RefusalFact(seq, r.name, r.who, r.reason, r.at) for seq, r in enumerate(status.refused)],
        steps=[_step(s) for s in status.steps],
    )


def submitted(record: RequestRecord) -> dict[str, Any]:
    """Who asked for what: the `submitted` fact, and the request row's own columns."""
    return {
        "request": record.request,
        "requester": record.requester,
        "requester_raw": record.requester_raw,
        "inventory": record.inventory,
        "var_names": sorted(record.vars),
        "dry_run": record.dry_run,
    }


def _decisions(status: ChangeRequestStatus) -> list[Decision]:
    # Each list only grows, so a decision keeps its position from one write to the next.
    return [*status.approvals, *([status.rejection] if status.rejection else []), *status.decisions]


def _decision(seq: int, d: Decision) -> DecisionFact:
    return DecisionFact(
        seq, d.who, str(d.verdict), d.note, d.at, d.raw, d.step, d.plan_digest, d.key_fingerprint, d.via, d.subject
    )


def _step(s: Any) -> StepFact:
    return StepFact(
        s.index, s.playbook, str(s.state), s.attempt, s.runs, s.ok, s.changed, s.failed, s.error,
        s.failure_class, s.evidence,
    )  # fmt: skip


_SETTLED = frozenset({StepState.SUCCEEDED, StepState.FAILED, StepState.SKIPPED, StepState.CANCELLED})


class AuditLog:
    """The facts of one request, in the order the workflow saw them. Deterministic: built only
    from the status and the workflow time it is given."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self._written = 0  # events known to be in the database
        self._phase = ""
        self._planned = False
        self._decisions = 0
        self._refusals = 0
        self._steps: dict[int, StepFact] = {}

    def pending(self, status: ChangeRequestStatus, at: str) -> AuditAppend:
        record = record_of(status)
        self._observe(record, at)
        return AuditAppend(revision=len(self.events), record=record, events=self.events[self._written :])

    def written(self, batch: AuditAppend) -> None:
        self._written = max(self._written, batch.revision)

    def committed(self, sha: str, at: str) -> None:
        """The commit activity appended this fact itself (after its own batch)."""
        self._add(EventKind.AUDIT_COMMIT, at, {"sha": sha})
        self._written = len(self.events)

    def _add(self, kind: EventKind, at: str, data: dict[str, Any]) -> None:
        self.events.append(AuditEvent(len(self.events) + 1, str(kind), at, data))

    def _observe(self, record: RequestRecord, at: str) -> None:
        if not self.events:
            self._add(EventKind.SUBMITTED, at, submitted(record))
        if record.plan is not None and not self._planned:
            self._planned = True
            plan = record.plan
            self._add(
                EventKind.PLANNED,
                at,
                {
                    "risk": record.risk,
                    "plan_digest": plan.get("plan_digest"),
                    "vars": record.vars,
                    "steps": [
                        {k: s.get(k) for k in ("playbook", "service", "action", "sha256", "limit", "host_list", "vars")}
                        for s in plan["steps"]
                    ],
                    "error": plan.get("error"),
                },
            )
        for fact in record.decisions[self._decisions :]:
            self._add(EventKind.DECISION, fact.at, _decision_event(fact))
        self._decisions = len(record.decisions)
        for refusal in record.refusals[self._refusals :]:
            self._add(EventKind.REFUSAL, refusal.at, dataclasses.asdict(refusal))
        self._refusals = len(record.refusals)
        for step in record.steps:
            settled = step.state in _SETTLED
            if settled and self._steps.get(step.step) != step:
                self._steps[step.step] = step
                self._add(EventKind.STEP, at, dataclasses.asdict(step))
        if record.phase != self._phase:
            self._phase = record.phase
            self._add(EventKind.PHASE, at, {"phase": record.phase, "error": record.error})


def _decision_event(fact: DecisionFact) -> dict[str, Any]:
    """The event's data; `via` and `subject` only when sent, so a decision without them is
    recorded exactly as before they existed."""
    data = dataclasses.asdict(fact)
    for late in ("via", "subject"):
        if data[late] is None:
            del data[late]
    return data
