"""Attesting keys (DESIGN.md section 3, signed decisions): an allowed_signers line whose
principals are an OpenSSH pattern list signs for everyone it covers, as the web inbox's key does
for the people it has authenticated. `via` and `subject` say through which channel and as whom,
recorded beside the key that signed. The matcher alone, then through a real workflow with real
Temporal, PostgreSQL, git and keys made by ssh-keygen."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from sshsig.allowed_signers import AllowedSigner
from temporalio.testing import WorkflowEnvironment

from activities.signatures import principals_match, verify_signature
from tests.conftest import with_policy
from tests.helpers import committed_json, db_rows, replay_and_keep, start_request, wait_for_phase
from tests.test_signed_decisions import DEBUG_ONLY, Key, make_key
from workers import audit_queries
from workers.render import audit_lines, decision_line
from workers.settings import Settings
from workers.worker import running_worker
from workflows.change_request import ChangeRequestWorkflow
from workflows.signatures import VerifySignatureInput, signing_message
from workflows.types import ApproveInput, Phase

WEB_PRINCIPALS = "*@example.com,!root@example.com"
# The data of a decision event as every release before `via`/`subject` wrote it: a decision
# without them must hash the same, or chains written earlier would not verify.
DECISION_EVENT_KEYS = {"seq", "who", "verdict", "note", "at", "raw", "step", "plan_digest", "key_fingerprint"}


@pytest.mark.parametrize(
    ("principals", "who", "covered"),
    [
        ("*@example.com", "bob@example.com", True),
        ("*@example.com", "@example.com", True),  # `*` matches an empty run, as in OpenSSH
        ("*@example.com", "bob@evil.com", False),
        ("*@example.com", "bob@example.com.evil.com", False),  # anchored at the end
        ("*@example.com", "bob@example.co", False),
        ("bob@*", "alice.bob@example.com", False),  # anchored at the start
        ("b?b@example.com", "bob@example.com", True),
        ("b?b@example.com", "bb@example.com", False),  # `?` is exactly one character
        ("b?b@example.com", "boob@example.com", False),
        ("???", "bob", True),
        ("???", "bobby", False),
        ("*@example.com,!root@example.com", "root@example.com", False),  # negation beats a match
        ("!root@example.com,*@example.com", "root@example.com", False),  # wherever it stands
        ("*@example.com,!root@example.com", "bob@example.com", True),
        ("*@example.com,!*-bot@example.com", "ci-bot@example.com", False),
        ("!root@example.com", "bob@example.com", False),  # only negations: nothing is covered
        ("bob@example.com", "bob@example.com", True),  # an exact principal
        ("bob@example.com", "bob@example.comx", False),
        ("bob@example.com", "bo@example.com", False),
        ("alice,bob", "bob", True),
        ("Carol", "carol", True),  # an exact principal is normalised as names are
        ("*@Example.COM", "bob@example.com", True),  # a pattern's literal text is case-mapped
        ("!ROOT@example.com,*@example.com", "root@example.com", False),  # a negated one too
        ("*@\uff45xample.com", "bob@example.com", True),  # width-mapped (fullwidth e)
        ("a\uff0ab", "a*b", True),  # a fullwidth asterisk is a literal `*`, not a wildcard
        ("a\uff0ab", "axb", False),
        ("*@example.com", "*@example.com", True),  # a `*` in a name is a plain character
        ("bob*", "bob", True),
        ("", "bob", False),
        (" , ,", "bob", False),
        ("*", "anyone", True),
        ("!*,*", "anyone", False),
    ],
)
def test_principals_are_an_openssh_pattern_list(principals: str, who: str, covered: bool) -> None:
    assert principals_match(principals, who) is covered


def test_a_pathological_pattern_does_not_backtrack() -> None:
    # A backtracking matcher can take exponential time on these; this one stays near len(pattern) * len(name).
    assert not principals_match("*a*a*a*a*a*a*a*b", "a" * 20_000)
    assert not principals_match("*a" * 50 + "*b", "a" * 2_000)
    assert principals_match("*a*a*a*a*a*a*a*b", "a" * 20_000 + "b")


def test_names_may_hold_wildcard_characters_and_they_stay_literal() -> None:
    """PRECIS allows ASCII punctuation in a name, so `*` and `?` can arrive in `who`: they never
    act as wildcards there, and an exact principal naming such a person is a pattern, as in
    OpenSSH (which has no escapes)."""
    from workflows.identity import identify

    assert identify("b*b").name == "b*b"
    assert not principals_match("bob", "b*b")
    assert not principals_match("b?b", "b??b")
    assert principals_match("b*b", "b*b")
    assert principals_match("b*b", "bxyzb"), "a principal holding `*` is a pattern"


@pytest.fixture
def web_key(tmp_path: Path) -> Key:
    directory = tmp_path / "web-key"
    directory.mkdir()
    return make_key(directory, "signoff-web")


def signer_line(key: Key, principals: str, options: str = 'namespaces="signoff" ') -> AllowedSigner:
    return AllowedSigner.parse(f"{principals} {options}{Path(f'{key.path}.pub').read_text().strip()}")


def verify(key: Key, who: str, line: AllowedSigner, signed_for: str | None = "") -> tuple[bool, str | None]:
    """Whether `key`'s signature for `signed_for` (default `who`; None: the short message that
    names nobody) verifies as `who`'s decision."""
    digest = "sha256:" + "3" * 64
    named = who if signed_for == "" else signed_for
    inp = VerifySignatureInput(
        "cr-1", "approve", digest, who, key.sign(signing_message("approve", "cr-1", digest, named))
    )
    result = verify_signature(inp, [line])
    if result.verified:
        assert result.key_fingerprint == key.fingerprint
    return result.verified, result.reason


