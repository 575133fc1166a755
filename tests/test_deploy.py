"""deploy/ checked without Docker or a cluster: each file passes the real validator for its kind
(the compose spec schema, Kubernetes' schemas, hadolint, shellcheck, systemd-analyze), and each
validator is shown to fail on a broken copy. The files name only settings the worker reads, start
the real `signoff worker` command, agree with each other, and the Temporal setup script they run
registers exactly the workflow's search attributes on a real Temporal server."""

from __future__ import annotations

import asyncio
import configparser
import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from activities.audit_repo import AuditRepo
from workers.cli import app
from workers.devstack import DEV_DYNAMIC_CONFIG, SEARCH_ATTRIBUTE_FLAGS, temporal_binary
from workflows.inbox import SEARCH_ATTRIBUTES
from workflows.names import playbook_queue
from workflows.types import TASK_QUEUE

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yml"
KUBERNETES = sorted((DEPLOY / "kubernetes").glob("*.yaml"))  # what `kubectl apply -f deploy/kubernetes/` takes
SECRETS_EXAMPLE = DEPLOY / "kubernetes" / "secrets.yaml.example"
DOCKERFILE = DEPLOY / "Dockerfile"
UNIT = DEPLOY / "systemd" / "signoff-worker.service"
UNIT_ENV = DEPLOY / "systemd" / "worker.env.example"
TEMPORAL_SETUP = DEPLOY / "temporal" / "setup.sh"
TEMPORAL_SCHEMA = DEPLOY / "temporal" / "schema.sh"
# deploy/'s own files: not the playbooks and inventory a user puts beside compose.yml (.gitignore)
DEPLOY_FILES = sorted(
    path
    for path in DEPLOY.rglob("*")
    if path.is_file() and not {"playbooks", "inventory"} & set(path.relative_to(DEPLOY).parts[:1])
)
SCRIPTS = [path for path in DEPLOY_FILES if path.suffix == ".sh"]
BIN = Path(sys.executable).parent  # the validators come from the `test` extra, into this venv
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
TEMPORAL_NAMES = {
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    "TEMPORAL_API_KEY",
    "TEMPORAL_TLS",
    "TEMPORAL_PROFILE",
    "TEMPORAL_CONFIG_FILE",
}
OURS = re.compile(r"\b(?:SIGNOFF|TEMPORAL)_[A-Z0-9_]+\b")
SIGNOFF_IMAGE = "signoff-worker"
COMPLETED = "service_completed_successfully"


def known_names() -> set[str]:
    found = {
        name
        for module in ("settings.py", "cli.py", "codec.py", "codec_server.py", "web/config.py")
        for name in re.findall(r"[\"'](SIGNOFF_[A-Z0-9_]+)[\"']", (ROOT / "workers" / module).read_text())
    }
    assert {"SIGNOFF_DATABASE_URL", "SIGNOFF_AUDIT_REPO"} <= found  # the grep itself works
    return found | TEMPORAL_NAMES


def tool(name: str) -> str:
    path = BIN / name
    assert path.exists(), f"{name} is missing: pip install -e '.[test]'"
    return str(path)


def run(*argv: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env, timeout=120, check=False)


def broken_copy(tmp_path: Path, source: Path, old: str, new: str, name: str | None = None) -> Path:
    """`source` with one deliberate mistake, to show that a validator notices it."""
    text = source.read_text()
    assert old in text, f"{old!r} is not in {source.name}: update the test's broken copy"
    target = tmp_path / "broken" / (name or source.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text.replace(old, new, 1))
    return target


# --- reading the files ---------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # type: ignore[no-any-return]


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]  # type: ignore[no-any-return]


def runs_signoff_image(service: dict[str, Any]) -> bool:
    return service.get("image") == SIGNOFF_IMAGE or service.get("build", {}).get("dockerfile") == "deploy/Dockerfile"


def compose_workers() -> dict[str, dict[str, Any]]:
    """Services that run `signoff worker` (through the image's ENTRYPOINT and CMD)."""
    entrypoint, cmd = docker_exec_form("ENTRYPOINT"), docker_exec_form("CMD")
    return {
        name: service
        for name, service in services().items()
        if runs_signoff_image(service)
        and service.get("entrypoint", entrypoint) + service.get("command", cmd) == ["signoff", "worker"]
    }


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {name: str(value) for name, value in env.items()}


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source (a named volume or a host path) of a service's volumes."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        found[target] = source
    return found


def spec_config_file(config: dict[str, str]) -> Path:
    """The file in deploy/ behind a service's `configs:` entry."""
    return (DEPLOY / str(compose()["configs"][config["source"]]["file"])).resolve()


def named_volume_at(service: dict[str, Any], path: str) -> str:
    """The named volume holding `path` in a service (the deepest mount above it)."""
    holders = [(target, source) for target, source in mounts(service).items() if Path(path).is_relative_to(target)]
    assert holders, f"nothing is mounted at {path}"
    _, source = max(holders, key=lambda pair: len(pair[0]))
    assert source in compose()["volumes"], f"{path} is on {source}, not a named volume"
    return source


def k8s_docs(paths: list[Path] = KUBERNETES) -> list[dict[str, Any]]:
    return [doc for path in paths for doc in yaml.safe_load_all(path.read_text()) if doc]


def k8s_object(kind: str, name: str = "signoff-worker") -> dict[str, Any]:
    [found] = [d for d in k8s_docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def k8s_workload() -> dict[str, Any]:
    [workload] = [
        d
        for d in k8s_docs()
        if d["kind"] in ("Deployment", "StatefulSet") and d["metadata"]["name"] == "signoff-worker"
    ]
    return workload


def k8s_worker() -> tuple[dict[str, Any], dict[str, Any]]:
    pod = k8s_workload()["spec"]["template"]["spec"]
    [container] = [c for c in pod["containers"] if c["name"] == "worker"]
    return pod, container


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def docker_exec_form(instruction: str) -> list[str]:
    [args] = [a for i, a in dockerfile() if i == instruction]
    return json.loads(args)  # type: ignore[no-any-return]  # exec form only: a shell would hide signals


def systemd_unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    unit.read_string(UNIT.read_text())
    return unit


def env_file(path: Path) -> dict[str, str]:
    pairs = [line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(pairs)


# --- every file ----------------------------------------------------------------------------------


def test_every_yaml_parses() -> None:
    files = [COMPOSE, *KUBERNETES, SECRETS_EXAMPLE, *(p for p in DEPLOY_FILES if p.suffix == ".yaml")]
    assert len(files) >= 4
    for path in files:
        assert [doc for doc in yaml.safe_load_all(path.read_text()) if doc], path


def test_env_names_are_ones_the_project_reads() -> None:
    known = known_names()
    used: dict[str, set[str]] = {"compose": set(), "kubernetes": set(), "Dockerfile": set(), "systemd": set()}
    for name, service in services().items():
        env = set(environment(service))
        if runs_signoff_image(service):
            # a signoff container gets nothing but what signoff reads
            assert env <= known, f"compose service {name} sets {sorted(env - known)}, which signoff does not read"
            used["compose"] |= env
        else:
            # Temporal's own containers read TEMPORAL_ADDRESS & co. themselves, never SIGNOFF_*
            assert not {n for n in env if n.startswith("SIGNOFF_")}, name
    for doc in k8s_docs():
        if doc["kind"] == "ConfigMap":
            used["kubernetes"] |= set(doc["data"])
    pod, _ = k8s_worker()
    for container in pod["containers"] + pod.get("initContainers", []):
        used["kubernetes"] |= {e["name"] for e in container.get("env", [])}
    for instruction, args in dockerfile():
        if instruction == "ENV":
            used["Dockerfile"] |= set(re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", args))
    used["systemd"] |= set(env_file(UNIT_ENV))
    used["systemd"] |= {e.split("=", 1)[0] for e in systemd_unit()["Service"].get("Environment", "").split()}
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
    assert production | {"SIGNOFF_AUDIT_REMOTE", "SIGNOFF_METRICS_ADDRESS"} <= used["compose"]
    assert production | {"SIGNOFF_METRICS_ADDRESS"} <= used["kubernetes"]
    assert production <= used["systemd"]
    assert "SIGNOFF_DATA_DIR" in used["Dockerfile"]


@pytest.mark.parametrize("path", DEPLOY_FILES, ids=lambda p: p.name)
def test_no_unknown_signoff_names_anywhere(path: Path) -> None:
    assert set(OURS.findall(path.read_text())) <= known_names()


def test_deploy_readme_describes_every_file() -> None:
    readme = (DEPLOY / "README.md").read_text()
    for path in DEPLOY_FILES:
        if path.name != "README.md":
            assert f"`{path.relative_to(DEPLOY)}`" in readme, f"deploy/README.md does not describe {path.name}"


def test_worker_is_started_as_the_signoff_worker_command() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["signoff"] == "workers.main:main"
    assert CliRunner().invoke(app, ["worker", "--help"]).exit_code == 0
    assert CliRunner().invoke(app, ["no-such-command", "--help"]).exit_code != 0

    entrypoint, cmd = docker_exec_form("ENTRYPOINT"), docker_exec_form("CMD")
    assert entrypoint + cmd == ["signoff", "worker"]
    assert len(compose_workers()) >= 2, "two workers in compose"
    for service in compose_workers().values():
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).resolve() == DOCKERFILE
    _, container = k8s_worker()
    assert container.get("command", entrypoint) + container.get("args", cmd) == ["signoff", "worker"]
    argv = shlex.split(systemd_unit()["Service"]["ExecStart"])
    assert (Path(argv[0]).name, argv[1:]) == ("signoff", ["worker"])


# --- compose -------------------------------------------------------------------------------------


def test_compose_file_matches_the_compose_spec(tmp_path: Path) -> None:
    def check(path: Path) -> subprocess.CompletedProcess[str]:
        # the schema is vendored in check-jsonschema: nothing is downloaded
        return run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path))

    good = check(COMPOSE)
    assert good.returncode == 0, good.stdout + good.stderr
    for old, new, named in [
        ("  stop_grace_period: 2m", "  stop_grace_periode: 2m", "'stop_grace_periode' was unexpected"),
        (f"condition: {COMPLETED}", "condition: service_completed", "'service_completed' is not one of"),
    ]:
        bad = check(broken_copy(tmp_path, COMPOSE, old, new))
        assert bad.returncode == 1, f"check-jsonschema accepted {new!r}"
        assert named in bad.stdout, bad.stdout


def test_compose_references_resolve() -> None:
    """What the schema cannot see: names that must exist elsewhere in the file or beside it."""
    spec = compose()
    assert "$" not in COMPOSE.read_text(), "no variable interpolation: the file means what it says"
    for name, service in spec["services"].items():
        for needed, how in (service.get("depends_on") or {}).items():
            assert needed in spec["services"], f"{name} depends on unknown {needed}"
            if how["condition"] == COMPLETED:
                assert "restart" not in spec["services"][needed], f"{needed} is a one-shot job"
            if how["condition"] == "service_healthy":
                assert "healthcheck" in spec["services"][needed], f"{needed} has no healthcheck"
        for target, source in mounts(service).items():
            assert source.startswith(".") or source in spec["volumes"], f"{name}: volume {source} at {target}"
        for config in service.get("configs", []):
            assert (DEPLOY / spec["configs"][config["source"]]["file"]).is_file(), config
        if "image" in service and not runs_signoff_image(service):
            repository, _, tag = service["image"].rpartition(":")
            assert repository, name
            assert tag not in ("", "latest"), f"{name}: pin the image version"


def test_compose_runs_temporal_on_postgresql_with_its_web_ui() -> None:
    spec = services()
    assert "start-dev" not in COMPOSE.read_text(), "not the in-memory dev server"
    [(temporal_name, temporal)] = [(n, s) for n, s in spec.items() if s["image"].startswith("temporalio/server:")]
    server_env = environment(temporal)
    assert server_env["DB"] == "postgres12"
    database = spec[server_env["POSTGRES_SEEDS"]]
    assert database["image"].startswith("postgres:")
    assert environment(database)["POSTGRES_USER"] == server_env["POSTGRES_USER"]
    assert environment(database)["POSTGRES_PASSWORD"] == server_env["POSTGRES_PWD"]
    assert any(target == "/var/lib/postgresql/data" for target in mounts(database)), "history survives restarts"

    # the schema job runs before the server, with the server's own database settings and version
    [schema_job] = [n for n, how in temporal["depends_on"].items() if how == {"condition": COMPLETED}]
    schema = spec[schema_job]
    assert schema["image"].split(":")[1] == temporal["image"].split(":")[1]
    assert {k: v for k, v in environment(schema).items() if k in server_env} == {
        k: v for k, v in server_env.items() if k in ("DB", "DB_PORT", "POSTGRES_SEEDS", "POSTGRES_USER", "POSTGRES_PWD")
    }
    assert [spec_config_file(c) for c in schema["configs"]] == [TEMPORAL_SCHEMA]
    assert schema["entrypoint"] == ["/bin/sh", schema["configs"][0]["target"]]

    [ui] = [s for s in spec.values() if s["image"].startswith("temporalio/ui:")]
    assert environment(ui)["TEMPORAL_ADDRESS"] == f"{temporal_name}:7233"
    assert any(port.endswith(":8080") for port in ui["ports"])
    for worker in compose_workers().values():
        assert environment(worker)["TEMPORAL_ADDRESS"] == f"{temporal_name}:7233"


def test_compose_workers_share_one_audit_remote_and_serve_metrics() -> None:
    spec = compose()
    workers = compose_workers()
    assert len(workers) == 2
    remotes = {environment(w)["SIGNOFF_AUDIT_REMOTE"] for w in workers.values()}
    [remote] = remotes
    assert remote.startswith("file:///")
    remote_path = remote.removeprefix("file://")
    [remote_volume] = {named_volume_at(w, remote_path) for w in workers.values()}

    # a one-shot job makes the bare repository on that volume before any worker starts
    [(init_name, init)] = [(n, s) for n, s in spec["services"].items() if "git" in s.get("entrypoint", [])[:1]]
    assert init["entrypoint"][:3] == ["git", "init", "--bare"]
    assert "--initial-branch=main" in init["entrypoint"]
    assert init["entrypoint"][-1] == remote_path
    assert named_volume_at(init, remote_path) == remote_volume

    repo_volumes, metrics_ports = set(), set()
    for name, worker in workers.items():
        env = environment(worker)
        assert worker["depends_on"][init_name] == {"condition": COMPLETED}
        # each worker's SIGNOFF_AUDIT_REPO is its own clone, on its own volume
        assert Path(env["SIGNOFF_AUDIT_REPO"]).is_relative_to(env["SIGNOFF_DATA_DIR"])
        repo_volumes.add(named_volume_at(worker, env["SIGNOFF_AUDIT_REPO"]))
        assert named_volume_at(worker, env["SIGNOFF_AUDIT_REPO"]) != remote_volume
        # metrics on every interface of the container, published on the host's loopback
        host, _, port = env["SIGNOFF_METRICS_ADDRESS"].rpartition(":")
        assert host == "0.0.0.0"
        [published] = [p for p in worker["ports"] if p.endswith(f":{port}")]
        assert published.startswith("127.0.0.1:")
        metrics_ports.add(published.split(":")[1])
        # readiness as a status only, and room to drain on SIGTERM
        assert worker["healthcheck"]["test"] == ["CMD", "signoff", "worker", "--check"]
        assert worker["stop_grace_period"] == "2m"
        assert worker["init"] is True, f"{name}: an init reaps Ansible's orphans"
        for setting in ("SIGNOFF_PLAYBOOK_DIR", "SIGNOFF_INVENTORY"):
            assert any(Path(env[setting]).is_relative_to(target) for target in mounts(worker)), setting
    assert len(repo_volumes) == len(workers), "one clone volume per worker"
    assert len(metrics_ports) == len(workers), "one host port per worker's /metrics"


def test_compose_web_inbox_reads_the_shared_audit_history_and_keeps_its_keys() -> None:
    web = services()["web"]
    entrypoint = docker_exec_form("ENTRYPOINT")
    assert entrypoint + web["command"] == ["signoff", "web"]
    env = environment(web)
    host, _, port = env["SIGNOFF_WEB_ADDRESS"].rpartition(":")
    assert host == "0.0.0.0"
    assert web["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert env["SIGNOFF_WEB_URL"] == f"http://127.0.0.1:{port}"
    worker_env = environment(next(iter(compose_workers().values())))
    assert env["SIGNOFF_DATABASE_URL"] == worker_env["SIGNOFF_DATABASE_URL"]
    assert env["SIGNOFF_APPROVERS"] == worker_env["SIGNOFF_APPROVERS"]
    remote = worker_env["SIGNOFF_AUDIT_REMOTE"].removeprefix("file://")
    assert env["SIGNOFF_AUDIT_REPO"] == remote
    [audit] = [v for v in web["volumes"] if isinstance(v, dict) and v["target"] == remote]
    assert audit["read_only"] is True
    assert named_volume_at(web, env["SIGNOFF_DATA_DIR"]) == "web-data", "users, session key and signing key"


def test_compose_volumes_of_the_image_belong_to_its_user() -> None:
    """A fresh named volume takes the owner of the image's directory it is mounted on: every
    such directory must exist in the image, owned by signoff, or the worker cannot write there."""
    [install] = [args for i, args in dockerfile() if i == "RUN" and "install -d -o signoff" in args]
    created = set(shlex.split(install.split("install -d", 1)[1].split("&&")[0])) - {"-o", "-g", "-m", "signoff"}
    for name, service in services().items():
        if runs_signoff_image(service):
            for target, source in mounts(service).items():
                if source in compose()["volumes"]:
                    assert target in created, f"{name}: {target} is not created by the Dockerfile"


def test_compose_audit_remote_job_makes_a_repository_both_workers_push_to(tmp_path: Path) -> None:
    """The audit-remote job's command, then two workers' clones with the workers' own
    SIGNOFF_AUDIT_REMOTE (moved under tmp_path), through signoff's real audit repository code."""
    [init] = [s for s in services().values() if "git" in s.get("entrypoint", [])[:1]]
    remote_path = init["entrypoint"][-1]
    bare = tmp_path / Path(remote_path).relative_to("/")
    argv = [*init["entrypoint"][:-1], str(bare)]
    for _ in range(2):  # every `docker compose up` runs it again
        assert run(*argv).returncode == 0
    assert run("git", "--git-dir", str(bare), "symbolic-ref", "HEAD").stdout.strip() == "refs/heads/main"

    clones = {}
    for name, worker in compose_workers().items():
        env = environment(worker)
        remote = env["SIGNOFF_AUDIT_REMOTE"].replace(remote_path, str(bare))
        assert remote.startswith("file:///")
        clones[name] = AuditRepo(tmp_path / name / Path(env["SIGNOFF_AUDIT_REPO"]).relative_to("/"), remote)
        clones[name].ensure()
    for name, clone in clones.items():
        clone.commit({f".audit/requests/{name}.json": b"{}\n"}, "a request\n")
        clone.push()
    listed = run("git", "--git-dir", str(bare), "ls-tree", "-r", "--name-only", "main", ".audit/requests/")
    assert listed.stdout.split() == [f".audit/requests/{name}.json" for name in sorted(compose_workers())]


def test_compose_search_attributes_are_exactly_the_workflows() -> None:
    # KEYWORD_LIST -> KeywordList: the spelling of `temporal ... --type` and `--search-attribute`
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
    words = shlex.split(TEMPORAL_SETUP.read_text(), comments=True)
    names = [b for a, b in itertools.pairwise(words) if a == "--name"]
    types = [b for a, b in itertools.pairwise(words) if a == "--type"]
    assert sorted(f"{n}={t}" for n, t in zip(names, types, strict=True)) == expected

    # compose runs that script once Temporal is up, and the workers only after it succeeded
    spec = services()
    [(name, setup)] = [(n, s) for n, s in spec.items() if TEMPORAL_SETUP in map(spec_config_file, s.get("configs", []))]
    assert setup["entrypoint"] == ["/bin/sh", setup["configs"][0]["target"]]
    assert list(setup["depends_on"].values()) == [{"condition": "service_healthy"}]
    assert environment(setup)["TEMPORAL_NAMESPACE"] == "default"
    for worker in compose_workers().values():
        assert worker["depends_on"][name] == {"condition": COMPLETED}
        assert environment(worker)["TEMPORAL_NAMESPACE"] == environment(setup)["TEMPORAL_NAMESPACE"]


def test_temporal_serves_the_playbook_queue_from_one_partition() -> None:
    """Playbooks start in the order they were scheduled (tests/test_queue_order.py) only with
    one partition; the compose workers use the default task queue."""
    config = yaml.safe_load((DEPLOY / "temporal" / "dynamicconfig.yaml").read_text())
    queue = playbook_queue(TASK_QUEUE)
    for key in ("matching.numTaskqueueReadPartitions", "matching.numTaskqueueWritePartitions"):
        assert config[key] == [{"value": 1, "constraints": {"taskQueueName": queue}}]
    for worker in compose_workers().values():
        assert "SIGNOFF_TASK_QUEUE" not in environment(worker)
    assert set(DEV_DYNAMIC_CONFIG[1::2]) == {
        "matching.numTaskqueueReadPartitions=1",
        "matching.numTaskqueueWritePartitions=1",
    }, "signoff dev's server does the same"


async def test_temporal_setup_script_registers_them_on_a_real_server(env: WorkflowEnvironment) -> None:
    """Runs deploy/temporal/setup.sh (what compose's temporal-setup job runs) against the
    session's Temporal server, for a namespace it has to create, twice as `up` would."""
    namespace = f"deploy-{uuid.uuid4().hex[:8]}"
    script_env = {
        **os.environ,
        "PATH": f"{temporal_binary().parent}{os.pathsep}{os.environ['PATH']}",
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": namespace,
    }
    for _ in range(2):
        process = await asyncio.create_subprocess_exec(
            "sh", str(TEMPORAL_SETUP), env=script_env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        output, _ = await asyncio.wait_for(process.communicate(), 120)
        assert process.returncode == 0, output.decode()
    listed = await env.client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    assert dict(listed.custom_attributes) == {key.name: int(key.indexed_value_type) for key in SEARCH_ATTRIBUTES}


def test_temporal_schema_script_prepares_both_databases(tmp_path: Path) -> None:
    """deploy/temporal/schema.sh with stand-ins for temporal-sql-tool and nc that log their
    arguments: each database is created, set up and brought to the image's schema versions, with
    the server's settings, and the password never on a command line."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    log = tmp_path / "calls"
    for name in ("temporal-sql-tool", "nc"):
        (stubs / name).write_text(f'#!/bin/sh\necho "{name} $* SQL_PASSWORD=${{SQL_PASSWORD:-}}" >> "{log}"\n')
        (stubs / name).chmod(0o755)
    [schema_job] = [s for s in services().values() if TEMPORAL_SCHEMA in map(spec_config_file, s.get("configs", []))]
    job_env = {"PATH": f"{stubs}{os.pathsep}{os.environ['PATH']}", **environment(schema_job)}
    result = run("sh", str(TEMPORAL_SCHEMA), env=job_env)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = log.read_text().splitlines()
    password = job_env["POSTGRES_PWD"]
    assert calls[0] == f"nc -z -w 5 {job_env['POSTGRES_SEEDS']} {job_env['DB_PORT']} SQL_PASSWORD={password}"
    seeds, port, user = job_env["POSTGRES_SEEDS"], job_env["DB_PORT"], job_env["POSTGRES_USER"]
    connect = f"--plugin postgres12 --ep {seeds} -p {port} -u {user}"
    versioned = "/etc/temporal/schema/postgresql/v12/{}/versioned"
    assert calls[1:] == [
        f"temporal-sql-tool {connect} --db {database} {command} SQL_PASSWORD={password}"
        for database, schema in (("temporal", "temporal"), ("temporal_visibility", "visibility"))
        for command in ("create", "setup-schema -v 0.0", f"update-schema -d {versioned.format(schema)}")
    ]
    without_password = {k: v for k, v in job_env.items() if k != "POSTGRES_PWD"}
    assert run("sh", str(TEMPORAL_SCHEMA), env=without_password).returncode != 0


def test_scripts_pass_shellcheck(tmp_path: Path) -> None:
    assert {p.name for p in SCRIPTS} >= {"setup.sh", "schema.sh"}
    good = run(tool("shellcheck"), "--shell=sh", "--severity=style", *map(str, SCRIPTS))
    assert good.returncode == 0, good.stdout + good.stderr
    quoted = 'echo "signoff setup: gave up waiting for $what" >&2'
    bad = broken_copy(tmp_path, TEMPORAL_SETUP, quoted, quoted.replace('"', ""))
    found = run(tool("shellcheck"), "--shell=sh", "--severity=style", str(bad))
    assert found.returncode != 0
    assert "SC2086" in found.stdout  # unquoted: split and globbed


# --- Dockerfile ----------------------------------------------------------------------------------


def hadolint(path: Path, tmp_path: Path, *options: str) -> tuple[int, set[str]]:
    # no configuration but the file's own pragmas: run where no .hadolint.yaml can be found
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "XDG_CONFIG_HOME": str(home)}
    argv = [tool("hadolint"), "--no-color", "--format", "json", "--failure-threshold", "style", *options, str(path)]
    result = run(*argv, cwd=home, env=env)
    return result.returncode, {finding["code"] for finding in json.loads(result.stdout or "[]")}


def test_dockerfile_passes_hadolint(tmp_path: Path) -> None:
    assert hadolint(DOCKERFILE, tmp_path) == (0, set())
    bad = broken_copy(tmp_path, DOCKERFILE, "RUN pip install --no-cache-dir /src", "RUN cd /src && pip install .")
    returncode, codes = hadolint(bad, tmp_path)
    assert returncode != 0
    assert "DL3003" in codes  # cd: use WORKDIR
    returncode, codes = hadolint(broken_copy(tmp_path, DOCKERFILE, "USER 10001:10001", "USER root"), tmp_path)
    assert (returncode, codes) != (0, set())  # DL3002: last USER should not be root


def test_dockerfile_ignores_only_rules_it_explains(tmp_path: Path) -> None:
    _, ignored = hadolint(DOCKERFILE, tmp_path, "--disable-ignore-pragma")
    assert ignored == {"DL3008"}, "a new `hadolint ignore` needs its reason in the Dockerfile and here"
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore=" in line:
            assert lines[number - 1].startswith("#"), "the reason comes right before the pragma"
            assert "DL3008" in "\n".join(lines[number - 3 : number])


def test_dockerfile_builds_the_distribution_as_a_non_root_user() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = {name for i, args in dockerfile() if i == "COPY" for name in shlex.split(args)[:-1]}
    assert packages | {"pyproject.toml", project["project"]["readme"]} <= copied
    [install] = [args for i, args in dockerfile() if i == "RUN" and "pip install" in args]
    assert "pip install --no-cache-dir /src" in install
    [user] = [args for instruction, args in dockerfile() if instruction == "USER"]
    uid, _, gid = user.partition(":")
    assert uid.isdigit(), "numeric, so runAsNonRoot can verify it"
    assert int(uid) > 0
    pod, _ = k8s_worker()
    assert pod["securityContext"]["runAsUser"] == int(uid)
    assert pod["securityContext"]["runAsGroup"] == int(gid)


# --- Kubernetes ----------------------------------------------------------------------------------


def kubernetes_validate(version: str | None, *paths: Path) -> tuple[int, list[str]]:
    # the schemas ship in the package: nothing is downloaded; no version: the newest it knows
    versions = ["--kubernetes-version", version] if version else []
    result = run(tool("kubernetes-validate"), "--strict", *versions, *map(str, paths))
    return result.returncode, (result.stdout + result.stderr).splitlines()


@pytest.mark.parametrize("version", ["1.31", None], ids=["oldest-supported", "newest-known"])
def test_kubernetes_manifests_match_the_kubernetes_schemas(version: str | None, tmp_path: Path) -> None:
    returncode, lines = kubernetes_validate(version, *KUBERNETES, SECRETS_EXAMPLE)
    assert returncode == 0, lines
    # it only warns about a kind it has no schema for: every object must really be checked
    assert len(lines) == len(k8s_docs([*KUBERNETES, SECRETS_EXAMPLE]))
    assert all(line.startswith("INFO ") and " passed " in line for line in lines), lines

    worker = DEPLOY / "kubernetes" / "worker.yaml"
    returncode, lines = kubernetes_validate(version, broken_copy(tmp_path, worker, "periodSeconds:", "periodSecond:"))
    assert returncode != 0
    assert any(line.startswith("ERROR ") and "periodSecond" in line for line in lines), lines
    returncode, lines = kubernetes_validate(version, broken_copy(tmp_path, worker, "replicas: 2", 'replicas: "2"'))
    assert returncode != 0
    _, lines = kubernetes_validate(version, broken_copy(tmp_path, worker, "kind: StatefulSet", "kind: Statefulset"))
    assert not all(line.startswith("INFO ") for line in lines), "a misspelled kind is not validated"


def test_kubernetes_worker_runs_non_root_and_drains() -> None:
    pod, container = k8s_worker()
    # the "restricted" Pod Security Standard
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["terminationGracePeriodSeconds"] >= 60
    assert {"requests", "limits"} <= set(container["resources"])
    assert {"configMapRef": {"name": "signoff-worker"}} in container["envFrom"]
    config = k8s_object("ConfigMap")["data"]
    assert int(config["SIGNOFF_PLAYBOOK_CONCURRENCY"]) <= int(container["resources"]["limits"]["cpu"])
    assert container["readinessProbe"]["exec"]["command"] == ["signoff", "worker", "--check"]
    assert "livenessProbe" not in container, "an outage is waited out, not restarted away (deploy/README.md)"
    assert "startupProbe" not in container, "a startup probe that fails restarts the pod too"
    [db_url] = [e for e in container["env"] if e["name"] == "SIGNOFF_DATABASE_URL"]
    assert db_url["valueFrom"]["secretKeyRef"] == {"name": "signoff-db", "key": "url"}


def test_kubernetes_root_filesystem_is_read_only_but_what_the_worker_writes() -> None:
    _, container = k8s_worker()
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    config = k8s_object("ConfigMap")["data"]
    assert {"/tmp", "/home/signoff", config["SIGNOFF_DATA_DIR"]} <= writable  # TMPDIR, ~/.ansible, data


def test_kubernetes_audit_is_on_a_persistent_volume_and_pushed_to_one_remote() -> None:
    """Each pod's audit repository is its own clone of SIGNOFF_AUDIT_REMOTE, which every pod must
    get, on a PersistentVolumeClaim of its own: never an emptyDir lost with the pod."""
    workload = k8s_workload()
    pod, container = k8s_worker()
    [remote] = [e for e in container["env"] if e["name"] == "SIGNOFF_AUDIT_REMOTE"]
    ref = remote["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "signoff-audit", "key": "remote"}
    assert not ref.get("optional"), "a pod without the remote must not start"
    config = k8s_object("ConfigMap")["data"]
    repo = Path(config["SIGNOFF_AUDIT_REPO"])
    holders = [m for m in container["volumeMounts"] if repo.is_relative_to(m["mountPath"])]
    [mount] = sorted(holders, key=lambda m: len(m["mountPath"]))[-1:]
    assert not mount.get("readOnly")
    claims = {t["metadata"]["name"]: t for t in workload["spec"].get("volumeClaimTemplates", [])}
    volumes = {v["name"]: v for v in pod["volumes"]}
    if mount["name"] in claims:
        assert workload["kind"] == "StatefulSet"
        assert claims[mount["name"]]["spec"]["accessModes"] == ["ReadWriteOnce"]
    else:
        assert "persistentVolumeClaim" in volumes[mount["name"]], "the audit clone must be on a PVC"
    assert "emptyDir" not in volumes.get(mount["name"], {})
    assert "git init" not in json.dumps(pod), "the worker clones or creates its repository itself"


def test_kubernetes_disruption_budget_and_metrics_cover_the_workers() -> None:
    workload = k8s_workload()
    labels = workload["spec"]["template"]["metadata"]["labels"]
    assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()
    budget = k8s_object("PodDisruptionBudget")["spec"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    assert budget["maxUnavailable"] == 1 < workload["spec"]["replicas"]
    assert budget["unhealthyPodEvictionPolicy"] == "AlwaysAllow", "a drain during an outage must not hang"

    _, container = k8s_worker()
    port = int(k8s_object("ConfigMap")["data"]["SIGNOFF_METRICS_ADDRESS"].rpartition(":")[2])
    assert {"name": "metrics", "containerPort": port} in container["ports"]
    service = k8s_object("Service")["spec"]
    assert service["selector"].items() <= labels.items()
    assert {"name": "metrics", "port": port, "targetPort": "metrics"} in service["ports"]
    if workload["kind"] == "StatefulSet":
        assert workload["spec"]["serviceName"] == k8s_object("Service")["metadata"]["name"]


def test_kubernetes_secrets_are_templates_only() -> None:
    assert not [d for d in k8s_docs() if d["kind"] == "Secret"], "no Secret in what `kubectl apply` takes"
    assert SECRETS_EXAMPLE.suffix not in (".yaml", ".yml", ".json"), "`kubectl apply -f deploy/kubernetes/` skips it"
    templates = {d["metadata"]["name"]: d for d in k8s_docs([SECRETS_EXAMPLE])}
    for name, secret in templates.items():
        assert secret["kind"] == "Secret"
        assert "data" not in secret, f"{name}: base64 could hide a real value; use stringData"
        for key, value in secret["stringData"].items():
            assert "CHANGE-ME" in value, f"{name}/{key} looks like a real value"
    # everything a pod needs is in the template
    pod, container = k8s_worker()
    for entry in container["env"]:
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if ref and not ref.get("optional"):
            assert ref["key"] in templates[ref["name"]]["stringData"], ref
    [ssh] = [v["secret"] for v in pod["volumes"] if "secret" in v]
    assert ssh["secretName"] in templates


# --- systemd -------------------------------------------------------------------------------------


def test_systemd_unit_parses_and_is_sandboxed() -> None:
    unit = systemd_unit()
    assert {"Unit", "Service", "Install"} <= set(unit.sections())
    service = unit["Service"]
    assert service["ExecStart"]
    assert service["Restart"] == "on-failure"
    assert service["User"] not in ("root", "0")
    assert int(service["TimeoutStopSec"]) >= 60
    assert service["KillMode"] == "mixed"
    assert unit["Install"]["WantedBy"]
    hardening = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
        "RestrictRealtime": "yes",
        "SystemCallArchitectures": "native",
        "CapabilityBoundingSet": "",
        "UMask": "0077",
    }
    assert {key: service.get(key) for key in hardening} == hardening
    # ProtectSystem=strict leaves writable only what is named: the data dir, which holds the
    # audit repository and is the signoff user's home (~/.ansible, ~/.ssh)
    env = env_file(UNIT_ENV)
    writable = {f"/var/lib/{d}" for d in service.get("StateDirectory", "").split()}
    writable |= set(service.get("ReadWritePaths", "").split())
    assert env["SIGNOFF_DATA_DIR"] in writable
    assert Path(env["SIGNOFF_AUDIT_REPO"]).is_relative_to(env["SIGNOFF_DATA_DIR"])
    assert service["WorkingDirectory"] == env["SIGNOFF_DATA_DIR"]
    assert f"/etc/signoff/{UNIT_ENV.name.removesuffix('.example')}" == service["EnvironmentFile"]


def runnable_unit(source: Path, tmp_path: Path) -> Path:
    """A copy whose ExecStart is this venv's `signoff`: systemd-analyze checks that it exists."""
    text = re.sub(r"(?m)^ExecStart=\S+", f"ExecStart={BIN / 'signoff'}", source.read_text())
    target = tmp_path / "units" / UNIT.name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


def systemd_analyze(*argv: str, unit: Path) -> tuple[int, list[str]]:
    assert SYSTEMD_ANALYZE
    result = run(SYSTEMD_ANALYZE, *argv, str(unit), cwd=unit.parent)
    # only what concerns this unit: a host's own units may have warnings of their own
    lines = [line for line in (result.stdout + result.stderr).splitlines() if unit.name in line]
    return result.returncode, lines


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (the systemd package)")
def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    assert systemd_analyze("verify", "--man=no", unit=runnable_unit(UNIT, tmp_path)) == (0, [])
    # it only warns about a misspelled directive or a bad value, and exits 0: any line fails
    for old, new in [("ProtectSystem=strict", "ProtectSystm=strict"), ("ProtectHome=yes", "ProtectHome=yess")]:
        broken = runnable_unit(broken_copy(tmp_path, UNIT, old, new), tmp_path / "broken")
        _, lines = systemd_analyze("verify", "--man=no", unit=broken)
        assert lines, f"systemd-analyze verify said nothing about {new}"
    missing = runnable_unit(UNIT, tmp_path / "missing")
    missing.write_text(missing.read_text().replace(str(BIN / "signoff"), str(tmp_path / "no-such-signoff")))
    assert systemd_analyze("verify", "--man=no", unit=missing)[0] != 0


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (the systemd package)")
def test_systemd_unit_exposure_is_low(tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE
    help_text = run(SYSTEMD_ANALYZE, "security", "--help").stdout
    if "--offline" not in help_text:
        pytest.skip("this systemd-analyze has no `security --offline` (systemd 250 or newer has it)")
    # exposure 0.0 (sandboxed) to 10.0 (unprotected), as tenths; 2.0 is well inside "OK"
    threshold = ("security", "--offline=yes", "--no-pager", "--threshold=20")
    returncode, lines = systemd_analyze(*threshold, unit=runnable_unit(UNIT, tmp_path))
    assert returncode == 0, lines
    unhardened = UNIT.read_text()
    for directive in ("ProtectSystem", "NoNewPrivileges", "CapabilityBoundingSet", "SystemCallFilter"):
        unhardened = re.sub(rf"(?m)^{directive}=.*\n", "", unhardened)
    (tmp_path / "unhardened.service").write_text(unhardened)
    weak = runnable_unit(tmp_path / "unhardened.service", tmp_path / "weak")
    assert systemd_analyze(*threshold, unit=weak)[0] != 0
