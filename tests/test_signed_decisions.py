"""Signed decisions (SIGNOFF_ALLOWED_SIGNERS): every approve, reject and decide carries an
`ssh-keygen -Y sign` signature by the approver's own key over this request and this plan;
anything else is refused, recorded, and changes nothing. Real ed25519 keys made by ssh-keygen,
real Temporal, PostgreSQL, git and playbooks."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from activities.signatures import SignatureActivities
from tests.conftest import with_policy
from tests.helpers import (
    assert_eventually,
    committed_json,
    db_rows,
    replay_and_keep,
    start_request,
    temporal_start,
    wait_for_phase,
)
from tests.test_cli import signoff
from workers.render import decision_line
from workers.settings import Settings
from workers.signing import failed_run, sign_decision
from workers.worker import running_worker
from workflows.change_request import ChangeRequestWorkflow
from workflows.signatures import VerifySignatureInput, signing_message
from workflows.types import ApproveInput, ChangeRequestStatus, DecideInput, Phase, RejectInput
from workflows.validation import InvalidInput, parse_approve

SCRIPT = Path(__file__).parent.parent / "scripts" / "approve.sh"
DEBUG_ONLY = "Configure hello"  # plans hello-configure.yml alone: quick to run


@dataclass(frozen=True)
class Key:
    path: Path  # the private key
    fingerprint: str  # SHA256:..., as `ssh-keygen -l` prints it

    def sign(self, message: str) -> str:
        done = subprocess.run(
            ["ssh-keygen", "-q", "-Y", "sign", "-n", "signoff", "-f", str(self.path)],
            input=message.encode(),
            capture_output=True,
            check=True,
        )
        return done.stdout.decode()


def make_key(directory: Path, name: str) -> Key:
    path = directory / f"id_{name}"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)], check=True)
    listed = subprocess.run(["ssh-keygen", "-l", "-f", f"{path}.pub"], capture_output=True, check=True, text=True)
    return Key(path, listed.stdout.split()[1])


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Key]:
    directory = tmp_path / "keys"
    directory.mkdir()
    return {name: make_key(directory, name) for name in ("bob", "carol", "mallory")}


@pytest.fixture
def signed(settings: Settings, keys: dict[str, Key], tmp_path: Path) -> Settings:
    """bob's and carol's keys are allowed (carol's line names her with another case and width,
    which the PRECIS comparison maps back to `carol`); mallory's key is not."""
    allowed = tmp_path / "allowed_signers"
    bob, carol = (Path(f"{keys[name].path}.pub").read_text().strip() for name in ("bob", "carol"))
    allowed.write_text(f'bob {bob}\n"Carol" namespaces="signoff" {carol}\n')
    return replace(with_policy(settings, signatures_required=True), allowed_signers=allowed)


def approval(handle: WorkflowHandle[ChangeRequestWorkflow, object], digest: str, key: Key, who: str) -> ApproveInput:
    signature = key.sign(signing_message("approve", handle.id, digest))
    return ApproveInput(approver=who, plan_digest=digest, signature=signature)


