"""ChangeRequestWorkflow: request -> plan -> approval -> playbooks -> audit.

Deterministic orchestration only. Payloads are decoded and validated in workflows.payloads,
approval policy lives in workflows.approval; this module is the story and its handlers.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy, VersioningBehavior
from temporalio.exceptions import ActivityError, is_cancelled_exception
from temporalio.workflow import ActivityCancellationType

from workflows import metrics
from workflows.audit import AuditLog
from workflows.auditing import Auditing
from workflows.digest import plan_digest
from workflows.handlers import DecisionHandlers
from workflows.identity import Identity
from workflows.inbox import PHASE_ATTR, REQUESTER_ATTR, SEARCH_ATTRIBUTES, SERVICES_ATTR, keyword_list
from workflows.locking import HostLocks
from workflows.names import playbook_queue
from workflows.options import (
    BOOKKEEPING_TIMEOUT,
    PLANNING_RETRY,
    PREVIEW_TIMEOUT,
    SITE_PREVIEW_WAIT,
    over_budget,
)
from workflows.payloads import decode_input, describe, now
from workflows.runs import RunPlaybookInput, TaskRecord
from workflows.steps import StepRuns
from workflows.types import (
    NOT_YET_PLANNED,
    WORKFLOW_TYPE,
    ApprovalPolicy,
    ChangeRequestInput,
    ChangeRequestResult,
    ChangeRequestStatus,
    Decision,
    Phase,
    Plan,
    PlanInput,
    Risk,
    StepPreview,
    StepState,
    StepStatus,
    Verdict,
)
from workflows.waiting import Waiting

with workflow.unsafe.imports_passed_through():
    from activities.catalog import PlanningActivities
    from activities.playbooks import PlaybookActivities

__all__ = ["SEARCH_ATTRIBUTES", "ChangeRequestWorkflow"]

T = TypeVar("T")


# How a request behaves under worker versioning (SIGNOFF_DEPLOYMENT_NAME): auto-upgrade.
# Requests wait days for approval; a waiting request moves to the current version on its next
# workflow task, so old workers need not run until it ends. That is safe because every change
# to this code keeps recorded histories replaying (workflow.patched, tests/test_replay.py).
# Versioned workers apply it as their default (workers.worker.deployment_config): a behaviour
# on @workflow.defn would be sent by unversioned workers too, and Temporal refuses it from them.
VERSIONING_BEHAVIOR = VersioningBehavior.AUTO_UPGRADE


@workflow.defn(name=WORKFLOW_TYPE)
class ChangeRequestWorkflow(DecisionHandlers, HostLocks, Auditing, StepRuns, Waiting):
    def __init__(self) -> None:
        self._status = ChangeRequestStatus(workflow_id=workflow.info().workflow_id)
        self._tasks: list[TaskRecord] = []
        self._unrecorded_tasks: list[TaskRecord] = []
        self._requester: Identity | None = None
        self._deciding_step: int | None = None
        self._recording: asyncio.Task[None] | None = None
        self._locks: list[str] = []  # hosts asked for, to give back when the request ends
        self._granted: set[str] = set()
        self._audit_log = AuditLog()
        self._audit_events = False  # facts appended to the chained log, not whole statuses
        self._inbox = False  # who it waits for, in search attributes (else the phase only)
        self._notifications: list[asyncio.Task[None]] = []

    @workflow.run
    async def run(self, raw: RawValue = None) -> ChangeRequestResult:  # type: ignore[assignment]
        self._audit_events = workflow.patched("audit-events")
        self._inbox = workflow.patched("inbox-attributes")
        request, self._requester = decode_input(raw)
        if self._requester.raw != request.requester:
            self._status.requester_raw = self._requester.raw
        # Which vars are secret is known once the plan is: until then no value is shown.
        self._status.request = dataclasses.replace(request, vars=dict.fromkeys(request.vars, NOT_YET_PLANNED))
        workflow.upsert_search_attributes(
            [REQUESTER_ATTR.value_set(request.requester), PHASE_ATTR.value_set(Phase.PLANNING)]
        )
        metrics.phase_entered(Phase.PLANNING)
        try:
            await self._execute(request)
        except ActivityError as err:
            if is_cancelled_exception(err):
                await self._cancelled()
            self._status.error = describe(err)
            self._set_phase(Phase.FAILED)
        except asyncio.CancelledError:
            await self._cancelled()
        # The outcome is decided: a cancel arriving now is too late to change it, so phase,
        # database and git always agree.
        await _shielded(self._finish())
        return ChangeRequestResult(
            outcome=self._status.phase,
            steps=self._status.steps,
            audit_commit=self._status.audit_commit,
            error=self._status.error,
        )

    async def _finish(self) -> None:
        await self._release_locks()
        await self._audit()
        await workflow.wait_condition(workflow.all_handlers_finished)

    # --- the story ------------------------------------------------------------------------

    async def _execute(self, request: ChangeRequestInput) -> None:
        plan = await workflow.execute_activity_method(
            PlanningActivities.plan_change,
            PlanInput(request=request.request, inventory=request.inventory, vars=request.vars),
            start_to_close_timeout=BOOKKEEPING_TIMEOUT,
            retry_policy=PLANNING_RETRY,
        )
        if plan.steps:
            plan = dataclasses.replace(plan, plan_digest=plan_digest(plan, request.vars))
        self._status.plan = plan
        self._status.steps = [StepStatus(index=i, playbook=s.playbook) for i, s in enumerate(plan.steps, 1)]
        if plan.vars:  # the approver sees every value but a secret's, which shows as a short hash
            shown = {v.name: v.shown if v.secret else request.vars[v.name] for v in plan.vars}
            self._status.request = dataclasses.replace(request, vars=shown)
        workflow.upsert_search_attributes([SERVICES_ATTR.value_set(keyword_list(plan.services))])
        if plan.budget and plan.budget.max_steps and len(plan.steps) > plan.budget.max_steps:
            plan = dataclasses.replace(
                plan, error=f"over budget: {len(plan.steps)} steps, at most {plan.budget.max_steps} (SIGNOFF_MAX_STEPS)"
            )
        if plan.error or not plan.steps:
            self._status.error = plan.error or plan.unmatched or "no playbook matches the request"
            self._set_phase(Phase.FAILED)
            return
        if plan.check_mode_preview and workflow.patched("check-mode-preview"):
            plan = await self._preview(plan, request)
        if request.dry_run:
            self._set_phase(Phase.PLANNED)
            return
        self._set_phase(Phase.AWAITING_APPROVAL)
        if plan.policy.auto_approve_risk != Risk.LOW or plan.risk != Risk.LOW:
            self._notify(None)
        await self._record()
        if not await self._approved(plan):
            return
        self._set_phase(Phase.EXECUTING)
        if workflow.patched("inventory-locks"):
            await self._lock_hosts(plan)
        if workflow.patched("record-beside-playbook"):
            # The "executing" row is written while the first playbook starts, not before it.
            self._recording = asyncio.create_task(self._write_record())
        else:
            await self._record()
        self._set_phase(await self._run_steps(plan, request))

    async def _preview(self, plan: Plan, request: ChangeRequestInput) -> Plan:
        """Every step in check mode, side by side, before anyone is asked to approve."""

        async def one(index: int) -> StepPreview:
            run_input = self._run_input(index, plan, request)
            try:
                return await workflow.execute_activity_method(
                    PlaybookActivities.preview_playbook,
                    run_input,
                    task_queue=playbook_queue(workflow.info().task_queue, run_input.site),
                    # a site with no worker: no preview, rather than a plan waiting for one
                    schedule_to_start_timeout=SITE_PREVIEW_WAIT if run_input.site else None,
                    start_to_close_timeout=PREVIEW_TIMEOUT,
                    heartbeat_timeout=timedelta(seconds=30),
                    retry_policy=RetryPolicy(maximum_attempts=2),
                    cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                    summary=f"preview step {index}: {run_input.playbook}",
                )
            except ActivityError as err:
                if is_cancelled_exception(err):
                    raise
                return StepPreview(index, run_input.playbook, available=False, reason=describe(err))

        previews = await asyncio.gather(*(one(i) for i in range(1, len(plan.steps) + 1)))
        plan = dataclasses.replace(plan, preview=list(previews))
        self._status.plan = plan
        return plan

    def _run_input(self, index: int, plan: Plan, request: ChangeRequestInput) -> RunPlaybookInput:
        step = plan.steps[index - 1]
        # A plan recorded by an earlier release runs as it was approved.
        step_vars = {name: request.vars[name] for name in step.vars} if plan.version >= 2 else request.vars
        limit = step.limit if plan.version >= 3 else request.inventory
        return RunPlaybookInput(
            workflow_id=self._status.workflow_id,
            step=index,
            playbook=step.playbook,
            limit=limit,
            vars=step_vars,
            secret_vars=[v.name for v in plan.vars if v.secret],
            timeout_seconds=step.timeout_seconds,
            idle_timeout_seconds=step.idle_timeout_seconds,
            site=step.site,
        )

    async def _approved(self, plan: Plan) -> bool:
        policy = plan.policy
        if policy.auto_approve_risk == Risk.LOW and plan.risk == Risk.LOW:
            self._status.approvals.append(
                Decision("signoff", Verdict.APPROVE, "auto-approved: every step is low risk", now())
            )
            return True
        self._status.waiting_for = f"{policy.required_approvals} approval(s)"
        since = workflow.now()
        collected = False
        try:
            await workflow.wait_condition(
                lambda: self._status.rejection is not None or len(self._status.approvals) >= policy.required_approvals,
                timeout=timedelta(seconds=policy.timeout_seconds),
                timeout_summary="approval timeout",
            )
        except TimeoutError:
            self._status.error = f"no decision within {timedelta(seconds=policy.timeout_seconds)}"
            self._set_phase(Phase.EXPIRED)
            return False
        except GeneratorExit:
            # Closed by the garbage collector, outside the workflow's event loop: a run evicted from
            # a worker's cache. The wait has not ended (the run goes on where it is replayed), and
            # workflow calls here would raise into whatever Python code the collector interrupted.
            collected = True
            raise
        finally:
            if not collected:
                self._end_approval_wait(since, policy)
        if self._status.rejection is not None:
            self._set_phase(Phase.REJECTED)
            return False
        return True

    def _end_approval_wait(self, since: datetime, policy: ApprovalPolicy) -> None:
        self._status.waiting_for = None
        self._stop_notifying()
        metrics.approval_waited(workflow.now() - since)
        # The wait as a span, when the worker traces (workers.tracing gives this function).
        # Not while replaying, so once; it adds no command, so histories replay as before.
        span = workflow.extern_functions().get("signoff_timed_span")
        if span is not None and not workflow.unsafe.is_replaying():
            outcome = (
                "rejected"
                if self._status.rejection is not None
                else "approved"
                if len(self._status.approvals) >= policy.required_approvals
                else "expired"
                if self._status.phase == Phase.EXPIRED
                else "cancelled"
            )
            attributes = {"signoff.outcome": outcome, "signoff.approvals": len(self._status.approvals)}
            span("approval wait", since, workflow.now(), attributes)

    async def _run_steps(self, plan: Plan, request: ChangeRequestInput) -> Phase:
        """Each step in order. A failed step waits for an operator: retry runs it again, skip
        goes on (the request ends `partial`), abort or no decision in time ends it `failed`."""
        decisions = workflow.patched("operator-decisions")
        skipped = False
        started = workflow.now()
        for index in range(1, len(plan.steps) + 1):
            while True:
                over = over_budget(plan, self._status.steps, workflow.now() - started)
                if over:
                    self._status.error = f"over budget: {over}; stopped before step {index}"
                    return Phase.FAILED
                if await self._run_step(index, self._run_input(index, plan, request)):
                    break
                if not decisions:
                    return Phase.FAILED
                action = await self._decision_on(index, plan)
                if action == Verdict.SKIP:
                    self._status.steps[index - 1].state = StepState.SKIPPED
                    skipped = True
                    break
                if action != Verdict.RETRY:
                    return Phase.FAILED
        return Phase.PARTIAL if skipped else Phase.SUCCEEDED

    async def _decision_on(self, index: int, plan: Plan) -> Verdict:
        step = self._status.steps[index - 1]
        timeout = timedelta(seconds=plan.policy.decision_timeout_seconds)
        seen = len(self._status.decisions)  # before yielding: a decision may arrive while recording
        self._deciding_step = index
        self._status.waiting_for = f"a decision on step {index} ({step.playbook}): retry, skip or abort"
        self._set_phase(Phase.AWAITING_DECISION)
        self._notify(index)
        await self._record()
        try:
            await workflow.wait_condition(
                lambda: len(self._status.decisions) > seen, timeout=timeout, timeout_summary="decision timeout"
            )
            action = self._status.decisions[-1].verdict
        except TimeoutError:
            action = Verdict.ABORT
            self._status.decisions.append(
                Decision("signoff", action, f"no decision within {timeout}", now(), step=index)
            )
        self._deciding_step = None
        self._status.waiting_for = None
        self._stop_notifying()
        if action == Verdict.ABORT:
            self._status.error = f"{self._status.error}; aborted: {self._status.decisions[-1].note or 'by decision'}"
            return action
        self._status.error = None  # the step keeps its own error
        self._set_phase(Phase.EXECUTING)
        return action

    async def _cancelled(self) -> None:
        """Audit a cancellation, then let Temporal mark the execution cancelled."""
        self._status.error = "cancelled"
        self._status.waiting_for = None
        for step in self._status.steps:
            if step.state in (StepState.PENDING, StepState.RUNNING):
                step.state = StepState.CANCELLED
        self._set_phase(Phase.CANCELLED)
        await self._release_locks()
        await self._audit()
        raise asyncio.CancelledError("change request cancelled")

    def _set_phase(self, phase: Phase) -> None:
        self._status.phase = phase
        workflow.upsert_search_attributes([PHASE_ATTR.value_set(phase)])
        metrics.phase_entered(phase)
        self._show_inbox()


async def _shielded(work: Awaitable[T]) -> T:
    """Run `work` to its end even if the workflow is cancelled meanwhile."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        return await task
