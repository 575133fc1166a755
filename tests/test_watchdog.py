"""Failure classification, the playbook watchdog (timeout and idle) and leftover processes,
at the activity level with Temporal's ActivityEnvironment and real ansible-runner runs."""

from __future__ import annotations

import os
import subprocess
import uuid
from datetime import timedelta
from pathlib import Path

import psutil
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.classify import classify
from activities.extravars import Scrubber
from activities.playbooks import PlaybookActivities, _Recorder
from activities.processes import stop_process_tree
from tests.helpers import processes_of
from workers.settings import Settings
from workflows.options import DEFAULT_PLAYBOOK_TIMEOUT, TIMEOUT_MARGIN, playbook_timeout
from workflows.runs import PlaybookProgress, PlaybookResult, RunPlaybookInput, TaskRecord
from workflows.types import FailureClass


def task(status: str, msg: str) -> TaskRecord:
    return TaskRecord("t", 1, 1, 1, "play", "a task", "mod", "web1", status, msg)


@pytest.mark.parametrize(
    ("tasks", "errors", "rc", "expected", "retryable"),
    [
        (
            [task("unreachable", "Failed to connect to the host via ssh: timed out")],
            [],
            4,
            FailureClass.UNREACHABLE,
            True,
        ),
        ([task("unreachable", "Permission denied (publickey,password).")], [], 4, FailureClass.AUTH_DENIED, False),
        ([task("failed", "Missing sudo password")], [], 2, FailureClass.AUTH_DENIED, False),
        ([task("failed", "No package matching 'nginxx' is available")], [], 2, FailureClass.MISSING_DEPENDENCY, False),
        (
            [task("failed", "Failed to import the required Python library (docker)")],
            [],
            2,
            FailureClass.MISSING_DEPENDENCY,
            False,
        ),
        (
            [task("failed", "The task includes an option with an undefined variable. 'port' is undefined")],
            [],
            2,
            FailureClass.UNDEFINED_VARIABLE,
            False,
        ),
        ([task("failed", "boom")], [], 2, FailureClass.TASK_FAILED, False),
        ([], ["ERROR! Syntax Error while loading YAML."], 4, FailureClass.SYNTAX_ERROR, False),
        ([], ["ERROR! couldn't resolve module/action 'community.foo.bar'"], 4, FailureClass.MISSING_DEPENDENCY, False),
        ([], [], -9, FailureClass.KILLED, True),
        ([], ["ERROR! something new"], 1, FailureClass.ERROR, False),
    ],
)
def test_the_rule_table(
    tasks: list[TaskRecord], errors: list[str], rc: int, expected: FailureClass, retryable: bool
) -> None:
    failure = classify(tasks, errors, rc=rc, status="failed")

    assert (failure.cls, failure.retryable) == (expected, retryable)
    assert failure.evidence


def run(
    settings: Settings, playbook: str, workflow_id: str, **limits: int
) -> tuple[ApplicationError, list[PlaybookProgress]]:
    heartbeats: list[PlaybookProgress] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: heartbeats.extend(details)
    inp = RunPlaybookInput(workflow_id=workflow_id, step=1, playbook=playbook, **limits)  # type: ignore[arg-type]
    with pytest.raises(ApplicationError) as caught:
        env.run(PlaybookActivities(settings.playbook_dir, settings.inventory).run_playbook, inp)
    return caught.value, heartbeats


@pytest.mark.slow
@pytest.mark.parametrize(
    ("limits", "error_type", "cls"),
    [({"idle_timeout_seconds": 2}, "PlaybookHung", "hung"), ({"timeout_seconds": 2}, "PlaybookTimeout", "timeout")],
)
def test_the_watchdog_stops_the_whole_run_and_says_where(
    settings: Settings, limits: dict[str, int], error_type: str, cls: str
) -> None:
    workflow_id = f"wf-watchdog-{uuid.uuid4().hex[:8]}"

    err, heartbeats = run(settings, "slow-restart.yml", workflow_id, **limits)

    assert (err.type, err.non_retryable) == (error_type, True), "a stopped run is not retried by itself"
    [details] = err.details
    assert isinstance(details, PlaybookResult)
    assert (details.failure_class, details.evidence) == (cls, "Take a long time")
    assert heartbeats
    assert heartbeats[-1].task == "Take a long time"
    assert processes_of(workflow_id) == [], "sleep 600 and every Ansible process are gone"


def test_leftovers_of_an_earlier_attempt_are_stopped_before_a_new_one(settings: Settings, out_dir: Path) -> None:
    workflow_id = f"wf-left-{uuid.uuid4().hex[:8]}"
    spawn = lambda step: subprocess.Popen(  # noqa: E731
        ["sleep", "600"], env={**os.environ, "SIGNOFF_WORKFLOW_ID": workflow_id, "SIGNOFF_STEP": step}
    )
    same_step, other_step = spawn("1"), spawn("2")
    try:
        env = ActivityEnvironment()
        inp = RunPlaybookInput(workflow_id=workflow_id, step=1, playbook="hello-deploy.yml")
        env.run(PlaybookActivities(settings.playbook_dir, settings.inventory).run_playbook, inp)

        assert same_step.wait(timeout=10) is not None, "the earlier attempt's process was stopped"
        assert other_step.poll() is None, "another step's process is not touched"
        assert (out_dir / "hello.txt").exists()
    finally:
        for proc in (same_step, other_step):
            proc.kill()
            proc.wait()


def test_stopping_a_tree_that_is_gone_does_not_raise() -> None:
    """It runs inside ansible-runner's cancel callback, where an exception leaves Ansible running."""
    gone = subprocess.Popen(["true"])
    gone.wait()

    stop_process_tree(gone.pid)

    assert not psutil.pid_exists(gone.pid) or psutil.Process(gone.pid).status() == psutil.STATUS_ZOMBIE


def test_a_step_time_limit_is_bounded_by_what_a_timedelta_holds() -> None:
    """A plan from a worker that did not bound header durations (`timeout: 99999999999d`) once
    failed the request's workflow task on every try; the limit is now bounded, and unchanged below."""
    assert playbook_timeout(None) == DEFAULT_PLAYBOOK_TIMEOUT
    assert playbook_timeout(5400) == timedelta(seconds=5400)
    assert playbook_timeout(36500 * 86400) == timedelta(days=36500)
    longest = playbook_timeout(99999999999 * 86400)
    assert timedelta(days=36500) < longest
    assert longest + TIMEOUT_MARGIN < timedelta.max  # what the activity's start_to_close_timeout adds


def test_a_flood_of_ansible_errors_keeps_the_first_lines_scrubbed_and_short() -> None:
    """A failure's message joins Ansible's ERROR lines: unbounded, it could outgrow what Temporal
    takes as a failure (2 MB) and the activity's end would be refused."""
    secret = "hunter2-" + "s" * 40

    def feed() -> list[str]:
        recorder = _Recorder(RunPlaybookInput(workflow_id="wf-flood", step=1, playbook="x.yml"), 1, Scrubber([secret]))
        for n in range(10_000):
            head = f"ERROR {n}: "  # the secret straddles the cut: cut first, its start would stay
            recorder.on_event({"event": "error", "stdout": head + "x" * (1990 - len(head)) + secret + "y" * 5000})
        return recorder.errors

    errors = ActivityEnvironment().run(feed)

    assert len(errors) == 50
    assert errors[0].startswith("ERROR 0: ")
    assert max(len(e) for e in errors) == 2000
    assert not any("hunt" in e for e in errors)
    assert errors[0].endswith("x(secret)yy")
