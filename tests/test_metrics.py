"""Prometheus metrics (issue 11): with SIGNOFF_METRICS_ADDRESS the worker serves `/metrics`, with
the SDK's runtime metrics and signoff's own. Scraped over real HTTP after a real run; replaying
the history counts nothing again."""

from __future__ import annotations

import asyncio
import re
import socket
import urllib.request
from collections import defaultdict

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from tests.helpers import assert_eventually, start_request, wait_for_phase
from workers.sandbox import workflow_runner
from workers.settings import ConfigError, Settings
from workers.worker import connect, running_worker
from workflows.change_request import ChangeRequestWorkflow
from workflows.interceptors import SignoffInterceptor
from workflows.types import ApproveInput, Phase

SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(address: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    series: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for line in text.splitlines():
        found = SAMPLE.match(line)
        if found and not line.startswith("#"):
            labels = dict(LABEL.findall(found["labels"] or ""))
            series[found["name"]].append((labels, float(found["value"])))
    return series


def total(series: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(v for got, v in series.get(name, []) if all(got.get(k) == want for k, want in labels.items()))


@pytest.mark.slow
async def test_a_run_is_counted_once_on_the_metrics_endpoint(env: WorkflowEnvironment, settings: Settings) -> None:
    address = f"127.0.0.1:{free_port()}"
    client = await connect(env.client.service_client.config.target_host, metrics_address=address)
    async with running_worker(client, settings):
        handle = await start_request(env, settings, "Deploy hello", vars={"greeting": "metrics"})
        await wait_for_phase(handle, Phase.AWAITING_APPROVAL)
        await handle.signal(ChangeRequestWorkflow.approve, ApproveInput(approver="mallory"))  # not an approver
        await handle.signal(ChangeRequestWorkflow.approve, ApproveInput(approver="bob"))
        assert (await handle.result()).outcome == Phase.SUCCEEDED
        queue = {"task_queue": settings.task_queue}

        async def counted() -> dict[str, list[tuple[dict[str, str], float]]]:
            series = await asyncio.to_thread(scrape, address)
            assert total(series, "signoff_requests_total", phase="succeeded", **queue) == 1
            return series

        series = await assert_eventually(counted)

    for phase, times in [("planning", 1), ("awaiting_approval", 1), ("executing", 1), ("failed", 0)]:
        assert total(series, "signoff_requests_total", phase=phase, **queue) == times, phase
    assert total(series, "signoff_refusals_total", kind="approve", **queue) == 1
    assert total(series, "signoff_approval_wait_seconds_count", **queue) == 1
    assert total(series, "signoff_step_duration_seconds_count", outcome="succeeded", **queue) == 1
    assert total(series, "signoff_step_duration_seconds_bucket", outcome="succeeded", le="7200", **queue) == 1
    assert total(series, "signoff_playbooks_running") == 0, "the playbook is done"
    assert any(name.startswith("temporal_") for name in series), "the SDK's own metrics are served too"
    assert total(series, "temporal_workflow_completed", workflow_type="ChangeRequestWorkflow", **queue) == 1

    # Replaying the history (as a worker does after an eviction) records nothing.
    history = await handle.fetch_history()
    await Replayer(
        workflows=[ChangeRequestWorkflow],
        interceptors=[SignoffInterceptor()],
        workflow_runner=workflow_runner(),
        runtime=client.service_client.config.runtime,
    ).replay_workflow(history)
    again = await asyncio.to_thread(scrape, address)
    assert total(again, "signoff_requests_total", **queue) == total(series, "signoff_requests_total", **queue)


def test_the_metrics_address_must_be_host_and_port() -> None:
    assert Settings.from_env({"SIGNOFF_METRICS_ADDRESS": "0.0.0.0:9464"}).metrics_address == "0.0.0.0:9464"
    for bad in ("9464", "localhost", "host:port", "host:70000"):
        with pytest.raises(ConfigError, match="SIGNOFF_METRICS_ADDRESS"):
            Settings.from_env({"SIGNOFF_METRICS_ADDRESS": bad})
