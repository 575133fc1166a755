"""Run one playbook through ansible-runner, as a sync activity on the worker's thread pool.

Progress is the heartbeat: each Ansible event updates a `PlaybookProgress` that Temporal keeps
as heartbeat details (the Web UI and `signoff watch` show it), and the runner's cancel
callback heartbeats too, so a dead worker is noticed within the heartbeat timeout. Cancellation
is seen only there (no exception is thrown into the thread, which would leave Ansible running)
and stops ansible-playbook with every process below it within about a second.

Nothing Ansible prints is kept: event files are not written to disk, extra vars travel in a
0600 file inside a private data dir that is removed afterwards, and a `no_log` result is
recorded only as censored.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import ansible_runner
import psutil
from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

from workflows.types import ErrorType, PlaybookProgress, PlaybookResult, RunPlaybookInput, TaskRecord

# ansible-runner event -> the status we record for that task on that host
_RESULT_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_skipped": "skipped",
    "runner_on_unreachable": "unreachable",
}
_MSG_LIMIT = 500
CENSORED = "(output hidden: no_log)"
STOP_GRACE_SECONDS = 5.0


class _Recorder:
    """Turns ansible-runner events into TaskRecords and heartbeats progress."""

    def __init__(self, inp: RunPlaybookInput, attempt: int) -> None:
        self._inp = inp
        self._attempt = attempt
        self.tasks: list[TaskRecord] = []
        self.progress = PlaybookProgress()
        self.errors: list[str] = []
        self.playbook_pid: int | None = None

    def on_event(self, event: dict[str, Any]) -> bool:
        if self.playbook_pid is None and event.get("pid"):
            self.playbook_pid = int(event["pid"])  # events come from the ansible-playbook process
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        if kind == "playbook_on_play_start":
            self.progress = replace(self.progress, play=str(data.get("play", "")), task="", host="")
        elif kind == "playbook_on_task_start":
            self.progress = replace(self.progress, task=str(data.get("task", "")), host="")
        elif kind in _RESULT_EVENTS:
            self._record(_RESULT_EVENTS[kind], data)
        elif kind == "error" or (kind == "verbose" and "ERROR" in str(event.get("stdout", ""))):
            self.errors.append(str(event.get("stdout", "")).strip())
        activity.heartbeat(self.progress)
        return False  # keep no event files on disk: they would hold every task's full output

    def should_cancel(self) -> bool:
        activity.heartbeat(self.progress)
        # Not on worker shutdown: the worker's graceful shutdown lets the playbook finish,
        # and cancels it (landing here) only when that time is up.
        if not activity.is_cancelled():
            return False
        if self.playbook_pid is not None:
            stop_process_tree(self.playbook_pid)
        return True  # ansible-runner then kills what is left in its process group

    def _record(self, status: str, data: dict[str, Any]) -> None:
        res = data.get("res") or {}
        if status == "ok" and res.get("changed"):
            status = "changed"
        seq = len(self.tasks) + 1
        self.tasks.append(
            TaskRecord(
                task_id=f"{self._inp.workflow_id}.{self._inp.step}.{self._attempt}.{seq}",
                step=self._inp.step,
                attempt=self._attempt,
                seq=seq,
                play=str(data.get("play", "")),
                task=str(data.get("task", "")),
                action=str(data.get("task_action", "")),
                host=str(data.get("host", "")),
                status=status,
                msg=_message(res),
                duration=float(data.get("duration") or 0.0),
            )
        )
        # status names are PlaybookProgress counter names
        self.progress = replace(
            self.progress, host=str(data.get("host", "")), **{status: getattr(self.progress, status) + 1}
        )


def stop_process_tree(pid: int, grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM ansible-playbook and all below it; SIGKILL what is below it after `grace` seconds.

    Ansible's worker processes call setsid(), so killing ansible-playbook's process group, as
    ansible-runner does, would leave them and the commands they run behind. ansible-playbook
    itself is left to ansible-runner, whose child it is: waiting on it here would reap it.
    """
    try:
        root = psutil.Process(pid)
        below = root.children(recursive=True)
    except psutil.NoSuchProcess:
        return
    for proc in (root, *below):
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(below, timeout=grace)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            continue


