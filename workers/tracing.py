"""OpenTelemetry tracing (issue 11): with OTEL_EXPORTER_OTLP_ENDPOINT set, a worker's client carries
Temporal's TracingInterceptor (`temporalio.contrib.opentelemetry`), and its spans go to that OTLP/HTTP
endpoint through a BatchSpanProcessor. The exporter reads the standard OTEL_EXPORTER_OTLP_* variables
(headers, timeout, compression, certificates, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), the processor
the OTEL_BSP_* ones; the service is OTEL_SERVICE_NAME, else `service.name` in OTEL_RESOURCE_ATTRIBUTES,
else `signoff-worker`. OTEL_SDK_DISABLED=true turns it off.

The spans of one request, all with `temporalWorkflowID` and `temporalRunID` attributes:

- `RunWorkflow:ChangeRequestWorkflow`, `StartActivity:<activity>`, `HandleSignal:<signal>`,
  `HandleUpdate:<update>`, `CompleteWorkflow:ChangeRequestWorkflow`: the interceptor's, made by
  workflow code, so without duration (a workflow span cannot stay open across replays);
- `RunActivity:plan_change` (the plan, check-mode previews as `RunActivity:preview_playbook`),
  `RunActivity:run_playbook` (each playbook, one per attempt), and the bookkeeping activities:
  the interceptor's, as long as the activity ran;
- `approval wait`: from when the request starts to wait for approvals (its plan recorded) to the
  decision, the expiry or a cancel, with `signoff.outcome` (`approved`, `rejected`, `expired`,
  `cancelled`) and `signoff.approvals`. ChangeRequestWorkflow makes it through `timed_span`
  below, an extern function as the SDK's own `completed_span` uses (which can only make spans
  without duration).

Workflow code never exports while it replays, so a replayed history adds no span. A request
started by a traced client continues that client's trace. One started without a trace (the
`temporal` CLI, a script, an untraced `signoff` command) gets one trace of its own all the same:
its trace id is its run id without the dashes, under a parent span that is never exported.

Workflow code imports nothing of OpenTelemetry: the interceptor's classes and `timed_span` are
the host's, so `opentelemetry` need not be passed through the sandbox (workers/sandbox.py).

Only processes that pass `tracing=True` to `workers.worker.connect` trace: the worker and
`signoff dev`. They call `shutdown()` on their way out, which exports what is still queued.
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from temporalio import workflow

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer
    from opentelemetry.util.types import AttributeValue
    from temporalio.contrib.opentelemetry import TracingInterceptor

ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
DEFAULT_SERVICE = "signoff-worker"
# The extern function workflow code calls for a span with a duration (ChangeRequestWorkflow._approved
# names it too): (name, start, end, attributes) -> None.
TIMED_SPAN = "signoff_timed_span"
APPROVAL_WAIT = "approval wait"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_lock = threading.Lock()
_provider: TracerProvider | None = None
_interceptor: TracingInterceptor | None = None


def enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether OTLP export is configured: an endpoint is set and the SDK is not disabled."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(environ.get(name, "").strip() for name in (ENDPOINT, TRACES_ENDPOINT))


def interceptors() -> list[TracingInterceptor]:
    """The client interceptors that trace (they reach the client's workers too): none unless
    `enabled()`. The tracer provider behind them is built once per process, and OpenTelemetry's
    SDK is imported only then: a process that does not trace does not load it."""
    global _provider, _interceptor
    if not enabled():
        return []
    with _lock:
        if _interceptor is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            _provider = TracerProvider(resource=resource())
            _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            _interceptor = tracing_interceptor(_provider.get_tracer("signoff"))
        return [_interceptor]


def resource() -> Resource:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    found = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(found.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        found = found.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE}))
    return found


def flush() -> bool:
    """Export what is queued now (blocking); False if that did not finish in 30 s."""
    with _lock:
        provider = _provider
    return provider is None or provider.force_flush()


def shutdown() -> None:
    """Export what is still queued and stop the exporter (blocking: at most the exporter's
    timeout, OTEL_EXPORTER_OTLP_TIMEOUT). A later `interceptors()` builds a new provider."""
    global _provider, _interceptor
    with _lock:
        provider, _provider, _interceptor = _provider, None, None
    if provider is not None:
        provider.shutdown()


def tracing_interceptor(tracer: Tracer) -> TracingInterceptor:
    """Temporal's TracingInterceptor on `tracer`, plus `timed_span` for workflow code and a
    trace of their own for workflows started without one."""
    import opentelemetry.context
    import opentelemetry.trace
    from temporalio.contrib.opentelemetry import TracingInterceptor, TracingWorkflowInboundInterceptor
    from temporalio.worker import WorkflowInterceptorClassInput

    class WorkflowTracing(TracingWorkflowInboundInterceptor):
        def _load_workflow_context_carrier(self) -> dict[str, str] | None:  # type: ignore[override]
            """The trace context the workflow was started with; else one derived from its run
            id, the same on every replay, so that all of a run's spans share one trace."""
            carrier = super()._load_workflow_context_carrier()
            if not carrier:
                carrier = {"traceparent": synthetic_traceparent(workflow.info().run_id)}
                self._workflow_context_carrier = carrier
            return carrier  # type: ignore[return-value]

    class SignoffTracing(TracingInterceptor):
        def workflow_interceptor_class(
            self, input: WorkflowInterceptorClassInput
        ) -> type[TracingWorkflowInboundInterceptor]:
            super().workflow_interceptor_class(input)
            input.unsafe_extern_functions[TIMED_SPAN] = self.timed_span
            return WorkflowTracing

        def timed_span(
            self, name: str, start: datetime, end: datetime, attributes: Mapping[str, AttributeValue]
        ) -> None:
            """A span from `start` to `end` (workflow time) in the workflow's trace. Workflow
            code calls it only when not replaying; it adds no command to the history."""
            parent = opentelemetry.context.get_current()
            if opentelemetry.trace.get_current_span(parent) is opentelemetry.trace.INVALID_SPAN:
                return  # no trace reached this workflow
            info = workflow.info()
            span = self.tracer.start_span(
                name,
                parent,
                attributes={"temporalWorkflowID": info.workflow_id, "temporalRunID": info.run_id, **attributes},
                start_time=_ns(start),
            )
            span.end(end_time=_ns(end))

    return SignoffTracing(tracer)


def synthetic_traceparent(run_id: str) -> str:
    """W3C traceparent for a run started without a trace: trace id = the run id's hex (a UUID),
    parent span id from its hash; sampled."""
    digest = hashlib.sha256(run_id.encode()).hexdigest()
    try:
        trace_id = uuid.UUID(run_id).hex
    except ValueError:
        trace_id = digest[:32]
    if not int(trace_id, 16):
        trace_id = digest[:32]
    return f"00-{trace_id}-{digest[32:48]}-01"


def _ns(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1) * 1000
