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
NOT_YET_PLANNED = "(shown once planned)"  # a var's value in `status` before the plan says if it is secret

# Bounds on what a requester may send, checked before anything walks the value: a deeply nested
# object would otherwise blow the recursion limit wherever it is converted (history, query, DB).
MAX_INPUT_BYTES = 256 * 1024
MAX_REQUEST_CHARS = 4000
MAX_VARS_DEPTH = 32
MAX_VARS_NODES = 10_000  # keys and list items, all levels together
MAX_VAR_NAME_CHARS = 128
MAX_INVENTORY_CHARS = 1000

# Names Ansible gives a meaning of its own: connection and privilege settings, magic variables,
# play keywords and Jinja globals. An extra var has the highest precedence in Ansible, so any of
# these set by a requester would steer Ansible itself (`ansible_ssh_common_args` runs commands on
# the worker, `ansible_connection: local` moves a play onto it). Taken from ansible-core's
# `get_reserved_names()`, `INTERNAL_STATIC_VARS` and `MAGIC_VARIABLE_MAPPING`; the planning
# activity checks again against the installed ansible-core, and a test keeps this list a superset.
RESERVED_VAR_PREFIXES = ("ansible_", "_ansible", "inventory_", "role_", "play_", "playbook_", "discovered_interpreter")
RESERVED_VAR_NAMES = frozenset(
    {
        "action", "always", "any_errors_fatal", "args", "async", "async_val", "become", "become_exe",
        "become_flags", "become_method", "become_pass", "become_user", "block", "changed_when",
        "check_mode", "collections", "connection", "cycler", "debugger", "delay", "delegate_facts",
        "delegate_to", "dict", "diff", "environment", "fact_path", "failed_when", "force_handlers",
        "gather_facts", "gather_timeout", "group_names", "groups", "handlers", "hosts", "hostvars",
        "ignore_errors", "ignore_unreachable", "item", "joiner", "lipsum", "local_action", "lookup",
        "loop", "loop_control", "loop_with", "max_fail_percentage", "module_defaults", "name",
        "namespace", "no_log", "notify", "now", "omit", "order", "password", "poll", "port",
        "post_tasks", "pre_tasks", "private_key_file", "q", "query", "range", "register",
        "remote_addr", "remote_user", "rescue", "retries", "roles", "run_once", "serial", "strategy",
        "tags", "tasks", "throttle", "timeout", "undef", "until", "vars", "vars_files", "vars_prompt",
        "when", "with_",
    }
)
# Var names whose values are treated as secret even when no playbook says so.
CREDENTIAL_NAME_PARTS = ("password", "passwd", "secret", "token", "key", "credential", "private")


def reserved_var(name: str) -> bool:
    lowered = name.lower()
    return lowered in RESERVED_VAR_NAMES or lowered.startswith(RESERVED_VAR_PREFIXES) or lowered.startswith("with_")


