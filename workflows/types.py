"""Payload types and constants shared by the workflow, the activities and the CLI.

Standard library only: this module is imported inside the workflow sandbox.

Every field name here is part of what users script against (DESIGN.md section 3): rename
nothing, only add. Values that cross Temporal are frozen dataclasses; the workflow's own
mutable state is `ChangeRequestStatus`, which the `status` query returns as it is.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from dataclasses import dataclass, field
from typing import Any

TASK_QUEUE = "signoff"
WORKFLOW_TYPE = "ChangeRequestWorkflow"
HIDDEN = "(hidden)"  # what the status query shows for an extra var's value


class Phase(enum.StrEnum):
    PLANNING = "planning"
    PLANNED = "planned"  # final for dry_run
    AWAITING_APPROVAL = "awaiting_approval"
    EXECUTING = "executing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class Risk(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return list(Risk).index(self)


class Action(enum.StrEnum):
    """What a playbook does, in the order steps run when a request asks for several."""

    DEPLOY = "deploy"
    CONFIGURE = "configure"
    UPDATE = "update"
    RESTART = "restart"
    VERIFY = "verify"
    REMOVE = "remove"


class StepState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Verdict(enum.StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class ErrorType(enum.StrEnum):
    """`ApplicationError.type` values raised by signoff; the workflow branches on these.

    InvalidInput        workflow input or a signal/update payload is malformed (never retried)
    DecisionRefused     an approve/reject from someone the policy does not allow, or too late
    NoPlaybookMatched   planning found nothing in the catalog for the request
    PlaybookFailed      Ansible ran and a task failed (never retried: rerunning will not help)
    PlaybookError       Ansible could not run the playbook: syntax error, missing file or var
    HostUnreachable     a host could not be reached (retried by Temporal, then fails the step)
    """

    INVALID_INPUT = "InvalidInput"
    DECISION_REFUSED = "DecisionRefused"
    NO_PLAYBOOK_MATCHED = "NoPlaybookMatched"
    PLAYBOOK_FAILED = "PlaybookFailed"
    PLAYBOOK_ERROR = "PlaybookError"
    HOST_UNREACHABLE = "HostUnreachable"


class InvalidInput(ValueError):
    """Raised by the parsers below; `field` names the offending field ("" for the whole value)."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}" if field else problem)


# --- workflow input -------------------------------------------------------------------------


@dataclass(frozen=True)
class ChangeRequestInput:
    request: str
    requester: str
    inventory: str | None = None
    vars: dict[str, Any] = field(default_factory=dict)
    dry_run: bool = False


@dataclass(frozen=True)
class ApproveInput:
    approver: str
    comment: str | None = None


@dataclass(frozen=True)
class RejectInput:
    approver: str
    reason: str | None = None


_JINJA = re.compile(r"{{|{%|{#")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_input(value: object) -> ChangeRequestInput:
    """Validate decoded workflow input strictly: unknown fields are errors, not ignored."""
    obj = _object(value, ChangeRequestInput)
    request = _text(obj, "request")
    requester = _text(obj, "requester")
    inventory = obj.get("inventory")
    if inventory is not None and (not isinstance(inventory, str) or not inventory.strip()):
        raise InvalidInput("inventory", "must be a non-empty string (a group or host pattern)")
    extra_vars = obj.get("vars", {})
    if not isinstance(extra_vars, dict):
        raise InvalidInput("vars", f"must be an object, got {_json_type(extra_vars)}")
    for name, var_value in extra_vars.items():
        if not _VAR_NAME.match(name):
            raise InvalidInput(f"vars.{name}", "is not a valid Ansible variable name")
        _reject_templates(f"vars.{name}", var_value)
    dry_run = obj.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise InvalidInput("dry_run", f"must be true or false, got {_json_type(dry_run)}")
    return ChangeRequestInput(
        request=request.strip(),
        requester=requester.strip(),
        inventory=inventory.strip() if inventory else None,
        vars=dict(extra_vars),
        dry_run=dry_run,
    )


def parse_approve(value: object) -> ApproveInput:
    obj = _object(value, ApproveInput)
    return ApproveInput(approver=_text(obj, "approver").strip(), comment=_optional_text(obj, "comment"))


