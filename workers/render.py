"""How the CLI shows a change request: plan lines, status tables and progress lines."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from rich.console import Console
from rich.table import Table

from activities.catalog import Draft
from activities.discovery import Catalog
from workflows.runs import PlaybookProgress
from workflows.types import (
    ApproveInput,
    ChangeRequestStatus,
    DecideInput,
    Decision,
    Phase,
    RejectInput,
    StepPreview,
    StepStatus,
)


def as_json(value: Any) -> str:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return json.dumps(value, indent=2, default=str)


def headline(status: ChangeRequestStatus) -> str:
    plan = status.plan
    if plan is None:
        return f"{status.workflow_id}  {status.phase}"
    parts = [f"{len(plan.steps)} step{'s' if len(plan.steps) != 1 else ''}", f"risk {plan.risk}"]
    if status.phase == Phase.AWAITING_APPROVAL:
        parts.append(f"awaiting approval ({len(status.approvals)} of {plan.policy.required_approvals})")
    else:
        parts.append(str(status.phase))
    line = f"{status.workflow_id}  planned: {', '.join(parts)}"
    if status.error:
        line += f"\n  {status.error}"
    return line


def plan_lines(status: ChangeRequestStatus) -> list[str]:
    if status.plan is None:
        return []
    width = max((len(s.playbook) for s in status.plan.steps), default=0)
    previews = {p.step: p for p in status.plan.preview}
    lines = []
    for i, s in enumerate(status.plan.steps, 1):
        hosts = ", ".join(s.host_list) or s.hosts
        lines.append(
            f"  {i}. {s.playbook:<{width}}  {s.action:<9} {s.service:<12} hosts: {hosts:<10} risk: {s.risk}"
            + (f"  vars: {', '.join(s.vars)}" if s.vars else "")
        )
        if s.reason:
            lines.append(f"     why: {s.reason}")
        if s.unmatched_target:
            lines.append(f"     target not applied: {s.unmatched_target}")
        if i in previews:
            lines.extend(preview_lines(previews[i]))
    lines.extend(f"  not doing: {clause}" for clause in status.plan.excluded)
    if status.plan.plan_digest:
        lines.append(f"  plan digest: {status.plan.plan_digest}")
    return lines + var_lines(status)


def preview_lines(preview: StepPreview) -> list[str]:
    """What check mode says the step would do, per host."""
    if not preview.available:
        return [f"     check: no preview ({preview.reason})"]
    lines = []
    for host in preview.hosts:
        line = f"     check: {host.host}  {host.changed} to change, {host.ok} ok, {host.failed} failed"
        if host.would_change:
            line += f"  ({', '.join(host.would_change)})"
        lines.append(line)
    return lines or ["     check: no task would run"]


def var_lines(status: ChangeRequestStatus) -> list[str]:
    """Every extra var with the value that will run; a secret as its short hash."""
    if status.plan is None or not status.plan.vars:
        return []
    return ["  vars:", *(f"    {v.name} = {v.shown}" for v in status.plan.vars)]


def print_plan(console: Console, status: ChangeRequestStatus) -> None:
    console.print(headline(status))
    for line in plan_lines(status):
        console.print(line)


def decided(request_id: str, decision: ApproveInput | RejectInput | DecideInput, status: ChangeRequestStatus) -> str:
    if isinstance(decision, DecideInput):
        return f"{request_id}  {decision.action} by {decision.operator}: now {status.phase}"
    if isinstance(decision, RejectInput):
        return f"{request_id}  rejected by {decision.approver}"
    line = f"{request_id}  approved by {decision.approver}"
    if status.plan is not None:
        line += f" ({len(status.approvals)} of {status.plan.policy.required_approvals} approvals)"
    return line


def step_line(step: StepStatus, total: int) -> str:
    line = f"  step {step.index}/{total} {step.playbook}: {step.state}"
    line += f"  ok={step.ok} changed={step.changed} failed={step.failed}"
    return f"{line}  {step.error}" if step.error else line


def status_table(status: ChangeRequestStatus) -> Table:
    table = Table(title=headline(status).splitlines()[0], title_justify="left")
    for column in ("#", "playbook", "state", "attempt", "ok", "changed", "failed", "error"):
        table.add_column(column)
    for step in status.steps:
        table.add_row(
            str(step.index),
            step.playbook,
            str(step.state),
            str(step.attempt or ""),
            str(step.ok),
            str(step.changed),
            str(step.failed),
            step.error or "",
        )
    return table


def print_status(console: Console, status: ChangeRequestStatus) -> None:
    console.print(status_table(status))
    if status.request is not None:
        console.print(f"request:   {status.request.request}  (by {status.request.requester})")
    for line in var_lines(status):
        console.print(line)
    if status.plan is not None and status.plan.plan_digest:
        console.print(f"plan:      {status.plan.plan_digest}")
    for decision in status.approvals:
        console.print(decision_line("approved: ", decision))
    if status.rejection:
        console.print(decision_line("rejected: ", status.rejection))
    for decision in status.decisions:
        console.print(decision_line(f"{decision.verdict}:".ljust(10), decision))
    for refused in status.refused:
        console.print(f"refused:   {refused.name} from {refused.who or '?'}: {refused.reason}")
    if status.error:
        console.print(f"error:     {status.error}")
    if status.audit_commit:
        console.print(f"audit:     commit {status.audit_commit}")


def decision_line(label: str, decision: Decision) -> str:
    on_step = f" on step {decision.step}" if decision.step else ""
    line = f"{label} {decision.who}{on_step} at {decision.at}"
    line += channel(decision.via, decision.subject)
    if decision.key_fingerprint:
        line += f", signed with key {decision.key_fingerprint}"
    return line + (f" — {decision.note}" if decision.note else "")


def channel(via: str | None, subject: str | None) -> str:
    """`, via web as local:alice`: where a decision came from, as its sender said."""
    if not via and not subject:
        return ""
    return f", via {via or '?'}" + (f" as {subject}" if subject else "")


def progress_line(step: int, total: int, playbook: str, progress: PlaybookProgress) -> str:
    where = " ".join(
        part
        for part in (
            f"play {progress.play!r}" if progress.play else "",
            f"task {progress.task!r}" if progress.task else "",
            f"host {progress.host}" if progress.host else "",
        )
        if part
    )
    counts = f"ok={progress.ok} changed={progress.changed} failed={progress.failed + progress.unreachable}"
    return f"  step {step}/{total} {playbook}  {where}  {counts}".rstrip()


def draft_json(request: str, draft: Draft) -> dict[str, Any]:
    """`signoff plan --json`: steps (paths relative to the playbook dir), or error + unmatched."""
    return {
        "request": request,
        "steps": [
            {
                "playbook": s.playbook,
                "action": s.action,
                "service": s.service,
                "hosts": s.host_list,
                "host_patterns": s.hosts,
                "limit": s.limit,
                "unmatched_target": s.unmatched_target,
                "risk": str(s.risk),
                "reason": s.reason,
                "vars": s.vars,
            }
            for s in draft.steps
        ],
        "risk": str(draft.risk),
        "vars": [dataclasses.asdict(v) for v in draft.vars],
        "excluded": draft.excluded,
        "error": draft.error,
        "unmatched": [dataclasses.asdict(u) for u in draft.unmatched],
    }


def draft_lines(draft: Draft) -> list[str]:
    lines = []
    for i, s in enumerate(draft.steps, 1):
        lines.append(f"{i}. {s.playbook}  {s.action} {s.service}  risk: {s.risk}  hosts: {', '.join(s.host_list)}")
        lines.append(f"   why: {s.reason}")
        if s.unmatched_target:
            lines.append(f"   target not applied: {s.unmatched_target}")
    lines.extend(f"   not doing: {clause}" for clause in draft.excluded)
    lines.extend(f"   var {v.name} = {v.shown}" for v in draft.vars)
    if draft.error:
        lines.append(f"cannot plan: {draft.error}")
    for u in draft.unmatched:
        hint = f" (closest: {', '.join(u.suggestions)})" if u.suggestions else ""
        lines.append(f"  {u.clause!r}: {u.reason}{hint}")
    return lines


def catalog_lines(catalog: Catalog) -> list[str]:
    lines = [f"{len(catalog.entries)} playbooks, {len(catalog.skipped)} files skipped, {len(catalog.broken)} broken"]
    width = max((len(e.path) for e in catalog.entries), default=0)
    lines.extend(
        f"  {e.path:<{width}}  {e.action:<10} {e.service:<16} risk: {e.risk:<6} hosts: {', '.join(e.hosts)}"
        for e in catalog.entries
    )
    lines.extend(f"  broken: {b.path}: {b.reason}" for b in catalog.broken)
    lines.extend(f"  skipped: {s.path}: {s.reason}" for s in catalog.skipped)
    return lines


def audit_lines(audit: dict[str, Any]) -> list[str]:
    """workers.audit_queries.get_request() as lines: request, decisions, refusals, steps, every
    attempt's tasks with their hosts, and the chained events."""
    request = audit["request"]
    lines = [
        f"database: change_requests[{request['id']}] phase={request['phase']} requester={request['requester']} "
        f"risk={request['risk']} audit_commit={request['audit_commit']}",
        f"  request: {request['request']}",
    ]
    for step in (request.get("plan") or {}).get("steps", []):
        lines.append(f"  plan: {step['playbook']} on {', '.join(step.get('host_list') or []) or step['hosts']}")
    for d in audit["decisions"]:
        on_step = f" on step {d['step']}" if d["step"] else ""
        signed = channel(d.get("via"), d.get("subject"))
        signed += f", signed with key {d['key_fingerprint']}" if d.get("key_fingerprint") else ""
        lines.append(f"database: decision {d['verdict']}{on_step} by {d['who']} at {d['decided_at']}{signed}"
                     + (f": {d['note']}" if d["note"] else ""))  # fmt: skip
    lines.extend(f"database: refused {r['verdict']} from {r['who']!r}: {r['note']}" for r in audit["refusals"])
    for step in audit["steps"]:
        failure = f" {step['failure_class']}: {step['evidence']}" if step["failure_class"] else ""
        lines.append(f"database: step {step['step']} {step['playbook']} {step['state']} "
                     f"(attempt {step['attempt']}, runs {step['runs']}){failure}")  # fmt: skip
    lines.append(f"database: {len(audit['tasks'])} task results")
    lines.extend(
        f"  step {t['step']}  attempt {t['attempt']}  {t['status']:<11} {t['host']:<10} {t['task']}"
        for t in audit["tasks"]
    )
    events = audit["events"]
    if events:
        lines.append(f"database: {len(events)} audit events, chain head {events[-1]['hash'][:16]}")
        lines.extend(f"  #{e['seq']} {e['kind']} at {e['at']}" for e in events)
    return lines
