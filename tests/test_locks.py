"""Inventory locks (issue 6): requests on the same hosts never execute at the same time,
requests on other hosts run beside them, a waiting request says what it waits for and who
holds it, and a lock is freed when its holder closed without giving it back."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.testing import WorkflowEnvironment

from tests.conftest import with_policy
from tests.helpers import assert_eventually, replay_and_keep, start_request
from workers.settings import Settings
from workers.worker import running_worker
from workflows.change_request import ChangeRequestWorkflow
from workflows.lock import TargetLockWorkflow
from workflows.targets import LockState, lock_workflow_id
from workflows.types import Phase

STAMP = """# signoff:
#   service: {service}
#   action: deploy
#   risk: low
- name: Deploy {service}
  hosts: {group}
  gather_facts: false
  tasks:
    - name: Stamp start and end
      ansible.builtin.shell: |
        echo "$SIGNOFF_WORKFLOW_ID start $(date +%s.%N)" >> "{{{{ out_dir }}}}/stamps.txt"
        sleep {seconds}
        echo "$SIGNOFF_WORKFLOW_ID end $(date +%s.%N)" >> "{{{{ out_dir }}}}/stamps.txt"
      changed_when: false
"""


def two_host_settings(settings: Settings, out_dir: Path, seconds: float = 0.2) -> Settings:
    """alpha serves group media, beta group web: both run locally, as different hosts."""
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, "out_dir": str(out_dir)}
    inventory = settings.inventory.parent / "two-hosts.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "hosts": {"alpha": local, "beta": local},
                    "children": {"media": {"hosts": {"alpha": None}}, "web": {"hosts": {"beta": None}}},
                }
            }
        )
    )
    (settings.playbook_dir / "tick-deploy.yml").write_text(STAMP.format(service="tick", group="media", seconds=seconds))
    (settings.playbook_dir / "tock-deploy.yml").write_text(STAMP.format(service="tock", group="web", seconds=seconds))
    (settings.playbook_dir / "hold-deploy.yml").write_text(STAMP.format(service="hold", group="media", seconds=600))
    return with_policy(dataclasses.replace(settings, inventory=inventory), auto_approve_risk="low")


def intervals(out_dir: Path) -> dict[str, tuple[float, float]]:
    found: dict[str, dict[str, float]] = {}
    for line in (out_dir / "stamps.txt").read_text().splitlines():
        workflow_id, what, at = line.split()
        found.setdefault(workflow_id, {})[what] = float(at)
    return {wf: (t["start"], t["end"]) for wf, t in found.items()}


@pytest.mark.slow
async def test_requests_on_one_host_never_overlap_and_others_run_beside_them(
    env: WorkflowEnvironment, settings: Settings, out_dir: Path
) -> None:
    settings = two_host_settings(settings, out_dir)
    async with running_worker(env.client, settings):
        ticks = [await start_request(env, settings, "Deploy tick") for _ in range(10)]
        tock = await start_request(env, settings, "Deploy tock")

        async def someone_waits() -> str:
            waits = [(await h.query(ChangeRequestWorkflow.status)).waiting_for or "" for h in ticks]
            shown = [w for w in waits if w.startswith("the lock on alpha, held by cr-test-")]
            assert shown, waits
            return shown[0]

        waiting = await assert_eventually(someone_waits)
        results = await asyncio.gather(*(h.result() for h in [*ticks, tock]))
        lock: Any = env.client.get_workflow_handle(lock_workflow_id(settings.task_queue, "alpha"))
        state = await lock.query(TargetLockWorkflow.state)

    assert all(r.outcome == Phase.SUCCEEDED for r in results)
    assert waiting.split("held by ")[1] in {h.id for h in ticks}
    spans = intervals(out_dir)
    alpha = sorted(spans[h.id] for h in ticks)
    assert all(earlier[1] <= later[0] for earlier, later in itertools.pairwise(alpha)), (
        "no two changes on alpha at once"
    )
    beta = spans[tock.id]
    assert beta[1] < alpha[-1][0], "beta's change did not wait behind the ten on alpha"
    assert state == LockState(target="alpha", holder=None, waiting=[]), "every holder gave the lock back"


@pytest.mark.slow
async def test_a_lock_whose_holder_was_terminated_is_freed(
    env: WorkflowEnvironment, settings: Settings, out_dir: Path
) -> None:
    settings = two_host_settings(settings, out_dir)
    async with running_worker(env.client, settings):
        holder = await start_request(env, settings, "Deploy hold")
        await assert_eventually(lambda: _started(out_dir, holder.id), timeout=60)
        waiter = await start_request(env, settings, "Deploy tick")
        status = await assert_eventually(lambda: _waits_for(waiter, holder.id))
        await holder.terminate("lost")
        await env.fast_forward(waiter, timedelta(minutes=6))  # the waiter's check comes due
        result = await waiter.result()
        await replay_and_keep(waiter, "lock_wait")

    assert status.phase == Phase.EXECUTING
    assert result.outcome == Phase.SUCCEEDED


async def _started(out_dir: Path, workflow_id: str) -> None:
    assert (out_dir / "stamps.txt").exists()
    assert workflow_id in (out_dir / "stamps.txt").read_text()


async def _waits_for(handle: Any, holder: str) -> Any:
    status = await handle.query(ChangeRequestWorkflow.status)
    assert status.waiting_for == f"the lock on alpha, held by {holder}"
    return status