async def test_a_signed_approval_is_recorded_with_its_key(
    env: WorkflowEnvironment, signed: Settings, keys: dict[str, Key]
) -> None:
    async with running_worker(env.client, signed):
        by_signal = await start_request(env, signed, DEBUG_ONLY)
        by_update = await start_request(env, signed, DEBUG_ONLY)
        planned = await wait_for_phase(by_signal, Phase.AWAITING_APPROVAL)
        assert planned.plan is not None
        assert planned.plan.policy.signatures_required
        digest = planned.plan.plan_digest
        await by_signal.signal(ChangeRequestWorkflow.approve, approval(by_signal, digest, keys["bob"], "bob"))  # type: ignore[arg-type]  # the handler takes a RawValue
        result = await by_signal.result()
        final = await by_signal.query(ChangeRequestWorkflow.status)

        await wait_for_phase(by_update, Phase.AWAITING_APPROVAL)
        status: ChangeRequestStatus = await by_update.execute_update(
            ChangeRequestWorkflow.approve_update,
            approval(by_update, digest, keys["carol"], "CAROL"),  # type: ignore[arg-type]  # the handler takes a RawValue
        )
        assert status.approvals[0].key_fingerprint == keys["carol"].fingerprint
        assert (await by_update.result()).outcome == Phase.SUCCEEDED

    await replay_and_keep(by_signal, "signed_approval")
    await replay_and_keep(by_update, "signed_approval_update")
    assert result.outcome == Phase.SUCCEEDED
    [approved] = final.approvals
    assert (approved.who, approved.key_fingerprint, approved.plan_digest) == ("bob", keys["bob"].fingerprint, digest)
    rows = db_rows(
        signed.database_url,
        "SELECT kind, who, key_fingerprint FROM decisions WHERE change_request_id = :id",
        id=by_signal.id,
    )
    assert rows == [{"kind": "decision", "who": "bob", "key_fingerprint": keys["bob"].fingerprint}]
    assert result.audit_commit is not None
    doc = committed_json(signed.audit_repo, result.audit_commit, f".audit/requests/{by_signal.id}.json")
    [decision] = doc["record"]["decisions"]
    assert decision["key_fingerprint"] == keys["bob"].fingerprint
    assert "BEGIN SSH SIGNATURE" not in str(doc), "the blob is not kept, only its key"


async def test_every_bad_signature_is_refused_recorded_and_changes_nothing(
    env: WorkflowEnvironment, signed: Settings, keys: dict[str, Key]
) -> None:
    bob, carol, mallory = keys["bob"], keys["carol"], keys["mallory"]
    async with running_worker(env.client, replace(signed, policy=replace(signed.policy, required_approvals=2))):
        first = await start_request(env, signed, DEBUG_ONLY)
        handle = await start_request(env, signed, DEBUG_ONLY)
        planned = await wait_for_phase(handle, Phase.AWAITING_APPROVAL)
        await wait_for_phase(first, Phase.AWAITING_APPROVAL)
        assert planned.plan is not None
        digest = planned.plan.plan_digest
        elsewhere = approval(first, digest, bob, "bob")
        await first.signal(ChangeRequestWorkflow.approve, elsewhere)  # type: ignore[arg-type]  # the handler takes a RawValue
        other_digest = "sha256:" + "1" * 64
        bad = [
            ApproveInput(approver="bob", plan_digest=digest),  # unsigned
            approval(handle, digest, mallory, "bob"),  # a key not in allowed_signers
            approval(handle, digest, carol, "bob"),  # carol's key, bob's name
            replace(approval(handle, other_digest, bob, "bob"), plan_digest=digest),  # signed another plan
            ApproveInput("bob", plan_digest=digest, signature=bob.sign(signing_message("approve", "cr-other", digest))),
            elsewhere,  # bob's valid approval of the first request, sent to this one
            replace(approval(handle, digest, bob, "bob"), plan_digest=None),  # no digest named
            approval(handle, other_digest, bob, "bob"),  # names a plan that is not waiting
        ]
        for payload in bad:
            await handle.signal(ChangeRequestWorkflow.approve, payload)  # type: ignore[arg-type]  # the handler takes a RawValue

        async def all_refused() -> ChangeRequestStatus:
            status = await handle.query(ChangeRequestWorkflow.status)
            assert len(status.refused) == len(bad)
            return status

        refused = await assert_eventually(all_refused)
        assert refused.phase == Phase.AWAITING_APPROVAL
        assert refused.approvals == []
        reasons = [r.reason for r in refused.refused]
        assert "unsigned" in reasons[0]
        assert f"key {mallory.fingerprint} is not in the allowed_signers file" in reasons[1]
        assert f"key {carol.fingerprint} belongs to carol, not to bob" in reasons[2]
        for wrong_message in reasons[3:6]:
            assert f"signature does not verify over 'signoff:approve:{handle.id}:{digest}\\nfor:bob'" in wrong_message
            assert f"(nor over 'signoff:approve:{handle.id}:{digest}')" in wrong_message
        assert "must name the plan_digest it signs" in reasons[6]
        assert f"plan_digest {other_digest} is not the plan awaiting a decision" in reasons[7]

        # The update says why, too; then the same signed approval twice counts once.
        with pytest.raises(WorkflowUpdateFailedError) as refused_update:
            await handle.execute_update(ChangeRequestWorkflow.approve_update, approval(handle, digest, mallory, "bob"))  # type: ignore[arg-type]  # the handler takes a RawValue
        assert "is not in the allowed_signers file" in str(refused_update.value.cause)
        by_bob = approval(handle, digest, bob, "bob")
        await handle.signal(ChangeRequestWorkflow.approve, by_bob)  # type: ignore[arg-type]  # the handler takes a RawValue
        await handle.signal(ChangeRequestWorkflow.approve, by_bob)  # type: ignore[arg-type]  # the handler takes a RawValue
        twice = await assert_eventually(lambda: _refusals(handle, len(bad) + 2))
        assert [a.who for a in twice.approvals] == ["bob"]
        assert "already approved" in twice.refused[-1].reason
        await handle.signal(ChangeRequestWorkflow.approve, approval(handle, digest, carol, "carol"))  # type: ignore[arg-type]  # the handler takes a RawValue
        result = await handle.result()
        await first.signal(ChangeRequestWorkflow.approve, approval(first, digest, carol, "carol"))  # type: ignore[arg-type]  # the handler takes a RawValue
        await first.result()

    await replay_and_keep(handle, "signed_refusals")
    assert result.outcome == Phase.SUCCEEDED
    rows = db_rows(
        signed.database_url,
        "SELECT kind, count(*) AS n FROM decisions WHERE change_request_id = :id GROUP BY kind ORDER BY kind",
        id=handle.id,
    )
    assert rows == [{"kind": "decision", "n": 2}, {"kind": "refusal", "n": len(bad) + 2}]


