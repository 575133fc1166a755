"""`signoff pause <pattern>` and `signoff resume <pattern>`: stop and restart changes to hosts.

The pattern is an Ansible host pattern (a group, a host, `web:&prod`), resolved with the
inventory of SIGNOFF_INVENTORY; each host's lock workflow (workflows/lock.py) is paused through
signal-with-start (it may not exist yet) and resumed through its validated `resume` update."""

from __future__ import annotations

from typing import Annotated

import typer
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from activities.inventory import Inventory
from activities.inventory_source import InventoryError
from workers import ops
from workers.cli_run import As, connect, console, run
from workers.settings import Settings
from workflows.identity import IdentityRefused, identify
from workflows.lock import TargetLockWorkflow
from workflows.targets import MAX_REASON, LockInput, LockState, PauseInput, lock_workflow_id

Pattern = Annotated[str, typer.Argument(help="An inventory group, host or host pattern.")]


def hosts_of(settings: Settings, pattern: str) -> list[str]:
    try:
        hosts = Inventory.load(settings.inventory).hosts(pattern)
    except InventoryError as err:
        raise ops.OperationError(str(err)) from None
    if not hosts:
        raise ops.OperationError(f"{pattern!r} matches no host in {settings.inventory}")
    return hosts


def _who(raw: str) -> str:
    try:
        return identify(raw).name
    except IdentityRefused as err:
        raise ops.OperationError(f"--as: {err}") from None


async def pause_hosts(client: Client, task_queue: str, hosts: list[str], by: str, reason: str) -> None:
    for host in hosts:
        await client.start_workflow(
            TargetLockWorkflow.run,
            LockInput(host),
            id=lock_workflow_id(task_queue, host),
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            start_signal="pause",
            start_signal_args=[PauseInput(by, reason)],
        )


async def resume_hosts(client: Client, task_queue: str, hosts: list[str], by: str) -> list[str]:
    """Resume each paused host; the hosts that were not paused."""
    not_paused = []
    for host in hosts:
        handle = client.get_workflow_handle(lock_workflow_id(task_queue, host))
        try:
            await handle.execute_update("resume", PauseInput(by), result_type=LockState)
        except WorkflowUpdateFailedError:  # the validator: it is not paused
            not_paused.append(host)
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            not_paused.append(host)  # never locked, so never paused
    return not_paused


def pause(
    pattern: Pattern,
    as_: As,
    reason: Annotated[str, typer.Option(help=f"Why (shown to the requests that wait; at most {MAX_REASON}).")],
) -> None:
    """Pause changes to these hosts: nothing new runs on them until `signoff resume`."""

    async def main() -> None:
        settings = Settings.from_env()
        by = _who(as_)
        if len(reason) > MAX_REASON:
            raise ops.OperationError(f"--reason: at most {MAX_REASON} characters")
        hosts = hosts_of(settings, pattern)
        await pause_hosts(await connect(), settings.task_queue, hosts, by, reason)
        console.print(f"paused {len(hosts)} host{'s' if len(hosts) != 1 else ''}: {', '.join(hosts)}")

    run(main())


def resume(pattern: Pattern, as_: As) -> None:
    """Resume changes to these hosts (after `signoff pause`, or a tripped circuit breaker)."""

    async def main() -> None:
        settings = Settings.from_env()
        by = _who(as_)
        hosts = hosts_of(settings, pattern)
        not_paused = await resume_hosts(await connect(), settings.task_queue, hosts, by)
        resumed = [h for h in hosts if h not in not_paused]
        console.print(f"resumed {len(resumed)} host{'s' if len(resumed) != 1 else ''}: {', '.join(resumed) or '-'}")
        if not_paused:
            console.print(f"not paused: {', '.join(not_paused)}")

    run(main())


def register(app: typer.Typer) -> None:
    app.command()(pause)
    app.command()(resume)
