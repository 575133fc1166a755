"""The handlers people and scripts reach ChangeRequestWorkflow through: the `status` query, and
`approve`, `reject` and `decide`, each as a signal and as a validated update.

A signal that is malformed or not allowed is refused, recorded in `status.refused` and changes
nothing; an update is refused the same way and the caller gets the reason as its error (a
validator's refusal never reaches history, so it is not recorded). Who may do what is
workflows.approval's to say.
"""

from __future__ import annotations

import dataclasses

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

from workflows.approval import Refused, authorize, authorize_operator, check_digest, identity_of
from workflows.identity import Identity
from workflows.payloads import decode_decision, now
from workflows.types import DECIDE_ACTIONS, ChangeRequestStatus, Decision, ErrorType, Phase, RefusedSignal, Verdict


class DecisionHandlers:
    """Mixed into ChangeRequestWorkflow, whose state these read and append to."""

    _status: ChangeRequestStatus
    _requester: Identity | None
    _deciding_step: int | None  # the failed step a `decide` is about, while one is awaited

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
            decision = decode_decision(kind, raw, step=self._deciding_step)
            if self._status.phase != Phase.PLANNING:
                self._authorize(decision)
        except Refused as refusal:
            raise ApplicationError(refusal.reason, type=ErrorType.DECISION_REFUSED, non_retryable=True) from None

    async def _apply(self, kind: Verdict, raw: RawValue) -> None:
        decision = decode_decision(kind, raw, step=self._deciding_step)
        # Policy arrives with the plan: a decision sent while planning waits for it. Only then
        # does the handler yield, so decisions are otherwise applied in arrival order.
        if self._status.phase == Phase.PLANNING:
            await workflow.wait_condition(lambda: self._status.phase != Phase.PLANNING)
            decision = dataclasses.replace(decision, step=self._deciding_step)
        self._authorize(decision)
        if decision.verdict == Verdict.APPROVE:
            self._status.approvals.append(decision)
        elif decision.verdict == Verdict.REJECT:
            self._status.rejection = decision
        else:
            self._status.decisions.append(decision)

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
        self._status.refused.append(RefusedSignal(name, refusal.who, refusal.reason, now()))
