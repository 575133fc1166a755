"""The whole story on real parts: plan, approve, run playbooks, audit in PostgreSQL and git."""

from __future__ import annotations

from pathlib import Path

import git
from temporalio.testing import WorkflowEnvironment

from tests.helpers import committed_json, committed_paths, db_rows, replay_and_keep, start_request, wait_for_phase
from workers.settings import Settings
from workers.worker import running_worker
from workflows.change_request import ChangeRequestWorkflow
from workflows.types import ApproveInput, Phase, PlannedVar, StepState


async def test_approved_request_runs_playbooks_and_is_audited(
    env: WorkflowEnvironment, settings: Settings, out_dir: Path
) -> None:
    async with running_worker(env.client, settings):
        handle = await start_request(env, settings, "Deploy hello and configure hello", vars={"greeting": "signoff"})
        status = await wait_for_phase(handle, Phase.AWAITING_APPROVAL)
        assert status.request.vars == {"greeting": "signoff"}, "the approver sees what will run"
        assert status.plan.vars == [PlannedVar("greeting", '"signoff"', secret=False)]
        assert [(s.playbook, s.vars) for s in status.plan.steps] == [
            ("hello-deploy.yml", ["greeting"]),
            ("hello-configure.yml", []),  # declares no vars, so receives none
        ]
        assert not (out_dir / "hello.txt").exists(), "nothing runs before approval"

        await handle.signal(ChangeRequestWorkflow.approve, ApproveInput(approver="bob", comment="go"))
        result = await handle.result()

    await replay_and_keep(handle, "succeeded")
    assert result.outcome == Phase.SUCCEEDED
    assert [s.state for s in result.steps] == [StepState.SUCCEEDED, StepState.SUCCEEDED]
    assert (out_dir / "hello.txt").read_text() == "hello signoff\n"

    # PostgreSQL: the request, the decision, both steps and every task
    wf_id = handle.id
    [row] = db_rows(settings.database_url, "SELECT * FROM change_requests WHERE id = :id", id=wf_id)
    assert row["phase"] == "succeeded"
    assert row["requester"] == "alice"
    assert row["var_names"] == ["greeting"]
    assert row["audit_commit"] == result.audit_commit
    decisions = db_rows(
        settings.database_url, "SELECT who, verdict, note FROM decisions WHERE change_request_id = :id", id=wf_id
    )
    assert decisions == [{"who": "bob", "verdict": "approve", "note": "go"}]
    steps = db_rows(
        settings.database_url,
        "SELECT step, playbook, state, changed FROM steps WHERE change_request_id = :id ORDER BY step",
        id=wf_id,
    )
    assert steps == [
        {"step": 1, "playbook": "hello-deploy.yml", "state": "succeeded", "changed": 1},
        {"step": 2, "playbook": "hello-configure.yml", "state": "succeeded", "changed": 0},
    ]
    tasks = db_rows(
        settings.database_url,
        "SELECT task_id, step, task, host, status FROM tasks WHERE change_request_id = :id ORDER BY step, seq",
        id=wf_id,
    )
    assert [(t["step"], t["task"], t["host"], t["status"]) for t in tasks] == [
        (1, "Write hello.txt", "localhost", "changed"),
        (2, "Say what would be configured", "localhost", "ok"),
    ]

    # git: the commit named in the result holds one file, the request's record with every task
    repo = git.Repo(settings.audit_repo)
    assert repo.head.commit.hexsha == result.audit_commit
    assert committed_paths(settings.audit_repo, result.audit_commit, ".audit/") == [f".audit/requests/{wf_id}.json"]
    doc = committed_json(settings.audit_repo, result.audit_commit, f".audit/requests/{wf_id}.json")
    assert doc["record"]["phase"] == "succeeded"
    assert doc["record"]["decisions"][0]["who"] == "bob"
    assert doc["record"]["vars"] == {"greeting": "signoff"}, "the audit keeps what the approver saw"
    assert [t["task_id"] for t in doc["tasks"]] == [t["task_id"] for t in tasks]
    assert {(t["host"], t["status"]) for t in doc["tasks"]} == {("localhost", "changed"), ("localhost", "ok")}