async def _refusals(handle: WorkflowHandle[ChangeRequestWorkflow, object], count: int) -> ChangeRequestStatus:
    status = await handle.query(ChangeRequestWorkflow.status)
    assert len(status.refused) == count
    return status


async def approved_doomed(
    env: WorkflowEnvironment, settings: Settings, bob: Key
) -> tuple[WorkflowHandle[ChangeRequestWorkflow, object], str]:
    """A request whose only step always fails, approved with bob's signature: its handle and
    plan digest."""
    handle = await start_request(env, settings, "Deploy doomed")
    planned = await wait_for_phase(handle, Phase.AWAITING_APPROVAL)
    assert planned.plan is not None
    digest = planned.plan.plan_digest
    await handle.signal(ChangeRequestWorkflow.approve, approval(handle, digest, bob, "bob"))  # type: ignore[arg-type]  # the handler takes a RawValue
    return handle, digest


async def test_a_signed_decide_on_a_failed_step(
    env: WorkflowEnvironment, signed: Settings, keys: dict[str, Key]
) -> None:
    async with running_worker(env.client, signed):
        handle, digest = await approved_doomed(env, signed, keys["bob"])
        await wait_for_phase(handle, Phase.AWAITING_DECISION)
        # An approval's signature does not stand for an abort.
        wrong = approval(handle, digest, keys["carol"], "carol").signature
        await handle.signal(
            ChangeRequestWorkflow.decide, DecideInput("carol", "abort", plan_digest=digest, signature=wrong)
        )  # type: ignore[arg-type]  # the handler takes a RawValue
        abort = keys["carol"].sign(signing_message("abort", handle.id, digest))
        await handle.signal(
            ChangeRequestWorkflow.decide, DecideInput("carol", "abort", plan_digest=digest, signature=abort)
        )  # type: ignore[arg-type]  # the handler takes a RawValue
        result = await handle.result()
        final = await handle.query(ChangeRequestWorkflow.status)

    await replay_and_keep(handle, "signed_decide_abort")
    assert result.outcome == Phase.FAILED
    assert [(d.who, d.verdict, d.key_fingerprint) for d in final.decisions] == [
        ("carol", "abort", keys["carol"].fingerprint)
    ]
    assert "does not verify over 'signoff:decide-abort:" in final.refused[0].reason


