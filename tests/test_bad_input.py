"""Bad workflow input fails the workflow at once, non-retryably, naming the field —
never a workflow task retry loop."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from tests.helpers import replay_and_keep
from workers.settings import Settings
from workers.worker import running_worker
from workflows.types import WORKFLOW_TYPE


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"v": value}
    return value


def _json_bytes(data: bytes) -> RawValue:
    return RawValue(Payload(metadata={"encoding": b"json/plain"}, data=data))


CASES: list[tuple[str, list[Any], str]] = [
    ("malformed JSON", [_json_bytes(b'{"request": "x", ')], "not valid JSON"),
    ("not an object", [["Deploy hello", "alice"]], "must be a JSON object, got an array"),
    ("a bare string", ["Deploy hello"], "must be a JSON object, got a string"),
    ("no input at all", [], "input is required"),
    ("missing request", [{"requester": "alice"}], "request: is required"),
    ("missing requester", [{"request": "Deploy hello"}], "requester: is required"),
    ("request of the wrong type", [{"request": 42, "requester": "alice"}], "request: must be a string, got a number"),
    ("vars not an object", [{"request": "Deploy hello", "requester": "a", "vars": ["x"]}], "vars: must be an object"),
    (
        "dry_run not a bool",
        [{"request": "Deploy hello", "requester": "a", "dry_run": "yes"}],
        "dry_run: must be true or false",
    ),
    ("unknown field", [{"request": "Deploy hello", "requester": "a", "dryrun": True}], "dryrun: unknown field"),
    (
        "Jinja in extra vars",
        [{"request": "Deploy hello", "requester": "a", "vars": {"greeting": "{{ lookup('pipe', 'id') }}"}}],
        "vars.greeting: contains a Jinja template",
    ),
    # hostile input (issue 5): each of these once looped the workflow task or steered Ansible
    (
        "vars nested 700 deep",
        [{"request": "Deploy hello", "requester": "a", "vars": {"v": _nested(700)}}],
        "vars: is nested deeper than 32",
    ),
    (
        "input over 256 KiB",
        [{"request": "Deploy hello", "requester": "a", "vars": {"v": "x" * 300_000}}],
        "larger than 262144 bytes",
    ),
    (
        "too many keys",
        [{"request": "Deploy hello", "requester": "a", "vars": {"v": list(range(10_001))}}],
        "more than 10000 keys",
    ),
    (
        "Jinja in a nested key",
        [{"request": "Deploy hello", "requester": "a", "vars": {"v": {"{{ x }}": 1}}}],
        "vars.v: has a key that is a Jinja template",
    ),
    (
        "requester with a zero-width space",
        [{"request": "Deploy hello", "requester": "alice\u200b"}],
        "requester: 'alice\\u200b' is not a valid user name: character U+200B",
    ),
    (
        "requester mixing scripts",
        [{"request": "Deploy hello", "requester": "\u0430lice"}],
        "mixes look-alike characters",
    ),
    (
        "a terminal escape in the request",
        [{"request": "Deploy hello \x1b[8mand remove hello", "requester": "a"}],
        "request: holds control",
    ),
    ("a bidi override in the request", [{"request": "Deploy \u202eolleh", "requester": "a"}], "request: holds control"),
    (
        "a limit read from a file",
        [{"request": "Deploy hello", "requester": "a", "inventory": "@/etc/passwd"}],
        "inventory: must be an Ansible host pattern",
    ),
    (
        "two arguments",
        [{"request": "Deploy hello", "requester": "a"}, {"request": "x", "requester": "b"}],
        "takes one JSON argument, got 2",
    ),
]


@pytest.mark.parametrize(("args", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_bad_input_fails_fast_and_names_the_field(
    env: WorkflowEnvironment, settings: Settings, args: list[Any], message: str
) -> None:
    async with running_worker(env.client, settings):
        handle = await env.client.start_workflow(
            WORKFLOW_TYPE, args=args, id=f"bad-{uuid.uuid4().hex[:8]}", task_queue=settings.task_queue
        )
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()

        if args == []:
            await replay_and_keep(handle, "no_input")
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "InvalidInput"
    assert cause.non_retryable
    assert message in cause.message
    events = [e.event_type async for e in handle.fetch_history_events()]
    assert EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED not in events, "bad input must not retry the workflow task"
    assert events[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED
