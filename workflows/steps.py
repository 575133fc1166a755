"""One run of one step: the playbook activity, on the playbook queue or on its site's, with its
outcome taken into the status. Mixed into ChangeRequestWorkflow."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, is_cancelled_exception
from temporalio.workflow import ActivityCancellationType

from workflows import metrics
from workflows.names import playbook_queue
from workflows.options import (
    BOOKKEEPING_RETRY,
    BOOKKEEPING_TIMEOUT,
    MAX_PLAYBOOK_ATTEMPTS,
    PLAYBOOK_RETRY,
    SITE_WAIT_FIRST,
    SITE_WAIT_MAX,
    TIMEOUT_MARGIN,
    playbook_timeout,
)
from workflows.payloads import describe, result_from_details
from workflows.runs import PlaybookResult, RunPlaybookInput, TaskRecord
from workflows.types import ChangeRequestStatus, FailureClass, StepState, StepStatus

with workflow.unsafe.imports_passed_through():
    from activities.playbooks import PlaybookActivities
    from activities.sites import SiteActivities


class NoSiteWorker(Exception):
    """Nothing served the step's site queue for as long as the step may run."""


class StepRuns:
    _status: ChangeRequestStatus
    _audit_events: bool
    _tasks: list[TaskRecord]
    _unrecorded_tasks: list[TaskRecord]

    # workflows.auditing's, mixed into ChangeRequestWorkflow too
    _record: Callable[[], Awaitable[None]]
    _analyse: Callable[[int, RunPlaybookInput, PlaybookResult | None], Awaitable[None]]
    _report_failure: Callable[[list[str]], Awaitable[None]]  # workflows.locking's

    async def _run_step(self, index: int, run_input: RunPlaybookInput) -> bool:
        step = self._status.steps[index - 1]
        # Attempts of an operator's retry continue the step's numbering: at most
        # MAX_PLAYBOOK_ATTEMPTS per run, so task ids never repeat.
        run_input = dataclasses.replace(run_input, attempt_offset=max(step.attempt, step.runs * MAX_PLAYBOOK_ATTEMPTS))
        step.runs += 1
        step.state = StepState.RUNNING
        timeout = playbook_timeout(run_input.timeout_seconds)
        started = workflow.now()
        try:
            if run_input.site:
                await self._site_served(run_input.site, timeout)
            result = await workflow.execute_activity_method(
                PlaybookActivities.run_playbook,
                run_input,
                task_queue=playbook_queue(workflow.info().task_queue, run_input.site),
                start_to_close_timeout=timeout + TIMEOUT_MARGIN,
                heartbeat_timeout=timedelta(seconds=30),
                retry_policy=PLAYBOOK_RETRY,
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                summary=f"step {index}: {run_input.playbook}",
            )
        except NoSiteWorker as missing:
            step.state = StepState.FAILED
            step.error = step.evidence = str(missing)
            step.failure_class = FailureClass.NO_WORKER
            self._status.error = f"step {index} ({run_input.playbook}) failed: {step.error}"
            return False
        except ActivityError as err:
            if is_cancelled_exception(err):
                step.state = StepState.CANCELLED
                metrics.step_ran(workflow.now() - started, "cancelled")
                raise
            step.state = StepState.FAILED
            metrics.step_ran(workflow.now() - started, "failed")
            step.error = describe(err)
            failed = result_from_details(err)
            if failed is not None:
                self._take_result(step, failed)
                step.failure_class, step.evidence = failed.failure_class or None, failed.evidence or None
            await self._analyse(index, run_input, failed)
            if self._status.plan is not None:
                await self._report_failure(self._status.plan.steps[index - 1].host_list)
            self._status.error = f"step {index} ({run_input.playbook}) failed: {step.error}"
            if not self._audit_events:  # else recorded with the decision it waits for
                await self._record()
            return False
        step.state = StepState.SUCCEEDED
        metrics.step_ran(workflow.now() - started, "succeeded")
        step.error = step.failure_class = step.evidence = None
        self._take_result(step, result)
        if not self._audit_events:  # else the step's fact goes with the next write
            await self._record()
        return True

    async def _site_served(self, site: str, longest: timedelta) -> None:
        """Wait, saying so in `status`, until a worker of `site` polls its queue; NoSiteWorker
        when none has for as long as the step may run (then an operator decides)."""
        queue = playbook_queue(workflow.info().task_queue, site)
        waited, wait = timedelta(0), SITE_WAIT_FIRST
        while not await workflow.execute_activity_method(
            SiteActivities.has_worker, queue, start_to_close_timeout=BOOKKEEPING_TIMEOUT, retry_policy=BOOKKEEPING_RETRY
        ):
            if waited >= longest:
                raise NoSiteWorker(f"no worker at site {site} (task queue {queue}) within {waited}")
            self._status.waiting_for = (
                f"a worker at site {site}: nothing polls task queue {queue}; start one with SIGNOFF_SITE={site}"
            )
            await workflow.sleep(wait, summary=f"waiting for a worker at site {site}")
            waited, wait = waited + wait, min(wait * 2, SITE_WAIT_MAX)
        self._status.waiting_for = None

    def _take_result(self, step: StepStatus, result: PlaybookResult) -> None:
        step.attempt = max(step.attempt, result.attempt)
        step.ok = result.progress.ok
        step.changed = result.progress.changed
        step.failed = result.progress.failed + result.progress.unreachable
        step.task_ids = [*step.task_ids, *(t.task_id for t in result.tasks)]
        self._tasks.extend(result.tasks)
        self._unrecorded_tasks.extend(result.tasks)