async def test_one_operator_signs_a_retry_of_each_failed_run(
    env: WorkflowEnvironment, signed: Settings, keys: dict[str, Key]
) -> None:
    """A decide's signature names the failed run (step.runs): carol may retry a step that failed
    again, which the same text would not allow (ed25519 signs it the same way twice), while her
    signature for the first run decides nothing on the second."""
    carol = keys["carol"].path
    async with running_worker(env.client, signed):
        handle, digest = await approved_doomed(env, signed, keys["bob"])

        async def failed(runs: int) -> ChangeRequestStatus:
            status = await handle.query(ChangeRequestWorkflow.status)
            assert (status.phase, status.steps[0].runs) == (Phase.AWAITING_DECISION, runs)
            return status

        first = await assert_eventually(lambda: failed(1))
        assert failed_run(first) == "1.1"
        retry_1 = await sign_decision("retry", handle.id, digest, "Carol", carol, failed_run(first))
        await handle.execute_update(
            ChangeRequestWorkflow.decide_update, DecideInput("Carol", "retry", plan_digest=digest, signature=retry_1)
        )  # type: ignore[arg-type]  # the handler takes a RawValue
        second = await assert_eventually(lambda: failed(2))
        stale_abort = await sign_decision("abort", handle.id, digest, "carol", carol, "1.1")
        refusals = []
        for verdict, stale in (("retry", retry_1), ("abort", stale_abort)):
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await handle.execute_update(
                    ChangeRequestWorkflow.decide_update,
                    DecideInput("carol", verdict, plan_digest=digest, signature=stale),  # type: ignore[arg-type]  # the handler takes a RawValue
                )
            refusals.append(str(refused.value.cause))
        retry_2 = await sign_decision("retry", handle.id, digest, "carol", carol, failed_run(second))
        assert retry_2 != retry_1
        await handle.execute_update(
            ChangeRequestWorkflow.decide_update, DecideInput("carol", "retry", plan_digest=digest, signature=retry_2)
        )  # type: ignore[arg-type]  # the handler takes a RawValue
        third = await assert_eventually(lambda: failed(3))
        abort = await sign_decision("abort", handle.id, digest, "carol", carol, failed_run(third))
        await handle.signal(
            ChangeRequestWorkflow.decide, DecideInput("carol", "abort", plan_digest=digest, signature=abort)
        )  # type: ignore[arg-type]  # the handler takes a RawValue
        result = await handle.result()
        final = await handle.query(ChangeRequestWorkflow.status)

    await replay_and_keep(handle, "signed_decide_each_run")
    assert result.outcome == Phase.FAILED
    assert [(d.who, d.verdict, d.step) for d in final.decisions] == [
        ("carol", "retry", 1),
        ("carol", "retry", 1),
        ("carol", "abort", 1),
    ]
    assert {d.key_fingerprint for d in final.decisions} == {keys["carol"].fingerprint}
    used, other_run = refusals
    assert "already used in this request" in used  # refused by the update's validator
    assert "does not verify over" in other_run
    assert "nfor:carol\\nrun:1.2'" in other_run
    assert [r.reason for r in final.refused] == [other_run.removeprefix("DecisionRefused: ")]


