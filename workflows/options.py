"""Timeouts, retry policies and budgets: how long and how often ChangeRequestWorkflow waits and
tries. Deterministic constants and a pure check, shared by the workflow and its mixins."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

from workflows.types import ErrorType, Plan, StepStatus

BOOKKEEPING_TIMEOUT = timedelta(seconds=60)
# A change that is approved, or half applied, waits out an outage of PostgreSQL or git instead of
# failing: bookkeeping retries without limit, backing off to a try every 30 s. What retrying
# cannot fix, the activities raise as non-retryable errors.
BOOKKEEPING_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=0,
)
# Planning reads the playbook repo and the catalog cache: bounded, so a request never sits in
# `planning` for good; it fails naming the problem.
PLANNING_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30), maximum_attempts=8
)
# Notifications retry for about an hour, then give up: nobody waits on them.
NOTIFY_TIMEOUT = timedelta(seconds=30)
NOTIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    maximum_attempts=12,
    non_retryable_error_types=[ErrorType.NOTIFY_REFUSED],
)
PREVIEW_TIMEOUT = timedelta(minutes=10)
# Only unreachable hosts and killed runs are raised as retryable (activities/classify.py).
MAX_PLAYBOOK_ATTEMPTS = 4
PLAYBOOK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    maximum_attempts=MAX_PLAYBOOK_ATTEMPTS,
    non_retryable_error_types=[ErrorType.PLAYBOOK_FAILED, ErrorType.PLAYBOOK_ERROR],
)
DEFAULT_PLAYBOOK_TIMEOUT = timedelta(hours=2)
# A step for a site nobody serves asks again after 15 s, then less often, up to every 5 minutes.
SITE_WAIT_FIRST = timedelta(seconds=15)
SITE_WAIT_MAX = timedelta(minutes=5)
SITE_PREVIEW_WAIT = timedelta(minutes=1)  # a site's check-mode preview not started by then: none
TIMEOUT_MARGIN = timedelta(minutes=5)  # the activity's own watchdog stops the run first
LOCK_CHECK = timedelta(minutes=5)  # a waiter asks the lock to look at its holder this often
LOCK_ASK_TIMEOUT = timedelta(seconds=30)  # one try of asking for a lock (activities/locks.py)
_LONGEST_PLAYBOOK = timedelta.max - TIMEOUT_MARGIN - timedelta(days=1)


def playbook_timeout(seconds: float | None) -> timedelta:
    """A step's time limit: its own (header `timeout:` or SIGNOFF_PLAYBOOK_TIMEOUT), else the
    default. Bounded, so that a plan from a worker that did not bound headers' durations cannot
    fail the request's workflow task on every try (`timedelta` overflows); below the bound,
    the same limit as before."""
    if not seconds:
        return DEFAULT_PLAYBOOK_TIMEOUT
    return timedelta(seconds=min(seconds, _LONGEST_PLAYBOOK.total_seconds()))


def over_budget(plan: Plan, steps: list[StepStatus], elapsed: timedelta) -> str | None:
    budget = plan.budget
    if budget is None:
        return None
    attempts = sum(step.runs for step in steps)
    if budget.max_attempts and attempts >= budget.max_attempts:
        source = budget.attempts_from or "SIGNOFF_MAX_ATTEMPTS"
        return f"{attempts} playbook runs, at most {budget.max_attempts} ({source})"
    if budget.max_execution_seconds and elapsed.total_seconds() >= budget.max_execution_seconds:
        limit = timedelta(seconds=budget.max_execution_seconds)
        source = budget.execution_from or "SIGNOFF_MAX_EXECUTION_TIME"
        return f"executing for {elapsed}, at most {limit} ({source})"
    return None
