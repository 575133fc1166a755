"""Versioned rollouts (issue 11): two worker versions of one Worker Deployment against one dev
server. A request waiting for approval on version 1 follows the current version (its workflow
type is AUTO_UPGRADE): once version 2 is current and version 1 is gone, it is approved and
completes on version 2, as does a request started after the switch."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import VersioningBehavior
from temporalio.testing import WorkflowEnvironment

from tests.helpers import assert_eventually, run_temporal, start_request, wait_for_phase
from workers.settings import ConfigError, Settings
from workers.worker import running_worker
from workflows.change_request import ChangeRequestWorkflow
from workflows.types import ApproveInput, Phase


async def make_current(env: WorkflowEnvironment, deployment: str, build: str) -> None:
    """`temporal worker deployment set-current-version`, as an operator runs it; the version
    exists once its worker has polled, so try until it does."""
    address = env.client.service_client.config.target_host

    async def switched() -> None:
        code, _, err = await run_temporal(
            address,
            "worker",
            "deployment",
            "set-current-version",
            "--deployment-name",
            deployment,
            "--build-id",
            build,
            "--yes",
            check=False,
        )
        assert code == 0, err

    await assert_eventually(switched, timeout=60, interval=0.5)


async def version_of(env: WorkflowEnvironment, workflow_id: str) -> tuple[int, str]:
    info = (await env.client.get_workflow_handle(workflow_id).describe()).raw_description.workflow_execution_info
    return info.versioning_info.behavior, info.versioning_info.deployment_version.build_id


@pytest.mark.slow
async def test_waiting_requests_follow_the_current_version(
    env: WorkflowEnvironment, settings: Settings, out_dir: Path
) -> None:
    deployment = f"signoff-{uuid.uuid4().hex[:8]}"
    v1 = dataclasses.replace(settings, deployment=(deployment, "v1"))
    v2 = dataclasses.replace(settings, deployment=(deployment, "v2"))
    async with running_worker(env.client, v1):
        await make_current(env, deployment, "v1")
        waiting = await start_request(env, settings, "Deploy hello", vars={"greeting": "v1"})
        await wait_for_phase(waiting, Phase.AWAITING_APPROVAL)
        assert await version_of(env, waiting.id) == (VersioningBehavior.VERSIONING_BEHAVIOR_AUTO_UPGRADE, "v1")
        async with running_worker(env.client, v2):
            await make_current(env, deployment, "v2")
    # Version 1 is gone: only version 2 polls from here on.
    async with running_worker(env.client, v2):
        await waiting.signal(ChangeRequestWorkflow.approve, ApproveInput(approver="bob"))
        assert (await waiting.result()).outcome == Phase.SUCCEEDED
        assert await version_of(env, waiting.id) == (VersioningBehavior.VERSIONING_BEHAVIOR_AUTO_UPGRADE, "v2")
        later = await start_request(env, settings, "Configure hello")
        await wait_for_phase(later, Phase.AWAITING_APPROVAL)
        await later.signal(ChangeRequestWorkflow.approve, ApproveInput(approver="carol"))
        assert (await later.result()).outcome == Phase.SUCCEEDED
        assert (await version_of(env, later.id))[1] == "v2"
    assert (out_dir / "hello.txt").read_text() == "hello v1\n"


@pytest.mark.parametrize(
    "given",
    [
        {"SIGNOFF_DEPLOYMENT_NAME": "signoff"},
        {"SIGNOFF_BUILD_ID": "v2"},
        {"SIGNOFF_DEPLOYMENT_NAME": "a b", "SIGNOFF_BUILD_ID": "1"},
    ],
)
def test_deployment_settings_go_together(given: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="SIGNOFF_DEPLOYMENT_NAME"):
        Settings.from_env(given)