async def test_a_signed_rejection_records_its_channel_beside_its_key(
    env: WorkflowEnvironment, signed: Settings, keys: dict[str, Key]
) -> None:
    """`via` and `subject` are the sender's claims: recorded as sent, next to the key that signed
    (attesting keys that sign for others: test_attesting_signers.py)."""
    async with running_worker(env.client, signed):
        handle = await start_request(env, signed, DEBUG_ONLY)
        planned = await wait_for_phase(handle, Phase.AWAITING_APPROVAL)
        assert planned.plan is not None
        digest = planned.plan.plan_digest
        signature = keys["carol"].sign(signing_message("reject", handle.id, digest))
        rejection = RejectInput(
            "carol", "not today", plan_digest=digest, signature=signature, via="cli", subject="unix:carol"
        )
        await handle.signal(ChangeRequestWorkflow.reject, rejection)  # type: ignore[arg-type]  # the handler takes a RawValue
        result = await handle.result()
        final = await handle.query(ChangeRequestWorkflow.status)

    assert result.outcome == Phase.REJECTED
    assert final.rejection is not None
    fingerprint = keys["carol"].fingerprint
    assert (final.rejection.via, final.rejection.subject, final.rejection.key_fingerprint) == (
        "cli",
        "unix:carol",
        fingerprint,
    )
    assert decision_line("rejected:", final.rejection) == (
        f"rejected: carol at {final.rejection.at}, via cli as unix:carol, signed with key {fingerprint} — not today"
    )
    rows = db_rows(
        signed.database_url,
        "SELECT verdict, via, subject, key_fingerprint FROM decisions WHERE change_request_id = :id",
        id=handle.id,
    )
    assert rows == [{"verdict": "reject", "via": "cli", "subject": "unix:carol", "key_fingerprint": fingerprint}]


@pytest.mark.slow
async def test_the_cli_and_the_script_sign_with_the_users_key(
    env: WorkflowEnvironment, signed: Settings, keys: dict[str, Key], tmp_path: Path
) -> None:
    address = env.client.service_client.config.target_host
    cli_env = {"TEMPORAL_ADDRESS": address, "SIGNOFF_TASK_QUEUE": signed.task_queue}
    async with running_worker(env.client, signed):
        by_cli = await start_request(env, signed, DEBUG_ONLY)
        # Start to end through the `temporal` CLI, signed by `ssh-keygen`, as a script would.
        script_id = f"cr-script-{uuid.uuid4().hex[:8]}"
        request = json.dumps({"request": DEBUG_ONLY, "requester": "alice"})
        await temporal_start(address, signed.task_queue, script_id, request)
        by_script = env.client.get_workflow_handle_for(ChangeRequestWorkflow.run, script_id)
        by_agent = await start_request(env, signed, DEBUG_ONLY)
        for handle in (by_cli, by_script, by_agent):
            await wait_for_phase(handle, Phase.AWAITING_APPROVAL)

        code, _, err = await signoff(cli_env, "approve", by_cli.id, "--as", "bob")
        assert code == 1, "no --key and no ssh-agent: nothing to sign with"
        assert "must be signed" in err
        code, _, err = await signoff(cli_env, "approve", by_cli.id, "--as", "bob", "--key", str(keys["bob"].path))
        assert code == 0, err
        assert f"signing approve of {by_cli.id}, plan sha256:" in err, "the CLI shows what it signs"
        assert (await by_cli.result()).outcome == Phase.SUCCEEDED
        with agent_holding(keys["carol"], tmp_path / "agent.sock") as socket:
            code, _, err = await signoff(
                {**cli_env, "SSH_AUTH_SOCK": str(socket)}, "reject", by_agent.id, "--as", "carol"
            )
        assert code == 0, err
        assert (await by_agent.result()).outcome == Phase.REJECTED

        script_env = {**os.environ, "TEMPORAL_ADDRESS": address, "PATH": f"{_temporal_dir()}:{os.environ['PATH']}"}
        script_env.pop("SSH_AUTH_SOCK", None)
        refused = await _script(script_env, by_script.id, "bob", keys["mallory"].path)
        assert refused[0] != 0
        assert "is not in the allowed_signers file" in refused[2]
        code, _, err = await _script(script_env, by_script.id, "bob", keys["bob"].path)
        assert code == 0, err
        assert (await by_script.result()).outcome == Phase.SUCCEEDED
        await replay_and_keep(by_script, "signed_by_script")
        for handle in (by_cli, by_script):
            status = await handle.query(ChangeRequestWorkflow.status)
            assert [a.key_fingerprint for a in status.approvals] == [keys["bob"].fingerprint]
        rejected = await by_agent.query(ChangeRequestWorkflow.status)
        assert rejected.rejection is not None
        assert rejected.rejection.key_fingerprint == keys["carol"].fingerprint

        # `status` and `audit` show who signed with which key.
        code, out, err = await signoff(cli_env, "status", by_cli.id)
        assert code == 0, err
        [approved] = [line for line in out.splitlines() if line.startswith("approved:")]
        assert approved.endswith(f", signed with key {keys['bob'].fingerprint}")
        audit_env = {
            **cli_env,
            "SIGNOFF_DATABASE_URL": str(signed.database_url),
            "SIGNOFF_AUDIT_REPO": str(signed.audit_repo),
        }
        code, out, err = await signoff(audit_env, "audit", by_agent.id)
        assert code == 0, err
        [decision] = [line for line in out.splitlines() if line.startswith("database: decision")]
        assert "by carol at " in decision
        assert decision.endswith(f", signed with key {keys['carol'].fingerprint}")


