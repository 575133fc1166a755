"""OpenTelemetry tracing (issue 11): with OTEL_EXPORTER_OTLP_ENDPOINT set, a worker exports the
spans of each request (workers/tracing.py) over OTLP/HTTP. Checked against a real OTLP receiver
in this process: `http.server` decoding each POST /v1/traces as an ExportTraceServiceRequest."""

from __future__ import annotations

import asyncio
import gzip
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from tests.helpers import assert_eventually, start_request, wait_for_phase
from workers import tracing
from workers.sandbox import workflow_runner
from workers.settings import Settings
from workers.worker import connect, running_worker
from workflows.change_request import ChangeRequestWorkflow
from workflows.interceptors import SignoffInterceptor
from workflows.types import ApproveInput, ChangeRequestInput, Phase

SERVICE = "signoff-test-worker"


@dataclass(frozen=True)
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    start: int  # ns since the epoch
    end: int
    attributes: dict[str, Any]
    service: str


class Receiver:
    """An OTLP/HTTP trace receiver on a free local port, keeping every span it is sent."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        received = self.requests
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                with lock:
                    received.append(request)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="otlp-receiver", daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def spans(self) -> list[Span]:
        found = []
        for request in list(self.requests):
            for resource_spans in request.resource_spans:
                resource = {a.key: value(a.value) for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        found.append(
                            Span(
                                name=span.name,
                                trace_id=span.trace_id.hex(),
                                span_id=span.span_id.hex(),
                                parent_id=span.parent_span_id.hex(),
                                start=span.start_time_unix_nano,
                                end=span.end_time_unix_nano,
                                attributes={a.key: value(a.value) for a in span.attributes},
                                service=str(resource.get("service.name")),
                            )
                        )
        return found

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """The receiver, and the tracing environment pointed at it. Spans leave the batch only when
    512 are queued or at `tracing.shutdown()`: what the test receives, the shutdown sent."""
    found = Receiver()
    for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED", "OTEL_RESOURCE_ATTRIBUTES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", found.endpoint)
    monkeypatch.setenv("OTEL_SERVICE_NAME", SERVICE)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")
    try:
        yield found
    finally:
        tracing.shutdown()
        found.close()


# A query or signal sent from outside any span is a trace of its own (the handler's span is in
# the workflow's trace, linked to it).
CALLS_FROM_OUTSIDE = ("QueryWorkflow:", "HandleQuery:", "SignalWorkflow:")


def of(spans: list[Span], workflow_id: str) -> list[Span]:
    """The spans of a workflow's run, without the calls from outside."""
    return [
        s
        for s in spans
        if s.attributes.get("temporalWorkflowID") == workflow_id and not s.name.startswith(CALLS_FROM_OUTSIDE)
    ]


def one(spans: list[Span], name: str) -> Span:
    named = [s for s in spans if s.name == name]
    assert len(named) == 1, f"{len(named)} spans named {name!r}: {sorted({s.name for s in spans})}"
    return named[0]


async def signaled_at(handle: WorkflowHandle[Any, Any], signal: str) -> int:
    """When Temporal recorded the signal, in ns since the epoch."""
    async for event in handle.fetch_history_events():
        if (
            event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
            and event.workflow_execution_signaled_event_attributes.signal_name == signal
        ):
            return int(event.event_time.ToNanoseconds())
    raise AssertionError(f"no {signal} signal in {handle.id}'s history")


async def waiting_for_approval(handle: WorkflowHandle[Any, Any]) -> None:
    """Until the workflow waits for the approval itself (phase set, its record written)."""
    await wait_for_phase(handle, Phase.AWAITING_APPROVAL)

    async def waiting() -> None:
        assert (await handle.query(ChangeRequestWorkflow.status)).waiting_for == "1 approval(s)"

    await assert_eventually(waiting)


PER_REQUEST = {
    "RunWorkflow:ChangeRequestWorkflow",
    "StartActivity:plan_change",
    "RunActivity:plan_change",
    tracing.APPROVAL_WAIT,
    "HandleSignal:approve",
    "StartActivity:run_playbook",
    "RunActivity:run_playbook",
    "CompleteWorkflow:ChangeRequestWorkflow",
}


