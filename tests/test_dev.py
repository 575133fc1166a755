"""`signoff dev`: one command starts Temporal, PostgreSQL, the examples, an audit repo and a
worker; the `temporal` CLI drives a request through it; Ctrl-C stops everything it started."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

import git
import psutil
import pytest

from tests.helpers import assert_eventually, run_temporal
from tests.web_stack import browser_session
from workers.devstack import free_port

SIGNOFF = str(Path(sys.executable).parent / "signoff")


@pytest.mark.slow
async def test_dev_stack_runs_a_request_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    web = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "SIGNOFF_DATA_DIR": str(tmp_path), "TEMPORAL_ADDRESS": address, "SIGNOFF_WEB_ADDRESS": web}
    for name in ("SIGNOFF_DATABASE_URL", "SIGNOFF_PLAYBOOK_DIR", "SIGNOFF_INVENTORY", "SIGNOFF_AUDIT_REPO"):
        env.pop(name, None)
    dev = await asyncio.create_subprocess_exec(
        SIGNOFF,
        "dev",
        "--ui-port",
        str(free_port()),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert dev.stdout is not None
    banner = ""
    try:
        while "Ctrl-C stops everything" not in banner:
            line = await asyncio.wait_for(dev.stdout.readline(), timeout=60)
            assert line, f"signoff dev exited early:\n{banner}"
            banner += line.decode()
        assert "Temporal Web UI: http://" in banner
        assert "PostgreSQL (embedded)" in banner
        assert f"web inbox at http://{web}" in banner
        passwords = dict(re.findall(r"(\w+) / (\S+)", banner.split("demo users: ", 1)[1].splitlines()[0]))
        assert set(passwords) == {"alice", "bob"}
        async with browser_session(f"http://{web}", "bob", passwords["bob"]) as bob:
            assert (await bob.get("/")).status_code == 200
        started = {p.pid for p in psutil.Process(dev.pid).children(recursive=True)}
        postgres_pid = int((tmp_path / "postgres" / "postmaster.pid").read_text().split()[0])

        async def temporal(*args: str) -> str:
            return (await run_temporal(address, *args))[1]

        request = {"request": "Restart nginx", "requester": "alice"}
        await temporal(
            "workflow",
            "start",
            "--type",
            "ChangeRequestWorkflow",
            "--task-queue",
            "signoff",
            "--workflow-id",
            "cr-dev-1",
            "--input",
            json.dumps(request),
        )

        async def awaiting() -> None:
            out = await temporal(
                "workflow", "query", "--workflow-id", "cr-dev-1", "--name", "status", "--output", "json"
            )
            assert json.loads(out)["queryResult"][0]["phase"] == "awaiting_approval"

        await assert_eventually(awaiting, timeout=60)
        await temporal(
            "workflow", "signal", "--workflow-id", "cr-dev-1", "--name", "approve", "--input", '{"approver": "bob"}'
        )
        result = json.loads(await temporal("workflow", "result", "--workflow-id", "cr-dev-1", "--output", "json"))
        assert result["result"]["outcome"] == "succeeded"
        assert (tmp_path / "homelab" / "nginx" / "restarted").read_text() == "restarted\n"
        assert git.Repo(tmp_path / "audit").head.commit.hexsha == result["result"]["audit_commit"]
    finally:
        if dev.returncode is None:
            dev.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(dev.wait(), timeout=60)

    assert code in (0, 130)
    leftovers = [
        pid
        for pid in (*started, postgres_pid)
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
    assert leftovers == [], "signoff dev left processes running after Ctrl-C"
    assert (tmp_path / "temporal.db").exists(), "the dev server keeps its state in the data dir"
