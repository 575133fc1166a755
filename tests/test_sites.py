"""Routing by site (issue 11): hosts name their site with the inventory var `signoff_site`; their
playbooks run on `<task queue>-<site>`, served only by workers started with SIGNOFF_SITE. Real
worker processes, one per site; each playbook reports the SIGNOFF_SITE of the Ansible process
that ran it, and the task rows keep what it reported."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import yaml
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from tests.conftest import with_policy
from tests.helpers import assert_eventually, db_rows, start_request
from workers.settings import ConfigError, Settings
from workers.worker import running_worker
from workflows.change_request import ChangeRequestWorkflow
from workflows.names import playbook_queue
from workflows.types import FailureClass, Phase, StepState

SITE_REPORT = """\
# signoff:
#   service: site
#   action: report
#   risk: low
#   timeout: 60
- name: Report the site
  hosts: all
  gather_facts: false
  tasks:
    - name: Where am I run
      ansible.builtin.debug:
        msg: "site={{ lookup('env', 'SIGNOFF_SITE') | default('main', true) }}"
"""


@pytest.fixture
def sited(settings: Settings, tmp_path: Path) -> Settings:
    """Hosts east1 (site east), west1 (site west), north1 (site north, no worker) and local1
    (no site), all local connections; a playbook that prints where it runs, auto-approved."""
    (settings.playbook_dir / "site-report.yml").write_text(SITE_REPORT)
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory = {
        "all": {
            "children": {
                "east": {"hosts": {"east1": local}, "vars": {"signoff_site": "east"}},
                "west": {"hosts": {"west1": {**local, "signoff_site": "west"}}},
                "north": {"hosts": {"north1": local}, "vars": {"signoff_site": "north"}},
                "plain": {"hosts": {"local1": local}},
            }
        }
    }
    path = tmp_path / "sites" / "hosts.yml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(inventory))
    return with_policy(dataclasses.replace(settings, inventory=path), auto_approve_risk="low")


@asynccontextmanager
async def site_worker(env: WorkflowEnvironment, settings: Settings, site: str) -> AsyncIterator[None]:
    """`signoff worker` with SIGNOFF_SITE, a process of its own, until its queue is polled."""
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SIGNOFF_", "TEMPORAL_"))},
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "SIGNOFF_TASK_QUEUE": settings.task_queue,
        "SIGNOFF_SITE": site,
        "SIGNOFF_DATABASE_URL": str(settings.database_url),
        "SIGNOFF_PLAYBOOK_DIR": str(settings.playbook_dir),
        "SIGNOFF_INVENTORY": str(settings.inventory),
        "SIGNOFF_AUDIT_REPO": str(settings.audit_repo.parent / f"audit-{site}"),
    }
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "signoff"),
        "worker",
        env=environ,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        from activities.sites import SiteActivities

        async def polled() -> None:
            assert proc.returncode is None, f"the {site} worker exited {proc.returncode}"
            try:
                served = await SiteActivities(env.client).has_worker(playbook_queue(settings.task_queue, site))
            except RPCError as err:  # the activity's retry policy retries these; so does this poll
                raise AssertionError(f"describe_task_queue: {err}") from err
            assert served

        await assert_eventually(polled, timeout=60, interval=0.2)
        yield
    finally:
        proc.terminate()
        await proc.wait()


def reported(settings: Settings, workflow_id: str) -> list[tuple[str, str]]:
    rows = db_rows(
        settings.database_url,
        "SELECT host, msg FROM tasks WHERE change_request_id = :id AND task = 'Where am I run'",
        id=workflow_id,
    )
    return sorted((row["host"], row["msg"]) for row in rows)


@pytest.mark.slow
async def test_each_playbook_runs_on_the_worker_of_its_site(env: WorkflowEnvironment, sited: Settings) -> None:
    async with running_worker(env.client, sited), site_worker(env, sited, "east"), site_worker(env, sited, "west"):
        handles = {
            target: await start_request(env, sited, f"Report site on {target}") for target in ("east", "west", "plain")
        }
        results = {target: await handle.result() for target, handle in handles.items()}
        statuses = {target: await handle.query(ChangeRequestWorkflow.status) for target, handle in handles.items()}
    for target, result in results.items():
        assert result.outcome == Phase.SUCCEEDED, (target, result.error)
    sites = [s.plan.steps[0].site for s in (statuses["east"], statuses["west"], statuses["plain"]) if s.plan]
    assert sites == ["east", "west", None]
    assert reported(sited, handles["east"].id) == [("east1", "site=east")]
    assert reported(sited, handles["west"].id) == [("west1", "site=west")]
    assert reported(sited, handles["plain"].id) == [("local1", "site=main")], "no site: the main workers"


@pytest.mark.slow
async def test_a_site_without_a_worker_says_so_and_goes_on_when_one_comes(
    env: WorkflowEnvironment, sited: Settings
) -> None:
    async with running_worker(env.client, sited):
        handle = await start_request(env, sited, "Report site on north")

        async def waiting() -> None:
            status = await handle.query(ChangeRequestWorkflow.status)
            assert status.waiting_for is not None
            assert status.waiting_for.startswith("a worker at site north: nothing polls task queue")
            assert status.steps[0].state == StepState.RUNNING

        await assert_eventually(waiting, timeout=60)
        async with site_worker(env, sited, "north"):
            result = await handle.result()
    assert result.outcome == Phase.SUCCEEDED
    assert reported(sited, handle.id) == [("north1", "site=north")]


@pytest.mark.slow
async def test_a_site_nobody_serves_ends_in_a_decision_not_a_silent_wait(
    env: WorkflowEnvironment, sited: Settings
) -> None:
    sited = with_policy(sited, decision_timeout_seconds=3600)
    async with running_worker(env.client, sited):
        handle = await start_request(env, sited, "Report site on north", time_skipping=True)
        result = await handle.result()  # virtual time: the playbook's 60 s, then the decision's hour
    assert result.outcome == Phase.FAILED
    [step] = result.steps
    assert (step.state, step.failure_class) == (StepState.FAILED, FailureClass.NO_WORKER)
    assert "no worker at site north" in (step.error or "")


async def test_a_step_over_two_sites_is_refused_at_planning(env: WorkflowEnvironment, sited: Settings) -> None:
    async with running_worker(env.client, sited):
        handle = await start_request(env, sited, "Report site on east and west", dry_run=True, time_skipping=True)
        result = await handle.result()
    assert result.outcome == Phase.FAILED
    error = result.error or ""
    assert "its hosts are at more than one site (" in error
    assert "east: east1" in error
    assert "west: west1" in error
    assert error.endswith("narrow the request to one site")


@pytest.mark.parametrize("bad", ["East", "playbooks", "a/b", "-x", "x" * 41])
def test_a_site_is_a_plain_name(bad: str) -> None:
    with pytest.raises(ConfigError, match="SIGNOFF_SITE"):
        Settings.from_env({"SIGNOFF_SITE": bad})
