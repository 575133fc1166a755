"""`signoff worker --check` (issue 11, health): exit 0 only when Temporal, PostgreSQL, the
playbook dir, the inventory and the audit repo are usable; otherwise name the first that is
not. A real subprocess against the real server, database and repositories."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.db import SCHEMA_HEAD
from tests.test_cli import signoff
from workers.settings import Settings


def worker_env(env: WorkflowEnvironment, settings: Settings, **changes: str) -> dict[str, str]:
    return {
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "SIGNOFF_DATABASE_URL": str(settings.database_url),
        "SIGNOFF_PLAYBOOK_DIR": str(settings.playbook_dir),
        "SIGNOFF_INVENTORY": str(settings.inventory),
        "SIGNOFF_AUDIT_REPO": str(settings.audit_repo),
        "SIGNOFF_AUDIT_REMOTE": "",
        **changes,
    }


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once it is closed


@pytest.mark.slow
async def test_worker_check_names_the_first_unusable_part(
    env: WorkflowEnvironment, settings: Settings, tmp_path: Path
) -> None:
    code, out, err = await signoff(worker_env(env, settings), "worker", "--check")
    assert code == 0, out + err
    assert [line.split(":")[0] for line in out.splitlines()] == [
        "ok      Temporal",
        "ok      PostgreSQL",
        "ok      playbook dir",
        "ok      inventory",
        "ok      audit repo",
    ]
    assert f"schema {SCHEMA_HEAD}" in out

    port = closed_port()
    empty = tmp_path / "no-playbooks"
    empty.mkdir()
    not_a_repo = tmp_path / "not-a-repo"
    not_a_repo.mkdir()
    (not_a_repo / "notes.txt").write_text("hello\n")
    broken = {
        "Temporal": {"TEMPORAL_ADDRESS": f"127.0.0.1:{port}"},
        "PostgreSQL": {"SIGNOFF_DATABASE_URL": f"postgresql+psycopg://signoff@127.0.0.1:{port}/signoff"},
        "playbook dir": {"SIGNOFF_PLAYBOOK_DIR": str(empty)},
        "inventory": {"SIGNOFF_INVENTORY": str(tmp_path / "missing.yml")},
        "audit repo": {"SIGNOFF_AUDIT_REPO": str(not_a_repo)},
    }
    said = {}
    for part, change in broken.items():
        code, out, err = await signoff(worker_env(env, settings, **change), "worker", "--check")
        assert code == 1, f"{part}: {out}"
        assert err.startswith(f"not ready: {part}: "), err
        [failed] = [line for line in out.splitlines() if line.startswith("FAILED")]
        assert failed.startswith(f"FAILED  {part}: ")
        said[part] = err
    assert "holds no playbook (SIGNOFF_PLAYBOOK_DIR)" in said["playbook dir"]
    assert "no branch main" in said["audit repo"]


async def test_a_missing_audit_repo_is_usable_when_it_can_be_created(
    env: WorkflowEnvironment, settings: Settings, tmp_path: Path
) -> None:
    fresh = tmp_path / "new" / "audit"
    code, out, err = await signoff(worker_env(env, settings, SIGNOFF_AUDIT_REPO=str(fresh)), "worker", "--check")
    assert code == 0, out + err
    assert f"ok      audit repo: {fresh}, created when the worker starts" in out.splitlines()
    assert not fresh.exists(), "a check changes nothing"
