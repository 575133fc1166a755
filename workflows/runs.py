"""What one playbook run is given and gives back: payloads of the playbook activities.

Standard library only: this module is imported inside the workflow sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RunPlaybookInput:
    workflow_id: str
    step: int
    playbook: str
    limit: str | None = None
    vars: dict[str, Any] = field(default_factory=dict)
    secret_vars: list[str] = field(default_factory=list)  # names whose values are scrubbed from records
    attempt_offset: int = 0  # attempts of an operator's retry continue the step's numbering
    timeout_seconds: int | None = None  # stop the run after this long (classified timeout)
    idle_timeout_seconds: int | None = None  # stop it after this long without an Ansible event (hung)
    site: str | None = None  # run by the workers of this site (inventory var `signoff_site`)


@dataclass(frozen=True)
class TaskRecord:
    """One task's outcome on one host, as Ansible reported it (secrets already censored)."""

    task_id: str  # "<workflow id>.<step>.<attempt>.<seq>", stable across audit retries
    step: int
    attempt: int
    seq: int
    play: str
    task: str
    action: str
    host: str
    status: str  # ok | changed | failed | skipped | unreachable
    msg: str = ""
    duration: float = 0.0


@dataclass(frozen=True)
class PlaybookProgress:
    """Heartbeat details of a running playbook: what the Web UI and `signoff watch` show."""

    play: str = ""
    task: str = ""
    host: str = ""
    ok: int = 0
    changed: int = 0
    failed: int = 0
    skipped: int = 0
    unreachable: int = 0


@dataclass(frozen=True)
class PlaybookResult:
    playbook: str
    step: int
    attempt: int
    status: str  # ansible-runner status: successful | failed | canceled | timeout
    rc: int
    tasks: list[TaskRecord]  # empty where the activity wrote them to the audit itself (the worker's)
    progress: PlaybookProgress
    error: str = ""
    failure_class: str = ""  # FailureClass, when it failed
    evidence: str = ""  # the line that decided the class
    tasks_recorded: int = 0  # task rows this attempt wrote to the audit
    failed_task: str | None = None  # the task_id of the first task that failed or was unreachable


@dataclass(frozen=True)
class AnalyzeFailureInput:
    workflow_id: str  # the change request
    step: int
    attempt: int
    task_id: str | None  # the task that failed, when one did (TaskRecord.task_id)
    playbook: str  # relative to the playbook dir, as planned
