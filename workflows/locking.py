"""Holding the inventory hosts a change request touches (workflows/lock.py holds each one).

Mixed into ChangeRequestWorkflow: the hosts are taken before the first playbook and given back
when the request ends, however it ends.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import FailureError

from workflows.lock import TargetLockWorkflow
from workflows.options import BOOKKEEPING_RETRY, BOOKKEEPING_TIMEOUT, LOCK_ASK_TIMEOUT, LOCK_CHECK
from workflows.targets import LockRequest, StepFailed, lock_workflow_id
from workflows.types import ChangeRequestStatus, Plan

with workflow.unsafe.imports_passed_through():
    from activities.locks import LockActivities


class HostLocks:
    _status: ChangeRequestStatus
    _locks: list[str]  # hosts asked for, to give back when the request ends
    _granted: set[str]

    async def _lock_hosts(self, plan: Plan) -> None:
        """Hold every host the plan touches until the request ends: two requests on one host
        never execute at once. Hosts are taken in sorted order, so no two requests can each
        hold one the other waits for."""
        holder = self._status.workflow_id
        for target in sorted({host for step in plan.steps for host in step.host_list}):
            self._locks.append(target)
            request = LockRequest(target=target, holder=holder)
            if workflow.patched("lock-in-task"):
                # In this workflow task, without a round trip through the task queue: a free
                # lock is taken in the answer, and the first playbook is scheduled at once.
                answer = await workflow.execute_local_activity_method(
                    LockActivities.acquire_lock,
                    request,
                    start_to_close_timeout=LOCK_ASK_TIMEOUT,
                    retry_policy=BOOKKEEPING_RETRY,
                )
                state = answer.state
                if answer.taken:
                    self._granted.add(target)
            else:
                state = await workflow.execute_activity_method(
                    LockActivities.request_lock,
                    request,
                    start_to_close_timeout=BOOKKEEPING_TIMEOUT,
                    retry_policy=BOOKKEEPING_RETRY,
                )
            held_by = f", held by {state.holder}" if state.holder and state.holder != holder else ""
            paused = f": {state.paused.describe()}" if state.paused else ""
            await self._wait_for_lock(target, f"the lock on {target}{held_by}{paused}")
        self._status.waiting_for = None

    async def _wait_for_lock(self, target: str, waiting_for: str) -> None:
        while target not in self._granted:
            self._status.waiting_for = waiting_for
            try:
                await workflow.wait_condition(
                    lambda: target in self._granted, timeout=LOCK_CHECK, timeout_summary="lock wait"
                )
            except TimeoutError:  # waited long: is its holder still there?
                await self._lock_handle(target).signal(TargetLockWorkflow.check, self._status.workflow_id)

    async def _release_locks(self) -> None:
        for target in self._locks:
            try:
                await self._lock_handle(target).signal(TargetLockWorkflow.release, self._status.workflow_id)
            except FailureError:  # the lock workflow is gone: nothing is held there
                continue
        self._locks.clear()

    def _lock_handle(self, target: str) -> workflow.ExternalWorkflowHandle[TargetLockWorkflow]:
        return workflow.get_external_workflow_handle_for(
            TargetLockWorkflow.run, lock_workflow_id(workflow.info().task_queue, target)
        )

    @workflow.signal(name="lock_waiting")
    def lock_waiting(self, target: str, note: str) -> None:
        """From a lock workflow this request waits for: it was paused or resumed."""
        if target in self._locks and target not in self._granted:
            self._status.waiting_for = f"the lock on {target}: {note}"

    async def _report_failure(self, hosts: list[str]) -> None:
        """A step failed on `hosts`: their circuit breakers count it (workflows/lock.py)."""
        plan = self._status.plan
        if plan is None or not plan.breaker_failures:
            return
        failed = StepFailed(
            self._status.workflow_id, workflow.now().isoformat(), plan.breaker_failures, plan.breaker_window_seconds
        )
        for host in hosts:
            try:
                await self._lock_handle(host).signal(TargetLockWorkflow.step_failed, failed)
            except FailureError:  # its lock workflow is gone
                continue

    @workflow.signal(name="lock_granted")
    def lock_granted(self, target: str) -> None:
        """From a lock workflow: this request now holds `target`."""
        self._granted.add(target)
