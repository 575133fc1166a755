"""`signoff plan` and `signoff playbooks`: planning without Temporal, as a user runs it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from tests.test_cli import signoff


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    shutil.copytree(FIXTURES / "playbooks" / "planning", path)
    (path / "broken-deploy.yml").write_text("- name: [unclosed\n")
    return path


async def plan(repo: Path, request: str, *extra: str) -> tuple[int, dict[str, object], str]:
    code, out, err = await signoff(
        {},
        "plan",
        request,
        "--playbooks",
        str(repo),
        "--inventory",
        str(repo / "inventory" / "hosts.ini"),
        "--json",
        *extra,
    )
    return code, json.loads(out) if out.strip() else {}, err


async def test_plan_prints_the_steps_as_json(repo: Path) -> None:
    code, found, err = await plan(repo, "Restart jellyfin on nas01, then upgrade nginx")

    assert code == 0, err
    steps = found["steps"]
    assert isinstance(steps, list)
    assert [(s["playbook"], s["action"], s["service"], s["hosts"], s["risk"]) for s in steps] == [
        ("jellyfin/restart_jellyfin.yml", "restart", "jellyfin", ["nas01"], "medium"),
        ("upgrade-nginx.yml", "update", "nginx", ["web1"], "medium"),
    ]
    assert all(s["reason"] for s in steps)
    assert found["error"] is None


async def test_plan_refuses_half_a_request_and_exits_nonzero(repo: Path) -> None:
    code, found, _ = await plan(repo, "restart jellyfin and deploy grafana")

    assert code == 1
    assert found["steps"] == []
    assert found["error"]
    unmatched = found["unmatched"]
    assert isinstance(unmatched, list)
    assert "grafana" in unmatched[0]["clause"]


async def test_plan_refuses_a_var_the_playbook_does_not_accept(repo: Path) -> None:
    code, found, err = await plan(
        repo, "deploy jellyfin", "--var", "jellyfin_port=8096", "--var", "ansible_become=true"
    )

    assert code == 1
    assert found == {}
    assert err.strip().splitlines() == [
        "error: vars.ansible_become: is a name Ansible reserves (connection, privilege or magic variable, "
        "or play keyword); a request may not set it"
    ]
    code, found, err = await plan(repo, "deploy jellyfin", "--var", "jellyfin_port=8096")
    assert code == 0, err
    assert found["vars"] == [{"name": "jellyfin_port", "shown": "8096", "secret": False}]


async def test_playbooks_lists_the_catalog_with_skipped_and_broken(repo: Path) -> None:
    code, out, err = await signoff({}, "playbooks", "--playbooks", str(repo), "--json")

    assert code == 0, err
    catalog = json.loads(out)
    assert {e["path"] for e in catalog["entries"]} == {
        "jellyfin/deploy_jellyfin.yml",
        "jellyfin/restart_jellyfin.yml",
        "upgrade-nginx.yml",
        "patch_hosts.yml",
    }
    assert [b["path"] for b in catalog["broken"]] == ["broken-deploy.yml"]
    assert any(s["path"].startswith("inventory") for s in catalog["skipped"])
