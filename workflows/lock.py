"""TargetLockWorkflow: one per inventory host, so changes to the same host never overlap.

A change request that is about to execute asks for each host its plan touches, in sorted order
(so two requests can never hold one host each and wait for the other's). Asking is a
signal-with-start of this workflow (through an activity: workflows cannot signal-with-start),
so the first request creates it. Holders are granted in arrival order by a `lock_granted`
signal back to the requesting workflow, and give the lock back with `release` when they end,
whichever way they end. A holder that closed without releasing (terminated, say) is found when
a waiter has waited for a while and asks (`check`): the lock looks the holder up and frees it
if it is closed, so a lock is never left held by a closed workflow while anyone waits for it.
The lock itself keeps no timers: it does nothing while nobody asks.

The history grows with every holder, so the workflow continues as new when Temporal suggests
it, carrying its queue.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import VersioningBehavior
from temporalio.exceptions import FailureError

from workflows.types import LOCK_WORKFLOW_TYPE, LockInput, LockState

with workflow.unsafe.imports_passed_through():
    from activities.locks import LockActivities


# Lives as long as its target is locked and continues as new: it follows the current version.
@workflow.defn(name=LOCK_WORKFLOW_TYPE, versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class TargetLockWorkflow:
    def __init__(self) -> None:
        self._target = ""
        self._holder: str | None = None
        self._queue: list[str] = []
        self._check = False

    @workflow.run
    async def run(self, inp: LockInput) -> None:
        self._target = inp.target
        self._queue = [*inp.queue, *(q for q in self._queue if q not in inp.queue)]
        while True:
            if self._check:
                self._check = False
                await self._drop_closed_holder()
            if self._holder is None and self._queue:
                await self._grant(self._queue.pop(0))
                continue
            if workflow.info().is_continue_as_new_suggested() and workflow.all_handlers_finished():
                carried = ([self._holder] if self._holder else []) + self._queue
                workflow.continue_as_new(LockInput(self._target, carried))
            await workflow.wait_condition(lambda: self._check or (self._holder is None and bool(self._queue)))

    async def _grant(self, holder: str) -> None:
        self._holder = holder
        try:
            await workflow.get_external_workflow_handle(holder).signal("lock_granted", self._target)
        except FailureError as err:  # the requester is gone
            workflow.logger.warning("lock %s: could not grant to %s (%s)", self._target, holder, err)
            self._holder = None

    async def _drop_closed_holder(self) -> None:
        holder = self._holder
        if holder is None:
            return
        running = await workflow.execute_activity_method(
            LockActivities.is_running, holder, start_to_close_timeout=timedelta(seconds=30)
        )
        if not running and self._holder == holder:
            workflow.logger.warning("lock %s: %s closed without releasing it; freed", self._target, holder)
            self._holder = None

    @workflow.signal
    def acquire(self, holder: str) -> None:
        if holder != self._holder and holder not in self._queue:
            self._queue.append(holder)

    @workflow.signal
    def check(self, waiter: str) -> None:
        """A waiter has waited long: see whether the holder is still running."""
        self._check = True

    @workflow.signal
    def release(self, holder: str) -> None:
        if holder == self._holder:
            self._holder = None
        elif holder in self._queue:
            self._queue.remove(holder)

    @workflow.query
    def state(self) -> LockState:
        return LockState(target=self._target, holder=self._holder, waiting=list(self._queue))
