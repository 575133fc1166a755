"""ChangeRequestWorkflow: request -> plan -> approval -> playbooks -> audit.

Deterministic orchestration only. Input and signal payloads arrive as `RawValue` and are
decoded here, because the SDK's own decoding fails outside workflow code: a bad workflow
argument retries the workflow task forever and a bad signal payload is silently dropped.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy, SearchAttributeKey
from temporalio.converter import value_to_type
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception
from temporalio.workflow import ActivityCancellationType

from workflows.types import (
    MAX_INPUT_BYTES,
    NOT_YET_PLANNED,
    WORKFLOW_TYPE,
    ApproveInput,
    AuditRecord,
    ChangeRequestInput,
    ChangeRequestResult,
    ChangeRequestStatus,
    Decision,
    ErrorType,
    InvalidInput,
    Phase,
    Plan,
    PlanInput,
    PlaybookResult,
    RefusedSignal,
    RejectInput,
    Risk,
    RunPlaybookInput,
    StepPreview,
    StepState,
    StepStatus,
    TaskRecord,
    Verdict,
    parse_approve,
    parse_input,
    parse_reject,
)

from workflows.approval import Refused, authorize, identity_of
from workflows.identity import Identity

with workflow.unsafe.imports_passed_through():
    from activities.audit_db import AuditDbActivities
    from activities.audit_git import AuditGitActivities
    from activities.catalog import PlanningActivities
    from activities.playbooks import PlaybookActivities

PHASE_ATTR = SearchAttributeKey.for_keyword("SignoffPhase")
REQUESTER_ATTR = SearchAttributeKey.for_keyword("SignoffRequester")
SERVICES_ATTR = SearchAttributeKey.for_keyword_list("SignoffServices")
SEARCH_ATTRIBUTES = (PHASE_ATTR, REQUESTER_ATTR, SERVICES_ATTR)

# Bounded everywhere: an outage of PostgreSQL or git fails the workflow after ~30 s of
# retries instead of sitting in a retry loop nobody sees.
_BOOKKEEPING_TIMEOUT = timedelta(seconds=60)
_BOOKKEEPING_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=6)
_PREVIEW_TIMEOUT = timedelta(minutes=10)
_PLAYBOOK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    maximum_attempts=3,
    non_retryable_error_types=[ErrorType.PLAYBOOK_FAILED, ErrorType.PLAYBOOK_ERROR],
)


@workflow.defn(name=WORKFLOW_TYPE)
class ChangeRequestWorkflow:
    def __init__(self) -> None:
        self._status = ChangeRequestStatus(workflow_id=workflow.info().workflow_id)
        self._tasks: list[TaskRecord] = []
        self._unrecorded_tasks: list[TaskRecord] = []
        self._requester: Identity | None = None

    @workflow.run
    async def run(self, raw: RawValue = None) -> ChangeRequestResult:  # type: ignore[assignment]
        request = self._decode_input(raw)
        # Which vars are secret is known once the plan is: until then no value is shown.
        self._status.request = dataclasses.replace(request, vars={k: NOT_YET_PLANNED for k in request.vars})
        workflow.upsert_search_attributes(
            [REQUESTER_ATTR.value_set(request.requester), PHASE_ATTR.value_set(Phase.PLANNING)]
        )
        try:
            await self._execute(request)
        except ActivityError as err:
            if is_cancelled_exception(err):
                await self._cancelled()
            self._status.error = _describe(err)
            self._set_phase(Phase.FAILED)
        except asyncio.CancelledError:
            await self._cancelled()
        await self._audit()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return ChangeRequestResult(
            outcome=self._status.phase,
            steps=self._status.steps,
            audit_commit=self._status.audit_commit,
            error=self._status.error,
        )

    # --- the story ------------------------------------------------------------------------

    async def _execute(self, request: ChangeRequestInput) -> None:
        plan = await workflow.execute_activity_method(
            PlanningActivities.plan_change,
            PlanInput(request=request.request, inventory=request.inventory, vars=request.vars),
            start_to_close_timeout=_BOOKKEEPING_TIMEOUT,
            retry_policy=_BOOKKEEPING_RETRY,
        )
        self._status.plan = plan
        self._status.steps = [StepStatus(index=i, playbook=s.playbook) for i, s in enumerate(plan.steps, 1)]
        if plan.vars:  # the approver sees every value but a secret's, which shows as a short hash
            shown = {v.name: v.shown if v.secret else request.vars[v.name] for v in plan.vars}
            self._status.request = dataclasses.replace(request, vars=shown)
        workflow.upsert_search_attributes([SERVICES_ATTR.value_set(plan.services)])
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
        await self._record()
        if not await self._approved(plan):
            return
        self._set_phase(Phase.EXECUTING)
        await self._record()
        for index, step in enumerate(plan.steps, 1):
            if not await self._run_step(index, self._run_input(index, plan, request)):
                self._set_phase(Phase.FAILED)
                return
        self._set_phase(Phase.SUCCEEDED)

    async def _preview(self, plan: Plan, request: ChangeRequestInput) -> Plan:
        """Every step in check mode, side by side, before anyone is asked to approve."""

        async def one(index: int) -> StepPreview:
            run_input = self._run_input(index, plan, request)
            try:
                return await workflow.execute_activity_method(
                    PlaybookActivities.preview_playbook,
                    run_input,
                    start_to_close_timeout=_PREVIEW_TIMEOUT,
                    heartbeat_timeout=timedelta(seconds=30),
                    retry_policy=RetryPolicy(maximum_attempts=2),
                    cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                    summary=f"preview step {index}: {run_input.playbook}",
                )
            except ActivityError as err:
                if is_cancelled_exception(err):
                    raise
                return StepPreview(index, run_input.playbook, available=False, reason=_describe(err))

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
        )

    async def _approved(self, plan: Plan) -> bool:
        policy = plan.policy
        if policy.auto_approve_risk == Risk.LOW and plan.risk == Risk.LOW:
            self._status.approvals.append(
                Decision("signoff", Verdict.APPROVE, "auto-approved: every step is low risk", _now())
            )
            return True
        try:
            await workflow.wait_condition(
                lambda: self._status.rejection is not None
                or len(self._status.approvals) >= policy.required_approvals,
                timeout=timedelta(seconds=policy.timeout_seconds),
                timeout_summary="approval timeout",
            )
        except asyncio.TimeoutError:
            self._status.error = f"no decision within {timedelta(seconds=policy.timeout_seconds)}"
            self._set_phase(Phase.EXPIRED)
            return False
        if self._status.rejection is not None:
            self._set_phase(Phase.REJECTED)
            return False
        return True

    async def _run_step(self, index: int, run_input: RunPlaybookInput) -> bool:
        step = self._status.steps[index - 1]
        playbook = run_input.playbook
        step.state = StepState.RUNNING
        try:
            result = await workflow.execute_activity_method(
                PlaybookActivities.run_playbook,
                run_input,
                start_to_close_timeout=timedelta(hours=2),
                heartbeat_timeout=timedelta(seconds=30),
                retry_policy=_PLAYBOOK_RETRY,
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                summary=f"step {index}: {playbook}",
            )
        except ActivityError as err:
            if is_cancelled_exception(err):
                step.state = StepState.CANCELLED
                raise
            step.state = StepState.FAILED
            step.error = _describe(err)
            failed = _result_from_details(err)
            if failed is not None:
                self._take_result(step, failed)
            self._status.error = f"step {index} ({playbook}) failed: {step.error}"
            await self._record()
            return False
        step.state = StepState.SUCCEEDED
        self._take_result(step, result)
        await self._record()
        return True

    def _take_result(self, step: StepStatus, result: PlaybookResult) -> None:
        step.attempt = result.attempt
        step.ok = result.progress.ok
        step.changed = result.progress.changed
        step.failed = result.progress.failed + result.progress.unreachable
        step.task_ids = [t.task_id for t in result.tasks]
        self._tasks.extend(result.tasks)
        self._unrecorded_tasks.extend(result.tasks)

    async def _cancelled(self) -> None:
        """Audit a cancellation, then let Temporal mark the execution cancelled."""
        self._status.error = "cancelled"
        for step in self._status.steps:
            if step.state in (StepState.PENDING, StepState.RUNNING):
                step.state = StepState.CANCELLED
        self._set_phase(Phase.CANCELLED)
        await self._audit()
        raise asyncio.CancelledError("change request cancelled")

    # --- audit ----------------------------------------------------------------------------

    async def _record(self) -> None:
        tasks, self._unrecorded_tasks = self._unrecorded_tasks, []
        await workflow.execute_activity_method(
            AuditDbActivities.record,
            AuditRecord(status=self._status, tasks=tasks),
            start_to_close_timeout=_BOOKKEEPING_TIMEOUT,
            retry_policy=_BOOKKEEPING_RETRY,
        )

    async def _audit(self) -> None:
        """Commit the outcome to git, then record the final row. A failed commit is itself
        recorded: the database never keeps a request in a phase that is not final."""
        try:
            commit = await workflow.execute_activity_method(
                AuditGitActivities.commit_audit,
                AuditRecord(status=self._status, tasks=self._tasks),
                start_to_close_timeout=_BOOKKEEPING_TIMEOUT,
                retry_policy=_BOOKKEEPING_RETRY,
            )
            self._status.audit_commit = commit.sha
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise
            failure = f"git audit commit failed: {_describe(err)}"
            self._status.error = f"{self._status.error}; {failure}" if self._status.error else failure
        await self._record()

    # --- approvals ------------------------------------------------------------------------

    @workflow.query
    def status(self) -> ChangeRequestStatus:
        # Never raises: everything in the status was validated (shape, depth, size) on the way in.
        return self._status

    @workflow.signal(name="approve")
    async def approve(self, raw: RawValue) -> None:
        await self._signal(Verdict.APPROVE, raw)

    @workflow.signal(name="reject")
    async def reject(self, raw: RawValue) -> None:
        await self._signal(Verdict.REJECT, raw)

    @workflow.update(name="approve")
    async def approve_update(self, raw: RawValue) -> ChangeRequestStatus:
        return await self._update(Verdict.APPROVE, raw)

    @approve_update.validator
    def _validate_approve(self, raw: RawValue) -> None:
        self._validate(Verdict.APPROVE, raw)

    @workflow.update(name="reject")
    async def reject_update(self, raw: RawValue) -> ChangeRequestStatus:
        return await self._update(Verdict.REJECT, raw)

    @reject_update.validator
    def _validate_reject(self, raw: RawValue) -> None:
        self._validate(Verdict.REJECT, raw)

    async def _signal(self, verdict: Verdict, raw: RawValue) -> None:
        try:
            await self._decide(verdict, raw)
        except Refused as refusal:
            self._refuse(verdict, refusal)

    async def _update(self, verdict: Verdict, raw: RawValue) -> ChangeRequestStatus:
        try:
            await self._decide(verdict, raw)
        except Refused as refusal:
            self._refuse(verdict, refusal)
            raise ApplicationError(refusal.reason, type=ErrorType.DECISION_REFUSED, non_retryable=True) from None
        return self._status

    def _validate(self, verdict: Verdict, raw: RawValue) -> None:
        """Reject an update before it reaches history; a refusal here is not recorded."""
        try:
            decision = self._parse_decision(verdict, raw)
            if self._status.phase != Phase.PLANNING:
                self._authorize(decision)
        except Refused as refusal:
            raise ApplicationError(refusal.reason, type=ErrorType.DECISION_REFUSED, non_retryable=True) from None

    async def _decide(self, verdict: Verdict, raw: RawValue) -> None:
        decision = self._parse_decision(verdict, raw)
        # Policy arrives with the plan: a decision sent while planning waits for it. Only then
        # does the handler yield, so decisions are otherwise applied in arrival order.
        if self._status.phase == Phase.PLANNING:
            await workflow.wait_condition(lambda: self._status.phase != Phase.PLANNING)
        self._authorize(decision)
        if verdict == Verdict.APPROVE:
            self._status.approvals.append(decision)
        else:
            self._status.rejection = decision

    def _parse_decision(self, verdict: Verdict, raw: RawValue) -> Decision:
        try:
            if len(raw.payload.data) > MAX_INPUT_BYTES:
                raise InvalidInput("", f"larger than {MAX_INPUT_BYTES} bytes")
            value = workflow.payload_converter().from_payload(raw.payload)
            if verdict == Verdict.APPROVE:
                approval: ApproveInput = parse_approve(value)
                who, note = approval.approver, approval.comment
            else:
                rejection: RejectInput = parse_reject(value)
                who, note = rejection.approver, rejection.reason
        except InvalidInput as err:
            raise Refused(None, f"invalid {verdict} payload: {err}") from None
        except Exception as err:  # the payload is not JSON at all
            raise Refused(None, f"invalid {verdict} payload: not decodable JSON ({type(err).__name__})") from None
        identity = identity_of(who)
        return Decision(identity.name, verdict, note, _now(), raw=who if who != identity.name else None)

    def _authorize(self, decision: Decision) -> None:
        status = self._status
        if status.phase != Phase.AWAITING_APPROVAL:
            raise Refused(decision.raw or decision.who, f"not awaiting approval (phase is {status.phase})")
        assert status.plan is not None and self._requester is not None
        authorize(
            decision.verdict,
            identity_of(decision.raw or decision.who),
            requester=self._requester,
            policy=status.plan.policy,
            approvals=status.approvals,
        )

    def _refuse(self, verdict: Verdict, refusal: Refused) -> None:
        workflow.logger.warning("refused %s from %s: %s", verdict, refusal.who, refusal.reason)
        self._status.refused.append(RefusedSignal(str(verdict), refusal.who, refusal.reason, _now()))

    # --- helpers --------------------------------------------------------------------------

    def _decode_input(self, raw: RawValue | None) -> ChangeRequestInput:
        """Any problem with the input ends the workflow non-retryably, naming it: an exception
        escaping here would instead fail the workflow task, which Temporal retries forever."""
        if raw is None:
            raise _invalid_input("input is required: one JSON object with request and requester")
        if len(raw.payload.data) > MAX_INPUT_BYTES:
            raise _invalid_input(f"input is larger than {MAX_INPUT_BYTES} bytes")
        try:
            value = workflow.payload_converter().from_payload(raw.payload)
        except RecursionError:
            raise _invalid_input("input is not valid JSON: nested too deeply") from None
        except Exception as err:
            raise _invalid_input(f"input is not valid JSON: {err}") from None
        try:
            request = parse_input(value)
            self._requester = identity_of(request.requester)
        except InvalidInput as err:
            raise _invalid_input(f"invalid input: {err}") from None
        except Refused as err:
            raise _invalid_input(f"invalid input: requester: {err.reason}") from None
        except Exception as err:  # a bug in validation must not loop the workflow task either
            raise _invalid_input(f"invalid input: {type(err).__name__}: {err}") from None
        if self._requester.name != request.requester:
            self._status.requester_raw = request.requester
        return dataclasses.replace(request, requester=self._requester.name)

    def _set_phase(self, phase: Phase) -> None:
        self._status.phase = phase
        workflow.upsert_search_attributes([PHASE_ATTR.value_set(phase)])


def _invalid_input(message: str) -> ApplicationError:
    return ApplicationError(message, type=ErrorType.INVALID_INPUT, non_retryable=True)


def _now() -> str:
    return workflow.now().isoformat()


def _describe(err: ActivityError) -> str:
    cause = err.cause
    return cause.message if isinstance(cause, ApplicationError) else str(cause or err)


def _result_from_details(err: ActivityError) -> PlaybookResult | None:
    """A failed playbook attaches its PlaybookResult so the tasks it ran are still audited."""
    cause = err.cause
    if not isinstance(cause, ApplicationError) or not cause.details:
        return None
    details: Any = cause.details[0]
    try:
        return value_to_type(PlaybookResult, details)
    except (TypeError, ValueError, KeyError):
        return None
