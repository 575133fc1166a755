"""`run_playbook` on real ansible-runner against localhost, through `ActivityEnvironment`:
results, typed failures, heartbeats, secrets kept out, and cancellation stopping Ansible."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import ActivityEnvironment

from activities.playbooks import CENSORED, PlaybookActivities
from tests.helpers import assert_eventually, cmdline, processes_of
from workers.settings import Settings
from workflows.runs import PlaybookProgress, PlaybookResult, RunPlaybookInput

SECRET = "hunter2-very-secret"


class Run:
    """One activity environment whose heartbeats are collected."""

    def __init__(self, settings: Settings) -> None:
        self.activities = PlaybookActivities(settings.playbook_dir, settings.inventory)
        self.heartbeats: list[PlaybookProgress] = []
        self.env = ActivityEnvironment()
        self.env.on_heartbeat = lambda *details: self.heartbeats.extend(details)

    def __call__(self, playbook: str, workflow_id: str = "wf-test", **vars: Any) -> PlaybookResult:
        inp = RunPlaybookInput(workflow_id=workflow_id, step=1, playbook=playbook, vars=vars)
        return self.env.run(self.activities.run_playbook, inp)

    def fails(self, playbook: str, **vars: Any) -> ApplicationError:
        with pytest.raises(ApplicationError) as caught:
            self(playbook, **vars)
        return caught.value


@pytest.fixture
def run(settings: Settings) -> Run:
    return Run(settings)


def test_runs_without_the_virtualenv_on_path(run: Run, out_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system = [d for d in os.defpath.split(os.pathsep) if d and not (Path(d) / "ansible-playbook").exists()]
    monkeypatch.setenv("PATH", os.pathsep.join(system))

    assert run("hello-deploy.yml").status == "successful"
    assert (out_dir / "hello.txt").read_text() == "hello world\n"


def test_successful_run_returns_tasks_and_heartbeats(run: Run, out_dir: Path) -> None:
    result = run("hello-deploy.yml", greeting="signoff")

    assert (out_dir / "hello.txt").read_text() == "hello signoff\n"
    assert (result.playbook, result.step, result.attempt, result.status, result.rc) == (
        "hello-deploy.yml",
        1,
        1,
        "successful",
        0,
    )
    [task] = result.tasks
    assert (task.task_id, task.play, task.task, task.host, task.status) == (
        "wf-test.1.1.1",
        "Deploy hello",
        "Write hello.txt",
        "localhost",
        "changed",
    )
    assert task.action == "ansible.builtin.copy"
    assert (result.progress.changed, result.progress.failed) == (1, 0)
    assert run.heartbeats, "every Ansible event heartbeats"
    assert all(isinstance(h, PlaybookProgress) for h in run.heartbeats)
    assert any(h.task == "Write hello.txt" for h in run.heartbeats)
    assert run.heartbeats[-1].changed == 1


def test_failed_task_is_playbook_failed_and_not_retried(run: Run) -> None:
    err = run.fails("doomed-deploy.yml")

    assert err.type == "PlaybookFailed"
    assert err.non_retryable
    assert "'Fails on purpose'" in err.message
    assert "boom" in err.message
    [result] = err.details
    assert isinstance(result, PlaybookResult)
    assert result.status == "failed"
    assert result.error == err.message
    tasks = [(t.task, t.status) for t in result.tasks]
    assert ("Fails on purpose", "failed") in tasks
    assert "Never runs" not in [t.task for t in result.tasks]
    assert run.heartbeats[-1].failed == 1


def test_syntax_error_is_playbook_error(run: Run) -> None:
    err = run.fails("broken-update.yml")

    assert err.type == "PlaybookError"
    assert err.non_retryable
    assert "could not run" in err.message


@pytest.fixture
def outside(settings: Settings) -> str:
    """A real playbook just outside the playbook dir, and a symlink to it from inside."""
    target = settings.playbook_dir.parent / "x.yml"
    target.write_text((settings.playbook_dir / "hello-deploy.yml").read_text())
    (settings.playbook_dir / "link-deploy.yml").symlink_to(target)
    return str(target)


@pytest.mark.parametrize("name", ["../x.yml", "{outside}", "link-deploy.yml", "missing.yml", "."])
def test_playbook_outside_the_dir_is_refused(run: Run, outside: str, out_dir: Path, name: str) -> None:
    err = run.fails(name.format(outside=outside))

    assert err.type == "PlaybookError"
    assert err.non_retryable
    assert "is not in" in err.message
    assert not (out_dir / "hello.txt").exists(), "nothing ran"
    assert run.heartbeats == []


def test_no_log_secret_stays_out_of_result_and_heartbeats(run: Run) -> None:
    result = run("secret-configure.yml", db_password=SECRET)

    assert result.status == "successful"
    [task] = result.tasks
    assert task.task == "Use the password"
    assert task.msg == CENSORED
    assert SECRET not in repr(result)
    assert run.heartbeats
    assert SECRET not in repr(run.heartbeats)


# --- cancellation ---------------------------------------------------------------------------


class Cancelled:
    """slow-restart.yml started in a thread, cancelled once `sleep 600` runs under it."""

    def __init__(self) -> None:
        self.workflow_id = f"wf-cancel-{uuid.uuid4().hex[:8]}"  # marks every process of this run
        self.error: Exception | None = None

    async def start_and_cancel(self, run: Run) -> None:
        running = asyncio.create_task(asyncio.to_thread(run, "slow-restart.yml", self.workflow_id))

        async def sleep_is_running() -> None:
            assert not running.done(), "the playbook ended before it could be cancelled"
            assert any(h.task == "Take a long time" for h in run.heartbeats)
            assert ["sleep", "600"] in [cmdline(p) for p in self.leftovers()]

        await assert_eventually(sleep_is_running, timeout=60)
        run.env.cancel()
        try:
            await running
        except Exception as err:  # kept for the test to assert on
            self.error = err

    def leftovers(self) -> list[psutil.Process]:
        """Live processes of this run: ansible-playbook, its (setsid) workers and their tasks."""
        return processes_of(self.workflow_id)

    def kill_leftovers(self) -> None:
        for proc in self.leftovers():  # only processes this test started, by their pid
            proc.kill()


@pytest.fixture
async def cancelled(run: Run) -> AsyncIterator[Cancelled]:
    outcome = Cancelled()
    try:
        await outcome.start_and_cancel(run)
        yield outcome
    finally:
        outcome.kill_leftovers()


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_cancel_raises_cancelled_error(cancelled: Cancelled) -> None:
    assert isinstance(cancelled.error, CancelledError), repr(cancelled.error)


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_cancel_leaves_no_ansible_process_behind(cancelled: Cancelled) -> None:
    async def nothing_left() -> None:
        assert cancelled.leftovers() == []

    await assert_eventually(nothing_left, timeout=10)