@pytest.mark.slow
async def test_each_request_is_one_trace_of_its_plan_approval_wait_and_playbooks(
    env: WorkflowEnvironment, settings: Settings, receiver: Receiver
) -> None:
    client = await connect(env.client.service_client.config.target_host, tracing=True)
    async with running_worker(client, settings):
        with env.with_time_skipping_disabled():
            traced = await client.start_workflow(  # type: ignore[misc]  # run takes a RawValue; we send the typed input
                ChangeRequestWorkflow.run,
                ChangeRequestInput(request="Deploy hello", requester="alice"),
                id=f"cr-test-{uuid.uuid4().hex[:8]}",
                task_queue=settings.task_queue,
            )
        # Started by a client that does not trace, as `temporal workflow start` does.
        untraced = await start_request(env, settings, "Deploy hello")
        for handle in (traced, untraced):
            await waiting_for_approval(handle)
            await handle.signal(ChangeRequestWorkflow.approve, ApproveInput(approver="bob"))  # type: ignore[call-overload]  # approve takes a RawValue
            assert (await handle.result()).outcome == Phase.SUCCEEDED

        # Replayed with the tracing interceptor (as after an eviction), the run exports nothing again.
        history = await traced.fetch_history()
        await Replayer(
            workflows=[ChangeRequestWorkflow],
            interceptors=[SignoffInterceptor(), *tracing.interceptors()],
            workflow_runner=workflow_runner(),
        ).replay_workflow(history)

    assert receiver.spans() == [], "nothing left the batch before the shutdown"
    await asyncio.to_thread(tracing.shutdown)
    spans = receiver.spans()

    # The traced client's request continues the client's trace.
    started = one(spans, "StartWorkflow:ChangeRequestWorkflow")
    mine = of(spans, traced.id)
    assert started in mine
    assert {s.trace_id for s in mine} == {started.trace_id}
    assert {s.name for s in mine} >= PER_REQUEST
    assert {s.service for s in mine} == {SERVICE}
    for name in PER_REQUEST:
        assert one(mine, name).attributes["temporalRunID"] == traced.result_run_id

    # The approval wait lasts from when the request began to wait until the approval arrived.
    plan, wait = one(mine, "RunActivity:plan_change"), one(mine, tracing.APPROVAL_WAIT)
    playbook = one(mine, "RunActivity:run_playbook")
    assert plan.end <= wait.start < await signaled_at(traced, "approve") <= wait.end <= playbook.start
    assert wait.attributes["signoff.outcome"] == "approved"
    assert wait.attributes["signoff.approvals"] == 1
    assert wait.parent_id == started.span_id

    # The other request has a trace of its own all the same: its run id.
    theirs = of(spans, untraced.id)
    assert {s.name for s in theirs} >= PER_REQUEST
    assert {s.trace_id for s in theirs} == {uuid.UUID(untraced.result_run_id).hex}
    wait = one(theirs, tracing.APPROVAL_WAIT)
    assert wait.start < await signaled_at(untraced, "approve") <= wait.end


async def test_only_a_tracing_connection_with_an_endpoint_traces(
    env: WorkflowEnvironment, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = env.client.service_client.config.target_host

    def traces(client: Any) -> bool:
        return any(isinstance(i, type(tracing.interceptors()[0])) for i in client.config()["interceptors"])

    assert traces(await connect(address, tracing=True))
    assert not traces(await connect(address)), "a CLI command's connection does not trace"
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert tracing.interceptors() == []
    monkeypatch.delenv("OTEL_SDK_DISABLED")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    assert tracing.interceptors() == []
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{receiver.endpoint}/v1/traces")
    assert tracing.enabled()


def test_service_name_defaults_to_signoff_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    assert tracing.resource().attributes["service.name"] == "signoff-worker"
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=edge-worker")
    assert tracing.resource().attributes["service.name"] == "edge-worker"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "site-worker")
    assert tracing.resource().attributes["service.name"] == "site-worker"
