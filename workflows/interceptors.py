"""Workflow interceptors every signoff worker (and the replayer) installs.

`ChangeRequestWorkflow.run` takes exactly one JSON argument. The SDK calls `run` with however
many arguments a caller sent (`temporal workflow start --input A --input B`), and the
`TypeError` that follows fails the workflow task, which Temporal retries forever. Checked here
instead, the run fails at once, non-retryably, naming the problem.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from workflows.types import WORKFLOW_TYPE, ErrorType


class _OneArgument(WorkflowInboundInterceptor):
    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        if workflow.info().workflow_type == WORKFLOW_TYPE and len(input.args) > 1:
            raise ApplicationError(
                f"invalid input: {WORKFLOW_TYPE} takes one JSON argument, got {len(input.args)}",
                type=ErrorType.INVALID_INPUT,
                non_retryable=True,
            )
        return await super().execute_workflow(input)


class SignoffInterceptor(Interceptor):
    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        return _OneArgument
