"""Approval policy on the real workflow: who may approve, four eyes, quorum, timeout,
auto-approval, rejection, and refused decisions that are recorded and change nothing."""

from __future__ import annotations

from collections.abc import Generator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowUpdateFailedError
from temporalio.common import RawValue
from temporalio.testing import WorkflowEnvironment

from tests.conftest import with_policy
from tests.helpers import assert_eventually, committed_json, db_rows, replay_and_keep, start_request, wait_for_phase
from workers.settings import Settings
from workers.worker import running_worker
from workflows.change_request import ChangeRequestWorkflow
from workflows.types import ApprovalPolicy, ApproveInput, Phase, Plan, RejectInput, Risk

DEBUG_ONLY = "Configure hello"  # plans hello-configure.yml alone: a debug task, low risk


async def test_reject_ends_rejected_and_runs_nothing(
    env: WorkflowEnvironment, settings: Settings, out_dir: Path
) -> None:
    async with running_worker(env.client, settings):
        handle = await start_request(env, settings, "Deploy hello")
        await wait_for_phase(handle, Phase.AWAITING_APPROVAL)
        await handle.signal(ChangeRequestWorkflow.reject, RejectInput(approver="carol", reason="not today"))
        result = await handle.result()

    await replay_and_keep(handle, "rejected")
    assert result.outcome == Phase.REJECTED
    assert not (out_dir / "hello.txt").exists()
    [row] = db_rows(
        settings.database_url, "SELECT phase, audit_commit FROM change_requests WHERE id = :id", id=handle.id
    )
    assert row == {"phase": "rejected", "audit_commit": result.audit_commit}
    doc = committed_json(settings.audit_repo, result.audit_commit, f".audit/requests/{handle.id}.json")
    [rejection] = doc["record"]["decisions"]
    assert (rejection["who"], rejection["verdict"], rejection["note"]) == ("carol", "reject", "not today")
    assert doc["record"]["steps"][0]["state"] == "pending"


async def test_refused_signals_are_recorded_and_change_nothing(env: WorkflowEnvironment, settings: Settings) -> None:
    async with running_worker(env.client, settings):
        handle = await start_request(env, settings, DEBUG_ONLY)
        await wait_for_phase(handle, Phase.AWAITING_APPROVAL)
        await handle.signal(ChangeRequestWorkflow.approve, ApproveInput(approver="mallory"))
        await handle.signal(ChangeRequestWorkflow.approve, ApproveInput(approver="alice"))  # the requester
        await handle.signal("approve", RawValue(Payload(metadata={"encoding": b"json/plain"}, data=b"{not json")))
        await handle.signal("approve", {"approver": "bob", "coment": "typo"})
        await handle.signal("reject", {"reason": "no approver field"})

        async def five_refused() -> list[str]:
            status = await handle.query(ChangeRequestWorkflow.status)
            assert len(status.refused) == 5
            assert status.phase == Phase.AWAITING_APPROVAL
            assert not status.approvals
            assert status.rejection is None
            return [r.reason for r in status.refused]

        reasons = await assert_eventually(five_refused)
        assert "mallory is not an approver" in reasons[0]
        assert "four eyes" in reasons[1]
        assert "not decodable JSON" in reasons[2]
        assert "coment" in reasons[3]
        assert "approver: is required" in reasons[4]

        await handle.signal(ChangeRequestWorkflow.approve, ApproveInput(approver="Bob"))
        result = await handle.result()
        await replay_and_keep(handle, "refused_then_approved")

    assert result.outcome == Phase.SUCCEEDED
    [row] = db_rows(settings.database_url, "SELECT refused FROM change_requests WHERE id = :id", id=handle.id)
    assert [r["who"] for r in row["refused"]] == ["mallory", "alice", None, None, None]


async def test_update_refusal_answers_the_caller(env: WorkflowEnvironment, settings: Settings) -> None:
    async with running_worker(env.client, settings):
        handle = await start_request(env, settings, DEBUG_ONLY)
        await wait_for_phase(handle, Phase.AWAITING_APPROVAL)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(ChangeRequestWorkflow.approve_update, ApproveInput(approver="mallory"))
        assert "mallory is not an approver" in str(refused.value.cause)
        status = await handle.execute_update(ChangeRequestWorkflow.approve_update, ApproveInput(approver="carol"))
        assert [a.who for a in status.approvals] == ["carol"]
        assert (await handle.result()).outcome == Phase.SUCCEEDED


