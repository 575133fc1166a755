"""The `signoff` command line."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import typer
from temporalio.client import Client

from activities.catalog import Planner
from activities.discovery import discover
from workers import (
    cli_audit,
    cli_codec,
    cli_list,
    cli_suggestions,
    cli_targets,
    cli_web,
    health,
    logs,
    ops,
    render,
    tracing,
)
from workers.cli_run import As, Json, RequestId, connect, console, errors, run
from workers.devstack import dev_stack, free_port
from workers.settings import Settings
from workers.signing import failed_run, sign_decision
from workers.web import server as web_server
from workers.worker import DEFAULT_ADDRESS, limit_malloc_arenas, running_worker
from workers.worker import main as worker_main
from workflows.types import (
    ApproveInput,
    ChangeRequestInput,
    ChangeRequestStatus,
    DecideInput,
    Phase,
    RejectInput,
)
from workflows.validation import InvalidInput, parse_input

app = typer.Typer(
    help="Plain-words infrastructure changes: plan, approve, run Ansible, audit — on Temporal.",
    no_args_is_help=True,
    add_completion=False,
)
DEMO_REQUEST = "Deploy Kuma Uptime to homelab and add our existing portals to the config"

PlanDigest = Annotated[
    str | None,
    typer.Option(help="The plan you decide on (sha256:..., as `status` shows it): refused if the plan changed."),
]
cli_audit.register(app)
cli_codec.register(app)
cli_list.register(app)
cli_targets.register(app)
cli_web.register(app)
app.add_typer(cli_suggestions.app, name="suggestions")


@app.command()
def submit(
    request: Annotated[str, typer.Argument(help="The change, in plain words.")],
    as_: As,
    inventory: Annotated[str | None, typer.Option(help="Limit to this group or host pattern.")] = None,
    var: Annotated[list[str] | None, typer.Option(help="Extra var KEY=VALUE (VALUE may be JSON); repeatable.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Plan only; run nothing.")] = False,
    id: Annotated[str | None, typer.Option(help="Workflow id (default: cr-<random>).")] = None,
    json: Json = False,
) -> None:
    """Submit a change request and print its plan."""

    async def main() -> int:
        settings = Settings.from_env()
        change = ChangeRequestInput(
            request=request,
            requester=as_,
            inventory=inventory,
            vars=dict(ops.parse_var(v) for v in var or []),
            dry_run=dry_run,
        )
        client = await connect()
        status = await ops.submit(client, settings.task_queue, change, id or ops.new_request_id())
        if json:
            console.print_json(render.as_json(status))
        else:
            render.print_plan(console, status)
        return 1 if status.phase == Phase.FAILED else 0

    run(main())


Key = Annotated[
    Path | None,
    typer.Option(
        "--key",
        help="Sign with this SSH key (private, or public with its private half in ssh-agent). "
        "Without it, a request that requires signed decisions is signed by ssh-agent's first key.",
    ),
]


@app.command()
def approve(
    request_id: RequestId,
    as_: As,
    comment: Annotated[str | None, typer.Option(help="Why you approve.")] = None,
    plan_digest: PlanDigest = None,
    key: Key = None,
) -> None:
    """Approve a change request (refused unless the policy allows you)."""
    _decide(request_id, ApproveInput(approver=as_, comment=comment, plan_digest=plan_digest), key)


@app.command()
def reject(
    request_id: RequestId,
    as_: As,
    reason: Annotated[str | None, typer.Option(help="Why you reject.")] = None,
    plan_digest: PlanDigest = None,
    key: Key = None,
) -> None:
    """Reject a change request."""
    _decide(request_id, RejectInput(approver=as_, reason=reason, plan_digest=plan_digest), key)


Comment = Annotated[str | None, typer.Option(help="Why (recorded in the audit).")]


@app.command()
def retry(
    request_id: RequestId, as_: As, comment: Comment = None, plan_digest: PlanDigest = None, key: Key = None
) -> None:
    """Run a failed step again, as a new attempt."""
    _decide(request_id, DecideInput(operator=as_, action="retry", comment=comment, plan_digest=plan_digest), key)


@app.command()
def skip(
    request_id: RequestId, as_: As, comment: Comment = None, plan_digest: PlanDigest = None, key: Key = None
) -> None:
    """Skip a failed step and go on; the request ends `partial`."""
    _decide(request_id, DecideInput(operator=as_, action="skip", comment=comment, plan_digest=plan_digest), key)


@app.command()
def abort(
    request_id: RequestId, as_: As, comment: Comment = None, plan_digest: PlanDigest = None, key: Key = None
) -> None:
    """Stop at a failed step; later steps never run and the request ends `failed`."""
    _decide(request_id, DecideInput(operator=as_, action="abort", comment=comment, plan_digest=plan_digest), key)


def _decide(request_id: str, decision: ApproveInput | RejectInput | DecideInput, key: Path | None = None) -> None:
    async def main() -> None:
        client = await connect()
        signed = decision
        current = await ops.status_of(client, request_id)
        required = current.plan is not None and current.plan.policy.signatures_required
        if key is not None or required:
            signed = await _signed(request_id, decision, current, key)
        status = await ops.decide(client, request_id, signed)
        console.print(render.decided(request_id, decision, status))

    run(main())


async def _signed(
    request_id: str, decision: ApproveInput | RejectInput | DecideInput, current: ChangeRequestStatus, key: Path | None
) -> ApproveInput | RejectInput | DecideInput:
    """The decision signed over the plan it names, or over the plan `status` shows now."""
    digest = decision.plan_digest or (current.plan.plan_digest if current.plan else None)
    if not digest:
        raise ops.OperationError(
            f"{request_id} has no plan to sign yet (phase {current.phase}); try again once planned"
        )
    if isinstance(decision, DecideInput):
        verdict, who, run = decision.action, decision.operator, failed_run(current)
    else:
        verdict, who, run = ("approve" if isinstance(decision, ApproveInput) else "reject"), decision.approver, None
    errors.print(f"signing {verdict} of {request_id}, plan {digest}", markup=False)
    signature = await sign_decision(verdict, request_id, digest, who, key, run)
    return dataclasses.replace(decision, plan_digest=digest, signature=signature)


@app.command()
def status(request_id: RequestId, json: Json = False) -> None:
    """Show a change request: phase, plan, decisions, steps and audit commit."""

    async def main() -> None:
        found = await ops.status_of(await connect(), request_id)
        if json:
            console.print_json(render.as_json(found))
        else:
            render.print_status(console, found)

    run(main())


@app.command()
def watch(request_id: RequestId) -> None:
    """Follow a change request live until it ends: play, task, host, ok/changed/failed."""

    async def main() -> int:
        final = await ops.watch(await connect(), request_id, console.print)
        render.print_status(console, final)
        return 0 if final.phase in (Phase.SUCCEEDED, Phase.PLANNED) else 1

    run(main())


@app.command()
def plan(
    request: Annotated[str, typer.Argument(help="The change, in plain words.")],
    playbooks: Annotated[Path | None, typer.Option(help="Playbook repo (default: SIGNOFF_PLAYBOOK_DIR).")] = None,
    inventory: Annotated[Path | None, typer.Option(help="Ansible inventory (default: SIGNOFF_INVENTORY).")] = None,
    limit: Annotated[str | None, typer.Option(help="Limit to this group or host pattern.")] = None,
    var: Annotated[list[str] | None, typer.Option(help="Extra var KEY=VALUE (VALUE may be JSON); repeatable.")] = None,
    json: Json = False,
) -> None:
    """Plan a request without Temporal, exactly as a worker would; exit 1 unless all of it is planned."""

    async def main() -> int:
        settings = Settings.from_env()
        request_vars = dict(ops.parse_var(v) for v in var or [])
        try:
            change = parse_input(
                {"request": request, "requester": "signoff-plan", "inventory": limit, "vars": request_vars}
            )
        except InvalidInput as err:
            raise ops.OperationError(str(err)) from None
        planner = Planner(playbooks or settings.playbook_dir, inventory or settings.inventory)
        draft = await asyncio.to_thread(planner.plan, change.request, change.inventory, change.vars)
        if json:
            console.print_json(render.as_json(render.draft_json(request, draft)))
        else:
            for line in render.draft_lines(draft):
                console.print(line)
        return 1 if draft.error or not draft.steps else 0

    run(main())


@app.command()
def playbooks(
    playbook_dir: Annotated[
        Path | None, typer.Option("--playbooks", help="Playbook repo (default: SIGNOFF_PLAYBOOK_DIR).")
    ] = None,
    json: Json = False,
) -> None:
    """List the playbook catalog: what each playbook does, and what was skipped or is broken, and why."""

    async def main() -> None:
        found = await asyncio.to_thread(discover, playbook_dir or Settings.from_env().playbook_dir)
        if json:
            console.print_json(render.as_json(found))
        else:
            for line in render.catalog_lines(found):
                console.print(line)

    run(main())


@app.command()
def worker(
    check: Annotated[
        bool, typer.Option("--check", help="Only check that Temporal, PostgreSQL, playbooks and audit repo are usable.")
    ] = False,
) -> None:
    """Run a worker against configured services (TEMPORAL_*, SIGNOFF_*)."""
    if check:
        run(_check(Settings.from_env()))
    worker_main()


async def _check(settings: Settings) -> int:
    """Exit 0 when a worker could start and work here; else 1, naming the first part that is not usable."""
    checks = await health.check_all(settings)
    for found in checks:
        console.print(f"{'ok' if found.ok else 'FAILED':6}  {found.name}: {found.detail}")
    failed = next((c for c in checks if not c.ok), None)
    if failed is None:
        return 0
    errors.print(f"not ready: {failed.name}: {failed.detail}", markup=False)
    return 1


@app.command()
def dev(
    ui_port: Annotated[int, typer.Option(help="Port of the Temporal Web UI.")] = 8233,
) -> None:
    """Run everything locally: Temporal, PostgreSQL, example playbooks, audit repo, a worker."""
    address = os.environ.get("TEMPORAL_ADDRESS") or DEFAULT_ADDRESS
    limit_malloc_arenas()

    async def main() -> None:
        logs.configure(logging.WARNING, os.environ.get("SIGNOFF_LOG_FORMAT"))
        async with dev_stack(address=address, ui_port=ui_port) as stack:
            client = await connect(stack.address, stack.settings.metrics_address, tracing=True)
            async with (
                running_worker(client, stack.settings),
                _traced(),
                web_server.dev_web(stack.settings, client) as web,
            ):
                for line in stack.started:
                    console.print(f"started {line}")
                console.print(f"Temporal Web UI: {stack.ui_url}\nworker on task queue {stack.settings.task_queue!r}")
                for line in web:
                    console.print(line)
                console.print(
                    "\nIn another shell:\n"
                    f'  signoff submit "{DEMO_REQUEST}" --as alice\n'
                    "  signoff approve <id> --as bob\n"
                    "  signoff watch <id>\n\n"
                    "Or with the Temporal CLI:\n"
                    f"  temporal workflow start --address {stack.address} --task-queue {stack.settings.task_queue} "
                    "--type ChangeRequestWorkflow --workflow-id cr-42 \\\n"
                    f'    --input \'{{"request": "{DEMO_REQUEST}", "requester": "alice"}}\'\n'
                    f"  temporal workflow signal --address {stack.address} --workflow-id cr-42 --name approve "
                    '--input \'{"approver": "bob"}\'\n\nCtrl-C stops everything.'
                )
                await asyncio.Event().wait()

    run(main())


@asynccontextmanager
async def _traced() -> AsyncIterator[None]:
    try:
        yield
    finally:
        await asyncio.to_thread(tracing.shutdown)  # export the spans still queued


@app.command()
def demo(
    keep: Annotated[bool, typer.Option(help="Keep the demo's data dir afterwards.")] = True,
) -> None:
    """Run the whole story once on a throwaway embedded stack, then stop it."""

    async def main() -> int:
        data_dir = Settings.from_env().data_dir / "demo"
        shutil.rmtree(data_dir, ignore_errors=True)
        # Only the data dir comes from the environment: the demo never touches real services.
        env = {"SIGNOFF_DATA_DIR": str(data_dir)}
        console.print(f"starting an embedded stack in {data_dir} ...")
        async with dev_stack(env, address=f"127.0.0.1:{free_port()}", ui_port=None) as stack:
            client = await connect(stack.address)
            async with running_worker(client, stack.settings):
                final = await _demo_story(client, stack.settings)
            for line in ops.audit_report(
                stack.settings.database_url, stack.settings.audit_repo, final.workflow_id, final.audit_commit
            ):
                console.print(line)
        console.print(f"homelab files written by the playbooks: {data_dir / 'homelab'}")
        if not keep:
            shutil.rmtree(data_dir, ignore_errors=True)
        return 0 if final.phase == Phase.SUCCEEDED else 1

    run(main())


async def _demo_story(client: Client, settings: Settings) -> ChangeRequestStatus:
    request_id = ops.new_request_id()
    console.print(f'\n$ signoff submit "{DEMO_REQUEST}" --as alice')
    planned = await ops.submit(client, settings.task_queue, ChangeRequestInput(DEMO_REQUEST, "alice"), request_id)
    render.print_plan(console, planned)
    console.print(f'\n$ signoff approve {request_id} --as bob --comment "go"')
    approval = ApproveInput(approver="bob", comment="go")
    console.print(render.decided(request_id, approval, await ops.decide(client, request_id, approval)))
    console.print(f"\n$ signoff watch {request_id}")
    final = await ops.watch(client, request_id, console.print)
    render.print_status(console, final)
    console.print(f"\n$ signoff audit {request_id}")
    return final
