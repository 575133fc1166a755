"""What ChangeRequestWorkflow writes to the audit, and the failure analysis it starts.

Mixed into ChangeRequestWorkflow. Current requests append facts to the chained audit log
(workflows.audit, activities.audit_trail): a write when the request waits for someone, one
beside the first playbook, and one at the end that also commits to git. Requests started by an
earlier release (no "audit-events" marker in their history) keep recording whole statuses.
"""

from __future__ import annotations

import asyncio
import contextlib

from temporalio import workflow
from temporalio.exceptions import ActivityError, WorkflowAlreadyStartedError, is_cancelled_exception
from temporalio.workflow import ParentClosePolicy

from workflows.analysis import FailureAnalysisWorkflow, analysis_workflow_id
from workflows.audit import AuditLog
from workflows.options import BOOKKEEPING_RETRY, BOOKKEEPING_TIMEOUT
from workflows.payloads import describe, now
from workflows.runs import AnalyzeFailureInput, PlaybookResult, RunPlaybookInput, TaskRecord
from workflows.types import AuditRecord, ChangeRequestStatus

with workflow.unsafe.imports_passed_through():
    from activities.audit_db import AuditDbActivities
    from activities.audit_git import AuditGitActivities
    from activities.audit_trail import AuditTrail


class Auditing:
    _status: ChangeRequestStatus
    _audit_log: AuditLog
    _audit_events: bool  # facts to the chained log (else whole statuses, as an earlier release did)
    _recording: asyncio.Task[None] | None  # a write started beside the first playbook
    _tasks: list[TaskRecord]  # what an earlier release's records carried
    _unrecorded_tasks: list[TaskRecord]

    async def _record(self) -> None:
        """Upsert the status row, after any write still in flight: an older status never lands last."""
        if self._recording is not None:
            recording, self._recording = self._recording, None
            await recording
        await self._write_record()

    async def _write_record(self) -> None:
        if self._audit_events:
            batch = self._audit_log.pending(self._status, now())
            await workflow.execute_activity_method(
                AuditTrail.append, batch, start_to_close_timeout=BOOKKEEPING_TIMEOUT, retry_policy=BOOKKEEPING_RETRY
            )
            self._audit_log.written(batch)
            return
        tasks = list(self._unrecorded_tasks)  # forgotten only once written
        await workflow.execute_activity_method(
            AuditDbActivities.record,
            AuditRecord(status=self._status, tasks=tasks),
            start_to_close_timeout=BOOKKEEPING_TIMEOUT,
            retry_policy=BOOKKEEPING_RETRY,
        )
        del self._unrecorded_tasks[: len(tasks)]

    async def _audit(self) -> None:
        """Commit the outcome to git, then record the final row. A failed commit is itself
        recorded: the database never keeps a request in a phase that is not final."""
        if self._audit_events:
            await self._finish_audit()
            return
        try:
            commit = await workflow.execute_activity_method(
                AuditGitActivities.commit_audit,
                AuditRecord(status=self._status, tasks=self._tasks),
                start_to_close_timeout=BOOKKEEPING_TIMEOUT,
                retry_policy=BOOKKEEPING_RETRY,
            )
            self._status.audit_commit = commit.sha
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise
            failure = f"git audit commit failed: {describe(err)}"
            self._status.error = f"{self._status.error}; {failure}" if self._status.error else failure
        await self._record()

    async def _finish_audit(self) -> None:
        """The last facts, the git commit and the commit as a fact, in one activity."""
        if self._recording is not None:
            recording, self._recording = self._recording, None
            await recording
        batch = self._audit_log.pending(self._status, now())
        result = await workflow.execute_activity_method(
            AuditTrail.finish, batch, start_to_close_timeout=BOOKKEEPING_TIMEOUT, retry_policy=BOOKKEEPING_RETRY
        )
        self._audit_log.written(batch)
        self._audit_log.committed(result.sha, now())
        if result.error:
            self._status.error = f"{self._status.error}; {result.error}" if self._status.error else result.error
        else:
            self._status.audit_commit = result.sha

    async def _analyse(self, index: int, run_input: RunPlaybookInput, failed: PlaybookResult | None) -> None:
        """ansible-lint on the failed playbook, as a child that outlives this request and never
        holds it up: the suggestions land in the audit while the operator decides."""
        plan = self._status.plan
        if plan is None or not plan.failure_analysis or not workflow.patched("failure-analysis"):
            return
        inp = AnalyzeFailureInput(
            workflow_id=self._status.workflow_id,
            step=index,
            attempt=failed.attempt if failed else self._status.steps[index - 1].attempt,
            task_id=failed.failed_task if failed else None,
            playbook=run_input.playbook,
        )
        with contextlib.suppress(WorkflowAlreadyStartedError):  # this failed attempt, analysed already
            await workflow.start_child_workflow(
                FailureAnalysisWorkflow.run,
                inp,
                id=analysis_workflow_id(inp),
                parent_close_policy=ParentClosePolicy.ABANDON,
                static_summary=f"ansible-lint {inp.playbook} (step {index})",
            )
