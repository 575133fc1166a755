"""`run_playbook` on real ansible-runner against localhost, through `ActivityEnvironment`:
results, typed failures, heartbeats, secrets kept out, and cancellation stopping Ansible."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import ActivityEnvironment

from activities.playbooks import CENSORED, PlaybookActivities
from tests.helpers import assert_eventually
from workers.settings import Settings
from workflows.types import PlaybookProgress, PlaybookResult, RunPlaybookInput

SECRET = "hunter2-very-secret"


class Run:
    """One activity environment whose heartbeats are collected."""

    def __init__(self, settings: Settings) -> None:
        self.activities = PlaybookActivities(settings.playbook_dir, settings.inventory)
        self.heartbeats: list[PlaybookProgress] = []
        self.env = ActivityEnvironment()
        self.env.on_heartbeat = lambda *details: self.heartbeats.extend(details)

    def __call__(self, playbook: str, **vars: Any) -> PlaybookResult:
        inp = RunPlaybookInput(workflow_id="wf-test", step=1, playbook=playbook, vars=vars)
        return self.env.run(self.activities.run_playbook, inp)

    def fails(self, playbook: str, **vars: Any) -> ApplicationError:
        with pytest.raises(ApplicationError) as caught:
            self(playbook, **vars)
        return caught.value


@pytest.fixture(autouse=True)
def venv_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """run_playbook finds ansible-playbook through PATH only (see the xfail below), and
    `venv/bin/python -m pytest` does not put the venv's bin on it."""
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


@pytest.fixture
def run(settings: Settings) -> Run:
    return Run(settings)


@pytest.mark.xfail(
    strict=True,
    reason="activities/playbooks.py: ansible_runner.run gets no `binary`, so ansible-playbook is "
    "looked up on PATH; a worker started as venv/bin/signoff without the venv activated fails rc 127",
)
def test_runs_without_the_virtualenv_on_path(run: Run, out_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))

    assert run("hello-deploy.yml").status == "successful"
    assert (out_dir / "hello.txt").read_text() == "hello world\n"


def test_successful_run_returns_tasks_and_heartbeats(run: Run, out_dir: Path) -> None:
    result = run("hello-deploy.yml", greeting="signoff")

    assert (out_dir / "hello.txt").read_text() == "hello signoff\n"
    assert (result.playbook, result.step, result.attempt, result.status, result.rc) == (
        "hello-deploy.yml", 1, 1, "successful", 0
    )
    [task] = result.tasks
    assert (task.task_id, task.play, task.task, task.host, task.status) == (
        "wf-test.1.1.1", "Deploy hello", "Write hello.txt", "localhost", "changed"
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
    assert "'Fails on purpose'" in err.message and "boom" in err.message
    [details] = err.details
    result = details if isinstance(details, PlaybookResult) else PlaybookResult(**details)
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
def outside(settings: Settings) -> Iterator[str]:
    """A real playbook just outside the playbook dir, and a symlink to it from inside."""
    target = settings.playbook_dir.parent / "x.yml"
    target.write_text((settings.playbook_dir / "hello-deploy.yml").read_text())
    (settings.playbook_dir / "link-deploy.yml").symlink_to(target)
    yield str(target)


@pytest.mark.parametrize("name", ["../x.yml", "ABSOLUTE", "link-deploy.yml", "missing.yml", "."])
def test_playbook_outside_the_dir_is_refused(run: Run, outside: str, out_dir: Path, name: str) -> None:
    err = run.fails(outside if name == "ABSOLUTE" else name)

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
    assert run.heartbeats and SECRET not in repr(run.heartbeats)


# --- cancellation ---------------------------------------------------------------------------


def is_long_sleep(proc: psutil.Process) -> bool:
    try:
        return proc.cmdline() == ["sleep", "600"] and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return False


def long_sleeps(since: float) -> list[psutil.Process]:
    """Live `sleep 600` processes created since `since` (a time.time() value)."""
    found = []
    for proc in psutil.process_iter(["create_time"]):
        if (proc.info["create_time"] or 0) >= since - 1 and is_long_sleep(proc):
            found.append(proc)
    return found


async def test_cancel_stops_ansible_and_its_children(run: Run) -> None:
    began = time.time()  # only to tell this test's processes apart, never asserted on
    ours: list[psutil.Process] = []
    me = psutil.Process()
    running = asyncio.create_task(asyncio.to_thread(run, "slow-restart.yml"))
    try:

        async def sleep_is_running() -> None:
            assert not running.done(), "the playbook ended before it could be cancelled"
            assert any(h.task == "Take a long time" for h in run.heartbeats)
            ours[:] = [p for p in me.children(recursive=True) if is_long_sleep(p)]
            assert ours, "no `sleep 600` under this process yet"

        await assert_eventually(sleep_is_running, timeout=60)

        run.env.cancel()
        with pytest.raises(CancelledError):
            await running

        async def sleep_is_gone() -> None:
            left = [p for p in ours if p.is_running() and is_long_sleep(p)]
            assert left == [], f"still running after cancel: {left}"
            mine = [p for p in long_sleeps(began) if p.pid in {c.pid for c in me.children(recursive=True)}]
            assert mine == []

        await assert_eventually(sleep_is_gone, timeout=15)
    finally:
        for proc in ours:  # only the processes this test started, whatever the outcome
            if is_long_sleep(proc):
                proc.kill()
