"""Approval policy: who may approve or reject a plan, as a pure function of the workflow state.

Every name is compared as an `Identity` (workflows.identity): normalised, and look-alikes of
the requester, of an allowed approver or of someone who already approved count as that person.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence, Set

from workflows.identity import Identity, IdentityRefused, identify
from workflows.types import ApprovalPolicy, Decision, Verdict


class Refused(Exception):
    def __init__(self, who: str | None, reason: str) -> None:
        super().__init__(reason)
        self.who = who
        self.reason = reason


def identity_of(raw: str) -> Identity:
    try:
        return identify(raw)
    except IdentityRefused as err:
        raise Refused(raw, str(err)) from None


def authorize(
    verdict: Verdict,
    who: Identity,
    *,
    requester: Identity,
    policy: ApprovalPolicy,
    approvals: Sequence[Decision],
) -> None:
    """Raise Refused unless `who` may give `verdict` now."""
    allowed = [identify(name) for name in policy.approvers]
    is_requester = who.same_person(requester)
    if who.looks_like(requester) and not is_requester:
        raise Refused(who.raw, f"{who.raw!r} looks like the requester {requester.name!r}; refused as a look-alike name")
    if verdict == Verdict.APPROVE and is_requester:
        raise Refused(who.raw, f"{who.name} requested this change and cannot approve it (four eyes)")
    if allowed and not any(who.same_person(a) for a in allowed):
        close = next((a for a in allowed if who.looks_like(a)), None)
        if close is not None:
            raise Refused(who.raw, f"{who.raw!r} looks like approver {close.name!r} but is not that name")
        if verdict == Verdict.APPROVE or not is_requester:
            role = "an approver" if verdict == Verdict.APPROVE else "an approver nor the requester"
            raise Refused(who.raw, f"{who.name} is not {role} (approvers: {', '.join(a.name for a in allowed)})")
    if verdict != Verdict.APPROVE:
        return
    for decision in approvals:
        earlier = identify(decision.who)
        if who.same_person(earlier):
            raise Refused(who.raw, f"{who.name} has already approved")
        if who.looks_like(earlier):
            raise Refused(
                who.raw, f"{who.raw!r} looks like {earlier.name!r}, who already approved; refused as a look-alike"
            )


def check_digest(who: Identity, named: str | None, current: str) -> None:
    """A decision that names a plan decides on that plan only: if the plan now waiting is
    another (a re-plan, a changed playbook), the decision is refused."""
    if named is not None and named != current:
        raise Refused(
            who.raw,
            f"plan_digest {named} is not the plan awaiting a decision ({current or 'no digest'}): "
            "look at the plan again and decide on what is there now",
        )


def check_signed(decision: Decision, signature: str | None, policy: ApprovalPolicy, used: Set[str]) -> None:
    """What can be said of a signature before the worker checks it: present when the policy
    requires one, over a named plan, and not used before in this request."""
    who = decision.raw or decision.who
    if signature is None:
        if policy.signatures_required:
            raise Refused(
                who,
                "unsigned: this request requires signed decisions (SIGNOFF_ALLOWED_SIGNERS); "
                "sign with `signoff approve --key` or scripts/approve.sh",
            )
        return
    if decision.plan_digest is None:
        raise Refused(who, "a signed decision must name the plan_digest it signs")
    if signature_id(signature) in used:
        raise Refused(who, "this signature was already used in this request: a signed decision counts once")


def signature_id(signature: str) -> str:
    """How a signature is remembered in the status: its hash, not the blob."""
    return "sha256:" + hashlib.sha256(signature.encode()).hexdigest()


def authorize_operator(who: Identity, *, requester: Identity, policy: ApprovalPolicy) -> None:
    """Who may retry, skip or abort a failed step: the allowlisted approvers when there is an
    allowlist, otherwise anyone but the requester (four eyes holds after approval too)."""
    if who.same_person(requester) or who.looks_like(requester):
        raise Refused(who.raw, f"{who.name} requested this change and cannot decide on its failed step (four eyes)")
    allowed = [identify(name) for name in policy.approvers]
    if allowed and not any(who.same_person(a) for a in allowed):
        raise Refused(
            who.raw, f"{who.name} may not decide: not an approver (approvers: {', '.join(a.name for a in allowed)})"
        )


def check_policy(policy: ApprovalPolicy) -> list[str]:
    """Problems that make a policy impossible to meet, for the worker to refuse at start."""
    problems = []
    for name in policy.approvers:
        try:
            identify(name)
        except IdentityRefused as err:
            problems.append(f"approver {name!r}: {err}")
    distinct = len({identify(n).skeleton for n in policy.approvers if _valid(n)})
    if policy.approvers and distinct < policy.required_approvals:
        problems.append(
            f"{policy.required_approvals} approvals are required but only {distinct} distinct approvers are allowed"
        )
    return problems


def _valid(name: str) -> bool:
    try:
        identify(name)
    except IdentityRefused:
        return False
    return True
