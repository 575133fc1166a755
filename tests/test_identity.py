"""Names compared as people (workflows.identity, workflows.approval): the look-alikes that once
passed four eyes and quorum are refused, without Temporal."""

from __future__ import annotations

import pytest

from workflows.approval import Refused, authorize, check_policy
from workflows.identity import IdentityRefused, identify
from workflows.types import ApprovalPolicy, Decision, Verdict

# The requester `alice` once approved her own request under each of these names.
ALICE_LOOKALIKES = [
    "\u0430lice",  # Cyrillic а
    "\uff41\uff4c\uff49\uff43\uff45",  # fullwidth
    "alice\u200b",  # zero-width space
    "\u2060alice",  # word joiner
    "al\u00adice",  # soft hyphen
    "alic\u00e9",  # é
    "ALICE",
    " Alice ",
]
OPEN = ApprovalPolicy(approvers=[], required_approvals=2)


def approve(name: str, policy: ApprovalPolicy = OPEN, approvals: list[Decision] | None = None) -> None:
    try:
        who = identify(name)
    except IdentityRefused as err:
        raise Refused(name, str(err)) from None
    authorize(Verdict.APPROVE, who, requester=identify("alice"), policy=policy, approvals=approvals or [])


@pytest.mark.parametrize("name", ALICE_LOOKALIKES, ids=ascii)
def test_the_requester_cannot_approve_under_a_lookalike_name(name: str) -> None:
    with pytest.raises(Refused):
        approve(name)


@pytest.mark.parametrize(
    ("name", "normalised"),
    [
        ("Bob", "bob"),
        ("\uff42\uff4f\uff42", "bob"),
        ("Jos\u00e9", "jos\u00e9"),
        ("\u0430\u043b\u0438\u0441\u0430", "\u0430\u043b\u0438\u0441\u0430"),
    ],
    ids=ascii,
)
def test_names_normalise_with_precis_username_case_mapped(name: str, normalised: str) -> None:
    assert identify(name).name == normalised


@pytest.mark.parametrize("name", ["", "a b", "\u01c5", "x" * 257, "b\u043eb", "bob\u200d"], ids=ascii)
def test_names_the_profile_or_the_script_check_refuses(name: str) -> None:
    with pytest.raises(IdentityRefused):
        identify(name)


def test_a_lookalike_of_someone_who_approved_does_not_count_twice() -> None:
    bob = Decision("bob", Verdict.APPROVE, None, "t")

    for second in ("BOB", "b\u00f6b", "\uff42\uff4f\uff42"):
        with pytest.raises(Refused):
            approve(second, approvals=[bob])
    approve("carol", approvals=[bob])


def test_allowlist_matches_normalised_names_and_refuses_lookalikes() -> None:
    policy = ApprovalPolicy(approvers=["Bob", "carol"], required_approvals=1)

    approve("bob", policy)
    approve("CAROL", policy)
    for name in ("b\u00f6b", "mallory", "car0l"):
        with pytest.raises(Refused):
            approve(name, policy)


def test_the_requester_may_still_withdraw_but_a_lookalike_may_not() -> None:
    policy = ApprovalPolicy(approvers=["bob"], required_approvals=1)
    requester = identify("alice")

    authorize(Verdict.REJECT, identify("Alice"), requester=requester, policy=policy, approvals=[])
    with pytest.raises(Refused, match="look-alike"):
        authorize(Verdict.REJECT, identify("alic\u00e9"), requester=requester, policy=policy, approvals=[])


def test_a_policy_whose_quorum_the_allowlist_cannot_meet_is_reported() -> None:
    assert check_policy(ApprovalPolicy(approvers=["bob", "carol"], required_approvals=2)) == []
    assert "only 1 distinct" in check_policy(ApprovalPolicy(approvers=["bob", "BOB"], required_approvals=2))[0]
    assert "mixes look-alike" in check_policy(ApprovalPolicy(approvers=["b\u043eb"], required_approvals=1))[0]