def _message(res: dict[str, Any]) -> str:
    if "censored" in res or res.get("_ansible_no_log"):
        return CENSORED
    msg = res.get("msg") or res.get("stderr") or ""
    if not isinstance(msg, str):
        msg = json.dumps(msg, default=str)
    return msg[:_MSG_LIMIT]


class PlaybookActivities:
    def __init__(self, playbook_dir: Path, inventory: Path) -> None:
        self._playbook_dir = playbook_dir.resolve()
        self._inventory = inventory

    @activity.defn(name="run_playbook", no_thread_cancel_exception=True)
    def run_playbook(self, inp: RunPlaybookInput) -> PlaybookResult:
        playbook = (self._playbook_dir / inp.playbook).resolve()
        if not playbook.is_file() or not playbook.is_relative_to(self._playbook_dir):
            raise ApplicationError(
                f"playbook {inp.playbook!r} is not in {self._playbook_dir}",
                type=ErrorType.PLAYBOOK_ERROR,
                non_retryable=True,
            )
        attempt = activity.info().attempt
        recorder = _Recorder(inp, attempt)
        with tempfile.TemporaryDirectory(prefix="signoff-run-") as private_dir:
            if inp.vars:
                _write_private(Path(private_dir) / "env" / "extravars", json.dumps(inp.vars))
            runner = ansible_runner.run(
                private_data_dir=private_dir,
                project_dir=str(self._playbook_dir),
                playbook=str(playbook),
                inventory=str(self._inventory),
                limit=inp.limit,
                quiet=True,
                suppress_env_files=True,
                settings={"pexpect_timeout": 1},
                envvars={
                    # ansible-playbook is beside this interpreter, on PATH or not
                    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                    "ANSIBLE_NOCOLOR": "1",
                    "ANSIBLE_LOCALHOST_WARNING": "0",
                    # In every process of the run: `ps e` tells whose change a process is.
                    "SIGNOFF_WORKFLOW_ID": inp.workflow_id,
                    "SIGNOFF_STEP": str(inp.step),
                },
                event_handler=recorder.on_event,
                cancel_callback=recorder.should_cancel,
            )
            status, rc = str(runner.status), int(runner.rc if runner.rc is not None else -1)
            tail = _tail(runner)
        result = PlaybookResult(
            playbook=inp.playbook,
            step=inp.step,
            attempt=attempt,
            status=status,
            rc=rc,
            tasks=recorder.tasks,
            progress=recorder.progress,
        )
        return _classify(result, recorder, tail)


def _classify(result: PlaybookResult, recorder: _Recorder, tail: str) -> PlaybookResult:
    """Successful runs return; every other outcome raises a typed ApplicationError."""
    if activity.is_cancelled():  # whatever the status: a stopped playbook may look failed
        raise CancelledError("playbook cancelled; ansible-playbook was stopped")
    if result.status == "successful":
        return result
    unreachable = [t for t in result.tasks if t.status == "unreachable"]
    failed = [t for t in result.tasks if t.status == "failed"]
    if unreachable:
        first = unreachable[0]
        error = f"host {first.host} unreachable: {first.msg}"
        err_type, retry = ErrorType.HOST_UNREACHABLE, True
    elif failed:
        first = failed[0]
        error = f"task {first.task!r} failed on {first.host}: {first.msg}"
        err_type, retry = ErrorType.PLAYBOOK_FAILED, False
    else:
        reason = "\n".join(recorder.errors) or tail or f"ansible-playbook exited with rc {result.rc}"
        error = f"playbook could not run ({result.status}): {reason}"
        err_type, retry = ErrorType.PLAYBOOK_ERROR, False
    raise ApplicationError(
        error, replace(result, error=error), type=err_type, non_retryable=not retry
    )


def _tail(runner: Any) -> str:
    """The ERROR lines of a run that failed before any task, e.g. a syntax error."""
    try:
        text = runner.stdout.read()
    except (OSError, AttributeError):
        return ""
    lines = [line.strip() for line in text.splitlines() if "ERROR" in line]
    return "\n".join(lines)[-_MSG_LIMIT * 2 :]


def _write_private(path: Path, content: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
