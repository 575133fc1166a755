"""What waits for whom: the search attributes `signoff list` reads, and the notification sent
when a request starts waiting for someone. Pure: ChangeRequestWorkflow upserts and sends what
these functions return."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from temporalio.common import SearchAttributeKey, SearchAttributeUpdate

from workflows.identity import Identity, identify
from workflows.types import ChangeRequestStatus, Phase

PHASE_ATTR = SearchAttributeKey.for_keyword("SignoffPhase")
REQUESTER_ATTR = SearchAttributeKey.for_keyword("SignoffRequester")
SERVICES_ATTR = SearchAttributeKey.for_keyword_list("SignoffServices")
APPROVALS_ATTR = SearchAttributeKey.for_int("SignoffApprovals")  # received
NEEDED_ATTR = SearchAttributeKey.for_int("SignoffApprovalsNeeded")  # still needed
WAITING_FOR_ATTR = SearchAttributeKey.for_keyword_list("SignoffWaitingFor")  # who may act now
SEARCH_ATTRIBUTES = (PHASE_ATTR, REQUESTER_ATTR, SERVICES_ATTR, APPROVALS_ATTR, NEEDED_ATTR, WAITING_FOR_ATTR)

ANYONE = "*"  # in SignoffWaitingFor: anyone but the requester (no allowlist)


KEYWORD_LIST_BYTES = 2048  # Temporal's default limit on one search attribute's value, as JSON
_CUT = 200  # characters kept of each keyword when the list has to be cut


def keyword_list(values: list[str]) -> list[str]:
    """`values` as they are when they fit one search attribute; else each cut to _CUT characters,
    as many as fit. Past the limit Temporal fails the workflow outright, before its audit."""
    if _json_bytes(values) <= KEYWORD_LIST_BYTES:
        return values
    kept: list[str] = []
    for value in values:
        if _json_bytes([*kept, value[:_CUT]]) > KEYWORD_LIST_BYTES:
            break
        kept.append(value[:_CUT])
    return kept


def _json_bytes(values: list[str]) -> int:
    return len(json.dumps(values).encode())  # ASCII escapes: at least what the server counts


def waiting_for(status: ChangeRequestStatus, requester: Identity) -> list[str]:
    """The people who may act on the request now: allowlisted approvers who are not the
    requester and (for an approval) have not approved yet; `*` when there is no allowlist."""
    if status.plan is None or status.phase not in (Phase.AWAITING_APPROVAL, Phase.AWAITING_DECISION):
        return []
    allowed = [identify(name) for name in status.plan.policy.approvers]
    if not allowed:
        return [ANYONE]
    done = [identify(d.who) for d in status.approvals] if status.phase == Phase.AWAITING_APPROVAL else []
    return [a.name for a in allowed if not a.same_person(requester) and not any(a.same_person(d) for d in done)]


def approvals_needed(status: ChangeRequestStatus) -> int:
    if status.plan is None or status.phase != Phase.AWAITING_APPROVAL:
        return 0
    return max(0, status.plan.policy.required_approvals - len(status.approvals))


def inbox_attributes(status: ChangeRequestStatus, requester: Identity) -> list[SearchAttributeUpdate[Any]]:
    return [
        APPROVALS_ATTR.value_set(len(status.approvals)),
        NEEDED_ATTR.value_set(approvals_needed(status)),
        WAITING_FOR_ATTR.value_set(keyword_list(waiting_for(status, requester))),
    ]


@dataclass(frozen=True)
class PlannedStepSummary:
    index: int
    playbook: str
    hosts: list[str]
    risk: str


@dataclass(frozen=True)
class Notification:
    """POSTed as JSON to SIGNOFF_NOTIFY_URL by activities.notify. Carries no var values."""

    id: str
    event: str  # awaiting_approval | awaiting_decision
    requester: str
    request: str
    plan_digest: str
    risk: str
    steps: list[PlannedStepSummary]
    approvals: int
    approvals_needed: int
    waiting_for: list[str]
    commands: list[str]  # what to run to act on it
    step: int | None = None  # the failed step, for awaiting_decision
    error: str | None = None
    delivery: str = ""  # unique per event: a receiver drops a retried delivery by it


def notification(status: ChangeRequestStatus, requester: Identity, step: int | None) -> Notification:
    """For a request that now waits for an approval, or (with `step`) for a decision on a failed step."""
    plan = status.plan
    assert plan is not None
    assert status.request is not None
    wid = status.workflow_id
    digest = f" --plan-digest {plan.plan_digest}" if plan.plan_digest else ""
    actions = ("retry", "skip", "abort") if step is not None else ("approve", "reject")
    runs = sum(s.runs for s in status.steps)  # an operator's retry waits again: a new delivery
    return Notification(
        id=wid,
        event=str(status.phase),
        requester=requester.name,
        request=status.request.request,
        plan_digest=plan.plan_digest,
        risk=str(plan.risk),
        steps=[
            PlannedStepSummary(i, s.playbook, s.host_list or [s.limit or s.hosts], str(s.risk))
            for i, s in enumerate(plan.steps, 1)
        ],
        approvals=len(status.approvals),
        approvals_needed=approvals_needed(status),
        waiting_for=waiting_for(status, requester),
        commands=[f"signoff {action} {wid} --as <you>{digest}" for action in actions],
        step=step,
        error=status.error if step is not None else None,
        delivery=f"{wid}/{status.phase}/{runs}",
    )
