"""Payload types and constants shared by the workflow, the activities and the CLI.

Standard library only: this module is imported inside the workflow sandbox.

Every field name here is part of what users script against (DESIGN.md section 3): rename
nothing, only add. Values that cross Temporal are frozen dataclasses; the workflow's own
mutable state is `ChangeRequestStatus`, which the `status` query returns as it is.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any

from workflows.runs import TaskRecord

TASK_QUEUE = "signoff"


SITE_NAME = re.compile(r"(?!playbooks$)[a-z0-9][a-z0-9-]{0,39}")  # a site, as `signoff_site` names it


WORKFLOW_TYPE = "ChangeRequestWorkflow"
NOT_YET_PLANNED = "(shown once planned)"  # a var's value in `status` before the plan says if it is secret


class Phase(enum.StrEnum):
    PLANNING = "planning"
    PLANNED = "planned"  # final for dry_run
    AWAITING_APPROVAL = "awaiting_approval"
    EXECUTING = "executing"
    AWAITING_DECISION = "awaiting_decision"  # a step failed: retry, skip or abort?
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"  # final: every step ran or was skipped by an operator's decision
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
    SKIPPED = "skipped"  # by an operator's decision after it failed
    CANCELLED = "cancelled"


class Verdict(enum.StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    # an operator's decision on a failed step (the `decide` signal's `action`)
    RETRY = "retry"
    SKIP = "skip"
    ABORT = "abort"


DECIDE_ACTIONS = (Verdict.RETRY, Verdict.SKIP, Verdict.ABORT)


class FailureClass(enum.StrEnum):
    """Why a playbook run failed (activities/classify.py); only some are worth retrying."""

    UNREACHABLE = "unreachable"  # retried with backoff
    AUTH_DENIED = "auth_denied"
    MISSING_DEPENDENCY = "missing_dependency"  # package, module, command
    UNDEFINED_VARIABLE = "undefined_variable"
    SYNTAX_ERROR = "syntax_error"
    TASK_FAILED = "task_failed"
    TIMEOUT = "timeout"  # ran past its `timeout`
    HUNG = "hung"  # no Ansible event for its `idle_timeout`
    KILLED = "killed"  # retried with backoff
    ERROR = "error"  # failed before any task, for no reason the table knows
    NO_WORKER = "no_worker"  # no worker of the step's site polled its queue within its `timeout`


class ErrorType(enum.StrEnum):
    """`ApplicationError.type` values raised by signoff; the workflow branches on these.

    InvalidInput        workflow input or a signal/update payload is malformed (never retried)
    DecisionRefused     an approve/reject from someone the policy does not allow, or too late
    NoPlaybookMatched   planning found nothing in the catalog for the request
    PlaybookFailed      Ansible ran and a task failed (never retried: rerunning will not help)
    PlaybookError       Ansible could not run the playbook: syntax error, missing file or var
    HostUnreachable     a host could not be reached (retried by Temporal, then fails the step)
    PlaybookTimeout     the playbook ran past its `timeout` and was stopped (never retried)
    PlaybookHung        no Ansible event arrived for its `idle_timeout`; stopped (never retried)
    PlaybookKilled      ansible-playbook died of a signal (retried by Temporal)
    AuditFailed         the git audit cannot be written (a path the filesystem refuses); recorded
    LintFailed          ansible-lint could not lint a failed step's playbook (never retried)
    NotifyRefused       SIGNOFF_NOTIFY_URL answered 4xx: retrying the same POST will not help

    A failed playbook attaches its PlaybookResult, whose `failure_class` and `evidence` say why.
    """

    INVALID_INPUT = "InvalidInput"
    DECISION_REFUSED = "DecisionRefused"
    NO_PLAYBOOK_MATCHED = "NoPlaybookMatched"
    PLAYBOOK_FAILED = "PlaybookFailed"
    PLAYBOOK_ERROR = "PlaybookError"
    HOST_UNREACHABLE = "HostUnreachable"
    PLAYBOOK_TIMEOUT = "PlaybookTimeout"
    PLAYBOOK_HUNG = "PlaybookHung"
    PLAYBOOK_KILLED = "PlaybookKilled"
    AUDIT_FAILED = "AuditFailed"
    LINT_FAILED = "LintFailed"
    NOTIFY_REFUSED = "NotifyRefused"


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
    plan_digest: str | None = None  # when given, the plan approved: refused unless it is the one waiting
    signature: str | None = None  # armored `ssh-keygen -Y sign -n signoff` over signing_message(...)
    # The channel it came through (`web`, `cli`, ...) and who that channel authenticated
    # (`local:alice`, `oidc:<issuer>#<sub>`): claims of the sender, recorded as sent and never
    # used to decide anything. What proves them is the key that signed the decision (its
    # fingerprint is recorded with it): they are worth what that key's holder is trusted for.
    # The signature itself does not cover them (signing_message: verdict, request, plan).
    via: str | None = None
    subject: str | None = None


@dataclass(frozen=True)
class RejectInput:
    approver: str
    reason: str | None = None
    plan_digest: str | None = None
    signature: str | None = None
    via: str | None = None  # as ApproveInput's
    subject: str | None = None


@dataclass(frozen=True)
class DecideInput:
    operator: str
    action: str  # retry | skip | abort
    comment: str | None = None
    plan_digest: str | None = None
    signature: str | None = None
    via: str | None = None  # as ApproveInput's
    subject: str | None = None


# --- planning -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApprovalPolicy:
    """Who may approve and how; read from the worker's environment by the planning activity,
    so the values a workflow used are recorded in its history."""

    approvers: list[str] = field(default_factory=list)  # empty: anyone but the requester
    required_approvals: int = 1
    timeout_seconds: float = 24 * 3600
    auto_approve_risk: str = "none"  # "none" | "low"
    decision_timeout_seconds: float = 24 * 3600  # then a failed step's request is aborted
    signatures_required: bool = False  # SIGNOFF_ALLOWED_SIGNERS was set: every decision must be signed


@dataclass(frozen=True)
class Budget:
    """What one request may use (0: no limit); from the worker's environment, recorded with the plan."""

    max_steps: int = 0
    max_attempts: int = 0  # playbook runs started, operators' retries included
    max_execution_seconds: float = 0  # from the first playbook to the last
    # where a limit came from when a playbook header set it: "the header of db-migrate.yml"
    attempts_from: str = ""
    execution_from: str = ""


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
    max_attempts: int | None = None  # header `max_attempts:`: the request's budget, overriding the env's
    max_execution_seconds: int | None = None  # header `max_execution_time:`
    site: str | None = None  # inventory var `signoff_site` of its hosts: run by that site's workers


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
    failure_analysis: bool = False  # whether a failed step's playbook is linted (workflows.analysis)
    notify: bool = False  # whether waiting for someone is POSTed to SIGNOFF_NOTIFY_URL (workflows.inbox)
    # failed steps on one host within the window that pause it (SIGNOFF_BREAKER_FAILURES, _WINDOW); 0: off
    breaker_failures: int = 0
    breaker_window_seconds: float = 0.0
    budget: Budget | None = None  # None in plans recorded before budgets existed
    preview: list[StepPreview] = field(default_factory=list)  # filled in by the workflow
    unmatched_clauses: list[UnmatchedClause] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)  # what the request said not to do
    plan_digest: str = ""  # "sha256:<hex>" of what will run (workflows.digest); set by the workflow

    @property
    def services(self) -> list[str]:
        return sorted({step.service for step in self.steps})


# --- workflow state, query and result -------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    who: str  # PRECIS-normalised (workflows.identity): the form every comparison uses
    verdict: Verdict
    note: str | None
    at: str  # ISO 8601, workflow time
    raw: str | None = None  # the name as sent, when it differs from `who`
    step: int | None = None  # for retry/skip/abort: the failed step decided on
    plan_digest: str | None = None  # the plan the decision named, when it named one
    key_fingerprint: str | None = None  # the verified signing key (SHA256:...), for a signed decision
    signature_sha256: str | None = None  # of the signature text: a signature counts once per request
    via: str | None = None  # the channel it came through, as the sender said (ApproveInput.via)
    subject: str | None = None  # who that channel authenticated, as the sender said


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
    failure_class: str | None = None  # FailureClass of the last failure
    evidence: str | None = None
    runs: int = 0  # how many times the step was started (operator retries add one)


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
    decisions: list[Decision] = field(default_factory=list)  # operators' retry/skip/abort
    waiting_for: str | None = None  # what the request waits for now, in words


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
    error: str | None = None  # why there is no commit (the database says so too)
