"""Run one playbook through ansible-runner, as a sync activity on the worker's thread pool.

Progress is the heartbeat: each Ansible event updates a `PlaybookProgress` that Temporal keeps
as heartbeat details (the Web UI and `signoff watch` show it), and the runner's cancel
callback heartbeats too, so a dead worker is noticed within the heartbeat timeout. Cancellation
is seen only there (no exception is thrown into the thread, which would leave Ansible running)
and stops ansible-playbook with every process below it within about a second. The same
callback is the watchdog: a run past its `timeout`, or with no Ansible event for its
`idle_timeout` (hung), is stopped the same way. A failed run is classified
(activities/classify.py); only unreachable hosts and killed runs are retried by Temporal.
Every attempt writes its own task rows, so retried attempts are audited too.

Nothing Ansible prints is kept: event files are not written to disk, extra vars travel in a
0600 file inside a private data dir that is removed afterwards (and, after a crash, at the next
worker start), a `no_log` result is recorded only as censored, and the values of secret vars
are scrubbed from every message before it is recorded or heartbeated. Ansible runs with a
minimal environment, never the worker's own: no database URL, no Temporal credentials.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace
from pathlib import Path
from typing import Any

from ansible_runner.interface import init_runner
from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

from activities.classify import classify
from activities.extravars import Scrubber, secret_values
from activities.processes import stop_leftovers, stop_process_tree
from activities.rundirs import MARKERS, playbook_env, run_dir, unsafe_yaml, write_private
from workflows.metrics import PLAYBOOKS_RUNNING
from workflows.runs import PlaybookProgress, PlaybookResult, RunPlaybookInput, TaskRecord
from workflows.types import ErrorType, HostPreview, StepPreview

# ansible-runner event -> the status we record for that task on that host
_RESULT_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_skipped": "skipped",
    "runner_on_unreachable": "unreachable",
}
_MSG_LIMIT = 500
_ERROR_LINES = 50  # of Ansible's ERROR output kept: evidence needs the first; a flood must fit a payload
_WRITE_RETRY_CAP = 15.0  # seconds between tries of a task row write; well inside the heartbeat timeout
CENSORED = "(output hidden: no_log)"
log = logging.getLogger("signoff.playbooks")
TaskSink = Callable[[list[TaskRecord], str], None]  # (tasks, workflow id): writes them to the audit


class _Recorder:
    """Turns ansible-runner events into TaskRecords and heartbeats progress; stops the run on
    cancellation, past its timeout, or when no event arrives for its idle timeout."""

    def __init__(self, inp: RunPlaybookInput, attempt: int, scrub: Callable[[str], str]) -> None:
        self._inp = inp
        self.attempt = attempt
        self.scrub = scrub
        self.started = self.last_event = time.monotonic()
        self.stopped: str | None = None  # "timeout" or "hung" when the watchdog stopped the run
        self.tasks: list[TaskRecord] = []
        self.progress = PlaybookProgress()
        self.errors: list[str] = []
        self.playbook_pid: int | None = None

    def on_event(self, event: dict[str, Any]) -> bool:
        self.last_event = time.monotonic()
        if self.playbook_pid is None and event.get("pid"):
            self.playbook_pid = int(event["pid"])  # events come from the ansible-playbook process
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        scrub = self.scrub
        if kind == "playbook_on_play_start":
            self.progress = replace(self.progress, play=scrub(str(data.get("play", ""))), task="", host="")
        elif kind == "playbook_on_task_start":
            self.progress = replace(self.progress, task=scrub(str(data.get("task", ""))), host="")
        elif kind in _RESULT_EVENTS:
            self._record(_RESULT_EVENTS[kind], data)
        elif kind == "error" or (kind == "verbose" and "ERROR" in str(event.get("stdout", ""))):
            self._error(scrub(str(event.get("stdout", "")).strip()))
        activity.heartbeat(self.progress)
        return False  # keep no event files on disk: they would hold every task's full output

    def _error(self, line: str) -> None:
        """Only the first lines, each cut after it was scrubbed whole (no part of a secret stays)."""
        if len(self.errors) < _ERROR_LINES:
            self.errors.append(line[: _MSG_LIMIT * 4])

    def should_cancel(self) -> bool:
        activity.heartbeat(self.progress)
        # Not on worker shutdown: the worker's graceful shutdown lets the playbook finish,
        # and cancels it (landing here) only when that time is up.
        if not activity.is_cancelled():
            now, inp = time.monotonic(), self._inp
            if inp.timeout_seconds and now - self.started > inp.timeout_seconds:
                self.stopped = "timeout"
            elif inp.idle_timeout_seconds and now - self.last_event > inp.idle_timeout_seconds:
                self.stopped = "hung"
            else:
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
                task_id=f"{self._inp.workflow_id}.{self._inp.step}.{self.attempt}.{seq}",
                step=self._inp.step,
                attempt=self.attempt,
                seq=seq,
                play=self.scrub(str(data.get("play", ""))),
                task=self.scrub(str(data.get("task", ""))),
                action=str(data.get("task_action", "")),
                host=str(data.get("host", "")),
                status=status,
                msg=self.scrub(_message(res)),
                duration=float(data.get("duration") or 0.0),
            )
        )
        # status names are PlaybookProgress counter names
        self.progress = replace(
            self.progress, host=str(data.get("host", "")), **{status: getattr(self.progress, status) + 1}
        )


def _message(res: dict[str, Any]) -> str:
    if "censored" in res or res.get("_ansible_no_log"):
        return CENSORED
    msg = res.get("msg") or res.get("stderr") or ""
    if not isinstance(msg, str):
        msg = json.dumps(msg, default=str)
    return msg[:_MSG_LIMIT]


STEP: ContextVar[int | None] = ContextVar("signoff_step", default=None)  # for log lines (workers.logs)
_running_lock = threading.Lock()
_running_count: dict[str, int] = {}  # per activity type: the meter labels the gauge with it


@contextmanager
def _running() -> Iterator[None]:
    """signoff_playbooks_running: Ansible runs in progress in this worker, per activity type."""
    kind = activity.info().activity_type
    gauge = activity.metric_meter().create_gauge(PLAYBOOKS_RUNNING, "Ansible runs in progress on this worker")
    with _running_lock:
        _running_count[kind] = _running_count.get(kind, 0) + 1
        gauge.set(_running_count[kind])
    try:
        yield
    finally:
        with _running_lock:
            _running_count[kind] -= 1
            gauge.set(_running_count[kind])


class PlaybookActivities:
    def __init__(
        self,
        playbook_dir: Path,
        inventory: Path,
        env: Mapping[str, str] | None = None,
        record_tasks: TaskSink | None = None,
    ) -> None:
        """`env`: what playbooks run with (see `playbook_env`); by default built from this
        process's. `record_tasks` writes each attempt's task rows as soon as it ends."""
        self._playbook_dir = playbook_dir.resolve()
        self._inventory = inventory
        self._env = dict(env) if env is not None else playbook_env(os.environ)
        self._record_tasks = record_tasks

    @activity.defn(name="run_playbook", no_thread_cancel_exception=True)
    def run_playbook(self, inp: RunPlaybookInput) -> PlaybookResult:
        attempt = inp.attempt_offset + activity.info().attempt
        STEP.set(inp.step)
        recorder = _Recorder(inp, attempt, Scrubber(secret_values(inp.vars, inp.secret_vars)))
        stop_leftovers(inp.workflow_id, inp.step)  # never two copies of a step at once
        log.info("running %s, attempt %s", inp.playbook, attempt)
        try:
            status, rc, tail = self._run(inp, recorder)
        finally:
            written = self._write_tasks(inp, recorder)
        log.info("%s ended %s (rc %s): %s", inp.playbook, status, rc, recorder.progress)
        result = PlaybookResult(
            playbook=inp.playbook,
            step=inp.step,
            attempt=recorder.attempt,
            status=status,
            rc=rc,
            # Task results stay out of workflow history: the rows are written; only counts return.
            tasks=[] if written else recorder.tasks,
            progress=recorder.progress,
            tasks_recorded=len(recorder.tasks) if written else 0,
        )
        return _outcome(result, recorder, tail)

    def _write_tasks(self, inp: RunPlaybookInput, recorder: _Recorder) -> bool:
        """Write the attempt's task rows before the activity completes. While the database is
        away this retries with capped backoff, heartbeating, for as long as the activity may
        run: the playbook has run, and running it again to get its rows back is no answer."""
        if self._record_tasks is None:
            return False
        delay = 0.5
        while True:
            try:
                self._record_tasks(recorder.tasks, inp.workflow_id)
                return True
            except Exception as err:
                if isinstance(err, ApplicationError) and err.non_retryable:  # refused: retrying cannot help
                    log.exception("the task rows of %s step %s were refused", inp.workflow_id, inp.step)
                    return False
                log.warning("cannot write the task rows of %s step %s yet: %s", inp.workflow_id, inp.step, err)
            activity.heartbeat(recorder.progress)
            activity.wait_for_cancelled_sync(timeout=delay)
            if activity.is_cancelled():
                return False
            delay = min(delay * 2, _WRITE_RETRY_CAP)

    @activity.defn(name="preview_playbook", no_thread_cancel_exception=True)
    def preview_playbook(self, inp: RunPlaybookInput) -> StepPreview:
        """The step in check mode (`--check --diff`): per host, what would change. A playbook
        that cannot run in check mode gets "no preview" with the reason, never a failure."""
        STEP.set(inp.step)
        recorder = _Recorder(inp, activity.info().attempt, Scrubber(secret_values(inp.vars, inp.secret_vars)))
        try:
            status, rc, tail = self._run(inp, recorder, check=True)
        except ApplicationError as err:
            return StepPreview(step=inp.step, playbook=inp.playbook, available=False, reason=err.message)
        if activity.is_cancelled():
            raise CancelledError("preview cancelled; ansible-playbook was stopped")
        hosts = _host_previews(recorder.tasks)
        problem = next((t for t in recorder.tasks if t.status in ("failed", "unreachable")), None)
        reason = None
        if problem is not None:
            reason = f"task {problem.task!r} {problem.status} in check mode on {problem.host}: {problem.msg}"
        elif status != "successful":
            reason = "\n".join(recorder.errors) or tail or f"ansible-playbook exited with rc {rc} in check mode"
        return StepPreview(step=inp.step, playbook=inp.playbook, available=reason is None, hosts=hosts, reason=reason)

    def _run(self, inp: RunPlaybookInput, recorder: _Recorder, check: bool = False) -> tuple[str, int, str]:
        """ansible-playbook for one step, in a private run dir with the minimal environment;
        returns ansible-runner's status, the exit code and the scrubbed ERROR lines."""
        with _running():
            return self._run_counted(inp, recorder, check)

    def _run_counted(self, inp: RunPlaybookInput, recorder: _Recorder, check: bool) -> tuple[str, int, str]:
        playbook = (self._playbook_dir / inp.playbook).resolve()
        if not playbook.is_file() or not playbook.is_relative_to(self._playbook_dir):
            raise ApplicationError(
                f"playbook {inp.playbook!r} is not in {self._playbook_dir}",
                type=ErrorType.PLAYBOOK_ERROR,
                non_retryable=True,
            )
        with run_dir() as private_dir:
            if inp.vars:
                write_private(private_dir / "env" / "extravars", unsafe_yaml(inp.vars))
            runner = init_runner(
                private_data_dir=str(private_dir),
                project_dir=str(self._playbook_dir),
                playbook=str(playbook),
                inventory=str(self._inventory),
                limit=inp.limit,
                cmdline="--check --diff" if check else None,
                quiet=True,
                suppress_env_files=True,
                settings={"pexpect_timeout": 1},
                envvars={
                    **self._env,
                    # In every process of the run: `ps e` tells whose change a process is.
                    "SIGNOFF_WORKFLOW_ID": inp.workflow_id,
                    "SIGNOFF_STEP": str(inp.step),
                },
                event_handler=recorder.on_event,
                cancel_callback=recorder.should_cancel,
            )
            # ansible-runner seeds the run's environment with the worker's whole environment (and
            # writes it to artifacts/<ident>/command): keep what we passed and what it added.
            runner.config.env = {
                k: v for k, v in runner.config.env.items() if k in self._env or k in MARKERS or k not in os.environ
            }
            runner.run()
            return (
                str(runner.status),
                int(runner.rc if runner.rc is not None else -1),
                recorder.scrub(_tail(runner)),
            )


