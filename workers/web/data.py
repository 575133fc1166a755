"""What the web pages show, read from where it lives: Temporal's visibility store for the inbox
(search attributes, never histories), the `status` query and the pending activity's heartbeat
for a request, and PostgreSQL and git for its audit. No HTML here."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import git
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from workers import audit_queries, ops
from workers.cli_list import RequestRow, list_requests, visibility_query
from workflows.change_request import ChangeRequestWorkflow
from workflows.inbox import ANYONE, PHASE_ATTR
from workflows.types import ChangeRequestStatus, Phase, StepStatus

WAITING = (Phase.AWAITING_APPROVAL, Phase.AWAITING_DECISION)
QUERY_TIMEOUT = 10.0  # a query needs a worker to answer it
_SERVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class NotFound(LookupError):
    pass


@dataclass(frozen=True)
class Filters:
    phase: str | None = None
    requester: str | None = None
    service: str | None = None

    @classmethod
    def parse(cls, phase: str | None, requester: str | None, service: str | None) -> Filters:
        """Raises ops.OperationError for a value that is not a phase, a name or a service name."""
        service = (service or "").strip() or None
        if service is not None and not _SERVICE.match(service):
            raise ops.OperationError(f"service {service!r}: expected letters, digits, '.', '_' or '-'")
        found = cls((phase or "").strip() or None, (requester or "").strip() or None, service)
        visibility_query(found.phase, found.requester, None)  # validates the phase and the name
        return found


@dataclass(frozen=True)
class Inbox:
    waiting: list[RequestRow]  # for approval or a decision, oldest first
    waiting_total: int
    others: list[RequestRow]  # the rest, by the filters, newest first


def may_act(row: RequestRow, user: str) -> bool:
    return user in row.waiting_for or (ANYONE in row.waiting_for and row.requester != user)


def inbox_queries(filters: Filters) -> tuple[str, str]:
    """The visibility queries of the inbox: what waits for someone, and the rest."""
    phases = ", ".join(f"'{phase}'" for phase in WAITING)
    service = _service_clause(filters.service)
    waiting = [visibility_query(None, filters.requester, None), f"{PHASE_ATTR.name} IN ({phases})", *service]
    others = [visibility_query(filters.phase, filters.requester, None), *service]
    if not filters.phase:
        others.append(f"{PHASE_ATTR.name} NOT IN ({phases})")
    return " AND ".join(waiting), " AND ".join(others)


async def inbox(client: Client, filters: Filters, limit: int) -> Inbox:
    waiting_query, others_query = inbox_queries(filters)
    waiting, count, others = await asyncio.gather(
        list_requests(client, waiting_query, limit),
        client.count_workflows(waiting_query),
        list_requests(client, others_query, limit),
    )
    return Inbox(sorted(waiting, key=lambda row: row.started), count.count, others)


def _service_clause(service: str | None) -> list[str]:
    return [f"SignoffServices = '{service}'"] if service else []


@dataclass(frozen=True)
class RequestView:
    status: ChangeRequestStatus
    running: bool
    progress: dict[str, Any] | None  # the running playbook's last heartbeat


async def request_view(client: Client, workflow_id: str) -> RequestView:
    handle = client.get_workflow_handle(workflow_id)
    try:
        description = await handle.describe()
        status = await asyncio.wait_for(handle.query(ChangeRequestWorkflow.status), QUERY_TIMEOUT)
    except RPCError as err:
        if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            raise NotFound(f"no change request {workflow_id!r}") from None
        raise
    except TimeoutError:
        raise ops.OperationError(
            f"{workflow_id} did not answer within {QUERY_TIMEOUT:.0f}s: is a worker running?"
        ) from None
    running = description.status == WorkflowExecutionStatus.RUNNING
    progress = await ops.playbook_progress(client, description) if running else None
    return RequestView(status, running, dataclasses.asdict(progress) if progress else None)


async def progress_events(client: Client, workflow_id: str, poll: float = 0.2) -> AsyncIterator[dict[str, Any]]:
    """A snapshot whenever the phase, a step or the running playbook's heartbeat changed; the last
    one has `"end": true`. Stops when the request is over."""
    last: dict[str, Any] | None = None
    while True:
        view = await request_view(client, workflow_id)
        snapshot = {
            "phase": str(view.status.phase),
            "waiting_for": view.status.waiting_for,
            "steps": [_step(s) for s in view.status.steps],
            "progress": view.progress,
            "end": not view.running,
        }
        if snapshot != last:
            yield snapshot
            last = snapshot
        if not view.running:
            return
        await asyncio.sleep(poll)


def _step(step: StepStatus) -> dict[str, Any]:
    keep = ("index", "playbook", "state", "attempt", "ok", "changed", "failed", "error")
    return {name: getattr(step, name) for name in keep} | {"state": str(step.state)}


@dataclass(frozen=True)
class AuditView:
    record: dict[str, Any]
    commit: dict[str, Any] | None  # sha, summary, files
    verification: audit_queries.Verification


def audit_view(workflow_id: str, database_url: str | None, audit_repo: Path) -> AuditView:
    """Blocking (database and git): run it in a thread."""
    try:
        record = audit_queries.get_request(workflow_id, database_url)
    except audit_queries.NotFound as err:
        raise NotFound(str(err)) from None
    sha = record["request"].get("audit_commit")
    commit = _commit(audit_repo, sha) if sha else None
    return AuditView(record, commit, audit_queries.verify(workflow_id, database_url, audit_repo))


def _commit(repo_path: Path, sha: str) -> dict[str, Any] | None:
    try:
        repo = git.Repo(repo_path)
    except (git.NoSuchPathError, git.InvalidGitRepositoryError):
        return None
    try:
        made = repo.commit(sha)
        summary = made.summary if isinstance(made.summary, str) else made.summary.decode(errors="replace")
        return {"sha": made.hexsha, "summary": summary, "files": sorted(str(p) for p in made.stats.files)}
    except (ValueError, git.BadName):
        return None
    finally:
        repo.close()
