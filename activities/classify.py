"""Why a playbook run failed, from its events and output: a small rule table (the "observer").

Each class says whether running the step again can help. Unreachable hosts and killed runs
are retried by Temporal with backoff; everything else waits for an operator's decision,
because running the same thing again gives the same answer (a syntax error, a missing module,
a wrong password) or would repeat what may be a half-applied change (a timeout, a hang).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from workflows.runs import TaskRecord
from workflows.types import ErrorType, FailureClass

_AUTH = re.compile(
    r"permission denied|authentication fail|invalid password|incorrect password|incorrect sudo password"
    r"|a password is required|missing sudo password|become password|access denied|not authori[sz]ed|401 unauthorized",
    re.IGNORECASE,
)
_MISSING = re.compile(
    r"no module named|no package matching|failed to import the required python library|couldn't resolve module"
    r"|module not found|command not found|no such file or directory: '|not found in path|unable to find .* in the path"
    r"|could not find the requested service|no matching distribution",
    re.IGNORECASE,
)
_UNDEFINED = re.compile(r"is undefined|undefined variable|has no attribute", re.IGNORECASE)
_SYNTAX = re.compile(
    r"syntax error|yaml|is not a valid attribute|conflicting action statements|could not be found|unexpected parameter"
    r"|was not found|no action detected|found a duplicate",
    re.IGNORECASE,
)

RETRYABLE = frozenset({FailureClass.UNREACHABLE, FailureClass.KILLED})
_ERROR_TYPES = {
    FailureClass.UNREACHABLE: ErrorType.HOST_UNREACHABLE,
    FailureClass.TIMEOUT: ErrorType.PLAYBOOK_TIMEOUT,
    FailureClass.HUNG: ErrorType.PLAYBOOK_HUNG,
    FailureClass.KILLED: ErrorType.PLAYBOOK_KILLED,
}


@dataclass(frozen=True)
class Failure:
    cls: FailureClass
    evidence: str  # the line that decided it
    message: str  # for people: what happened, where

    @property
    def retryable(self) -> bool:
        return self.cls in RETRYABLE

    def error_type(self, task_ran: bool) -> ErrorType:
        if self.cls in _ERROR_TYPES:
            return _ERROR_TYPES[self.cls]
        return ErrorType.PLAYBOOK_FAILED if task_ran else ErrorType.PLAYBOOK_ERROR


def classify(
    tasks: list[TaskRecord], errors: list[str], *, rc: int, status: str, stopped: str | None = None, last_task: str = ""
) -> Failure:
    """The class of a run that did not succeed. `stopped` is "timeout" or "hung" when signoff's
    own watchdog stopped it; `errors` are Ansible's ERROR lines (already scrubbed)."""
    if stopped == "timeout":
        return Failure(FailureClass.TIMEOUT, last_task, f"playbook ran past its time limit during task {last_task!r}")
    if stopped == "hung":
        return Failure(FailureClass.HUNG, last_task, f"no Ansible event for too long; hung in task {last_task!r}")
    unreachable = next((t for t in tasks if t.status == "unreachable"), None)
    if unreachable is not None:
        where = f"host {unreachable.host} unreachable: {unreachable.msg}"
        if _AUTH.search(unreachable.msg):
            return Failure(FailureClass.AUTH_DENIED, unreachable.msg, where)
        return Failure(FailureClass.UNREACHABLE, unreachable.msg, where)
    failed = next((t for t in tasks if t.status == "failed"), None)
    if failed is not None:
        where = f"task {failed.task!r} failed on {failed.host}: {failed.msg}"
        for pattern, cls in (
            (_UNDEFINED, FailureClass.UNDEFINED_VARIABLE),
            (_MISSING, FailureClass.MISSING_DEPENDENCY),
            (_AUTH, FailureClass.AUTH_DENIED),
        ):
            if pattern.search(failed.msg):
                return Failure(cls, failed.msg, where)
        return Failure(FailureClass.TASK_FAILED, failed.msg, where)
    text = "\n".join(errors)
    evidence = next((line for line in errors if line.strip()), "")
    if rc < 0 or rc in (137, 143) or (status == "canceled" and not text):
        return Failure(FailureClass.KILLED, f"rc {rc}", f"ansible-playbook was killed (rc {rc})")
    for pattern, cls in (
        (_UNDEFINED, FailureClass.UNDEFINED_VARIABLE),
        (_MISSING, FailureClass.MISSING_DEPENDENCY),
        (_SYNTAX, FailureClass.SYNTAX_ERROR),
    ):
        found = pattern.search(text)
        if found:
            line = next((line for line in errors if pattern.search(line)), evidence)
            return Failure(cls, line, f"playbook could not run ({status}): {text or f'rc {rc}'}")
    return Failure(
        FailureClass.ERROR, evidence or f"rc {rc}", f"playbook could not run ({status}): {text or f'rc {rc}'}"
    )
