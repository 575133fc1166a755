"""Every recorded history still replays: workflow changes must not break running executions.

Histories are recorded by the scenario tests with SIGNOFF_RECORD_HISTORIES=1 (README). A change
that makes one fail to replay needs `workflow.patched(...)`, not a re-recording.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from tests.helpers import HISTORIES
from workers.sandbox import workflow_runner
from workflows.change_request import ChangeRequestWorkflow
from workflows.interceptors import SignoffInterceptor

RECORDED = sorted(HISTORIES.glob("*.json"))


def test_histories_cover_every_ending() -> None:
    names = {p.stem for p in RECORDED}
    assert {"succeeded", "rejected", "expired", "playbook_failed", "cancelled", "dry_run", "no_input"} <= names


@pytest.mark.parametrize("path", RECORDED, ids=[p.stem for p in RECORDED])
async def test_recorded_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, await asyncio.to_thread(path.read_text))
    result = await Replayer(
        workflows=[ChangeRequestWorkflow], interceptors=[SignoffInterceptor()], workflow_runner=workflow_runner()
    ).replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name} no longer replays: {result.replay_failure}"
