"""Structured logs (issue 11): with SIGNOFF_LOG_FORMAT=json each line is one JSON object, and every
line logged under a workflow, by the SDK's loggers or signoff's own, carries the workflow id and
the step. A real run through a real worker; the lines are what the handler writes."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.helpers import start_request, wait_for_phase
from workers.logs import JsonFormatter, TextFormatter, WorkflowContext, configure
from workers.settings import ConfigError, Settings
from workers.worker import running_worker
from workflows.change_request import ChangeRequestWorkflow
from workflows.types import ApproveInput, Phase


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(WorkflowContext())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


@pytest.mark.slow
async def test_every_line_under_a_workflow_names_it_and_its_step(
    env: WorkflowEnvironment, settings: Settings, captured: io.StringIO
) -> None:
    async with running_worker(env.client, settings):
        handle = await start_request(env, settings, "Deploy hello", vars={"greeting": "logs"})
        await wait_for_phase(handle, Phase.AWAITING_APPROVAL)
        await handle.signal(ChangeRequestWorkflow.approve, ApproveInput(approver="mallory"))  # refused: logged
        await handle.signal(ChangeRequestWorkflow.approve, ApproveInput(approver="bob"))
        assert (await handle.result()).outcome == Phase.SUCCEEDED

    lines: list[dict[str, Any]] = [json.loads(line) for line in captured.getvalue().splitlines()]
    ours = [line for line in lines if line.get("workflow_id") == handle.id]
    [refused] = [line for line in ours if line["message"].startswith("refused approve from mallory")]
    assert (refused["logger"], refused["level"]) == ("temporalio.workflow", "WARNING")
    running = [line for line in ours if line["message"].startswith("running hello-deploy.yml")]
    ended = [line for line in ours if line["message"].startswith("hello-deploy.yml ended successful")]
    assert running, ours
    assert ended, ours
    for line in (*running, *ended):
        assert (line["step"], line["activity"], line["logger"]) == (1, "run_playbook", "signoff.playbooks")
    about_it = [line for line in lines if handle.id in line["message"]]
    assert all(line.get("workflow_id") == handle.id for line in about_it), "no line about it without its id"


def test_text_lines_end_with_the_workflow_and_step() -> None:
    record = logging.LogRecord("signoff.playbooks", logging.INFO, __file__, 1, "running %s", ("x.yml",), None)
    record.workflow_id, record.step = "cr-1", 2
    assert TextFormatter().format(record).endswith("signoff.playbooks: running x.yml [cr-1 step 2]")


def test_an_unknown_log_format_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="SIGNOFF_LOG_FORMAT='xml'"):
        configure(logging.INFO, "xml")
