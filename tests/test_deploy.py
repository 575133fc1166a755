"""deploy/ checked without Docker: the files parse, name only settings the project reads,
start the real `signoff worker` command, and agree with the workflow's search attributes."""

from __future__ import annotations

import configparser
import itertools
import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from workers.cli import app
from workers.devstack import SEARCH_ATTRIBUTE_FLAGS
from workflows.change_request import SEARCH_ATTRIBUTES

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yml"
KUBERNETES = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
DOCKERFILE = DEPLOY / "Dockerfile"
UNIT = DEPLOY / "systemd" / "signoff-worker.service"
TEMPORAL_NAMES = {
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    "TEMPORAL_API_KEY",
    "TEMPORAL_TLS",
    "TEMPORAL_PROFILE",
    "TEMPORAL_CONFIG_FILE",
}
OURS = re.compile(r"\b(?:SIGNOFF|TEMPORAL)_[A-Z0-9_]+\b")


def known_names() -> set[str]:
    found = {
        name
        for module in ("settings.py", "cli.py", "codec.py", "codec_server.py")
        for name in re.findall(r"[\"'](SIGNOFF_[A-Z0-9_]+)[\"']", (ROOT / "workers" / module).read_text())
    }
    assert {"SIGNOFF_DATABASE_URL", "SIGNOFF_AUDIT_REPO"} <= found  # the grep itself works
    return found | TEMPORAL_NAMES


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def k8s_docs() -> list[dict]:
    return [doc for path in KUBERNETES for doc in yaml.safe_load_all(path.read_text()) if doc]


def k8s_worker() -> tuple[dict, dict]:
    [deployment] = [d for d in k8s_docs() if d["kind"] == "Deployment" and d["metadata"]["name"] == "signoff-worker"]
    pod = deployment["spec"]["template"]["spec"]
    [container] = [c for c in pod["containers"] if c["name"] == "worker"]
    return pod, container


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def systemd_unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    unit.read_string(UNIT.read_text())
    return unit


def docker_exec_form(instruction: str) -> list[str]:
    [args] = [a for i, a in dockerfile() if i == instruction]
    return json.loads(args)  # exec form only: a shell form would hide signals from the worker


def test_every_yaml_parses() -> None:
    files = [COMPOSE, *KUBERNETES]
    assert len(files) >= 2
    for path in files:
        assert [doc for doc in yaml.safe_load_all(path.read_text()) if doc], path


def test_env_names_are_ones_the_project_reads() -> None:
    known = known_names()
    used: dict[str, set[str]] = {"compose": set(), "kubernetes": set(), "Dockerfile": set()}
    for service in compose()["services"].values():
        env = service.get("environment") or {}
        used["compose"] |= set(env) if isinstance(env, dict) else {e.split("=", 1)[0] for e in env}
    for doc in k8s_docs():
        if doc["kind"] == "ConfigMap":
            used["kubernetes"] |= set(doc["data"])
    pod, _ = k8s_worker()
    for container in pod["containers"] + pod.get("initContainers", []):
        used["kubernetes"] |= {e["name"] for e in container.get("env", [])}
    for instruction, args in dockerfile():
        if instruction == "ENV":
            used["Dockerfile"] |= set(re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", args))
    used["README"] = set(OURS.findall((DEPLOY / "README.md").read_text()))
    for where, names in used.items():
        ours = {n for n in names if OURS.fullmatch(n)}
        assert ours, f"{where} sets no SIGNOFF_/TEMPORAL_ variable"
        assert ours <= known, f"{where} uses unknown settings {sorted(ours - known)}"
    production = {
        "TEMPORAL_ADDRESS",
        "TEMPORAL_NAMESPACE",
        "SIGNOFF_DATABASE_URL",
        "SIGNOFF_PLAYBOOK_DIR",
        "SIGNOFF_INVENTORY",
        "SIGNOFF_AUDIT_REPO",
    }
    assert production <= used["README"]
    assert production - {"TEMPORAL_NAMESPACE"} <= used["compose"]
    assert production <= used["kubernetes"]
    assert "SIGNOFF_DATA_DIR" in used["Dockerfile"]


def test_worker_is_started_as_the_signoff_worker_command() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["signoff"] == "workers.main:main"
    assert CliRunner().invoke(app, ["worker", "--help"]).exit_code == 0
    assert CliRunner().invoke(app, ["no-such-command", "--help"]).exit_code != 0

    entrypoint, cmd = docker_exec_form("ENTRYPOINT"), docker_exec_form("CMD")
    assert entrypoint + cmd == ["signoff", "worker"]
    service = compose()["services"]["worker"]
    assert service["build"]["dockerfile"] == "deploy/Dockerfile"
    assert service.get("entrypoint", entrypoint) + service.get("command", cmd) == ["signoff", "worker"]
    _, container = k8s_worker()
    assert container.get("command", entrypoint) + container.get("args", cmd) == ["signoff", "worker"]
    argv = shlex.split(systemd_unit()["Service"]["ExecStart"])
    assert (Path(argv[0]).name, argv[1:]) == ("signoff", ["worker"])


def test_compose_temporal_registers_exactly_the_workflow_search_attributes() -> None:
    # KEYWORD_LIST -> KeywordList: the spelling of `temporal ... --search-attribute NAME=TYPE`
    expected = sorted(
        f"{key.name}={''.join(w.capitalize() for w in key.indexed_value_type.name.split('_'))}"
        for key in SEARCH_ATTRIBUTES
    )
    assert expected == [
        "SignoffApprovals=Int",
        "SignoffApprovalsNeeded=Int",
        "SignoffPhase=Keyword",
        "SignoffRequester=Keyword",
        "SignoffServices=KeywordList",
        "SignoffWaitingFor=KeywordList",
    ]
    assert sorted(SEARCH_ATTRIBUTE_FLAGS) == expected, "signoff dev registers the same"
    command = compose()["services"]["temporal"]["command"]
    command = shlex.split(command) if isinstance(command, str) else [str(c) for c in command]
    assert command[:2] == ["server", "start-dev"]
    registered = sorted(value for flag, value in itertools.pairwise(command) if flag == "--search-attribute")
    assert registered == expected


def test_kubernetes_worker_runs_non_root_and_drains() -> None:
    pod, container = k8s_worker()
    assert container["securityContext"]["runAsNonRoot"] is True
    assert pod["terminationGracePeriodSeconds"] >= 60
    assert {"requests", "limits"} <= set(container["resources"])
    assert {"configMapRef": {"name": "signoff-worker"}} in container["envFrom"]
    assert container["readinessProbe"]["exec"]["command"] == ["signoff", "worker", "--check"]
    assert "livenessProbe" not in container, "an outage is waited out, not restarted away"
    [db_url] = [e for e in container["env"] if e["name"] == "SIGNOFF_DATABASE_URL"]
    assert db_url["valueFrom"]["secretKeyRef"] == {"name": "signoff-db", "key": "url"}
    assert not [d for d in k8s_docs() if d["kind"] == "Secret"], "no real Secret in the repository"
    [user] = [args for instruction, args in dockerfile() if instruction == "USER"]
    assert user.split(":")[0].isdigit()
    assert int(user.split(":")[0]) > 0


def test_kubernetes_workers_push_to_one_shared_audit_remote() -> None:
    """Each pod's audit repository is an emptyDir: only a clone of SIGNOFF_AUDIT_REMOTE, which
    every pod must get, or its commits would stay in the pod and be lost with it."""
    pod, container = k8s_worker()
    [remote] = [e for e in container["env"] if e["name"] == "SIGNOFF_AUDIT_REMOTE"]
    ref = remote["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "signoff-audit", "key": "remote"}
    assert not ref.get("optional"), "a pod without the remote must not start"
    [config] = [d for d in k8s_docs() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "signoff-worker"]
    [data] = [v for v in pod["volumes"] if v["name"] == "data"]
    [mount] = [m for m in container["volumeMounts"] if m["name"] == "data"]
    assert "emptyDir" in data
    assert Path(config["data"]["SIGNOFF_AUDIT_REPO"]).is_relative_to(mount["mountPath"])
    assert "git init" not in json.dumps(pod), "the worker clones or creates its repository itself"


def test_systemd_unit_parses_and_has_its_sections() -> None:
    unit = systemd_unit()
    assert {"Unit", "Service", "Install"} <= set(unit.sections())
    service = unit["Service"]
    assert service["ExecStart"]
    assert service["Restart"] == "on-failure"
    assert service["User"] not in ("root", "0")
    assert int(service["TimeoutStopSec"]) >= 60
    assert unit["Install"]["WantedBy"]


@pytest.mark.parametrize("path", [COMPOSE, DOCKERFILE, UNIT, DEPLOY / "README.md", *KUBERNETES], ids=lambda p: p.name)
def test_no_unknown_signoff_names_anywhere(path: Path) -> None:
    assert set(OURS.findall(path.read_text())) <= known_names()
