"""TargetLockWorkflow: one per inventory host, so changes to the same host never overlap.

A change request that is about to execute asks for each host its plan touches, in sorted order
(so two requests can never hold one host each and wait for the other's). Asking is an
update-with-start of this workflow (`acquire`, through a local activity: workflows cannot start
or update other workflows), so the first request creates it, and a lock nobody holds or waits
for is taken in the answer, within the workflow task that approved the request. Otherwise
holders are granted in arrival order by a `lock_granted` signal back to the requesting
workflow. Requests of earlier releases, and a request whose update went unanswered, ask with
the `acquire` signal instead (signal-with-start); a holder that asks again is told again. Holders
give the lock back with `release` when they end, whichever way they end. A holder that closed
without releasing (terminated, say) is found when a waiter has waited for a while and asks
(`check`): the lock looks the holder up and frees it if it is closed, so a lock is never left
held by a closed workflow while anyone waits for it.
The lock itself keeps no timers: it does nothing while nobody asks.

The history grows with every holder, so the workflow continues as new when Temporal suggests
it, carrying its queue.

A target can be paused (`pause`, by a person, or by the circuit breaker after `trip_after` failed
steps on it within a window, which requests report with `step_failed`): while paused it grants
nothing new, the holder it has keeps it, and the requests waiting are told why. `resume` lifts
it. Each pause, resume and trip is written to the audit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError, FailureError

from workflows.identity import IdentityRefused, identify
from workflows.names import MAX_ID_BYTES
from workflows.options import BOOKKEEPING_RETRY, BOOKKEEPING_TIMEOUT
from workflows.targets import (
    BREAKER,
    LOCK_WORKFLOW_TYPE,
    MAX_REASON,
    LockInput,
    LockState,
    PauseInput,
    StepFailed,
    TargetEvent,
    TargetPause,
    breaker_trips,
)

with workflow.unsafe.imports_passed_through():
    from activities.audit_db import AuditDbActivities
    from activities.locks import LockActivities


@workflow.defn(name=LOCK_WORKFLOW_TYPE)
class TargetLockWorkflow:
    @workflow.init
    def __init__(self, inp: LockInput) -> None:
        self._target = inp.target  # before any handler: an update can come with the start
        self._holder: str | None = None
        self._queue: list[str] = []
        self._check = False
        self._paused: TargetPause | None = None
        self._failures: list[str] = []
        self._events: list[TargetEvent] = []  # pauses, resumes and trips not yet in the audit
        self._notes: list[asyncio.Task[None]] = []

    @workflow.run
    async def run(self, inp: LockInput) -> None:
        self._queue = [*inp.queue, *(q for q in self._queue if q not in inp.queue)]
        self._paused = self._paused or inp.paused
        self._failures = [*inp.failures, *self._failures]
        while True:
            if self._events:
                await self._audit_events()
                continue
            if self._check:
                self._check = False
                await self._drop_closed_holder()
            if self._holder is None and self._queue and self._paused is None:
                await self._grant(self._queue.pop(0))
                continue
            if workflow.info().is_continue_as_new_suggested() and workflow.all_handlers_finished():
                carried = ([self._holder] if self._holder else []) + self._queue
                workflow.continue_as_new(LockInput(self._target, carried, self._paused, self._failures))
            await workflow.wait_condition(
                lambda: (
                    self._check
                    or bool(self._events)
                    or (self._holder is None and bool(self._queue) and self._paused is None)
                )
            )

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
        if not _is_workflow_id(holder):
            workflow.logger.warning("lock %s: acquire for %r ignored: not a workflow id", self._target, holder[:100])
            return
        if holder == self._holder:
            self._grant_again(holder)
        elif holder not in self._queue:
            self._queue.append(holder)

    @workflow.update(name="acquire")
    def acquire_now(self, holder: str) -> LockState:
        """Queue `holder`, or give it the lock in the answer when nobody holds it, nobody waits
        and it is not paused (no `lock_granted` signal follows then). A holder that asked by
        signal first waits for the signal, and gets it."""
        if holder != self._holder and holder not in self._queue:
            if self._holder is None and not self._queue and self._paused is None:
                self._holder = holder
            else:
                self._queue.append(holder)
        return self.state()

    @acquire_now.validator
    def _validate_acquire(self, holder: str) -> None:
        if not _is_workflow_id(holder):
            raise ApplicationError(f"holder {holder[:100]!r} is not a workflow id", non_retryable=True)

    @workflow.signal
    def check(self, waiter: str) -> None:
        """A waiter has waited long: see whether the holder is still running."""
        if waiter == self._holder:
            self._grant_again(waiter)
        self._check = True

    def _grant_again(self, holder: str) -> None:
        """The holder asks as if it did not hold the lock: it took it in an update whose answer
        it never got. It is told again by signal."""
        if workflow.patched("lock-granted-again"):
            handle = workflow.get_external_workflow_handle(holder)
            self._notes.append(asyncio.create_task(_signal_quietly(handle, "lock_granted", self._target)))

    @workflow.signal
    def release(self, holder: str) -> None:
        if holder == self._holder:
            self._holder = None
        elif holder in self._queue:
            self._queue.remove(holder)

    @workflow.query
    def state(self) -> LockState:
        return LockState(target=self._target, holder=self._holder, waiting=list(self._queue), paused=self._paused)

    # --- pause, resume and the circuit breaker ---------------------------------------------

    @workflow.signal(name="pause")
    async def pause(self, inp: PauseInput) -> None:
        who = _who(inp)
        if who is not None:
            self._pause(who, (inp.reason or "no reason given")[:MAX_REASON])

    @workflow.update(name="pause")
    async def pause_update(self, inp: PauseInput) -> LockState:
        self._pause(identify(inp.by).name, (inp.reason or "no reason given")[:MAX_REASON])
        return self.state()

    @pause_update.validator
    def _validate_pause(self, inp: PauseInput) -> None:
        _check_pause(inp)

    @workflow.signal(name="resume")
    async def resume(self, inp: PauseInput) -> None:
        who = _who(inp)
        if who is not None:
            self._resume(who)

    @workflow.update(name="resume")
    async def resume_update(self, inp: PauseInput) -> LockState:
        self._resume(identify(inp.by).name)
        return self.state()

    @resume_update.validator
    def _validate_resume(self, inp: PauseInput) -> None:
        _check_pause(inp)
        if self._paused is None:
            raise ApplicationError(f"{self._target} is not paused", non_retryable=True)

    @workflow.signal
    def step_failed(self, failed: StepFailed) -> None:
        try:
            self._failures, trips = breaker_trips(self._failures, failed, workflow.now())
        except ValueError as err:  # raised here, it would fail every workflow task of this lock
            workflow.logger.warning("lock %s: step_failed from %r ignored: %s", self._target, failed.holder, err)
            return
        if trips and self._paused is None:
            window = timedelta(seconds=failed.window_seconds)
            self._pause(BREAKER, f"{len(self._failures)} failed steps within {window}, the last by {failed.holder}")
            self._events[-1] = dataclasses.replace(self._events[-1], kind="trip")

    def _pause(self, by: str, reason: str) -> None:
        self._paused = TargetPause(by=by, reason=reason, at=workflow.now().isoformat())
        self._events.append(TargetEvent(self._target, "pause", by, reason, self._paused.at))
        self._tell_waiters()

    def _resume(self, by: str) -> None:
        if self._paused is None:
            return
        self._paused = None
        self._failures = []  # the breaker counts afresh
        self._events.append(TargetEvent(self._target, "resume", by, None, workflow.now().isoformat()))
        self._tell_waiters()

    def _tell_waiters(self) -> None:
        """The requests waiting for this lock show why it is not coming (or that it may again)."""
        note = self._paused.describe() if self._paused else "resumed"
        self._notes = [task for task in self._notes if not task.done()]  # kept only until sent
        for waiter in self._queue:
            handle = workflow.get_external_workflow_handle(waiter)
            self._notes.append(asyncio.create_task(_signal_quietly(handle, "lock_waiting", self._target, note)))

    async def _audit_events(self) -> None:
        events, self._events = self._events, []
        for event in events:
            await workflow.execute_activity_method(
                AuditDbActivities.record_target_event,
                event,
                start_to_close_timeout=BOOKKEEPING_TIMEOUT,
                retry_policy=BOOKKEEPING_RETRY,
            )


def _who(inp: PauseInput) -> str | None:
    """The normalised name of a signal's sender; None (ignored, logged) for a name not allowed."""
    try:
        return identify(inp.by).name
    except IdentityRefused as err:
        workflow.logger.warning("ignored a pause or resume from %r: %s", inp.by, err)
        return None


def _is_workflow_id(holder: str) -> bool:
    """What the lock can grant to: granting to anything else (only a hand-made signal sends it)
    is a command Temporal refuses, which fails every workflow task of the lock from then on."""
    return 0 < len(holder.encode()) <= MAX_ID_BYTES


def _check_pause(inp: PauseInput) -> None:
    try:
        identify(inp.by)
    except IdentityRefused as err:
        raise ApplicationError(f"by: {err}", non_retryable=True) from None
    if inp.reason is not None and len(inp.reason) > MAX_REASON:
        raise ApplicationError(f"reason: at most {MAX_REASON} characters", non_retryable=True)


async def _signal_quietly(handle: workflow.ExternalWorkflowHandle[Any], signal: str, *args: str) -> None:
    with contextlib.suppress(FailureError):  # the requester is gone
        await handle.signal(signal, args=list(args))