@contextmanager
def agent_holding(key: Key, socket: Path) -> Iterator[Path]:
    """A real ssh-agent of this test's own, holding `key`; stopped by its pid afterwards. Started
    in its forking mode, which returns only once the socket is bound: nothing to wait for."""
    started = subprocess.run(["ssh-agent", "-s", "-a", str(socket)], capture_output=True, text=True, check=True)
    pid = int(started.stdout.split("SSH_AGENT_PID=")[1].split(";")[0])  # its `-s` shell output
    try:
        subprocess.run(["ssh-add", "-q", str(key.path)], env={**os.environ, "SSH_AUTH_SOCK": str(socket)}, check=True)
        yield socket
    finally:
        os.kill(pid, signal.SIGTERM)


def _temporal_dir() -> str:
    from workers.devstack import temporal_binary

    return str(temporal_binary().parent)


async def _script(env: dict[str, str], *args: object) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(SCRIPT), *map(str, args), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


def test_the_activity_answers_without_a_file_and_never_raises(keys: dict[str, Key], tmp_path: Path) -> None:
    digest = "sha256:" + "2" * 64
    inp = VerifySignatureInput(
        "cr-1", "approve", digest, "bob", keys["bob"].sign(signing_message("approve", "cr-1", digest))
    )
    assert not SignatureActivities(None).verify(inp).checked
    missing = SignatureActivities(tmp_path / "absent").verify(inp)
    assert not missing.verified
    assert "cannot read its allowed_signers file" in (missing.reason or "")


@pytest.fixture(autouse=True)
def _no_agent() -> Iterator[None]:
    """The CLI falls back to ssh-agent; the tests' keys are files, never the user's agent."""
    saved = os.environ.pop("SSH_AUTH_SOCK", None)
    yield
    if saved is not None:
        os.environ["SSH_AUTH_SOCK"] = saved


def test_the_setting_requires_signatures(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed_signers"
    settings = Settings.from_env({"SIGNOFF_DATA_DIR": str(tmp_path), "SIGNOFF_ALLOWED_SIGNERS": str(allowed)})
    assert settings.allowed_signers == allowed
    assert settings.policy.signatures_required
    assert not Settings.from_env({"SIGNOFF_DATA_DIR": str(tmp_path)}).policy.signatures_required


@pytest.mark.parametrize(
    ("signature", "problem"),
    [
        ("not armored", "must be an armored SSH signature"),
        ("-----BEGIN SSH SIGNATURE-----\n$$$\n-----END SSH SIGNATURE-----\n", "must be an armored SSH signature"),
        ("-----BEGIN SSH SIGNATURE-----\n" + "QUFB\n" * 3000 + "-----END SSH SIGNATURE-----\n", "longer than"),
        (42, "must be a string"),
    ],
)
def test_a_malformed_signature_is_refused_by_shape(signature: object, problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem):
        parse_approve({"approver": "bob", "signature": signature})
