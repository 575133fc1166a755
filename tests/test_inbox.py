"""What waits for whom (issue 8): `signoff list` from the search attributes, and the notification
POSTed to SIGNOFF_NOTIFY_URL when a request starts waiting for an approval or a decision. Real
Temporal, real playbooks, a real HTTP server started by the test."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.notify import NotifyActivities
from tests.conftest import with_policy
from tests.helpers import assert_eventually, replay_and_keep, start_request, wait_for_phase
from tests.test_cli import signoff
from workers.cli_list import visibility_query
from workers.ops import OperationError
from workers.settings import ConfigError, Settings
from workers.worker import running_worker
from workflows.change_request import ChangeRequestWorkflow
from workflows.inbox import Notification
from workflows.types import ApproveInput, DecideInput, Phase

SECRET = "s3cret-for-hmac"


@dataclass
class Receiver:
    """An HTTP endpoint that answers with `answers` in turn (then 200) and keeps what it got."""

    answers: list[int] = field(default_factory=list)
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    def bodies(self, event: str | None = None) -> list[dict[str, Any]]:
        found = [json.loads(body) for _, body in self.got]
        return [b for b in found if event is None or b["event"] == event]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box = Receiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                box.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                code = box.answers.pop(0) if box.answers else 200
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/signoff"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield box
    server.shutdown()
    server.server_close()


def valid_signature(headers: dict[str, str], body: bytes) -> bool:
    signed = headers["x-signoff-timestamp"].encode() + b"." + body
    expected = "sha256=" + hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["x-signoff-signature"], expected)


@pytest.mark.slow
async def test_waiting_for_approval_and_for_a_decision_is_notified(
    env: WorkflowEnvironment, settings: Settings, receiver: Receiver
) -> None:
    receiver.answers = [503, 503]  # the receiver is down for the first two tries
    settings = dataclasses.replace(
        settings, notify_url=receiver.url, notify_secret=SECRET, web_url="https://signoff.example"
    )
    async with running_worker(env.client, settings):
        handle = await start_request(env, settings, "Deploy hello", vars={"greeting": "not-in-the-notification"})
        status = await wait_for_phase(handle, Phase.AWAITING_APPROVAL)

        async def three_tries() -> None:
            assert len(receiver.got) == 3

        await assert_eventually(three_tries, timeout=60)
        await handle.signal(ChangeRequestWorkflow.approve, ApproveInput(approver="bob"))
        assert (await handle.result()).outcome == Phase.SUCCEEDED

        # A receiver that stays down delays no one: approval and decision go through meanwhile.
        receiver.answers = [503] * 100
        failing = await start_request(env, settings, "Deploy doomed")
        await wait_for_phase(failing, Phase.AWAITING_APPROVAL)
        await failing.signal(ChangeRequestWorkflow.approve, ApproveInput(approver="carol"))
        await wait_for_phase(failing, Phase.AWAITING_DECISION)

        async def decision_notified() -> None:
            assert receiver.bodies("awaiting_decision")

        await assert_eventually(decision_notified)
        await failing.signal(ChangeRequestWorkflow.decide, DecideInput(operator="bob", action="abort"))
        assert (await failing.result()).outcome == Phase.FAILED
        await replay_and_keep(failing, "notified_decide_abort")

    first = receiver.got[:3]
    assert {h["x-signoff-delivery"] for h, _ in first} == {f"{handle.id}/awaiting_approval/0"}, "one event, retried"
    assert all(valid_signature(h, b) for h, b in receiver.got)
    assert all(h["content-type"] == "application/json" for h, _ in receiver.got)
    [approval] = {json.dumps(b, sort_keys=True) for b in receiver.bodies("awaiting_approval")[:3]}
    body = json.loads(approval)
    assert body["id"] == handle.id
    assert body["requester"] == "alice"
    assert body["request"] == "Deploy hello"
    assert status.plan is not None
    assert body["plan_digest"] == status.plan.plan_digest
    assert body["plan_digest"].startswith("sha256:")
    assert [(s["index"], s["playbook"]) for s in body["steps"]] == [(1, "hello-deploy.yml")]
    assert (body["approvals"], body["approvals_needed"], body["waiting_for"]) == (0, 1, ["bob", "carol"])
    assert body["url"] == f"https://signoff.example/requests/{handle.id}", "the web inbox's page of the request"
    assert body["commands"][0] == f"signoff approve {handle.id} --as <you> --plan-digest {body['plan_digest']}"
    assert "not-in-the-notification" not in approval, "var values are not sent"

    deliveries = {h["x-signoff-delivery"] for h, b in receiver.got if json.loads(b)["event"] == "awaiting_decision"}
    assert deliveries == {f"{failing.id}/awaiting_decision/1"}
    decision = receiver.bodies("awaiting_decision")[0]
    assert decision["step"] == 1
    assert "doomed cannot be deployed" in decision["error"]
    assert [c.split()[1] for c in decision["commands"]] == ["retry", "skip", "abort"]
    assert decision["waiting_for"] == ["bob", "carol"]


@pytest.mark.slow
async def test_a_receiver_that_refuses_is_not_retried_and_blocks_nothing(
    env: WorkflowEnvironment, settings: Settings, receiver: Receiver
) -> None:
    receiver.answers = [404]
    settings = dataclasses.replace(settings, notify_url=receiver.url)
    async with running_worker(env.client, settings):
        handle = await start_request(env, settings, "Verify ping")
        await wait_for_phase(handle, Phase.AWAITING_APPROVAL)

        async def refused() -> None:
            assert len(receiver.got) == 1
            description = await handle.describe()
            assert not (description.raw_description.pending_activities), "given up, not retrying"

        await assert_eventually(refused)
        await handle.signal(ChangeRequestWorkflow.approve, ApproveInput(approver="bob"))
        assert (await handle.result()).outcome == Phase.SUCCEEDED
    assert len(receiver.got) == 1
    [(headers, _)] = receiver.got
    assert "x-signoff-signature" not in headers, "no secret, no signature"


def test_an_unset_url_on_one_worker_is_retried_elsewhere() -> None:
    note = Notification("cr-1", "awaiting_approval", "alice", "x", "sha256:0", "low", [], 0, 1, ["*"], [])
    with pytest.raises(RuntimeError, match="SIGNOFF_NOTIFY_URL is not set"):
        NotifyActivities(None).notify(note)


@pytest.mark.parametrize("url", ["ftp://example.org/x", "file:///etc/passwd", "http://", "hooks.example.org"])
def test_notify_url_must_be_http(url: str) -> None:
    with pytest.raises(ConfigError, match="SIGNOFF_NOTIFY_URL"):
        Settings.from_env({"SIGNOFF_NOTIFY_URL": url})


def test_the_notify_secret_is_not_in_the_settings_repr() -> None:
    settings = Settings.from_env({"SIGNOFF_NOTIFY_URL": "https://hooks.example.org/x", "SIGNOFF_NOTIFY_SECRET": SECRET})
    assert settings.notify_secret == SECRET
    assert SECRET not in repr(settings)


# --- signoff list -----------------------------------------------------------------------------


@pytest.mark.slow
async def test_list_shows_what_waits_for_whom(env: WorkflowEnvironment, settings: Settings) -> None:
    settings = with_policy(settings, approvers=["bob", "carol", "dave"], required_approvals=2)
    cli_env = {
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "SIGNOFF_TASK_QUEUE": settings.task_queue,
    }

    async def listed(*args: str) -> list[dict[str, Any]]:
        code, out, err = await signoff(cli_env, "list", "--json", *args)
        assert code == 0, err
        return [row for row in json.loads(out) if row["id"] == handle.id]

    async with running_worker(env.client, settings):
        handle = await start_request(env, settings, "Verify ping", requester="alice")
        await wait_for_phase(handle, Phase.AWAITING_APPROVAL)
        await handle.signal(ChangeRequestWorkflow.approve, ApproveInput(approver="Bob"))

        async def one_approval() -> None:
            [row] = await listed("--phase", "awaiting_approval")
            assert (row["approvals"], row["approvals_needed"]) == (1, 1)
            assert row["waiting_for"] == ["carol", "dave"]
            assert (row["requester"], row["services"]) == ("alice", ["ping"])

        await assert_eventually(one_approval, timeout=30, interval=0.5)
        assert len(await listed("--waiting-for", "CAROL")) == 1
        assert await listed("--waiting-for", "bob") == [], "bob approved already"
        assert await listed("--waiting-for", "alice") == [], "the requester never approves"
        assert len(await listed("--requester", "alice")) == 1
        assert await listed("--requester", "mallory") == []
        code, out, _ = await signoff(cli_env, "list", "--waiting-for", "dave")
        assert code == 0
        [line] = [line for line in out.splitlines() if line.startswith(handle.id)]
        assert "awaiting_approval  by alice  ping" in line
        assert line.endswith("approvals 1 of 2  waiting for carol, dave")

        await handle.signal(ChangeRequestWorkflow.approve, ApproveInput(approver="dave"))
        assert (await handle.result()).outcome == Phase.SUCCEEDED

        async def done() -> None:
            [row] = await listed("--phase", "succeeded")
            assert (row["approvals"], row["approvals_needed"], row["waiting_for"]) == (2, 0, [])

        await assert_eventually(done, timeout=30, interval=0.5)


def test_list_filters_cannot_widen_the_query() -> None:
    assert visibility_query("awaiting_approval", "Alice", None) == (
        "WorkflowType = 'ChangeRequestWorkflow' AND SignoffPhase = 'awaiting_approval' AND SignoffRequester = 'alice'"
    )
    with pytest.raises(OperationError, match="--requester"):
        visibility_query(None, "x' OR WorkflowType != 'y", None)
    with pytest.raises(OperationError, match="--phase 'nope'"):
        visibility_query("nope", None, None)
    with pytest.raises(OperationError, match="--waiting-for"):
        visibility_query(None, None, "bob'")