def test_a_refusal_names_the_patterns_the_key_signs_for(web_key: Key) -> None:
    line = signer_line(web_key, WEB_PRINCIPALS)
    assert verify(web_key, "bob@example.com", line) == (True, None)
    fp = web_key.fingerprint
    assert verify(web_key, "mallory@evil.com", line) == (
        False,
        f"key {fp} signs for *@example.com, !root@example.com, not for mallory@evil.com",
    )
    assert verify(web_key, "root@example.com", line)[1] == (
        f"key {fp} signs for *@example.com, !root@example.com, not for root@example.com"
    )
    person = signer_line(web_key, "Carol")
    assert verify(web_key, "bob", person)[1] == f"key {fp} belongs to carol, not to bob", "as before patterns"


def test_a_key_that_signs_for_several_people_must_name_the_person(web_key: Key) -> None:
    """Otherwise one person's signature, seen in a refused decision or in history, could be sent
    again under another covered name and count as theirs."""
    line = signer_line(web_key, WEB_PRINCIPALS)
    fp = web_key.fingerprint
    named = repr(signing_message("approve", "cr-1", "sha256:" + "3" * 64, "bob@example.com"))
    assert verify(web_key, "bob@example.com", line, signed_for=None) == (
        False,
        f"key {fp} signs for *@example.com, !root@example.com: its signature must name the person, over {named}",
    )
    verified, reason = verify(web_key, "bob@example.com", line, signed_for="mallory@example.com")
    assert not verified
    assert reason is not None
    assert reason.startswith(f"the signature does not verify over {named}")
    for principals in ("alice,bob", "bob,bob@example.com"):  # several exact names: several people
        assert verify(web_key, "bob", signer_line(web_key, principals), signed_for=None)[0] is False
        assert verify(web_key, "bob", signer_line(web_key, principals)) == (True, None)


def test_a_persons_own_key_may_sign_either_message(web_key: Key) -> None:
    """A line naming one person: the key is theirs, so the short message (scripts/approve.sh,
    releases before the named one) is enough, and the named one verifies too."""
    line = signer_line(web_key, "bob@example.com")
    assert verify(web_key, "bob@example.com", line, signed_for=None) == (True, None)
    assert verify(web_key, "bob@example.com", line) == (True, None)
    assert verify(web_key, "bob@example.com", line, signed_for="carol@example.com")[0] is False


@pytest.mark.parametrize(
    "options",
    [
        'cert-authority,namespaces="signoff" ',
        'namespaces="signoff",valid-after="20200101" ',
        'namespaces="signoff",valid-before="29990101" ',
        'namespaces="git" ',
    ],
)
def test_a_pattern_line_with_unsupported_options_fails_closed(web_key: Key, options: str) -> None:
    verified, reason = verify(web_key, "bob@example.com", signer_line(web_key, "*", options))
    assert not verified
    assert reason == f"key {web_key.fingerprint} is not in the allowed_signers file"


@pytest.fixture
def attested(settings: Settings, web_key: Key, tmp_path: Path) -> tuple[Settings, Key]:
    """The web key signs for anyone at example.com but root; carol@example.com has a key of her
    own. Two approvals are required, so one request shows both kinds of decision. Everyone is on
    the approvers list: what refuses mallory and root is the key's line, not the allowlist."""
    carol = make_key(web_key.path.parent, "carol")
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(
        f'{WEB_PRINCIPALS} namespaces="signoff" {Path(f"{web_key.path}.pub").read_text().strip()}\n'
        f"carol@example.com {Path(f'{carol.path}.pub').read_text().strip()}\n"
    )
    approvers = ["bob@example.com", "carol@example.com", "root@example.com", "mallory@evil.com"]
    strict = with_policy(settings, approvers=approvers, signatures_required=True, required_approvals=2)
    return replace(strict, allowed_signers=allowed), carol


