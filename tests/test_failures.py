"""When things go wrong: a failing task, nothing to run, a dry run, and cancellation that
kills the running playbook. Every ending is audited."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import CancelledError
from temporalio.testing import WorkflowEnvironment

from tests.helpers import (
    assert_eventually,
    cmdline,
    committed_json,
    db_rows,
    processes_of,
    replay_and_keep,
    start_request,
    wait_for_phase,
)
from workers.settings import Settings
from workers.worker import running_worker
from workflows.change_request import ChangeRequestWorkflow
from workflows.types import ApproveInput, DecideInput, Phase, StepState


async def test_failed_task_waits_for_a_decision_and_abort_audits_what_ran(
    env: WorkflowEnvironment, settings: Settings
) -> None:
    async with running_worker(env.client, settings):
        handle = await start_request(env, settings, "Deploy doomed")
        await wait_for_phase(handle, Phase.AWAITING_APPROVAL)
        await handle.signal(ChangeRequestWorkflow.approve, ApproveInput(approver="bob"))
        waiting = await wait_for_phase(handle, Phase.AWAITING_DECISION)
        await handle.signal(ChangeRequestWorkflow.decide, DecideInput(operator="carol", action="abort"))  # type: ignore[call-overload]  # the handler takes a RawValue; we send the typed payload
        result = await handle.result()
        await replay_and_keep(handle, "decided_abort")

    assert waiting.steps[0].failure_class == "task_failed"
    assert waiting.steps[0].evidence == "boom: doomed cannot be deployed"
    assert waiting.waiting_for == "a decision on step 1 (doomed-deploy.yml): retry, skip or abort"
    assert result.outcome == Phase.FAILED
    [step] = result.steps
    assert step.state == StepState.FAILED
    assert step.attempt == 1, "a failed task is not retried"
    assert "Fails on purpose" in (step.error or "")
    assert "boom" in (step.error or "")
    tasks = db_rows(
        settings.database_url, "SELECT task, status, msg FROM tasks WHERE change_request_id = :id", id=handle.id
    )
    assert tasks == [{"task": "Fails on purpose", "status": "failed", "msg": "boom: doomed cannot be deployed"}]
    doc = committed_json(settings.audit_repo, result.audit_commit, f".audit/requests/{handle.id}.json")
    assert doc["record"]["phase"] == "failed"
    assert "boom" in doc["record"]["error"]
    assert [t["status"] for t in doc["tasks"]] == ["failed"]


async def test_request_matching_no_playbook_fails_with_the_reason(env: WorkflowEnvironment, settings: Settings) -> None:
    async with running_worker(env.client, settings):
        handle = await start_request(env, settings, "Make the coffee machine faster", time_skipping=True)
        result = await handle.result()
    assert result.outcome == Phase.FAILED
    assert result.error
    assert result.error.startswith("cannot plan")
    assert "Make the coffee machine faster" in result.error
    assert "hello (deploy)" in (result.error or ""), "the error lists what the catalog offers"
    [row] = db_rows(settings.database_url, "SELECT phase FROM change_requests WHERE id = :id", id=handle.id)
    assert row["phase"] == "failed"


async def test_dry_run_plans_and_runs_nothing(env: WorkflowEnvironment, settings: Settings, out_dir: Path) -> None:
    async with running_worker(env.client, settings):
        handle = await start_request(env, settings, "Deploy hello", dry_run=True, time_skipping=True)
        result = await handle.result()
        await replay_and_keep(handle, "dry_run")
    assert result.outcome == Phase.PLANNED
    assert [s.state for s in result.steps] == [StepState.PENDING]
    assert not (out_dir / "hello.txt").exists()
    doc = committed_json(settings.audit_repo, result.audit_commit, f".audit/requests/{handle.id}.json")
    assert doc["record"]["plan"]["steps"][0]["playbook"] == "hello-deploy.yml"


def _sleepers(workflow_id: str) -> list[psutil.Process]:
    return [p for p in processes_of(workflow_id) if cmdline(p) == ["sleep", "600"]]


@pytest.mark.slow
async def test_cancel_kills_the_running_playbook_and_is_audited(env: WorkflowEnvironment, settings: Settings) -> None:
    async with running_worker(env.client, settings):
        handle = await start_request(env, settings, "Restart slow")
        await wait_for_phase(handle, Phase.AWAITING_APPROVAL)
        await handle.signal(ChangeRequestWorkflow.approve, ApproveInput(approver="bob"))

        async def sleeping() -> None:
            assert _sleepers(handle.id), "the playbook's `sleep 600` has not started yet"

        await assert_eventually(sleeping, timeout=60)
        # Ansible runs nicer than the worker, so it never slows the worker's own threads.
        nice = {p.pid: p.nice() for p in processes_of(handle.id)}
        assert set(nice.values()) == {settings.playbook_nice}, nice
        assert os.getpriority(os.PRIO_PROCESS, 0) == 0, "the worker's event loop keeps its priority"
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
        assert isinstance(failed.value.cause, CancelledError)
        status = await handle.query(ChangeRequestWorkflow.status)
        await replay_and_keep(handle, "cancelled")

    async def killed() -> None:
        assert not _sleepers(handle.id), "the playbook process survived the cancellation"

    await assert_eventually(killed, timeout=10)
    assert status.phase == Phase.CANCELLED
    assert [s.state for s in status.steps] == [StepState.CANCELLED]
    [row] = db_rows(
        settings.database_url, "SELECT phase, audit_commit FROM change_requests WHERE id = :id", id=handle.id
    )
    assert row["phase"] == "cancelled"
    assert row["audit_commit"] == status.audit_commit
    doc = committed_json(settings.audit_repo, status.audit_commit, f".audit/requests/{handle.id}.json")
    assert doc["record"]["phase"] == "cancelled"
