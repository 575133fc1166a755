"""The plan digest (issue 8): one hash over what will run; a decision that names another plan
is refused, recorded, and changes nothing. Real Temporal, PostgreSQL and playbooks."""

from __future__ import annotations

import dataclasses
import re

from temporalio.testing import WorkflowEnvironment

from tests.helpers import assert_eventually, db_rows, start_request, wait_for_phase
from workers import render
from workers.settings import Settings
from workers.worker import running_worker
from workflows.change_request import ChangeRequestWorkflow
from workflows.digest import plan_digest
from workflows.types import (
    ApprovalPolicy,
    ApproveInput,
    ChangeRequestStatus,
    Phase,
    Plan,
    PlannedStep,
    Risk,
)

STEP = PlannedStep(
    playbook="hello-deploy.yml",
    service="hello",
    action="deploy",
    description="",
    risk=Risk.MEDIUM,
    hosts="local",
    vars=["greeting"],
    host_list=["localhost"],
    sha256="a" * 64,
)
PLAN = Plan(steps=[STEP], risk=Risk.MEDIUM, policy=ApprovalPolicy())


def test_the_digest_covers_playbook_content_hosts_and_var_values() -> None:
    digest = plan_digest(PLAN, {"greeting": "hi"})
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    assert plan_digest(PLAN, {"greeting": "hi", "unused": 1}) == digest, "only what the steps receive"
    changed = [
        plan_digest(PLAN, {"greeting": "hello"}),
        plan_digest(dataclasses.replace(PLAN, steps=[dataclasses.replace(STEP, sha256="b" * 64)]), {"greeting": "hi"}),
        plan_digest(
            dataclasses.replace(PLAN, steps=[dataclasses.replace(STEP, host_list=["nas"])]), {"greeting": "hi"}
        ),
        plan_digest(dataclasses.replace(PLAN, steps=[dataclasses.replace(STEP, limit="web")]), {"greeting": "hi"}),
        plan_digest(dataclasses.replace(PLAN, steps=[STEP, STEP]), {"greeting": "hi"}),
    ]
    assert len({digest, *changed}) == 6


async def test_a_decision_on_another_plan_is_refused(env: WorkflowEnvironment, settings: Settings) -> None:
    async with running_worker(env.client, settings):
        handle = await start_request(env, settings, "Deploy hello", vars={"greeting": "digest"})
        status = await wait_for_phase(handle, Phase.AWAITING_APPROVAL)
        digest = status.plan.plan_digest
        assert digest == plan_digest(status.plan, {"greeting": "digest"})
        stale = "sha256:" + "0" * 64
        await handle.signal(ChangeRequestWorkflow.approve, ApproveInput(approver="bob", plan_digest=stale))  # type: ignore[arg-type]  # the handler takes a RawValue
        await handle.signal(ChangeRequestWorkflow.approve, {"approver": "bob", "plan_digest": "abc"})  # type: ignore[call-overload]  # a raw dict, as a script sends it

        async def two_refused() -> ChangeRequestStatus:
            now = await handle.query(ChangeRequestWorkflow.status)
            assert len(now.refused) == 2
            return now

        refused = await assert_eventually(two_refused)
        assert refused.phase == Phase.AWAITING_APPROVAL
        assert refused.approvals == []
        await handle.execute_update(
            ChangeRequestWorkflow.approve_update, ApproveInput(approver="carol", plan_digest=digest)
        )  # type: ignore[arg-type]  # the handler takes a RawValue
        result = await handle.result()

    assert result.outcome == Phase.SUCCEEDED
    assert f"plan_digest {stale} is not the plan awaiting a decision ({digest})" in refused.refused[0].reason
    assert "plan_digest: must be sha256:<64 hex digits>" in refused.refused[1].reason
    [row] = db_rows(settings.database_url, "SELECT plan_digest FROM change_requests WHERE id = :id", id=handle.id)
    assert row["plan_digest"] == digest
    decisions = db_rows(
        settings.database_url,
        "SELECT kind, who, plan_digest FROM decisions WHERE change_request_id = :id ORDER BY kind, seq",
        id=handle.id,
    )
    assert decisions == [
        {"kind": "decision", "who": "carol", "plan_digest": digest},
        {"kind": "refusal", "who": "bob", "plan_digest": None},
        {"kind": "refusal", "who": None, "plan_digest": None},  # the payload did not decode
    ]
    assert f"  plan digest: {digest}" in render.plan_lines(status)