def _host_previews(tasks: list[TaskRecord]) -> list[HostPreview]:
    hosts: dict[str, HostPreview] = {}
    for task in tasks:
        seen = hosts.get(task.host) or HostPreview(host=task.host)
        if task.status == "changed":
            seen = replace(seen, changed=seen.changed + 1, would_change=[*seen.would_change, task.task])
        elif task.status in ("failed", "unreachable"):
            seen = replace(seen, failed=seen.failed + 1)
        elif task.status == "skipped":
            seen = replace(seen, skipped=seen.skipped + 1)
        else:
            seen = replace(seen, ok=seen.ok + 1)
        hosts[task.host] = seen
    return list(hosts.values())


def _outcome(result: PlaybookResult, recorder: _Recorder, tail: str) -> PlaybookResult:
    """Successful runs return; every other outcome raises an ApplicationError typed by its
    class, with the PlaybookResult (tasks, class, evidence) attached."""
    if activity.is_cancelled():  # whatever the status: a stopped playbook may look failed
        raise CancelledError("playbook cancelled; ansible-playbook was stopped")
    if result.status == "successful" and recorder.stopped is None:
        return result
    errors = recorder.errors or ([tail] if tail else [])
    failure = classify(
        recorder.tasks,
        errors,
        rc=result.rc,
        status=result.status,
        stopped=recorder.stopped,
        last_task=recorder.progress.task,
    )
    first_failed = next((t.task_id for t in recorder.tasks if t.status in ("failed", "unreachable")), None)
    details = replace(
        result,
        error=failure.message,
        failure_class=str(failure.cls),
        evidence=failure.evidence[:_MSG_LIMIT],
        failed_task=first_failed,
    )
    raise ApplicationError(
        failure.message,
        details,
        type=failure.error_type(task_ran=bool(recorder.tasks)),
        non_retryable=not failure.retryable,
    )


def _tail(runner: Any) -> str:
    """The ERROR lines of a run that failed before any task, e.g. a syntax error."""
    try:
        text = runner.stdout.read()
    except (OSError, AttributeError):
        return ""
    lines = [line.strip() for line in text.splitlines() if "ERROR" in line]
    return "\n".join(lines)[-_MSG_LIMIT * 2 :]
