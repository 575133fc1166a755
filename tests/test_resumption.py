"""Resumption on real processes (issue 6): a Temporal dev server with a SQLite file, embedded
PostgreSQL and two `signoff worker` processes. A worker killed with SIGKILL in the middle of a
step is replaced by the other, which runs that step again exactly once and never the step
before it; a Temporal server restarted while a request waits for approval loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import pytest_asyncio
from temporalio.client import Client

from activities.audit_repo import init_repo
from tests.helpers import assert_eventually, processes_of
from workers.devstack import TemporalDevServer, free_port, write_local_inventory
from workflows.change_request import ChangeRequestWorkflow
from workflows.types import ApproveInput, ChangeRequestResult, Phase

pytestmark = pytest.mark.slow
SIGNOFF = str(Path(sys.executable).parent / "signoff")

PLAYBOOK = """# signoff:
#   service: {service}
#   action: deploy
#   risk: {risk}
- name: Deploy {service}
  hosts: local
  gather_facts: false
  tasks:
    - name: Leave a mark
      ansible.builtin.shell: {command}
      changed_when: false
"""


class Fleet:
    """The deployment: one Temporal server, workers started and killed as the test says."""

    def __init__(self, tmp_path: Path, database_url: str) -> None:
        self.root = tmp_path
        self.out = tmp_path / "out"
        self.out.mkdir()
        playbooks = tmp_path / "playbooks"
        playbooks.mkdir()
        marks = self.out
        (playbooks / "one-deploy.yml").write_text(
            PLAYBOOK.format(service="one", risk="low", command=f"echo run >> {marks}/one.txt")
        )
        # The first run of step two hangs (until it is killed); a run after that finishes.
        two = f"echo run >> {marks}/two.txt; if [ ! -e {marks}/two.seen ]; then touch {marks}/two.seen; sleep 600; fi"
        (playbooks / "two-deploy.yml").write_text(PLAYBOOK.format(service="two", risk="low", command=f"'{two}'"))
        (playbooks / "three-deploy.yml").write_text(
            PLAYBOOK.format(service="three", risk="medium", command=f"echo run >> {marks}/three.txt")
        )
        inventory = write_local_inventory(tmp_path / "inventory.yml", ("local",), {})
        init_repo(tmp_path / "audit")
        self.address = f"127.0.0.1:{free_port()}"
        self.task_queue = f"signoff-fleet-{uuid.uuid4().hex[:6]}"
        self.env = {
            **os.environ,
            "TEMPORAL_ADDRESS": self.address,
            "SIGNOFF_TASK_QUEUE": self.task_queue,
            "SIGNOFF_DATABASE_URL": database_url,
            "SIGNOFF_PLAYBOOK_DIR": str(playbooks),
            "SIGNOFF_INVENTORY": str(inventory),
            "SIGNOFF_AUDIT_REPO": str(tmp_path / "audit"),
            "SIGNOFF_DATA_DIR": str(tmp_path / "data"),
            "SIGNOFF_APPROVERS": "bob",
            "SIGNOFF_AUTO_APPROVE_RISK": "low",
            "SIGNOFF_PREVIEW": "off",
        }
        self.workers: list[subprocess.Popen[bytes]] = []
        self.server: TemporalDevServer | None = None

    async def start_server(self) -> None:
        self.server = await TemporalDevServer.start(self.root, self.address, None)

    def start_worker(self) -> subprocess.Popen[bytes]:
        log = (self.root / f"worker-{len(self.workers)}.log").open("wb")
        worker = subprocess.Popen([SIGNOFF, "worker"], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.workers.append(worker)
        return worker

    def stop(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGINT)
        for worker in self.workers:
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        if self.server is not None:
            self.server.stop()

    def lines(self, name: str) -> list[str]:
        path = self.out / name
        return path.read_text().splitlines() if path.exists() else []


@pytest_asyncio.fixture
async def fleet(tmp_path: Path, database_url: str) -> AsyncIterator[Fleet]:
    deployment = Fleet(tmp_path, database_url)
    await deployment.start_server()
    try:
        yield deployment
    finally:
        deployment.stop()


def _worker_of(workflow_id: str, workers: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    pids = {w.pid: w for w in workers}
    for proc in processes_of(workflow_id):
        try:
            for parent in proc.parents():
                if parent.pid in pids:
                    return pids[parent.pid]
        except psutil.Error:
            continue
    raise AssertionError(f"no worker runs an Ansible process of {workflow_id}")


async def test_a_killed_worker_is_replaced_and_only_its_step_runs_again(fleet: Fleet) -> None:
    fleet.start_worker()
    fleet.start_worker()
    client = await Client.connect(fleet.address)
    handle: Any = await client.start_workflow(
        "ChangeRequestWorkflow",
        {"request": "Deploy one, then deploy two", "requester": "alice"},
        id=f"cr-fleet-{uuid.uuid4().hex[:6]}",
        task_queue=fleet.task_queue,
        result_type=ChangeRequestResult,
    )

    async def step_two_hangs() -> subprocess.Popen[bytes]:
        assert fleet.lines("two.txt") == ["run"]
        return _worker_of(handle.id, fleet.workers)

    victim = await assert_eventually(step_two_hangs, timeout=90)
    leftovers = processes_of(handle.id)
    victim.send_signal(signal.SIGKILL)  # the worker, and with it every process of its run
    for proc in leftovers:
        try:
            proc.kill()
        except psutil.Error:
            continue
    victim.wait()
    result = await handle.result()

    assert result.outcome == Phase.SUCCEEDED
    assert fleet.lines("one.txt") == ["run"], "the finished step is not run again"
    assert fleet.lines("two.txt") == ["run", "run"], "the interrupted step ran again exactly once"
    assert [s.attempt for s in result.steps] == [1, 2]


async def test_an_approval_after_a_temporal_restart_completes_the_request(fleet: Fleet) -> None:
    fleet.start_worker()
    client = await Client.connect(fleet.address)
    handle: Any = await client.start_workflow(
        "ChangeRequestWorkflow",
        {"request": "Deploy three", "requester": "alice"},
        id=f"cr-restart-{uuid.uuid4().hex[:6]}",
        task_queue=fleet.task_queue,
        result_type=ChangeRequestResult,
    )

    async def awaiting() -> None:
        status = await handle.query(ChangeRequestWorkflow.status)
        assert status.phase == Phase.AWAITING_APPROVAL

    await assert_eventually(awaiting, timeout=60)
    assert fleet.server is not None
    fleet.server.stop()
    await fleet.start_server()  # the same SQLite file and address
    client = await Client.connect(fleet.address)
    handle = client.get_workflow_handle(handle.id, result_type=ChangeRequestResult)
    await assert_eventually(awaiting, timeout=90)
    await handle.signal(ChangeRequestWorkflow.approve, ApproveInput(approver="bob"))
    result = await handle.result()

    assert result.outcome == Phase.SUCCEEDED
    assert fleet.lines("three.txt") == ["run"]
