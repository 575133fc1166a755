"""The `signoff` command as a user runs it: a real subprocess against the real server."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import git
import pytest
from temporalio.testing import WorkflowEnvironment

from workers.settings import Settings
from workers.worker import running_worker

SIGNOFF = str(Path(sys.executable).parent / "signoff")


async def signoff(env_vars: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        SIGNOFF,
        *args,
        env={**os.environ, **env_vars},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.mark.slow
async def test_submit_approve_status(env: WorkflowEnvironment, settings: Settings, out_dir: Path) -> None:
    cli_env = {
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "SIGNOFF_TASK_QUEUE": settings.task_queue,
    }
    async with running_worker(env.client, settings):
        code, out, err = await signoff(
            cli_env, "submit", "Deploy hello", "--as", "alice", "--var", "greeting=cli", "--id", "cr-cli-1"
        )
        assert code == 0, err
        assert out.splitlines()[0] == "cr-cli-1  planned: 1 step, risk medium, awaiting approval (0 of 1)"
        assert "hello-deploy.yml" in out
        assert '    greeting = "cli"' in out.splitlines(), "the approver sees the value that will run"

        code, out, err = await signoff(cli_env, "submit", "Deploy hello", "--as", "eve", "--id", "cr-cli-1")
        assert code == 1
        assert out == ""
        assert err.strip().splitlines() == [
            "error: a change request with id 'cr-cli-1' already exists; see `signoff status cr-cli-1`"
        ]

        code, _, err = await signoff(cli_env, "approve", "cr-cli-1", "--as", "mallory")
        assert code == 1
        assert "mallory is not an approver" in err

        code, out, err = await signoff(cli_env, "approve", "cr-cli-1", "--as", "bob", "--comment", "ok")
        assert code == 0, err
        assert "approved by bob (1 of 1 approvals)" in out

        code, out, err = await signoff(cli_env, "watch", "cr-cli-1")
        assert code == 0, err
        assert "step 1/1 hello-deploy.yml: succeeded" in out

        code, out, err = await signoff(cli_env, "status", "cr-cli-1")
        assert code == 0
        assert '    greeting = "cli"' in out.splitlines()

        code, out, err = await signoff(cli_env, "status", "cr-cli-1", "--json")
        assert code == 0, err
        status = json.loads(out)
    assert status["phase"] == "succeeded"
    assert status["steps"][0]["changed"] == 1
    assert status["audit_commit"] == git.Repo(settings.audit_repo).head.commit.hexsha
    assert (out_dir / "hello.txt").read_text() == "hello cli\n"


@pytest.mark.slow
async def test_errors_are_one_line_and_exit_nonzero(env: WorkflowEnvironment, settings: Settings) -> None:
    cli_env = {
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "SIGNOFF_TASK_QUEUE": settings.task_queue,
    }
    code, _, err = await signoff(cli_env, "submit", "Deploy hello", "--as", "alice", "--var", "novalue")
    assert code == 1
    assert "expected KEY=VALUE" in err
    code, _, err = await signoff({**cli_env, "SIGNOFF_APPROVAL_TIMEOUT": "soon"}, "submit", "Deploy hello", "--as", "a")
    assert code == 1
    assert "SIGNOFF_APPROVAL_TIMEOUT='soon'" in err
    code, _, err = await signoff({**cli_env, "SIGNOFF_DATABASE_URL": ""}, "worker")
    assert code == 1
    assert "SIGNOFF_DATABASE_URL is not set" in err
    assert "Traceback" not in err
    code, _, err = await signoff(cli_env, "status", "cr-does-not-exist")
    assert code == 1
    assert "Temporal refused" in err
    assert "Traceback" not in err
    code, _, err = await signoff({**cli_env, "TEMPORAL_ADDRESS": "127.0.0.1:1"}, "approve", "cr-x", "--as", "bob")
    assert code == 1
    assert "cannot reach Temporal" in err
    assert "Traceback" not in err


@pytest.mark.slow
async def test_demo_runs_the_whole_story(tmp_path: Path) -> None:
    """The README's first command: an embedded stack of its own, start to finish."""
    code, out, err = await signoff({"SIGNOFF_DATA_DIR": str(tmp_path)}, "demo")
    assert code == 0, out + err
    demo = tmp_path / "demo"
    assert "kuma-deploy.yml" in out
    assert "kuma-config-update.yml" in out
    assert "play 'Deploy Uptime Kuma'" in out or "step 1/2 kuma-deploy.yml: succeeded" in out
    assert "database: 4 task results" in out
    compose = (demo / "homelab" / "kuma" / "compose.yml").read_text()
    assert "louislam/uptime-kuma" in compose
    monitors = json.loads((demo / "homelab" / "kuma" / "monitors.json").read_text())
    assert [m["name"] for m in monitors["monitors"]] == ["portal-1", "portal-2"]
    head = git.Repo(demo / "audit").head.commit
    assert head.summary.endswith(": succeeded")
    assert [str(p) for p in head.stats.files] == [f".audit/requests/{head.summary.split(':')[0]}.json"]
    shutil.rmtree(demo)


def test_the_worker_starts_without_the_other_commands_modules() -> None:
    """`signoff worker` (workers.main) loads the worker, not the CLI's rendering, dev stack,
    codec server or lint fixes: memory a long-running process would keep for nothing."""
    probe = "import sys, workers.main, workers.worker; print(sorted(m for m in WATCHED if m in sys.modules))"
    watched = ["typer", "rich", "workers.cli", "workers.devstack", "workers.codec_server", "activities.lint_fix"]
    loaded = subprocess.run(
        [sys.executable, "-c", f"WATCHED = {watched!r}; {probe}"], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"
