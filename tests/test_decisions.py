"""Operator decisions after a failed step (issue 6): the request waits in `awaiting_decision`
with the failure's class and evidence; `decide` retries the step as a new attempt, skips it
(the request ends `partial`) or aborts; nobody deciding in time aborts. Real playbooks, real
Temporal, real PostgreSQL and git."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from tests.conftest import with_policy
from tests.helpers import assert_eventually, db_rows, replay_and_keep, start_request, wait_for_phase
from tests.test_cli import signoff
from workers.settings import Settings
from workers.worker import running_worker
from workflows.change_request import ChangeRequestWorkflow
from workflows.types import ApproveInput, Budget, DecideInput, Phase, StepState


async def approved(env: WorkflowEnvironment, settings: Settings, request: str) -> Any:
    handle = await start_request(env, settings, request)
    await wait_for_phase(handle, Phase.AWAITING_APPROVAL)
    await handle.signal(ChangeRequestWorkflow.approve, ApproveInput(approver="bob"))
    return handle


def decide(operator: str, action: str, comment: str | None = None) -> DecideInput:
    return DecideInput(operator=operator, action=action, comment=comment)


@pytest.mark.slow
async def test_retry_runs_the_step_again_as_a_new_attempt(
    env: WorkflowEnvironment, settings: Settings, out_dir: Path
) -> None:
    async with running_worker(env.client, settings):
        handle = await approved(env, settings, "Deploy flaky")
        waiting = await wait_for_phase(handle, Phase.AWAITING_DECISION)
        (out_dir / "fixed").touch()  # what the operator fixed before retrying
        status = await handle.execute_update(ChangeRequestWorkflow.decide_update, decide("carol", "retry", "fixed it"))
        result = await handle.result()
        await replay_and_keep(handle, "decided_retry")

    assert waiting.steps[0].failure_class == "task_failed"
    assert waiting.steps[0].evidence == "not fixed yet"
    assert status.decisions[0].verdict == "retry"
    assert status.decisions[0].step == 1
    assert result.outcome == Phase.SUCCEEDED
    assert result.error is None
    [step] = result.steps
    assert step.state == StepState.SUCCEEDED
    assert step.runs == 2
    assert (out_dir / "flaky.txt").read_text() == "deployed\n"
    attempts = db_rows(
        settings.database_url,
        "SELECT DISTINCT attempt, status FROM tasks WHERE change_request_id = :id AND task = 'Check the fix' "
        "ORDER BY attempt",
        id=handle.id,
    )
    assert [(a["attempt"] > 1, a["status"]) for a in attempts] == [(False, "failed"), (True, "ok")], (
        "both attempts audited"
    )
    [decision] = db_rows(
        settings.database_url,
        "SELECT who, verdict, step, note FROM decisions WHERE change_request_id = :id AND verdict = 'retry'",
        id=handle.id,
    )
    assert decision == {"who": "carol", "verdict": "retry", "step": 1, "note": "fixed it"}


@pytest.mark.slow
async def test_skip_goes_on_and_the_request_ends_partial(
    env: WorkflowEnvironment, settings: Settings, out_dir: Path
) -> None:
    async with running_worker(env.client, settings):
        handle = await approved(env, settings, "Deploy doomed, then deploy hello")
        await wait_for_phase(handle, Phase.AWAITING_DECISION)
        await handle.signal(ChangeRequestWorkflow.decide, decide("carol", "skip"))
        result = await handle.result()
        await replay_and_keep(handle, "decided_skip")

    assert result.outcome == Phase.PARTIAL, "never succeeded with a skipped step"
    assert [(s.playbook, s.state) for s in result.steps] == [
        ("doomed-deploy.yml", StepState.SKIPPED),
        ("hello-deploy.yml", StepState.SUCCEEDED),
    ]
    assert (out_dir / "hello.txt").exists()
    [row] = db_rows(settings.database_url, "SELECT phase FROM change_requests WHERE id = :id", id=handle.id)
    assert row["phase"] == "partial"


async def test_abort_runs_no_later_step(env: WorkflowEnvironment, settings: Settings, out_dir: Path) -> None:
    async with running_worker(env.client, settings):
        handle = await approved(env, settings, "Deploy doomed, then deploy hello")
        await wait_for_phase(handle, Phase.AWAITING_DECISION)
        await handle.signal(ChangeRequestWorkflow.decide, decide("bob", "abort", "not today"))
        result = await handle.result()

    assert result.outcome == Phase.FAILED
    assert [s.state for s in result.steps] == [StepState.FAILED, StepState.PENDING]
    assert not (out_dir / "hello.txt").exists()
    assert "not today" in (result.error or "")


async def test_who_may_decide_follows_the_approval_policy(env: WorkflowEnvironment, settings: Settings) -> None:
    async with running_worker(env.client, settings):
        handle = await start_request(env, settings, "Deploy doomed")
        await handle.signal(ChangeRequestWorkflow.decide, decide("carol", "retry"))  # type: ignore[call-overload]  # the handler takes a RawValue; we send the typed payload
        await wait_for_phase(handle, Phase.AWAITING_APPROVAL)
        await handle.signal(ChangeRequestWorkflow.approve, ApproveInput(approver="bob"))
        await wait_for_phase(handle, Phase.AWAITING_DECISION)
        for operator, action in (("alice", "retry"), ("\u0430lice", "skip"), ("mallory", "skip"), ("bob", "reboot")):
            await handle.signal(ChangeRequestWorkflow.decide, decide(operator, action))  # type: ignore[call-overload]  # the handler takes a RawValue; we send the typed payload
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(ChangeRequestWorkflow.decide_update, decide("alice", "skip"))  # type: ignore[arg-type,unused-coroutine]  # the handler takes a RawValue

        async def five_refused() -> list[str]:
            status = await handle.query(ChangeRequestWorkflow.status)
            assert len(status.refused) == 5
            assert status.phase == Phase.AWAITING_DECISION
            assert status.decisions == []
            return [r.reason for r in status.refused]

        reasons = await assert_eventually(five_refused)
        await handle.cancel()

    assert "no failed step awaits a decision (phase is awaiting_approval)" in reasons[0]
    assert "alice requested this change" in reasons[1]
    assert "mixes look-alike" in reasons[2]
    assert "mallory may not decide" in reasons[3]
    assert "action: must be one of retry, skip, abort" in reasons[4]
    assert "four eyes" in str(refused.value.cause)


async def test_no_decision_in_time_aborts(env: WorkflowEnvironment, settings: Settings) -> None:
    settings = with_policy(settings, decision_timeout_seconds=3600)
    async with running_worker(env.client, settings):
        handle = await approved(env, settings, "Deploy doomed")
        await wait_for_phase(handle, Phase.AWAITING_DECISION)
        await env.fast_forward(handle, timedelta(hours=2))
        result = await handle.result()
        status = await handle.query(ChangeRequestWorkflow.status)

    assert result.outcome == Phase.FAILED
    assert "no decision within 1:00:00" in (result.error or "")
    assert [(d.who, d.verdict) for d in status.decisions] == [("signoff", "abort")]


@pytest.mark.slow
async def test_a_hung_step_is_stopped_and_waits_for_a_decision(env: WorkflowEnvironment, settings: Settings) -> None:
    settings = with_policy(settings, auto_approve_risk="low")
    async with running_worker(env.client, settings):
        handle = await start_request(env, settings, "Restart hang")
        waiting = await wait_for_phase(handle, Phase.AWAITING_DECISION)
        await handle.signal(ChangeRequestWorkflow.decide, decide("carol", "abort"))  # type: ignore[call-overload]  # the handler takes a RawValue; we send the typed payload
        result = await handle.result()
        await replay_and_keep(handle, "hung")

    [step] = waiting.steps
    assert (step.failure_class, step.runs, step.attempt) == ("hung", 1, 1), "a hung step is not retried by itself"
    assert step.evidence == "Wait forever"
    assert result.outcome == Phase.FAILED


@pytest.mark.slow
async def test_cli_retry_skip_abort(env: WorkflowEnvironment, settings: Settings) -> None:
    cli_env = {
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "SIGNOFF_TASK_QUEUE": settings.task_queue,
    }
    async with running_worker(env.client, dataclasses.replace(settings)):
        handle = await approved(env, settings, "Deploy doomed")
        await wait_for_phase(handle, Phase.AWAITING_DECISION)
        code, _, err = await signoff(cli_env, "skip", handle.id, "--as", "alice")
        assert code == 1
        assert "four eyes" in err
        code, out, err = await signoff(cli_env, "abort", handle.id, "--as", "carol", "--comment", "rolled back by hand")
        assert code == 0, err
        assert f"{handle.id}  abort by carol" in out
        result = await handle.result()

    assert result.outcome == Phase.FAILED


@pytest.mark.slow
async def test_budgets_stop_a_request_with_the_reason(
    env: WorkflowEnvironment, settings: Settings, out_dir: Path
) -> None:
    too_many_steps = dataclasses.replace(settings, budget=Budget(max_steps=1))
    async with running_worker(env.client, too_many_steps):
        handle = await start_request(env, settings, "Deploy hello and configure hello", time_skipping=True)
        planned = await handle.result()
    assert planned.outcome == Phase.FAILED
    assert planned.error == "over budget: 2 steps, at most 1 (SIGNOFF_MAX_STEPS)"

    one_run = dataclasses.replace(settings, budget=Budget(max_attempts=1))
    async with running_worker(env.client, one_run):
        handle = await approved(env, one_run, "Deploy flaky")
        await wait_for_phase(handle, Phase.AWAITING_DECISION)
        (out_dir / "fixed").touch()
        await handle.signal(ChangeRequestWorkflow.decide, decide("carol", "retry"))  # type: ignore[arg-type]
        result = await handle.result()

    assert result.outcome == Phase.FAILED
    assert result.error == "over budget: 1 playbook runs, at most 1 (SIGNOFF_MAX_ATTEMPTS); stopped before step 1"
    assert not (out_dir / "flaky.txt").exists(), "the retry never ran"
    [row] = db_rows(settings.database_url, "SELECT phase, error FROM change_requests WHERE id = :id", id=handle.id)
    assert row["phase"] == "failed"
    assert "over budget" in row["error"]


TIGHT = """\
# signoff:
#   service: tight
#   action: deploy
#   max_attempts: 1
#   max_execution_time: 2h
- name: Deploy tight
  hosts: local
  gather_facts: false
  tasks:
    - name: Fails until fixed
      ansible.builtin.fail:
        msg: not yet
"""


async def test_a_playbook_header_overrides_the_budget(env: WorkflowEnvironment, settings: Settings) -> None:
    """The environment allows 25 runs; the planned playbook's header says 1, and wins."""
    (settings.playbook_dir / "tight-deploy.yml").write_text(TIGHT)
    settings = dataclasses.replace(settings, budget=Budget(max_attempts=25, max_execution_seconds=60))
    async with running_worker(env.client, settings):
        handle = await approved(env, settings, "Deploy tight")
        waiting = await wait_for_phase(handle, Phase.AWAITING_DECISION)
        await handle.signal(ChangeRequestWorkflow.decide, decide("carol", "retry"))  # type: ignore[arg-type]
        result = await handle.result()

    assert waiting.plan.budget == Budget(
        max_attempts=1,
        max_execution_seconds=7200,
        attempts_from="the header of tight-deploy.yml",
        execution_from="the header of tight-deploy.yml",
    )
    assert result.outcome == Phase.FAILED
    assert result.error == (
        "over budget: 1 playbook runs, at most 1 (the header of tight-deploy.yml); stopped before step 1"
    )
