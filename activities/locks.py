"""What the lock workflows need from outside: signal-with-start, and whether a holder still runs.

A workflow cannot signal-with-start another workflow itself; this activity does it with the
worker's Temporal client, so asking for a lock creates the lock's workflow when it is the first.
"""

from __future__ import annotations

import asyncio

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from workflows.targets import LOCK_WORKFLOW_TYPE, LockInput, LockRequest, LockState, lock_workflow_id


class LockActivities:
    def __init__(self, client: Client) -> None:
        self._client = client

    @activity.defn(name="request_lock")
    async def request_lock(self, req: LockRequest) -> LockState:
        """Queue `req.holder` for the lock on `req.target`; return who holds it now, as far as
        the lock workflow answers within a few seconds (it is only shown to people)."""
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
            return await asyncio.wait_for(handle.query("state", result_type=LockState), timeout=5)
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