async def test_an_attesting_key_approves_for_the_people_its_patterns_cover(
    env: WorkflowEnvironment, attested: tuple[Settings, Key], web_key: Key
) -> None:
    settings, carol = attested
    async with running_worker(env.client, settings):
        handle = await start_request(env, settings, DEBUG_ONLY)
        planned = await wait_for_phase(handle, Phase.AWAITING_APPROVAL)
        assert planned.plan is not None
        digest = planned.plan.plan_digest

        def by_web(who: str | None) -> str:
            return web_key.sign(signing_message("approve", handle.id, digest, who))

        for who in ("mallory@evil.com", "root@example.com"):
            await handle.signal(
                ChangeRequestWorkflow.approve,
                ApproveInput(who, plan_digest=digest, signature=by_web(who), via="web", subject=f"local:{who}"),  # type: ignore[arg-type]  # the handler takes a RawValue
            )
        # A covered person's signature sent as another covered person, and one naming nobody.
        for who, signature in (("bob@example.com", by_web("dave@example.com")), ("bob@example.com", by_web(None))):
            await handle.signal(
                ChangeRequestWorkflow.approve,
                ApproveInput(who, plan_digest=digest, signature=signature, via="web"),  # type: ignore[arg-type]  # the handler takes a RawValue
            )
        await handle.signal(
            ChangeRequestWorkflow.approve,
            ApproveInput(  # type: ignore[arg-type]  # the handler takes a RawValue
                "Bob@Example.com",
                plan_digest=digest,
                signature=by_web("bob@example.com"),
                via="web",
                subject="local:bob@example.com",
            ),
        )
        by_carol = carol.sign(signing_message("approve", handle.id, digest))
        await handle.signal(
            ChangeRequestWorkflow.approve,
            ApproveInput("carol@example.com", plan_digest=digest, signature=by_carol),  # type: ignore[arg-type]  # the handler takes a RawValue
        )
        result = await handle.result()
        final = await handle.query(ChangeRequestWorkflow.status)

    await replay_and_keep(handle, "attested_approval")
    assert result.outcome == Phase.SUCCEEDED
    fp = web_key.fingerprint
    named = repr(signing_message("approve", handle.id, digest, "bob@example.com"))
    assert [r.reason for r in final.refused] == [
        f"signature refused: key {fp} signs for *@example.com, !root@example.com, not for mallory@evil.com",
        f"signature refused: key {fp} signs for *@example.com, !root@example.com, not for root@example.com",
        f"signature refused: the signature does not verify over {named} "
        f"(nor over {signing_message('approve', handle.id, digest)!r}) in namespace 'signoff'",
        f"signature refused: key {fp} signs for *@example.com, !root@example.com: "
        f"its signature must name the person, over {named}",
    ]
    bob, by_own_key = final.approvals
    assert (bob.who, bob.raw, bob.via, bob.subject, bob.key_fingerprint) == (
        "bob@example.com",
        "Bob@Example.com",
        "web",
        "local:bob@example.com",
        fp,
    )
    assert (by_own_key.who, by_own_key.via, by_own_key.subject) == ("carol@example.com", None, None)
    assert decision_line("approved:", bob).endswith(f", via web as local:bob@example.com, signed with key {fp}"), (
        "signoff status"
    )
    assert ", via" not in decision_line("approved:", by_own_key)

    url = settings.database_url
    rows = db_rows(
        url,
        "SELECT who, via, subject, key_fingerprint FROM decisions "
        "WHERE change_request_id = :id AND kind = 'decision' ORDER BY seq",
        id=handle.id,
    )
    assert rows == [
        {"who": "bob@example.com", "via": "web", "subject": "local:bob@example.com", "key_fingerprint": fp},
        {"who": "carol@example.com", "via": None, "subject": None, "key_fingerprint": carol.fingerprint},
    ]
    audit = audit_queries.get_request(handle.id, url=url)
    [by_web_line, by_carol_line] = [line for line in audit_lines(audit) if line.startswith("database: decision")]
    assert by_web_line.endswith(f", via web as local:bob@example.com, signed with key {fp}"), "signoff audit"
    assert by_carol_line.endswith(f" at {by_own_key.at}, signed with key {carol.fingerprint}")

    # The chained events: `via`/`subject` only where sent, so a decision without them is the
    # same data, and hashes the same, as before they existed; the chain and git agree.
    decided = [e["data"] for e in audit["events"] if e["kind"] == "decision"]
    assert set(decided[0]) == DECISION_EVENT_KEYS | {"via", "subject"}
    assert (decided[0]["via"], decided[0]["subject"]) == ("web", "local:bob@example.com")
    assert set(decided[1]) == DECISION_EVENT_KEYS
    report = audit_queries.verify(handle.id, url=url, audit_repo=settings.audit_repo)
    assert report.ok, report.broken
    assert result.audit_commit is not None
    doc = committed_json(settings.audit_repo, result.audit_commit, f".audit/requests/{handle.id}.json")
    assert [(d["who"], d["via"], d["subject"]) for d in doc["record"]["decisions"]] == [
        ("bob@example.com", "web", "local:bob@example.com"),
        ("carol@example.com", None, None),
    ]
    assert [e["data"] for e in doc["events"] if e["kind"] == "decision"] == decided
