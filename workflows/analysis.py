"""FailureAnalysisWorkflow: ansible-lint on the playbook of a failed step, its findings stored as
suggestions (activities/lint.py).

ChangeRequestWorkflow starts it as a child with ParentClosePolicy.ABANDON when a step fails: it
runs beside the request, never in its way, and outlives it. ansible-lint is CPU-bound for
seconds, like a playbook, so the activity runs on the playbook task queue with its slots.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.names import bounded_id, playbook_queue
from workflows.runs import AnalyzeFailureInput
from workflows.types import ErrorType

with workflow.unsafe.imports_passed_through():
    from activities import lint

ANALYSIS_WORKFLOW_TYPE = "SignoffFailureAnalysis"
ANALYSIS_TIMEOUT = timedelta(minutes=5)
ANALYSIS_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_attempts=3,
    non_retryable_error_types=[ErrorType.LINT_FAILED, ErrorType.INVALID_INPUT],
)


def analysis_workflow_id(inp: AnalyzeFailureInput) -> str:
    """One analysis per failed attempt: starting it again finds the one already there."""
    return bounded_id(f"{inp.workflow_id}/lint/{inp.step}/{inp.attempt}")


@workflow.defn(name=ANALYSIS_WORKFLOW_TYPE)
class FailureAnalysisWorkflow:
    @workflow.run
    async def run(self, inp: AnalyzeFailureInput) -> int:
        """How many suggestions the failure has."""
        return await workflow.execute_activity_method(
            lint.LintActivities.analyze_failure,
            inp,
            task_queue=playbook_queue(workflow.info().task_queue),
            start_to_close_timeout=ANALYSIS_TIMEOUT,
            retry_policy=ANALYSIS_RETRY,
            summary=f"ansible-lint {inp.playbook}",
        )
