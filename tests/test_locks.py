"""Inventory locks (issue 6): requests on the same hosts never execute at the same time,
requests on other hosts run beside them, a waiting request says what it waits for and who
holds it, and a lock is freed when its holder closed without giving it back. A free lock is
taken in the workflow task that approved the request, and a request whose asking went
unanswered still gets its grant."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import math
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

import activities.locks
from activities.locks import LockActivities
from tests.conftest import with_policy
from tests.helpers import assert_eventually, replay_and_keep, scheduled_activities, start_request
from workers.sandbox import workflow_runner
from workers.settings import Settings
from workers.worker import running_worker
from workflows.change_request import ChangeRequestWorkflow
from workflows.lock import TargetLockWorkflow
from workflows.targets import LockAnswer, LockRequest, LockState, StepFailed, lock_workflow_id
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


async def test_a_free_lock_is_taken_in_the_task_that_approved_the_request(
    env: WorkflowEnvironment, settings: Settings, out_dir: Path
) -> None:
    settings = two_host_settings(settings, out_dir)
    async with running_worker(env.client, settings):
        handle = await start_request(env, settings, "Deploy tock")
        result = await handle.result()
        await replay_and_keep(handle, "lock_taken")
        events = (await handle.fetch_history()).events
        activities = await scheduled_activities(handle)

    assert result.outcome == Phase.SUCCEEDED
    assert handle.id in intervals(out_dir), "its playbook ran"
    signals = [
        e.workflow_execution_signaled_event_attributes.signal_name
        for e in events
        if e.HasField("workflow_execution_signaled_event_attributes")
    ]
    assert "lock_granted" not in signals, "the lock was taken in the update's answer, not granted by signal"
    assert "request_lock" not in activities
    assert any(e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED for e in events), "a local activity asked"


@workflow.defn(sandboxed=False)
class Holder:
    """Stands in for a change request: counts the `lock_granted` signals it gets."""

    def __init__(self) -> None:
        self.granted: list[str] = []

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.signal
    def lock_granted(self, target: str) -> None:
        self.granted.append(target)

    @workflow.query
    def grants(self) -> list[str]:
        return self.granted


@asynccontextmanager
async def lock_worker(client: Client, queue: str) -> AsyncIterator[None]:
    async with Worker(
        client,
        task_queue=queue,
        workflows=[TargetLockWorkflow, Holder],
        activities=[LockActivities(client).is_running],
        workflow_runner=workflow_runner(),
    ):
        yield


async def ask(client: Client, queue: str, holder: str, target: str = "gamma") -> LockAnswer:
    """What a change request's local activity does, from this queue's workflow task."""
    activity_env = ActivityEnvironment()
    activity_env.info = dataclasses.replace(activity_env.info, task_queue=queue)
    return await activity_env.run(LockActivities(client).acquire_lock, LockRequest(target, holder))


async def grants(handle: WorkflowHandle[Any, Any], count: int) -> None:
    assert await handle.query(Holder.grants) == ["gamma"] * count


async def test_the_lock_answers_or_grants_by_signal_and_grants_again_to_a_holder_that_asks_again(
    env: WorkflowEnvironment,
) -> None:
    queue = f"locks-{uuid.uuid4()}"
    async with lock_worker(env.client, queue):
        first, second, third = [
            await env.client.start_workflow(Holder.run, id=f"holder-{n}-{uuid.uuid4()}", task_queue=queue)
            for n in range(3)
        ]
        lock: Any = env.client.get_workflow_handle(lock_workflow_id(queue, "gamma"))

        taken = await ask(env.client, queue, first.id)
        queued = await ask(env.client, queue, second.id)
        await lock.signal(TargetLockWorkflow.acquire, third.id)  # the way of earlier releases
        third_asks = await ask(env.client, queue, third.id)  # and then by update: still queued once

        await lock.signal(TargetLockWorkflow.release, first.id)
        await assert_eventually(lambda: grants(second, 1))
        await lock.signal(TargetLockWorkflow.acquire, second.id)  # its update's answer was lost
        await assert_eventually(lambda: grants(second, 2))
        await lock.signal(TargetLockWorkflow.check, second.id)  # or it waited long and asks
        await assert_eventually(lambda: grants(second, 3))
        await lock.signal(TargetLockWorkflow.release, second.id)
        await assert_eventually(lambda: grants(third, 1))
        first_grants = await first.query(Holder.grants)
        state = await lock.query(TargetLockWorkflow.state)

    assert taken == LockAnswer(LockState(target="gamma", holder=first.id, waiting=[]), taken=True)
    assert queued == LockAnswer(LockState(target="gamma", holder=first.id, waiting=[second.id]), taken=False)
    assert third_asks == LockAnswer(
        LockState(target="gamma", holder=first.id, waiting=[second.id, third.id]), taken=False
    )
    assert first_grants == [], "a lock taken in the answer is not granted by signal too"
    assert state == LockState(target="gamma", holder=third.id, waiting=[])


async def test_hand_made_signals_never_wedge_a_lock(env: WorkflowEnvironment) -> None:
    """Only change requests send these, but anyone with Temporal access can: a report of a failed
    step whose time or window no request would send, and holders that are no workflow id. None
    may fail the lock's workflow tasks (retried without end, the host would be locked for good)
    or trip its breaker; the lock goes on granting in order."""
    queue = f"locks-{uuid.uuid4()}"
    async with lock_worker(env.client, queue):
        first, second = [
            await env.client.start_workflow(Holder.run, id=f"holder-{n}-{uuid.uuid4()}", task_queue=queue)
            for n in range(2)
        ]
        lock: Any = env.client.get_workflow_handle(lock_workflow_id(queue, "gamma"))
        await ask(env.client, queue, first.id)
        now = datetime.now(UTC).isoformat()
        for at, window in (("not a time", 3600.0), ("2026-01-01T00:00:00", 3600.0), (now, 1e300), (now, math.nan)):
            await lock.signal(
                TargetLockWorkflow.step_failed, StepFailed(first.id, at, trip_after=1, window_seconds=window)
            )
        for holder in ("", "x" * 1001):
            await lock.signal(TargetLockWorkflow.acquire, holder)
            await lock.signal(TargetLockWorkflow.check, holder)
        refused = await ask(env.client, queue, "")  # the update's validator refuses it, then the signal is ignored
        queued = await ask(env.client, queue, second.id)
        await lock.signal(TargetLockWorkflow.release, first.id)
        await assert_eventually(lambda: grants(second, 1))
        state = await lock.query(TargetLockWorkflow.state)

    assert not refused.taken
    assert queued.state.waiting == [second.id], "no hand-made holder was queued"
    assert state == LockState(target="gamma", holder=second.id, waiting=[]), "not paused by the breaker"


async def test_a_host_whose_lock_id_would_pass_temporals_limit_is_locked(env: WorkflowEnvironment) -> None:
    """The lock's id holds the task queue and the host name: past 1000 bytes it was refused, and
    the request asked again without end. Now it is cut short with a hash."""
    queue = f"locks-{uuid.uuid4()}"
    host = "h" * 990
    async with lock_worker(env.client, queue):
        holder = await env.client.start_workflow(Holder.run, id=f"holder-{uuid.uuid4()}", task_queue=queue)
        answer = await ask(env.client, queue, holder.id, host)

    assert answer == LockAnswer(LockState(target=host, holder=holder.id, waiting=[]), taken=True)


async def test_a_request_whose_asking_went_unanswered_gets_the_lock_by_signal(
    env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(activities.locks, "ANSWER_WAIT", 0.5)
    queue, holder_id = f"locks-{uuid.uuid4()}", f"holder-{uuid.uuid4()}"
    # No worker runs the lock yet: the update and the query go unanswered.
    answer = await ask(env.client, queue, holder_id)
    async with lock_worker(env.client, queue):
        holder = await env.client.start_workflow(Holder.run, id=holder_id, task_queue=queue)
        await assert_eventually(lambda: grants(holder, 1))
        lock: Any = env.client.get_workflow_handle(lock_workflow_id(queue, "gamma"))
        state = await lock.query(TargetLockWorkflow.state)

    assert answer == LockAnswer(LockState(target="gamma"), taken=False), "nothing was known, so nothing was taken"
    assert state.holder == holder.id
