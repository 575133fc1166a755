"""What a playbook run may see and leave behind (issue 5): a minimal environment, secrets
scrubbed from every record and heartbeat, extra vars never templated, and no private data dir
outliving its run — not even after the worker is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from temporalio.testing import ActivityEnvironment

from activities.extravars import fingerprint, show_value
from activities.playbooks import PlaybookActivities
from activities.rundirs import playbook_env, remove_stale_runs, runs_root
from workers.settings import Settings
from workflows.runs import PlaybookProgress, PlaybookResult, RunPlaybookInput

ROOT = Path(__file__).resolve().parent.parent
LAUNCH_CODE = "zebra-launch-4242"
TOKEN = "tok-9f8e7d6c5b"


def run_playbook(
    settings: Settings, playbook: str, heartbeats: list[PlaybookProgress] | None = None, **kwargs: object
) -> PlaybookResult:
    env = ActivityEnvironment()
    if heartbeats is not None:
        env.on_heartbeat = lambda *details: heartbeats.extend(details)
    activities = PlaybookActivities(settings.playbook_dir, settings.inventory)
    inp = RunPlaybookInput(workflow_id="wf-iso", step=1, playbook=playbook, **kwargs)  # type: ignore[arg-type]
    return env.run(activities.run_playbook, inp)


def test_playbooks_run_without_the_workers_credentials(
    settings: Settings, out_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGNOFF_DATABASE_URL", "postgresql+psycopg://signoff:db-secret-pw@db/signoff")
    monkeypatch.setenv("TEMPORAL_API_KEY", "temporal-secret-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    monkeypatch.setenv("SIGNOFF_PLAYBOOK_ENV", "")

    run_playbook(settings, "env-verify.yml")

    seen = dict(line.split("=", 1) for line in (out_dir / "env.txt").read_text().splitlines() if "=" in line)
    recorded = json.loads((out_dir / "command.json").read_text())["env"]
    for env in (seen, recorded):
        assert not {"SIGNOFF_DATABASE_URL", "TEMPORAL_API_KEY", "AWS_SECRET_ACCESS_KEY"} & set(env)
        assert env["SIGNOFF_WORKFLOW_ID"] == "wf-iso"
        assert env["SIGNOFF_STEP"] == "1"
        assert env["ANSIBLE_HOST_KEY_CHECKING"] == "True", "ansible-runner's default turns it off"
    assert "db-secret-pw" not in (out_dir / "command.json").read_text()


def test_names_the_operator_lists_are_passed_through() -> None:
    env = playbook_env(
        {"PATH": "/bin", "HOME": "/h", "CLOUD_TOKEN": "t", "OTHER": "o", "ANSIBLE_FORKS": "3"}, ["CLOUD_TOKEN"]
    )

    assert env["CLOUD_TOKEN"] == "t"
    assert env["ANSIBLE_FORKS"] == "3"
    assert env["HOME"] == "/h"
    assert "OTHER" not in env


def test_secret_values_are_scrubbed_from_results_and_heartbeats(settings: Settings) -> None:
    heartbeats: list[PlaybookProgress] = []

    result = run_playbook(
        settings,
        "leak-configure.yml",
        heartbeats,
        vars={"launch_code": LAUNCH_CODE, "api_token": TOKEN, "label": "blue-label"},
        secret_vars=["launch_code"],
    )

    [task] = result.tasks
    everything = repr(result) + repr(heartbeats)
    assert LAUNCH_CODE not in everything, "declared secret"
    assert TOKEN not in everything, "named like a credential"
    assert task.task == "Use (secret)"
    assert task.msg == "code is (secret), token is (secret), label is blue-label"


def test_extra_vars_are_never_templated(settings: Settings, out_dir: Path) -> None:
    run_playbook(settings, "hello-deploy.yml", vars={"greeting": "{{ 7 * 7 }}"})

    assert (out_dir / "hello.txt").read_text() == "hello {{ 7 * 7 }}\n"


def test_secrets_show_as_a_short_hash_two_people_can_compare() -> None:
    assert show_value(LAUNCH_CODE, secret=True) == f"(secret, sha256:{fingerprint(LAUNCH_CODE)})"
    assert fingerprint({"b": 1, "a": 2}) == fingerprint({"a": 2, "b": 1})
    assert show_value({"port": 80}, secret=False) == '{"port": 80}'


def test_no_private_data_dir_outlives_its_run(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # a runs root of this test's own
    (tmp_path / "tmp").mkdir()

    run_playbook(settings, "hello-deploy.yml", vars={"greeting": "x"})

    assert runs_root().parent == tmp_path / "tmp"
    assert list(runs_root().iterdir()) == []


HOLD_A_RUN_DIR = """
import sys
from activities.rundirs import run_dir, write_private
with run_dir() as path:
    write_private(path / "env" / "extravars", "launch_code: zebra")
    print(path, flush=True)
    sys.stdin.read()  # holds the run dir until killed
"""


def _holder() -> tuple[subprocess.Popen[str], Path]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_A_RUN_DIR], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, Path(proc.stdout.readline().strip())


def test_worker_start_removes_the_run_dirs_of_killed_workers_only() -> None:
    killed, killed_dir = _holder()
    alive, alive_dir = _holder()
    try:
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait()
        assert (killed_dir / "env" / "extravars").exists(), "a killed worker cannot clean up"

        removed = remove_stale_runs()

        assert killed_dir in removed
        assert not killed_dir.exists()
        assert alive_dir.exists(), "a running playbook's dir is kept"
        assert alive_dir not in removed
    finally:
        alive.kill()
        alive.wait()
    remove_stale_runs()
    assert not alive_dir.exists()