def credential_like(name: str) -> bool:
    lowered = name.lower()
    return any(part in lowered for part in CREDENTIAL_NAME_PARTS)


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
    AuditFailed         the git audit cannot be written (a path the filesystem refuses); recorded
    """

    INVALID_INPUT = "InvalidInput"
    DECISION_REFUSED = "DecisionRefused"
    NO_PLAYBOOK_MATCHED = "NoPlaybookMatched"
    PLAYBOOK_FAILED = "PlaybookFailed"
    PLAYBOOK_ERROR = "PlaybookError"
    HOST_UNREACHABLE = "HostUnreachable"
    AUDIT_FAILED = "AuditFailed"


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
# Terminal escapes, other C0/C1 controls and bidi overrides (Trojan Source) would make the
# request an approver reads differ from the one that was sent.
_INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A host pattern as Ansible reads `--limit`: names, groups, globs, ranges and the `:&!,` operators.
# Not `@file` (Ansible would read the hosts from that file on the worker) and no whitespace tricks.
_LIMIT = re.compile(r"^[A-Za-z0-9_.*?\[\]:&!,~^$|()+-]+$")


def parse_input(value: object) -> ChangeRequestInput:
    """Validate decoded workflow input strictly: unknown fields are errors, not ignored."""
    obj = _object(value, ChangeRequestInput)
    request = _text(obj, "request")
    if len(request) > MAX_REQUEST_CHARS:
        raise InvalidInput("request", f"is longer than {MAX_REQUEST_CHARS} characters")
    if _INVISIBLE.search(request):
        raise InvalidInput("request", "holds control or bidirectional-override characters, which hide text from the approver")
    requester = _text(obj, "requester")
    inventory = obj.get("inventory")
    if inventory is not None and (not isinstance(inventory, str) or not inventory.strip()):
        raise InvalidInput("inventory", "must be a non-empty string (a group or host pattern)")
    if inventory is not None:
        inventory = inventory.strip()
        if len(inventory) > MAX_INVENTORY_CHARS or not _LIMIT.match(inventory):
            raise InvalidInput(
                "inventory", "must be an Ansible host pattern (names, groups, globs, ranges, ':&!,'), not a file or command"
            )
    extra_vars = obj.get("vars", {})
    if not isinstance(extra_vars, dict):
        raise InvalidInput("vars", f"must be an object, got {_json_type(extra_vars)}")
    check_shape("vars", extra_vars)
    for name, var_value in extra_vars.items():
        check_var_name(name)
        _reject_templates(f"vars.{name}", var_value)
    dry_run = obj.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise InvalidInput("dry_run", f"must be true or false, got {_json_type(dry_run)}")
    return ChangeRequestInput(
        request=request.strip(),
        requester=requester.strip(),
        inventory=inventory or None,
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


def check_var_name(name: str) -> None:
    if len(name) > MAX_VAR_NAME_CHARS or not _VAR_NAME.match(name):
        raise InvalidInput(f"vars.{name[:MAX_VAR_NAME_CHARS]}", "is not a valid Ansible variable name")
    if reserved_var(name):
        raise InvalidInput(
            f"vars.{name}",
            "is a name Ansible reserves (connection, privilege or magic variable, or play keyword); "
            "a request may not set it",
        )


def check_shape(path: str, value: object) -> None:
    """Depth and size limits, checked without recursion so no input can exhaust the stack."""
    stack: list[tuple[object, int]] = [(value, 1)]
    nodes = 0
    while stack:
        item, depth = stack.pop()
        if depth > MAX_VARS_DEPTH:
            raise InvalidInput(path, f"is nested deeper than {MAX_VARS_DEPTH} levels")
        if isinstance(item, dict):
            nodes += len(item)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            nodes += len(item)
            stack.extend((v, depth + 1) for v in item)
        elif not (item is None or isinstance(item, (str, int, float, bool))):
            raise InvalidInput(path, f"holds {_json_type(item)}, which is not JSON data")
        if nodes > MAX_VARS_NODES:
            raise InvalidInput(path, f"has more than {MAX_VARS_NODES} keys and items")


def _reject_templates(path: str, value: object) -> None:
    """Extra vars are data: a Jinja expression in one would be evaluated by Ansible.
    Called only on values that passed `check_shape`, so the recursion is bounded."""
    if isinstance(value, str):
        if _JINJA.search(value):
            raise InvalidInput(path, "contains a Jinja template ({{ }}, {% %} or {# #}); extra vars must be plain data")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or _JINJA.search(key):
                raise InvalidInput(f"{path}", "has a key that is a Jinja template; extra vars must be plain data")
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
class VarSpec:
    """A var a playbook accepts from requests (its header's `vars:`)."""

    type: str | None = None  # str | int | float | bool | list | dict; None: any
    secret: bool = False


@dataclass(frozen=True)
class PlannedVar:
    """An extra var as the approver sees it."""

    name: str
    shown: str  # the value as JSON, or "(secret, sha256:<first 8 hex>)"
    secret: bool = False


@dataclass(frozen=True)
class PlannedStep:
    playbook: str  # path relative to the playbook dir
    service: str
    action: str  # deploy, configure, update, restart, ... or the playbook's own verb
    description: str
    risk: Risk
    hosts: str  # the playbook's host patterns, or "set by var `x`"
    required_vars: list[str] = field(default_factory=list)
    vars: list[str] = field(default_factory=list)  # names of the request's vars this step receives
    reason: str = ""  # the words of the request that chose this step
    limit: str | None = None  # the host pattern this step runs with (--limit), if any
    unmatched_target: str | None = None  # a target phrase that matched nothing, and why (not applied)
    host_list: list[str] = field(default_factory=list)  # the hosts the step will really touch
    sha256: str = ""  # of the playbook file when planned
    timeout_seconds: int | None = None  # header `timeout:`
    idle_timeout_seconds: int | None = None  # header `idle_timeout:`


@dataclass(frozen=True)
class UnmatchedClause:
    """A part of the request no playbook answers: planning fails naming it."""

    clause: str
    reason: str
    suggestions: list[str] = field(default_factory=list)


# 2: each step receives only the vars its playbook accepts (PlannedStep.vars)
# 3: each step runs with its own limit (PlannedStep.limit): the request's pattern and its target
PLAN_VERSION = 3


@dataclass(frozen=True)
class HostPreview:
    """What a step would do on one host, from a check-mode (`--check --diff`) run."""

    host: str
    ok: int = 0
    changed: int = 0
    failed: int = 0
    skipped: int = 0
    would_change: list[str] = field(default_factory=list)  # names of the tasks that would change


@dataclass(frozen=True)
class StepPreview:
    step: int
    playbook: str
    available: bool  # False: "no preview" (the playbook cannot run in check mode); `reason` says why
    hosts: list[HostPreview] = field(default_factory=list)
    reason: str | None = None


@dataclass(frozen=True)
class Plan:
    steps: list[PlannedStep]
    risk: Risk
    policy: ApprovalPolicy
    unmatched: str | None = None  # why nothing matched, when steps is empty
    error: str | None = None  # why the request cannot be planned although playbooks matched
    vars: list[PlannedVar] = field(default_factory=list)
    version: int = 1  # plans recorded before PLAN_VERSION 2 pass every var to every step
    check_mode_preview: bool = False  # whether the workflow previews each step before approval
    preview: list[StepPreview] = field(default_factory=list)  # filled in by the workflow
    unmatched_clauses: list[UnmatchedClause] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)  # what the request said not to do

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
    secret_vars: list[str] = field(default_factory=list)  # names whose values are scrubbed from records


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
    who: str  # PRECIS-normalised (workflows.identity): the form every comparison uses
    verdict: Verdict
    note: str | None
    at: str  # ISO 8601, workflow time
    raw: str | None = None  # the name as sent, when it differs from `who`


@dataclass(frozen=True)
class RefusedSignal:
    name: str
    who: str | None  # as sent: a refused name may not normalise at all
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
    request: ChangeRequestInput | None = None  # requester normalised; var values as the plan shows them
    requester_raw: str | None = None  # the requester as sent, when normalising changed it
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
