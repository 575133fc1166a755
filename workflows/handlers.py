"""The handlers people and scripts reach ChangeRequestWorkflow through: the `status` query, and
`approve`, `reject` and `decide`, each as a signal and as a validated update.

A signal that is malformed or not allowed is refused, recorded in `status.refused` and changes
nothing; an update is refused the same way and the caller gets the reason as its error (a
validator's refusal never reaches history, so it is not recorded). Who may do what is
workflows.approval's to say.

Signed decisions (SIGNOFF_ALLOWED_SIGNERS): a signature is checked by an activity on the worker
(activities.signatures) and the handler waits for its answer; decisions are applied one at a
time, in arrival order, so a decision waiting for its check holds back the ones after it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows import metrics
from workflows.approval import (
    Refused,
    authorize,
    authorize_operator,
    check_digest,
    check_signed,
    identity_of,
    signature_id,
)
from workflows.identity import Identity
from workflows.payloads import decode_decision, describe, now
from workflows.signatures import VerifySignatureInput, decision_run
from workflows.types import (
    DECIDE_ACTIONS,
    ChangeRequestStatus,
    Decision,
    ErrorType,
    Phase,
    RefusedSignal,
    Verdict,
)

with workflow.unsafe.imports_passed_through():
    from activities.signatures import SignatureActivities

SIGNED_DECISIONS = "signed-decisions"  # workflow.patched: decisions in order, signatures checked
VERIFY_TIMEOUT = timedelta(seconds=10)
VERIFY_RETRY = RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=1))


class DecisionHandlers:
    """Mixed into ChangeRequestWorkflow, whose state these read and append to."""

    _status: ChangeRequestStatus
    _requester: Identity | None
    _deciding_step: int | None  # the failed step a `decide` is about, while one is awaited
    _decision_order: asyncio.Lock | None = None  # created on first use, in the workflow's event loop
    _show_inbox: Callable[[], None]  # workflows.waiting's, mixed into ChangeRequestWorkflow too

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

    @workflow.signal(name="decide")
    async def decide(self, raw: RawValue) -> None:
        await self._signal(Verdict.RETRY, raw)

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

    @workflow.update(name="decide")
    async def decide_update(self, raw: RawValue) -> ChangeRequestStatus:
        return await self._update(Verdict.RETRY, raw)

    @decide_update.validator
    def _validate_decide(self, raw: RawValue) -> None:
        self._validate(Verdict.RETRY, raw)

    # `kind` names the handler: APPROVE, REJECT, or RETRY standing for any `decide` payload.

    async def _signal(self, kind: Verdict, raw: RawValue) -> None:
        try:
            await self._apply(kind, raw)
        except Refused as refusal:
            self._refuse(kind, refusal)

    async def _update(self, kind: Verdict, raw: RawValue) -> ChangeRequestStatus:
        try:
            await self._apply(kind, raw)
        except Refused as refusal:
            self._refuse(kind, refusal)
            raise ApplicationError(refusal.reason, type=ErrorType.DECISION_REFUSED, non_retryable=True) from None
        return self._status

    def _validate(self, kind: Verdict, raw: RawValue) -> None:
        """Reject an update before it reaches history; a refusal here is not recorded."""
        try:
            decision, signature = decode_decision(kind, raw, step=self._deciding_step)
            if self._status.phase != Phase.PLANNING:
                self._authorize(decision)
                assert self._status.plan is not None
                check_signed(decision, signature, self._status.plan.policy, self._signed_so_far())
        except Refused as refusal:
            raise ApplicationError(refusal.reason, type=ErrorType.DECISION_REFUSED, non_retryable=True) from None

    async def _apply(self, kind: Verdict, raw: RawValue) -> None:
        decision, signature = decode_decision(kind, raw, step=self._deciding_step)
        if not workflow.patched(SIGNED_DECISIONS):
            await self._apply_in_order(decision, None)
            return
        if self._decision_order is None:
            self._decision_order = asyncio.Lock()
        async with self._decision_order:  # FIFO: decisions apply in the order they arrived
            await self._apply_in_order(decision, signature)

    async def _apply_in_order(self, decision: Decision, signature: str | None) -> None:
        # Policy arrives with the plan: a decision sent while planning waits for it.
        if self._status.phase == Phase.PLANNING:
            await workflow.wait_condition(lambda: self._status.phase != Phase.PLANNING)
            decision = dataclasses.replace(decision, step=self._deciding_step)
        self._authorize(decision)
        assert self._status.plan is not None
        policy = self._status.plan.policy
        if signature is not None or policy.signatures_required:
            check_signed(decision, signature, policy, self._signed_so_far())
            assert signature is not None
            assert decision.plan_digest is not None
            decision = await self._verified(decision, signature, decision.plan_digest)
            self._authorize(decision)  # the workflow may have moved on while the key was checked
        if decision.verdict == Verdict.APPROVE:
            self._status.approvals.append(decision)
            self._show_inbox()
        elif decision.verdict == Verdict.REJECT:
            self._status.rejection = decision
        else:
            self._status.decisions.append(decision)

    async def _verified(self, decision: Decision, signature: str, digest: str) -> Decision:
        """The decision with its signing key's fingerprint, or Refused. The answer is an activity
        result, so replay reads it from history and agrees."""
        who = decision.raw or decision.who
        try:
            result = await workflow.execute_activity_method(
                SignatureActivities.verify,
                VerifySignatureInput(
                    self._status.workflow_id,
                    str(decision.verdict),
                    digest,
                    decision.who,
                    signature,
                    self._run_of(decision),
                ),
                start_to_close_timeout=VERIFY_TIMEOUT,
                retry_policy=VERIFY_RETRY,
            )
        except ActivityError as err:
            raise Refused(who, f"the signature could not be checked: {describe(err)}") from None
        if not result.checked:
            assert self._status.plan is not None
            if self._status.plan.policy.signatures_required:  # a worker that lost its SIGNOFF_ALLOWED_SIGNERS
                raise Refused(who, f"signature not checked: {result.reason}")
            return dataclasses.replace(decision, signature_sha256=signature_id(signature))  # nothing asks for one
        if not result.verified:
            raise Refused(who, f"signature refused: {result.reason}")
        return dataclasses.replace(
            decision, key_fingerprint=result.key_fingerprint, signature_sha256=signature_id(signature)
        )

    def _run_of(self, decision: Decision) -> str | None:
        """The failed run a decide is about, which its signature may name (decision_run)."""
        if decision.verdict not in DECIDE_ACTIONS or decision.step is None:
            return None
        return decision_run(decision.step, self._status.steps[decision.step - 1].runs)

    def _signed_so_far(self) -> set[str]:
        status = self._status
        decided = [*status.approvals, *([status.rejection] if status.rejection else []), *status.decisions]
        return {d.signature_sha256 for d in decided if d.signature_sha256}

    def _authorize(self, decision: Decision) -> None:
        status = self._status
        who = identity_of(decision.raw or decision.who)
        assert self._requester is not None
        if decision.verdict in DECIDE_ACTIONS:
            if status.phase != Phase.AWAITING_DECISION:
                raise Refused(who.raw, f"no failed step awaits a decision (phase is {status.phase})")
            assert status.plan is not None
            check_digest(who, decision.plan_digest, status.plan.plan_digest)
            authorize_operator(who, requester=self._requester, policy=status.plan.policy)
            return
        if status.phase != Phase.AWAITING_APPROVAL:
            raise Refused(who.raw, f"not awaiting approval (phase is {status.phase})")
        assert status.plan is not None
        check_digest(who, decision.plan_digest, status.plan.plan_digest)
        authorize(
            decision.verdict, who, requester=self._requester, policy=status.plan.policy, approvals=status.approvals
        )

    def _refuse(self, kind: Verdict, refusal: Refused) -> None:
        name = "decide" if kind in DECIDE_ACTIONS else str(kind)
        workflow.logger.warning("refused %s from %s: %s", name, refusal.who, refusal.reason)
        metrics.refused(name)
        self._status.refused.append(RefusedSignal(name, refusal.who, refusal.reason, now()))