async def test_quorum_needs_two_different_approvers(env: WorkflowEnvironment, settings: Settings) -> None:
    settings = with_policy(settings, required_approvals=2)
    async with running_worker(env.client, settings):
        handle = await start_request(env, settings, DEBUG_ONLY)
        await wait_for_phase(handle, Phase.AWAITING_APPROVAL)
        await handle.execute_update(ChangeRequestWorkflow.approve_update, ApproveInput(approver="bob"))
        with pytest.raises(WorkflowUpdateFailedError, match="Workflow update failed"):
            await handle.execute_update(ChangeRequestWorkflow.approve_update, ApproveInput(approver="bob"))
        status = await handle.query(ChangeRequestWorkflow.status)
        assert status.phase == Phase.AWAITING_APPROVAL
        assert len(status.approvals) == 1
        await handle.execute_update(ChangeRequestWorkflow.approve_update, ApproveInput(approver="carol"))
        result = await handle.result()
        await replay_and_keep(handle, "quorum_by_update")
    assert result.outcome == Phase.SUCCEEDED
    decisions = db_rows(
        settings.database_url, "SELECT who FROM decisions WHERE change_request_id = :id ORDER BY who", id=handle.id
    )
    assert decisions == [{"who": "bob"}, {"who": "carol"}]


async def test_approval_sent_while_planning_waits_for_the_plan(env: WorkflowEnvironment, settings: Settings) -> None:
    async with running_worker(env.client, settings):
        handle = await start_request(env, settings, DEBUG_ONLY)
        await handle.signal(ChangeRequestWorkflow.approve, ApproveInput(approver="bob"))
        result = await handle.result()
    assert result.outcome == Phase.SUCCEEDED


async def test_no_decision_expires_after_the_timeout(env: WorkflowEnvironment, settings: Settings) -> None:
    settings = with_policy(settings, timeout_seconds=24 * 3600)
    async with running_worker(env.client, settings):
        handle = await start_request(env, settings, DEBUG_ONLY)
        await wait_for_phase(handle, Phase.AWAITING_APPROVAL)
        await env.fast_forward(handle, timedelta(hours=25))
        result = await handle.result()
        await replay_and_keep(handle, "expired")
    assert result.outcome == Phase.EXPIRED
    assert "no decision within 1 day" in (result.error or "")
    [row] = db_rows(settings.database_url, "SELECT phase FROM change_requests WHERE id = :id", id=handle.id)
    assert row["phase"] == "expired"


async def test_low_risk_is_auto_approved_when_policy_allows(
    env: WorkflowEnvironment, settings: Settings, out_dir: Path
) -> None:
    settings = with_policy(settings, auto_approve_risk="low")
    async with running_worker(env.client, settings):
        low = await start_request(env, settings, DEBUG_ONLY, time_skipping=True)
        assert (await low.result()).outcome == Phase.SUCCEEDED
        await replay_and_keep(low, "auto_approved")
        status = await low.query(ChangeRequestWorkflow.status)
        assert [(a.who, a.note) for a in status.approvals] == [("signoff", "auto-approved: every step is low risk")]

        medium = await start_request(env, settings, "Deploy hello")
        await wait_for_phase(medium, Phase.AWAITING_APPROVAL)
        await medium.signal(ChangeRequestWorkflow.reject, RejectInput(approver="alice", reason="withdrawn"))
        assert (await medium.result()).outcome == Phase.REJECTED
    assert not (out_dir / "hello.txt").exists()


class _Pending:
    """Awaited forever: a wait that has not ended."""

    def __await__(self) -> Generator[None, None, None]:
        yield


def test_an_approval_wait_collected_outside_its_workflow_runs_no_workflow_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run evicted from a worker's cache is closed by the garbage collector, wherever it runs.
    The approval wait's cleanup then called workflow APIs outside the workflow's loop, which
    raised into the code the collector had interrupted (a CI run's ast.parse failed with it)."""
    monkeypatch.setattr(workflow, "info", lambda: SimpleNamespace(workflow_id="cr-collected"))
    monkeypatch.setattr(workflow, "now", lambda: datetime(2026, 1, 1, tzinfo=UTC))
    monkeypatch.setattr(workflow, "wait_condition", lambda *args, **kwargs: _Pending())
    run = ChangeRequestWorkflow()
    waiting = run._approved(Plan(steps=[], risk=Risk.MEDIUM, policy=ApprovalPolicy(required_approvals=1)))
    waiting.send(None)  # now waiting for approvals
    monkeypatch.undo()  # outside any workflow again, as in the collector

    waiting.close()  # raised _NotInWorkflowEventLoopError before

    assert run._status.waiting_for == "1 approval(s)", "the wait did not end: the run goes on elsewhere"
