"""Pause and circuit breaker per target (issue 11): a paused host runs nothing new, the requests
waiting for it say why, and resuming lets them go on; after SIGNOFF_BREAKER_FAILURES failed steps
on a host within the window the breaker pauses it by itself. Every pause, resume and trip is in
the audit. Real worker, real playbooks, the `signoff` CLI as a subprocess."""

from __future__ import annotations

import dataclasses

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from tests.helpers import assert_eventually, db_rows, start_request, wait_for_phase
from tests.test_cli import signoff
from workers.settings import ConfigError, Settings
from workers.worker import running_worker
from workflows.change_request import ChangeRequestWorkflow
from workflows.types import ApproveInput, DecideInput, Phase


def cli_env(env: WorkflowEnvironment, settings: Settings) -> dict[str, str]:
    return {
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "SIGNOFF_TASK_QUEUE": settings.task_queue,
        "SIGNOFF_INVENTORY": str(settings.inventory),
    }


async def waiting_for(handle: object, expected: str) -> None:
    async def says() -> None:
        status = await handle.query(ChangeRequestWorkflow.status)  # type: ignore[attr-defined]
        assert status.waiting_for is not None
        assert status.waiting_for.startswith(expected), status.waiting_for

    await assert_eventually(says, timeout=60)


def target_events(settings: Settings) -> list[tuple[str, str]]:
    rows = db_rows(settings.database_url, "SELECT kind, by FROM target_events WHERE target = 'localhost' ORDER BY at")
    return [(row["kind"], row["by"]) for row in rows]


@pytest.mark.slow
async def test_a_paused_group_runs_nothing_new_until_resumed(env: WorkflowEnvironment, settings: Settings) -> None:
    environ = cli_env(env, settings)
    async with running_worker(env.client, settings):
        holder = await start_request(env, settings, "Restart slow")  # holds localhost, sleeping
        await wait_for_phase(holder, Phase.AWAITING_APPROVAL)
        await holder.signal(ChangeRequestWorkflow.approve, ApproveInput(approver="bob"))
        await wait_for_phase(holder, Phase.EXECUTING)
        waiter = await start_request(env, settings, "Deploy hello", vars={"greeting": "after the pause"})
        await wait_for_phase(waiter, Phase.AWAITING_APPROVAL)
        await waiter.signal(ChangeRequestWorkflow.approve, ApproveInput(approver="carol"))
        await waiting_for(waiter, f"the lock on localhost, held by {holder.id}")

        code, out, err = await signoff(environ, "pause", "local", "--as", "Bob", "--reason", "maintenance window")
        assert code == 0, err
        assert out.strip() == "paused 1 host: localhost"
        await waiting_for(waiter, "the lock on localhost: paused by bob at ")  # told while it waits
        await holder.cancel()
        with pytest.raises(WorkflowFailureError):
            await holder.result()
        status = await waiter.query(ChangeRequestWorkflow.status)
        assert status.phase == Phase.EXECUTING
        assert status.waiting_for is not None
        assert status.waiting_for.endswith(": maintenance window"), "the lock is free, but paused"

        code, out, err = await signoff(environ, "resume", "local", "--as", "carol")
        assert code == 0, err
        assert out.strip() == "resumed 1 host: localhost"
        assert (await waiter.result()).outcome == Phase.SUCCEEDED
        code, out, _ = await signoff(environ, "resume", "local", "--as", "carol")
        assert out.strip().splitlines() == ["resumed 0 hosts: -", "not paused: localhost"]

    async def audited() -> None:
        assert target_events(settings) == [("pause", "bob"), ("resume", "carol")]

    await assert_eventually(audited)


@pytest.mark.slow
async def test_the_breaker_pauses_a_host_after_failed_steps(env: WorkflowEnvironment, settings: Settings) -> None:
    settings = dataclasses.replace(settings, breaker=(2, 3600.0))
    async with running_worker(env.client, settings):
        for _ in range(2):
            doomed = await start_request(env, settings, "Deploy doomed")
            await wait_for_phase(doomed, Phase.AWAITING_APPROVAL)
            await doomed.signal(ChangeRequestWorkflow.approve, ApproveInput(approver="bob"))
            await wait_for_phase(doomed, Phase.AWAITING_DECISION)
            await doomed.signal(ChangeRequestWorkflow.decide, DecideInput(operator="carol", action="abort"))
            assert (await doomed.result()).outcome == Phase.FAILED

        after = await start_request(env, settings, "Deploy hello", vars={"greeting": "after the trip"})
        await wait_for_phase(after, Phase.AWAITING_APPROVAL)
        await after.signal(ChangeRequestWorkflow.approve, ApproveInput(approver="bob"))
        await waiting_for(after, "the lock on localhost: paused by the circuit breaker at ")
        status = await after.query(ChangeRequestWorkflow.status)
        assert f"2 failed steps within 1:00:00, the last by {doomed.id}" in (status.waiting_for or "")

        code, _, err = await signoff(cli_env(env, settings), "resume", "localhost", "--as", "carol")
        assert code == 0, err
        assert (await after.result()).outcome == Phase.SUCCEEDED
    assert target_events(settings) == [("trip", "breaker"), ("resume", "carol")]


async def test_pause_refuses_what_it_cannot_do(env: WorkflowEnvironment, settings: Settings) -> None:
    environ = cli_env(env, settings)
    code, _, err = await signoff(environ, "pause", "nowhere", "--as", "bob", "--reason", "x")
    assert code == 1
    assert "'nowhere' matches no host" in err
    code, _, err = await signoff(environ, "pause", "local", "--as", "bob\u200b", "--reason", "x")
    assert code == 1
    assert "--as:" in err


def test_breaker_settings() -> None:
    assert Settings.from_env({}).breaker == (3, 3600.0)
    assert Settings.from_env({"SIGNOFF_BREAKER_FAILURES": "0", "SIGNOFF_BREAKER_WINDOW": "15m"}).breaker == (0, 900.0)
    with pytest.raises(ConfigError, match="SIGNOFF_BREAKER_FAILURES"):
        Settings.from_env({"SIGNOFF_BREAKER_FAILURES": "many"})
