"""Hostile input through Temporal, on real parts (issue 5): what the approver signs is what
runs, look-alike names do not pass four eyes or quorum, any legal workflow id is audited, and
secrets stay out of PostgreSQL and git."""

from __future__ import annotations

import dataclasses
import json
import uuid
from pathlib import Path
from typing import Any

import git
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.audit_paths import safe_name
from activities.audit_repo import AuditRepo
from activities.extravars import fingerprint
from tests.conftest import with_policy
from tests.helpers import (
    assert_eventually,
    committed_json,
    db_rows,
    run_temporal,
    start_request,
    temporal_start,
    wait_for_phase,
)
from tests.test_audit_git import commit_elsewhere
from tests.test_identity import ALICE_LOOKALIKES
from workers.settings import Settings
from workers.worker import running_worker
from workflows.analysis import analysis_workflow_id
from workflows.change_request import ChangeRequestWorkflow
from workflows.inbox import KEYWORD_LIST_BYTES, SERVICES_ATTR, keyword_list
from workflows.names import MAX_ID_BYTES, bounded_id
from workflows.runs import AnalyzeFailureInput
from workflows.targets import lock_workflow_id
from workflows.types import FailureClass, Phase

LAUNCH_CODE = "zebra-launch-4242"
TOKEN = "tok-9f8e7d6c5b"


async def temporal(env: WorkflowEnvironment, *args: str, check: bool = True) -> tuple[int, str, str]:
    return await run_temporal(env.client.service_client.config.target_host, *args, check=check)


async def no_task_failures(env: WorkflowEnvironment, wf_id: str) -> list[EventType.ValueType]:
    events = [e.event_type async for e in env.client.get_workflow_handle(wf_id).fetch_history_events()]
    assert EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED not in events, "the workflow task must not retry"
    return events


# --- what the requester may set -------------------------------------------------------------