def parse_reject(value: object) -> RejectInput:
    obj = _object(value, RejectInput)
    return RejectInput(approver=_text(obj, "approver").strip(), reason=_optional_text(obj, "reason"))


def _object(value: object, cls: type) -> dict[str, Any]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if not isinstance(value, dict):
        raise InvalidInput("", f"input must be a JSON object, got {_json_type(value)}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise InvalidInput(unknown[0], f"unknown field (expected one of: {', '.join(sorted(known))})")
    return value


def _text(obj: dict[str, Any], name: str) -> str:
    if name not in obj:
        raise InvalidInput(name, "is required")
    value = obj[name]
    if not isinstance(value, str):
        raise InvalidInput(name, f"must be a string, got {_json_type(value)}")
    if not value.strip():
        raise InvalidInput(name, "must not be empty")
    return value


def _optional_text(obj: dict[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidInput(name, f"must be a string, got {_json_type(value)}")
    return value


def _reject_templates(path: str, value: object) -> None:
    """Extra vars are data: a Jinja expression in one would be evaluated by Ansible."""
    if isinstance(value, str):
        if _JINJA.search(value):
            raise InvalidInput(path, "contains a Jinja template ({{ }}, {% %} or {# #}); extra vars must be plain data")
    elif isinstance(value, dict):
        for key, item in value.items():
            _reject_templates(f"{path}.{key}", item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _reject_templates(f"{path}[{index}]", item)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# --- planning -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApprovalPolicy:
    """Who may approve and how; read from the worker's environment by the planning activity,
    so the values a workflow used are recorded in its history."""

    approvers: list[str] = field(default_factory=list)  # empty: anyone but the requester
    required_approvals: int = 1
    timeout_seconds: float = 24 * 3600
    auto_approve_risk: str = "none"  # "none" | "low"


@dataclass(frozen=True)
class PlanInput:
    request: str
    inventory: str | None = None
    vars: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PlannedStep:
    playbook: str  # path relative to the playbook dir
    service: str
    action: Action
    description: str
    risk: Risk
    hosts: str
    required_vars: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Plan:
    steps: list[PlannedStep]
    risk: Risk
    policy: ApprovalPolicy
    unmatched: str | None = None  # why nothing matched, when steps is empty

    @property
    def services(self) -> list[str]:
        return sorted({step.service for step in self.steps})


# --- playbook runs --------------------------------------------------------------------------


@dataclass(frozen=True)
class RunPlaybookInput:
    workflow_id: str
    step: int
    playbook: str
    limit: str | None = None
    vars: dict[str, Any] = field(default_factory=dict)


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
    tasks: list[TaskRecord]
    progress: PlaybookProgress
    error: str = ""


# --- workflow state, query and result -------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    who: str
    verdict: Verdict
    note: str | None
    at: str  # ISO 8601, workflow time


@dataclass(frozen=True)
class RefusedSignal:
    name: str
    who: str | None
    reason: str
    at: str


@dataclass
class StepStatus:
    index: int
    playbook: str
    state: StepState = StepState.PENDING
    attempt: int = 0
    ok: int = 0
    changed: int = 0
    failed: int = 0
    error: str | None = None
    task_ids: list[str] = field(default_factory=list)


@dataclass
class ChangeRequestStatus:
    workflow_id: str
    phase: Phase = Phase.PLANNING
    request: ChangeRequestInput | None = None
    plan: Plan | None = None
    approvals: list[Decision] = field(default_factory=list)
    rejection: Decision | None = None
    refused: list[RefusedSignal] = field(default_factory=list)
    steps: list[StepStatus] = field(default_factory=list)
    audit_commit: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class ChangeRequestResult:
    outcome: Phase
    steps: list[StepStatus]
    audit_commit: str | None
    error: str | None = None


# --- audit ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditRecord:
    """Everything the audit activities write for one change request at one moment."""

    status: ChangeRequestStatus
    tasks: list[TaskRecord] = field(default_factory=list)


@dataclass(frozen=True)
class AuditCommitResult:
    sha: str
    files: list[str]
