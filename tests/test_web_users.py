"""The web inbox's pieces outside the browser: OpenSSH principal patterns of an attesting key,
the `via`/`subject` fields, and `signoff web` as a command (users file and login limiter:
test_web_auth.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from activities.signatures import principals_match
from tests.test_cli import SIGNOFF, signoff
from workers.devstack import free_port
from workers.settings import Settings
from workers.web.server import dev_web
from workers.web.users import UserFile
from workflows.validation import InvalidInput, parse_approve, parse_decide, parse_reject

PASSWORD = "a long enough password"


@pytest.mark.parametrize(
    ("principals", "who", "covered"),
    [
        ("*@example.com", "bob@example.com", True),
        ("*@Example.COM", "bob@example.com", True),
        ("*@example.com", "bob@example.com.evil", False),
        ("*@example.com", "bob@evil.com", False),
        ("*@example.com,!root@example.com", "root@example.com", False),
        ("!root@example.com,*@example.com", "root@example.com", False),
        ("*@example.com,!root@example.com", "bob@example.com", True),
        ("b?b", "bob", True),
        ("b?b", "bb", False),
        ("Carol", "carol", True),
        ("carol", "carolyn", False),
        ("*", "anyone", True),
        ("!*", "anyone", False),
        ("*a*a*a*a*a*a*a*a*b", "a" * 5000, False),  # no exponential backtracking
    ],
)
def test_allowed_signers_principals_are_openssh_pattern_lists(principals: str, who: str, covered: bool) -> None:
    assert principals_match(principals, who) is covered


def test_via_and_subject_are_parsed_strictly() -> None:
    parsed = parse_approve({"approver": "bob", "via": "web", "subject": "oidc:https://idp.example#42"})
    assert (parsed.via, parsed.subject) == ("web", "oidc:https://idp.example#42")
    assert parse_reject({"approver": "bob", "via": "cli"}).via == "cli"
    assert parse_decide({"operator": "bob", "action": "skip", "subject": "local:bob"}).subject == "local:bob"
    for bad, field in (
        ({"via": "Web"}, "via"),
        ({"via": "web; rm -rf"}, "via"),
        ({"via": 3}, "via"),
        ({"subject": "x" * 257}, "subject"),
        ({"subject": "local:bob\nforged line"}, "subject"),
        ({"subject": "   "}, "subject"),
    ):
        with pytest.raises(InvalidInput) as refused:
            parse_approve({"approver": "bob", **bad})
        assert refused.value.field == field


async def test_web_user_add_and_remove_from_the_command_line(tmp_path: Path) -> None:
    env = {"SIGNOFF_DATA_DIR": str(tmp_path)}
    code, out, err = await signoff(env, "web", "user", "add", "Dana")
    assert code == 0, err
    password = out.split("password: ", 1)[1].strip()
    users = UserFile(tmp_path / "web" / "users")
    assert users.authenticate("dana", password) == "dana"
    code, out, err = await signoff(env, "web", "user", "remove", "dana")
    assert code == 0, err
    assert users.names() == []
    code, out, err = await signoff(env, "web", "user", "remove", "dana")
    assert code == 1
    assert "no user 'dana'" in err


async def test_signoff_web_serves_until_sigterm(env: WorkflowEnvironment, tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    web = await asyncio.create_subprocess_exec(
        SIGNOFF,
        "web",
        env={
            **os.environ,
            "SIGNOFF_DATA_DIR": str(tmp_path),
            "SIGNOFF_WEB_ADDRESS": address,
            "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert web.stdout is not None
    try:
        first = (await asyncio.wait_for(web.stdout.readline(), timeout=60)).decode()
        assert first.startswith(f"web inbox at http://{address}"), first
        async with httpx.AsyncClient(base_url=f"http://{address}") as http:
            assert (await http.get("/login")).status_code == 200
        assert (tmp_path / "web" / "signing-key.pub").read_text().startswith("ssh-ed25519 ")
        assert stat.S_IMODE((tmp_path / "web" / "session-key").stat().st_mode) == 0o600
    finally:
        web.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(web.wait(), timeout=30)
    assert code in (0, 143), f"signoff web exited {code} on SIGTERM"


async def test_dev_runs_without_the_web_inbox_when_its_port_is_taken(
    env: WorkflowEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        monkeypatch.setenv("SIGNOFF_WEB_ADDRESS", address)
        settings = Settings.from_env({"SIGNOFF_DATA_DIR": str(tmp_path)})
        async with dev_web(settings, env.client) as lines:
            assert lines == [f"web inbox not started: the web server could not listen on {address}"]