async def test_two_inputs_from_the_temporal_cli_fail_the_run_at_once(
    env: WorkflowEnvironment, settings: Settings
) -> None:
    wf_id = f"cr-two-{uuid.uuid4().hex[:8]}"
    async with running_worker(env.client, settings):
        await temporal_start(
            env.client.service_client.config.target_host,
            settings.task_queue,
            wf_id,
            '{"request": "Verify ping", "requester": "alice"}',
            '{"request": "Verify ping", "requester": "bob"}',
        )
        code, out, _ = await temporal(
            env, "workflow", "result", "--workflow-id", wf_id, "--output", "json", check=False
        )

    assert code != 0
    assert "takes one JSON argument, got 2" in out
    events = await no_task_failures(env, wf_id)
    assert events[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED


async def test_connection_vars_from_the_temporal_cli_are_refused(
    env: WorkflowEnvironment, settings: Settings, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    wf_id = f"cr-proxy-{uuid.uuid4().hex[:8]}"
    request = {
        "request": "Verify ping",
        "requester": "alice",
        "vars": {"ansible_ssh_common_args": f"-o ProxyCommand=\"sh -c 'id > {marker}'\""},
    }
    async with running_worker(env.client, settings):
        await temporal_start(
            env.client.service_client.config.target_host, settings.task_queue, wf_id, json.dumps(request)
        )
        code, out, _ = await temporal(
            env, "workflow", "result", "--workflow-id", wf_id, "--output", "json", check=False
        )

    assert code != 0
    assert "vars.ansible_ssh_common_args: is a name Ansible reserves" in out
    assert not marker.exists()
    await no_task_failures(env, wf_id)


async def test_a_var_no_planned_playbook_accepts_is_refused_at_planning(
    env: WorkflowEnvironment, settings: Settings, out_dir: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"  # the inventory sets out_dir; a requester may not move it
    async with running_worker(env.client, settings):
        handle = await start_request(env, settings, "Deploy hello", vars={"out_dir": str(elsewhere)})
        result = await handle.result()

    assert result.outcome == Phase.FAILED
    assert (
        "var 'out_dir' is not accepted by any planned playbook (hello-deploy.yml); they accept: greeting"
        in result.error
    )
    assert not elsewhere.exists()
    assert not (out_dir / "hello.txt").exists()
    [row] = db_rows(settings.database_url, "SELECT phase FROM change_requests WHERE id = :id", id=handle.id)
    assert row["phase"] == "failed"


async def test_a_value_of_the_wrong_type_is_refused_at_planning(env: WorkflowEnvironment, settings: Settings) -> None:
    async with running_worker(env.client, settings):
        handle = await start_request(env, settings, "Deploy hello", vars={"greeting": ["not", "a", "string"]})
        result = await handle.result()

    assert result.outcome == Phase.FAILED
    assert "var 'greeting' must be of type str for hello-deploy.yml, got list" in result.error


async def test_each_step_receives_only_the_vars_its_playbook_accepts(
    env: WorkflowEnvironment, settings: Settings
) -> None:
    settings = with_policy(settings, approvers=[])
    async with running_worker(env.client, settings):
        handle = await start_request(env, settings, "Deploy hello and configure hello", vars={"greeting": "hi"})
        await wait_for_phase(handle, Phase.AWAITING_APPROVAL)
        await handle.signal(ChangeRequestWorkflow.approve, {"approver": "bob"})  # type: ignore[call-overload]  # a raw dict, as a script sends it
        assert (await handle.result()).outcome == Phase.SUCCEEDED

    scheduled = [
        json.loads(e.activity_task_scheduled_event_attributes.input.payloads[0].data)
        async for e in handle.fetch_history_events()
        if e.activity_task_scheduled_event_attributes.activity_type.name == "run_playbook"
    ]
    assert [(s["playbook"], s["vars"]) for s in scheduled] == [
        ("hello-deploy.yml", {"greeting": "hi"}),
        ("hello-configure.yml", {}),
    ]


# --- who approves ---------------------------------------------------------------------------


async def test_lookalike_names_pass_neither_four_eyes_nor_quorum(env: WorkflowEnvironment, settings: Settings) -> None:
    settings = with_policy(settings, approvers=[], required_approvals=2)
    lookalikes = [*ALICE_LOOKALIKES, "bob", "b\u043eb", "BOB", "b\u00f6b"]
    async with running_worker(env.client, settings):
        handle = await start_request(env, settings, "Verify ping")
        await wait_for_phase(handle, Phase.AWAITING_APPROVAL)
        for name in lookalikes:
            await handle.signal(ChangeRequestWorkflow.approve, {"approver": name})  # type: ignore[call-overload]  # a raw dict, as a script sends it

        async def all_seen() -> Any:
            status = await handle.query(ChangeRequestWorkflow.status)
            assert len(status.refused) + len(status.approvals) == len(lookalikes)
            return status

        status = await assert_eventually(all_seen)
        assert status.phase == Phase.AWAITING_APPROVAL
        assert [a.who for a in status.approvals] == ["bob"], "one person, however spelled"
        assert [r.who for r in status.refused] == [n.strip() for n in lookalikes if n != "bob"], (
            "refusals keep the name as sent"
        )

        await handle.signal(ChangeRequestWorkflow.approve, {"approver": "Carol"})  # type: ignore[call-overload]  # a raw dict, as a script sends it
        result = await handle.result()

    assert result.outcome == Phase.SUCCEEDED
    decisions = db_rows(
        settings.database_url,
        "SELECT kind, who, raw FROM decisions WHERE change_request_id = :id ORDER BY kind, seq",
        id=handle.id,
    )
    assert [d for d in decisions if d["kind"] == "decision"] == [
        {"kind": "decision", "who": "bob", "raw": None},
        {"kind": "decision", "who": "carol", "raw": "Carol"},
    ]
    refusals = [d["who"] for d in decisions if d["kind"] == "refusal"]
    assert refusals == [n.strip() for n in lookalikes if n != "bob"], "each refusal is a row, the name as sent"


async def test_the_requester_is_normalised_and_both_forms_are_audited(
    env: WorkflowEnvironment, settings: Settings
) -> None:
    async with running_worker(env.client, with_policy(settings, auto_approve_risk="low")):
        handle = await start_request(env, settings, "Verify ping", requester="\uff21lice")  # fullwidth A
        result = await handle.result()

    assert result.outcome == Phase.SUCCEEDED
    [row] = db_rows(
        settings.database_url, "SELECT requester, requester_raw FROM change_requests WHERE id = :id", id=handle.id
    )
    assert row == {"requester": "alice", "requester_raw": "\uff21lice"}
    [info] = [w async for w in env.client.list_workflows(f"WorkflowId = '{handle.id}'")]
    assert info.search_attributes["SignoffRequester"] == ["alice"]


# --- ids, audit and secrets -----------------------------------------------------------------

LONG_IDS = {
    "250 characters": "x" * 250,
    "1000 characters": "cr-" + "y" * 997,
    "slashes, dots, spaces and accents": "cr/../../etc passwd/" + "\u00e9" * 300,
}


async def start_with_id(env: WorkflowEnvironment, settings: Settings, request: str, wf_id: str) -> Any:
    with env.with_time_skipping_disabled():
        return await env.client.start_workflow(  # type: ignore[misc]  # run takes a RawValue: a raw dict is fine
            ChangeRequestWorkflow.run,
            {"request": request, "requester": "alice"},
            id=wf_id,
            task_queue=settings.task_queue,
        )


@pytest.mark.parametrize("wf_id", list(LONG_IDS.values()), ids=list(LONG_IDS))
async def test_any_legal_workflow_id_is_audited(env: WorkflowEnvironment, settings: Settings, wf_id: str) -> None:
    settings = with_policy(settings, auto_approve_risk="low")
    async with running_worker(env.client, settings):
        handle = await start_with_id(env, settings, "Verify ping", wf_id)
        result = await handle.result()

    assert result.outcome == Phase.SUCCEEDED
    assert result.audit_commit
    [row] = db_rows(settings.database_url, "SELECT phase, audit_commit FROM change_requests WHERE id = :id", id=wf_id)
    assert row == {"phase": "succeeded", "audit_commit": result.audit_commit}
    doc = committed_json(settings.audit_repo, result.audit_commit, f".audit/requests/{safe_name(wf_id)}.json")
    assert doc["record"]["workflow_id"] == wf_id
    assert len(safe_name(wf_id)) <= 100


async def test_a_failed_step_of_a_request_with_the_longest_id_awaits_a_decision(
    env: WorkflowEnvironment, settings: Settings
) -> None:
    """Its failure analysis is a child workflow whose id adds to the request's: past Temporal's
    limit, the start was a command refused on every workflow task, and the request could not
    even be queried. Now the derived id is bounded and the child runs."""
    wf_id = LONG_IDS["1000 characters"]
    settings = dataclasses.replace(with_policy(settings, auto_approve_risk="low"), failure_analysis=True)
    (settings.playbook_dir / "doomed-deploy.yml").write_text(
        "# signoff:\n#   risk: low\n" + (settings.playbook_dir / "doomed-deploy.yml").read_text()
    )
    async with running_worker(env.client, settings):
        with env.with_time_skipping_disabled():
            handle = await start_with_id(env, settings, "Deploy doomed", wf_id)
            status = await wait_for_phase(handle, Phase.AWAITING_DECISION)
            analysis = env.client.get_workflow_handle(
                analysis_workflow_id(AnalyzeFailureInput(wf_id, 1, 1, None, "doomed-deploy.yml"))
            )
            await analysis.result()
            await handle.cancel()
        await no_task_failures(env, wf_id)

    assert status.steps[0].failure_class == FailureClass.TASK_FAILED
    assert len(analysis.id.encode()) <= MAX_ID_BYTES


LONG_SERVICE = """\
# signoff:
#   service: {name}
#   action: verify
#   risk: low
- name: Verify it
  hosts: local
  gather_facts: false
  tasks:
    - name: Hello
      ansible.builtin.debug:
        msg: hi
"""


async def test_a_service_name_past_the_search_attribute_limit_is_cut_not_fatal(
    env: WorkflowEnvironment, settings: Settings
) -> None:
    """SignoffServices holds the plan's services: past 2 KB Temporal failed the workflow
    outright, before its audit. Now the attribute keeps what fits, and the request runs."""
    name = "s" * 2100
    (settings.playbook_dir / "long-verify.yml").write_text(LONG_SERVICE.format(name=name))
    settings = with_policy(settings, auto_approve_risk="low")
    async with running_worker(env.client, settings):
        handle = await start_request(env, settings, f"Verify {name}")
        result = await handle.result()
        described = await handle.describe()

    assert result.outcome == Phase.SUCCEEDED
    assert described.typed_search_attributes.get(SERVICES_ATTR) == [name[:200]]


def test_a_keyword_list_is_cut_only_when_it_does_not_fit() -> None:
    assert keyword_list(["kuma", "nginx"]) == ["kuma", "nginx"]
    assert keyword_list(["x" * 2000]) == ["x" * 2000]
    many = [f"{n:03d}" + "y" * 300 for n in range(20)]
    cut = keyword_list(many)
    assert cut == [m[:200] for m in many[: len(cut)]]
    assert 0 < len(cut) < 20
    assert len(json.dumps(cut).encode()) <= KEYWORD_LIST_BYTES


def test_derived_ids_fit_temporals_limit_and_stay_apart() -> None:
    assert bounded_id("cr-1/lint/1/1") == "cr-1/lint/1/1"
    long_a, long_b = bounded_id("é" * 999 + "a"), bounded_id("é" * 999 + "b")
    assert long_a != long_b
    assert max(len(long_a.encode()), len(long_b.encode())) <= MAX_ID_BYTES
    assert len(lock_workflow_id("q" * 1000, "host")) <= MAX_ID_BYTES


async def test_a_git_audit_that_cannot_be_written_is_recorded_and_leaves_nothing(
    env: WorkflowEnvironment, settings: Settings, tmp_path: Path
) -> None:
    blocker = b"a file where the audit dir should be\n"
    blocked = commit_elsewhere(AuditRepo(settings.audit_repo), ".audit", blocker, tmp_path)
    settings = with_policy(settings, auto_approve_risk="low")
    async with running_worker(env.client, settings):
        handle = await start_request(env, settings, "Verify ping")
        result = await handle.result()

    assert result.outcome == Phase.SUCCEEDED, "the change itself ran"
    assert result.audit_commit is None
    assert "git audit commit failed" in result.error
    assert ".audit" in result.error
    [row] = db_rows(settings.database_url, "SELECT phase, error FROM change_requests WHERE id = :id", id=handle.id)
    assert row["phase"] == "succeeded", "the database row reaches its final phase"
    assert "git audit commit failed" in row["error"]
    head = git.Repo(settings.audit_repo).commit("main").hexsha
    assert head == blocked, "no commit, nothing half-written"


async def test_secret_values_stay_out_of_postgres_and_git(env: WorkflowEnvironment, settings: Settings) -> None:
    settings = with_policy(settings, auto_approve_risk="low")
    extra_vars = {"launch_code": LAUNCH_CODE, "api_token": TOKEN, "label": "blue-label"}
    async with running_worker(env.client, settings):
        handle = await start_request(env, settings, "Configure leak", vars=extra_vars)
        result = await handle.result()
        status = await handle.query(ChangeRequestWorkflow.status)

    assert result.outcome == Phase.SUCCEEDED
    assert status.request.vars == {
        "api_token": f"(secret, sha256:{fingerprint(TOKEN)})",
        "label": "blue-label",
        "launch_code": f"(secret, sha256:{fingerprint(LAUNCH_CODE)})",
    }
    dump = json.dumps(
        [
            db_rows(settings.database_url, f"SELECT * FROM {table}")
            for table in ("change_requests", "decisions", "steps", "tasks")
        ],
        default=str,
    )
    repo = git.Repo(settings.audit_repo)
    blobs = "".join(
        b.data_stream.read().decode() for b in repo.commit(result.audit_commit).tree.traverse() if b.type == "blob"
    )
    for kept in (dump, blobs, json.dumps(str(status))):
        assert LAUNCH_CODE not in kept
        assert TOKEN not in kept
        assert "blue-label" in kept, "values that are not secret are kept, as the approver saw them"
    [task] = db_rows(settings.database_url, "SELECT task, msg FROM tasks WHERE change_request_id = :id", id=handle.id)
    assert task == {"task": "Use (secret)", "msg": "code is (secret), token is (secret), label is blue-label"}


async def test_status_query_answers_after_input_that_failed_the_run(
    env: WorkflowEnvironment, settings: Settings
) -> None:
    deep: dict[str, Any] = {}
    for _ in range(800):
        deep = {"v": deep}
    async with running_worker(env.client, settings):
        handle = await env.client.start_workflow(
            "ChangeRequestWorkflow",
            {"request": "Verify ping", "requester": "alice", "vars": deep},
            id=f"cr-deep-{uuid.uuid4().hex[:8]}",
            task_queue=settings.task_queue,
        )
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
        status = await handle.query(ChangeRequestWorkflow.status)

    assert isinstance(failed.value.cause, ApplicationError)
    assert "nested deeper than 32" in failed.value.cause.message
    assert status.phase == Phase.PLANNING
    assert status.request is None
