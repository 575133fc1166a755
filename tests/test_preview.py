"""Check-mode preview (`--check --diff`) before approval: what each step would change, per host,
recorded in the plan the approver signs; a playbook that cannot run in check mode gets
"no preview", never a failed plan."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.playbooks import PlaybookActivities
from tests.helpers import committed_json, replay_and_keep, start_request, wait_for_phase
from tests.test_cli import signoff
from workers.settings import Settings
from workers.worker import running_worker
from workflows.change_request import ChangeRequestWorkflow
from workflows.runs import RunPlaybookInput
from workflows.types import HostPreview, Phase, StepPreview


def preview(settings: Settings, playbook: str, **vars: object) -> StepPreview:
    activities = PlaybookActivities(settings.playbook_dir, settings.inventory)
    inp = RunPlaybookInput(workflow_id="wf-preview", step=1, playbook=playbook, vars=vars)
    return ActivityEnvironment().run(activities.preview_playbook, inp)


def test_preview_says_what_would_change_and_changes_nothing(settings: Settings, out_dir: Path) -> None:
    found = preview(settings, "hello-deploy.yml", greeting="x")

    assert found == StepPreview(
        step=1,
        playbook="hello-deploy.yml",
        available=True,
        hosts=[HostPreview(host="localhost", changed=1, would_change=["Write hello.txt"])],
    )
    assert not (out_dir / "hello.txt").exists(), "check mode writes nothing"


def test_a_playbook_that_fails_in_check_mode_has_no_preview(settings: Settings) -> None:
    found = preview(settings, "doomed-deploy.yml")

    assert not found.available
    assert "'Fails on purpose' failed in check mode on localhost: boom" in (found.reason or "")
    assert found.hosts == [HostPreview(host="localhost", failed=1)]


def test_a_broken_playbook_has_no_preview(settings: Settings) -> None:
    found = preview(settings, "broken-update.yml")

    assert not found.available
    assert found.hosts == []
    assert "ERROR" in (found.reason or "")


async def test_the_plan_carries_the_preview_and_dry_run_stops_after_it(
    env: WorkflowEnvironment, settings: Settings, out_dir: Path
) -> None:
    settings = dataclasses.replace(settings, check_mode_preview=True)
    async with running_worker(env.client, settings):
        handle = await start_request(env, settings, "Deploy hello and deploy doomed", dry_run=True, time_skipping=True)
        result = await handle.result()
        status = await handle.query(ChangeRequestWorkflow.status)
        await replay_and_keep(handle, "dry_run_preview")

    assert result.outcome == Phase.PLANNED
    previews = {p.playbook: p for p in status.plan.preview}
    hello, doomed = previews["hello-deploy.yml"], previews["doomed-deploy.yml"]
    assert hello.available
    assert hello.hosts[0].would_change == ["Write hello.txt"]
    assert not doomed.available
    assert "failed in check mode" in (doomed.reason or "")
    assert not (out_dir / "hello.txt").exists()
    doc = committed_json(settings.audit_repo, result.audit_commit, f".audit/requests/{handle.id}.json")
    previews = {p["playbook"]: p["hosts"] for p in doc["record"]["plan"]["preview"]}
    assert previews["hello-deploy.yml"][0]["would_change"] == ["Write hello.txt"]


@pytest.mark.slow
async def test_submit_shows_the_preview_before_approval(env: WorkflowEnvironment, settings: Settings) -> None:
    settings = dataclasses.replace(settings, check_mode_preview=True)
    cli_env = {
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "SIGNOFF_TASK_QUEUE": settings.task_queue,
    }
    async with running_worker(env.client, settings):
        code, out, err = await signoff(cli_env, "submit", "Deploy hello", "--as", "alice", "--var", "greeting=hi")
        assert code == 0, err
        wf_id = out.split()[0]
        await wait_for_phase(env.client.get_workflow_handle(wf_id), Phase.AWAITING_APPROVAL)
        await env.client.get_workflow_handle(wf_id).cancel()

    assert "     check: localhost  1 to change, 0 ok, 0 failed  (Write hello.txt)" in out.splitlines()
