"""`signoff list`: change requests from Temporal's visibility store (the search attributes of
workflows.inbox), not from their histories: what waits for whom, approvals received and needed."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated

import typer
from temporalio.client import Client, WorkflowExecution

from workers import ops, render
from workers.cli_run import Json, connect, console, run
from workflows.identity import IdentityRefused, identify
from workflows.inbox import (
    ANYONE,
    APPROVALS_ATTR,
    NEEDED_ATTR,
    PHASE_ATTR,
    REQUESTER_ATTR,
    SERVICES_ATTR,
    WAITING_FOR_ATTR,
)
from workflows.types import WORKFLOW_TYPE, Phase


@dataclasses.dataclass(frozen=True)
class RequestRow:
    id: str
    phase: str
    requester: str
    services: list[str]
    approvals: int | None  # None: started before signoff kept these
    approvals_needed: int | None
    waiting_for: list[str]
    started: str


def visibility_query(phase: str | None, requester: str | None, waiting_for: str | None) -> str:
    """A visibility query from the filters. Names are normalised as everywhere else, and a value
    with a quote is refused rather than escaped: no filter can widen the query."""
    clauses = [f"WorkflowType = '{WORKFLOW_TYPE}'"]
    if phase is not None:
        try:
            clauses.append(f"{PHASE_ATTR.name} = '{Phase(phase.strip().lower())}'")
        except ValueError:
            raise ops.OperationError(f"--phase {phase!r}: expected one of {', '.join(Phase)}") from None
    if requester is not None:
        clauses.append(f"{REQUESTER_ATTR.name} = '{_name(requester, '--requester')}'")
    if waiting_for is not None:
        who = _name(waiting_for, "--waiting-for")
        clauses.append(
            f"({WAITING_FOR_ATTR.name} = '{who}' OR "
            f"({WAITING_FOR_ATTR.name} = '{ANYONE}' AND {REQUESTER_ATTR.name} != '{who}'))"
        )
    return " AND ".join(clauses)


def _name(raw: str, option: str) -> str:
    try:
        name = identify(raw).name
    except IdentityRefused as err:
        raise ops.OperationError(f"{option}: {err}") from None
    if "'" in name or "\\" in name or '"' in name:
        raise ops.OperationError(f"{option}: a name with quotes or backslashes cannot be searched for")
    return name


async def list_requests(client: Client, query: str, limit: int) -> list[RequestRow]:
    rows = []
    async for execution in client.list_workflows(query, limit=limit):
        rows.append(_row(execution))
    return rows


def _row(execution: WorkflowExecution) -> RequestRow:
    attrs = execution.typed_search_attributes
    return RequestRow(
        id=execution.id,
        phase=attrs.get(PHASE_ATTR) or "?",
        requester=attrs.get(REQUESTER_ATTR) or "?",
        services=list(attrs.get(SERVICES_ATTR) or []),
        approvals=attrs.get(APPROVALS_ATTR),
        approvals_needed=attrs.get(NEEDED_ATTR),
        waiting_for=list(attrs.get(WAITING_FOR_ATTR) or []),
        started=execution.start_time.isoformat(timespec="seconds"),
    )


def row_line(row: RequestRow) -> str:
    line = f"{row.id}  {row.phase}  by {row.requester}  {','.join(row.services) or '-'}  {_started(row.started)}"
    if row.phase == Phase.AWAITING_APPROVAL and row.approvals is not None:
        line += f"  approvals {row.approvals} of {row.approvals + (row.approvals_needed or 0)}"
    if row.waiting_for:
        whom = ", ".join(f"anyone but {row.requester}" if w == ANYONE else w for w in row.waiting_for)
        line += f"  waiting for {whom}"
    return line


def _started(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M")


def list_(
    phase: Annotated[str | None, typer.Option(help="Only requests in this phase (awaiting_approval, ...).")] = None,
    requester: Annotated[str | None, typer.Option(help="Only requests by this person.")] = None,
    waiting_for: Annotated[str | None, typer.Option(help="Only requests this person may act on now.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    json: Json = False,
) -> None:
    """List change requests: what waits for whom, with approvals received and still needed."""

    async def main() -> None:
        query = visibility_query(phase, requester, waiting_for)
        rows = await list_requests(await connect(), query, limit)
        if json:
            console.print_json(render.as_json([dataclasses.asdict(row) for row in rows]))
            return
        for row in rows:
            console.print(row_line(row))
        if not rows:
            console.print("no change requests match")

    run(main())


def register(app: typer.Typer) -> None:
    app.command(name="list")(list_)
