"""What the lock workflows need from outside: signal- and update-with-start, and whether a
holder still runs.

A workflow cannot start another workflow it does not own, nor send it an update; these
activities do it with the worker's Temporal client, so asking for a lock creates the lock's
workflow when it is the first.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from workflows.targets import LOCK_WORKFLOW_TYPE, LockAnswer, LockInput, LockRequest, LockState, lock_workflow_id

ANSWER_WAIT = 5.0  # seconds for a lock workflow to answer before asking it by signal instead


class LockActivities:
    def __init__(self, client: Client) -> None:
        self._client = client

    @activity.defn(name="acquire_lock")
    async def acquire_lock(self, req: LockRequest) -> LockAnswer:
        """Queue `req.holder` for the lock on `req.target` and take it at once when it is free
        (the `acquire` update): when the answer says it was taken, the request goes on without
        waiting for a `lock_granted` signal. Run as a local activity, in the workflow task that
        approved the request.

        A lock workflow that does not answer within ANSWER_WAIT (busy, or run by a worker of a
        release without the update) is asked by signal instead, which `request_lock` does; the
        grant then comes as a signal, also when the unanswered update took the lock meanwhile."""
        queue = activity.info().task_queue
        start: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
            LOCK_WORKFLOW_TYPE,
            LockInput(req.target),
            id=lock_workflow_id(queue, req.target),
            task_queue=queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        try:
            state: LockState = await self._client.execute_update_with_start_workflow(
                "acquire",
                req.holder,
                start_workflow_operation=start,
                result_type=LockState,
                rpc_timeout=timedelta(seconds=ANSWER_WAIT),
            )
            return LockAnswer(state, taken=state.holder == req.holder)
        except (WorkflowUpdateRPCTimeoutOrCancelledError, WorkflowUpdateFailedError, RPCError) as err:
            activity.logger.warning("lock %s did not answer %s (%s): asking by signal", req.target, req.holder, err)
            with contextlib.suppress(Exception):  # read how the start went, so it is not logged as unread
                await asyncio.wait_for(start.workflow_handle(), timeout=0.1)
        state = await self.request_lock(req)
        return LockAnswer(state, taken=state.holder == req.holder)

    @activity.defn(name="request_lock")
    async def request_lock(self, req: LockRequest) -> LockState:
        """Queue `req.holder` for the lock on `req.target` by signal; return who holds it now,
        as far as the lock workflow answers within a few seconds (it is only shown to people).
        The grant comes as a `lock_granted` signal."""
        handle = await self._client.start_workflow(
            LOCK_WORKFLOW_TYPE,
            LockInput(req.target),
            id=lock_workflow_id(activity.info().task_queue, req.target),
            task_queue=activity.info().task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            start_signal="acquire",
            start_signal_args=[req.holder],
        )
        try:
            return await asyncio.wait_for(handle.query("state", result_type=LockState), timeout=ANSWER_WAIT)
        except (TimeoutError, RPCError):
            return LockState(target=req.target)

    @activity.defn(name="is_running")
    async def is_running(self, workflow_id: str) -> bool:
        try:
            description = await self._client.get_workflow_handle(workflow_id).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return description.status == WorkflowExecutionStatus.RUNNING
