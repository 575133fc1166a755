"""Payloads of the per-host lock workflows (workflows/lock.py), and the rules of pausing a target:
by a person (`signoff pause`), or by the circuit breaker after too many failed steps on it within
a window. Pure and deterministic: the lock workflow, the change requests and the CLI share it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from workflows.names import bounded_id

LOCK_WORKFLOW_TYPE = "TargetLockWorkflow"
BREAKER = "breaker"  # who a pause is by, when the circuit breaker opened it
MAX_REASON = 500


def lock_workflow_id(task_queue: str, target: str) -> str:
    """The lock workflow of one inventory host (workflows/lock.py), per signoff deployment."""
    return bounded_id(f"signoff-lock:{task_queue}:{target}")


@dataclass(frozen=True)
class LockRequest:
    target: str  # an inventory host
    holder: str  # the change request's workflow id


@dataclass(frozen=True)
class TargetPause:
    by: str  # a normalised name, or "breaker"
    reason: str
    at: str  # ISO 8601, workflow time

    def describe(self) -> str:
        who = "the circuit breaker" if self.by == BREAKER else self.by
        return f"paused by {who} at {self.at}: {self.reason}"


@dataclass(frozen=True)
class LockInput:
    target: str
    queue: list[str] = field(default_factory=list)  # holder first, when carried over by continue-as-new
    paused: TargetPause | None = None  # carried over by continue-as-new
    failures: list[str] = field(default_factory=list)  # ISO times of failed steps, for the breaker


@dataclass(frozen=True)
class LockState:
    target: str
    holder: str | None = None
    waiting: list[str] = field(default_factory=list)
    paused: TargetPause | None = None


@dataclass(frozen=True)
class LockAnswer:
    """What asking for a lock (activities/locks.py `acquire_lock`) tells the request."""

    state: LockState
    taken: bool  # the lock is the asker's now; no `lock_granted` signal needs to come


@dataclass(frozen=True)
class PauseInput:
    """`pause` and `resume` on a target's lock workflow (signal, or update with a validator)."""

    by: str
    reason: str | None = None


@dataclass(frozen=True)
class StepFailed:
    """From a change request whose step failed on this target: the breaker counts it."""

    holder: str
    at: str  # ISO 8601, the request's workflow time
    trip_after: int  # failures within the window that open the breaker (SIGNOFF_BREAKER_FAILURES)
    window_seconds: float  # SIGNOFF_BREAKER_WINDOW


@dataclass(frozen=True)
class TargetEvent:
    """A pause, resume or breaker trip, for the audit (activities.audit_db)."""

    target: str
    kind: str  # pause | resume | trip
    by: str
    reason: str | None
    at: str


def recent_failures(failures: list[str], now: datetime, window: timedelta) -> list[str]:
    return [at for at in failures if now - datetime.fromisoformat(at) < window]


def breaker_trips(failures: list[str], failed: StepFailed, now: datetime) -> tuple[list[str], bool]:
    """The failures still in the window with this one, and whether they now open the breaker.
    ValueError for a report no request sends (a time without its zone, a window past what a
    timedelta holds): only a hand-made signal carries one, and it must change nothing."""
    at = datetime.fromisoformat(failed.at)
    if at.tzinfo is None:
        raise ValueError(f"at {failed.at!r} has no time zone")
    try:
        window = timedelta(seconds=failed.window_seconds)
    except (OverflowError, ValueError, TypeError):
        raise ValueError(f"window_seconds {failed.window_seconds!r} is not a duration") from None
    kept = [*recent_failures(failures, now, window), failed.at]
    return kept, failed.trip_after > 0 and len(kept) >= failed.trip_after
