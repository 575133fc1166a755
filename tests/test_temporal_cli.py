"""Scripts and cron jobs drive signoff with nothing but the `temporal` CLI (DESIGN.md section 1)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from tests.helpers import run_temporal, temporal_start, wait_for_phase
from workers.settings import Settings
from workers.worker import running_worker
from workflows.types import Phase


async def temporal(env: WorkflowEnvironment, *args: str) -> str:
    return (await run_temporal(env.client.service_client.config.target_host, *args))[1]


async def approve_by_update(
    env: WorkflowEnvironment, wf_id: str, approver: str, check: bool = True
) -> tuple[int, str, str]:
    args = ["workflow", "update", "execute", "--workflow-id", wf_id, "--name", "approve"]
    payload = json.dumps({"approver": approver})
    return await run_temporal(env.client.service_client.config.target_host, *args, "--input", payload, check=check)


async def test_temporal_cli_start_signal_result(env: WorkflowEnvironment, settings: Settings, out_dir: Path) -> None:
    wf_id = f"cr-cli-{uuid.uuid4().hex[:8]}"
    request = {"request": "Deploy hello", "requester": "alice", "vars": {"greeting": "from the cli"}}
    async with running_worker(env.client, settings):
        await temporal_start(
            env.client.service_client.config.target_host, settings.task_queue, wf_id, json.dumps(request)
        )
        handle = env.client.get_workflow_handle(wf_id)
        await wait_for_phase(handle, Phase.AWAITING_APPROVAL)

        query = json.loads(
            await temporal(env, "workflow", "query", "--workflow-id", wf_id, "--name", "status", "--output", "json")
        )
        status = query["queryResult"][0]
        assert status["phase"] == "awaiting_approval"
        assert status["plan"]["steps"][0]["playbook"] == "hello-deploy.yml"

        await temporal(
            env, "workflow", "signal", "--workflow-id", wf_id, "--name", "approve", "--input", '{"approver": "bob"}'
        )
        result = json.loads(await temporal(env, "workflow", "result", "--workflow-id", wf_id, "--output", "json"))

    assert result["status"] == "COMPLETED"
    outcome = result["result"]
    assert outcome["outcome"] == "succeeded"
    assert outcome["steps"][0]["state"] == "succeeded"
    assert len(outcome["audit_commit"]) == 40
    assert (out_dir / "hello.txt").read_text() == "hello from the cli\n"


async def test_temporal_cli_update_refusal_and_search_attributes(env: WorkflowEnvironment, settings: Settings) -> None:
    wf_id = f"cr-cli-{uuid.uuid4().hex[:8]}"
    async with running_worker(env.client, settings):
        await temporal_start(
            env.client.service_client.config.target_host,
            settings.task_queue,
            wf_id,
            '{"request": "Configure hello", "requester": "alice"}',
        )
        await wait_for_phase(env.client.get_workflow_handle(wf_id), Phase.AWAITING_APPROVAL)
        code, _, err = await approve_by_update(env, wf_id, "alice", check=False)
        assert code != 0
        assert "four eyes" in err

        listed = await temporal(
            env,
            "workflow",
            "list",
            "--query",
            f"WorkflowId = '{wf_id}' AND SignoffPhase = 'awaiting_approval' AND SignoffRequester = 'alice' "
            "AND SignoffServices = 'hello'",
            "--output",
            "json",
        )
        assert wf_id in listed
        await approve_by_update(env, wf_id, "carol")
        out = json.loads(await temporal(env, "workflow", "result", "--workflow-id", wf_id, "--output", "json"))
        assert out["result"]["outcome"] == "succeeded"
