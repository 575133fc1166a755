"""What a person or script does with a change request, over a Temporal client.

Shared by the CLI commands and `signoff demo`. Errors are raised, not printed: the CLI
decides how to show them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import git
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from workers import audit_queries
from workers.render import audit_lines, progress_line, step_line
from workflows.change_request import ChangeRequestWorkflow
from workflows.runs import PlaybookProgress
from workflows.types import (
    ApproveInput,
    ChangeRequestInput,
    ChangeRequestStatus,
    DecideInput,
    Phase,
    RejectInput,
    StepState,
)


class OperationError(RuntimeError):
    """Something a user asked for could not be done; the message says why."""


def new_request_id() -> str:
    return f"cr-{secrets.token_hex(3)}"


async def submit(
    client: Client, task_queue: str, request: ChangeRequestInput, workflow_id: str, planning_timeout: float = 60
) -> ChangeRequestStatus:
    """Start a change request and return its status once planning is over."""
    try:
        handle = await client.start_workflow(  # type: ignore[misc]  # run takes a RawValue to refuse bad input itself
            ChangeRequestWorkflow.run, request, id=workflow_id, task_queue=task_queue
        )
    except WorkflowAlreadyStartedError:
        raise OperationError(
            f"a change request with id {workflow_id!r} already exists; see `signoff status {workflow_id}`"
        ) from None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + planning_timeout
    while True:
        try:
            status = await asyncio.wait_for(
                handle.query(ChangeRequestWorkflow.status), timeout=max(1.0, deadline - loop.time())
            )
        except TimeoutError:
            raise OperationError(
                f"{workflow_id} did not answer within {planning_timeout:.0f}s: "
                f"is a signoff worker polling task queue {task_queue!r}?"
            ) from None
        if status.phase != Phase.PLANNING:
            return status
        if loop.time() > deadline:
            raise OperationError(f"{workflow_id} is still {status.phase} after {planning_timeout:.0f}s")
        await asyncio.sleep(0.2)


async def decide(
    client: Client, workflow_id: str, decision: ApproveInput | RejectInput | DecideInput
) -> ChangeRequestStatus:
    """Approve, reject or decide through the validated update, so the caller learns if it was refused."""
    handle = client.get_workflow_handle_for(ChangeRequestWorkflow.run, workflow_id)
    if isinstance(decision, ApproveInput):
        update = ChangeRequestWorkflow.approve_update
    elif isinstance(decision, RejectInput):
        update = ChangeRequestWorkflow.reject_update
    else:
        update = ChangeRequestWorkflow.decide_update
    # Fields left unset are not sent: a worker of an earlier release refuses fields it does not know.
    payload = {name: value for name, value in dataclasses.asdict(decision).items() if value is not None}
    try:
        return await handle.execute_update(update, payload)  # type: ignore[arg-type]  # the update takes a RawValue to refuse bad input itself
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        raise OperationError(cause.message if isinstance(cause, ApplicationError) else str(cause)) from None


async def status_of(client: Client, workflow_id: str) -> ChangeRequestStatus:
    return await client.get_workflow_handle(workflow_id).query(ChangeRequestWorkflow.status)


async def playbook_progress(client: Client, description: WorkflowExecutionDescription) -> PlaybookProgress | None:
    """The running playbook's last heartbeat, as the Web UI shows it."""
    for pending in description.raw_description.pending_activities:
        if pending.activity_type.name == "run_playbook" and pending.heartbeat_details.payloads:
            progress: PlaybookProgress
            [progress] = await client.data_converter.decode(pending.heartbeat_details.payloads, [PlaybookProgress])
            return progress
    return None


async def watch(
    client: Client, workflow_id: str, emit: Callable[[str], None], poll: float = 0.3
) -> ChangeRequestStatus:
    """Emit a line for every phase change, playbook progress and finished step, until the end."""
    handle = client.get_workflow_handle(workflow_id)
    last_phase: Phase | None = None
    last_progress = ""
    reported: set[int] = set()
    while True:
        description = await handle.describe()
        status = await handle.query(ChangeRequestWorkflow.status)
        if status.phase != last_phase:
            emit(f"phase: {status.phase}")
            last_phase = status.phase
        total = len(status.steps)
        for step in status.steps:
            if step.state == StepState.RUNNING:
                progress = await playbook_progress(client, description)
                line = progress_line(step.index, total, step.playbook, progress) if progress and progress.play else ""
                if line and line != last_progress:
                    emit(line)
                    last_progress = line
            elif step.state != StepState.PENDING and step.index not in reported:
                reported.add(step.index)
                emit(step_line(step, total))
        if description.status != WorkflowExecutionStatus.RUNNING:
            return status
        await asyncio.sleep(poll)


def audit_report(database_url: str | None, audit_repo: Path, workflow_id: str, commit: str | None) -> list[str]:
    """The audit trail of one change request: its PostgreSQL rows and its git commit."""
    try:
        found = audit_queries.get_request(workflow_id, database_url)
    except audit_queries.NotFound as err:
        raise OperationError(str(err)) from err
    lines = audit_lines(found)
    if commit:
        repo = git.Repo(audit_repo)
        try:
            made = repo.commit(commit)
            summary = made.summary if isinstance(made.summary, str) else made.summary.decode(errors="replace")
            lines.append(f"git: commit {made.hexsha[:12]} in {audit_repo}: {summary}")
            lines.extend(f"  {path}" for path in sorted(str(p) for p in made.stats.files))
        finally:
            repo.close()
    return lines


def parse_var(pair: str) -> tuple[str, Any]:
    """KEY=VALUE; VALUE is JSON when it parses as JSON, else a string."""
    key, sep, raw = pair.partition("=")
    if not sep or not key:
        raise OperationError(f"--var {pair!r}: expected KEY=VALUE")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw
