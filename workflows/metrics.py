"""signoff's own metrics from workflow code, through the SDK's workflow metric meter: it records
nothing while a workflow replays, so a replayed history never counts twice. They are served with
the SDK's on SIGNOFF_METRICS_ADDRESS (workers.worker). The meter adds the namespace, task queue
and workflow type as labels."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

REQUESTS = "signoff_requests_total"
APPROVAL_WAIT = "signoff_approval_wait_seconds"
STEP_DURATION = "signoff_step_duration_seconds"
REFUSALS = "signoff_refusals_total"
PLAYBOOKS_RUNNING = "signoff_playbooks_running"  # set by activities.playbooks

# Prometheus buckets, in seconds: approvals take minutes to days, playbooks seconds to hours.
BUCKETS = {
    APPROVAL_WAIT: [10.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0, 7 * 24 * 3600.0],
    STEP_DURATION: [1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 2 * 3600.0],
}


def phase_entered(phase: str) -> None:
    meter = workflow.metric_meter()
    meter.create_counter(REQUESTS, "change requests that entered each phase").add(1, {"phase": phase})


def approval_waited(waited: timedelta) -> None:
    meter = workflow.metric_meter()
    meter.create_histogram_float(APPROVAL_WAIT, "from awaiting_approval to a decision", "s").record(
        waited.total_seconds()
    )


def step_ran(took: timedelta, outcome: str) -> None:
    meter = workflow.metric_meter()
    meter.create_histogram_float(STEP_DURATION, "one run of a step's playbook, retries included", "s").record(
        took.total_seconds(), {"outcome": outcome}
    )


def refused(kind: str) -> None:
    meter = workflow.metric_meter()
    meter.create_counter(REFUSALS, "decisions refused, by handler").add(1, {"kind": kind})
