"""Serving the web inbox: in its own process (`signoff web`) or beside `signoff dev`'s worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager

import uvicorn
from temporalio.client import Client

from workers.devstack import embedded_database_url
from workers.ops import OperationError
from workers.settings import ConfigError, Settings
from workers.web.app import create_app
from workers.web.config import WebConfig
from workers.web.context import Web, templates
from workers.web.limiter import LoginLimiter
from workers.web.signer import WebSigner
from workers.web.users import UserFile, generate_password


async def build(settings: Settings, config: WebConfig, client: Client) -> Web:
    return Web(
        config=config,
        settings=settings,
        client=client,
        signer=await WebSigner.ensure(config.signing_key),
        users=UserFile(config.users_file),
        limiter=LoginLimiter(),
        templates=templates(),
        database_url=settings.database_url or embedded_database_url(settings.data_dir),
    )


class _Server(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the command around it owns SIGINT and SIGTERM (workers.process)


async def _serve(server: uvicorn.Server) -> None:
    try:
        await server.serve()
    except SystemExit:  # uvicorn's answer to an address it cannot bind, after logging why
        return


@asynccontextmanager
async def serving(web: Web) -> AsyncIterator[uvicorn.Server]:
    """The app served on `web.config.address` until the block ends."""
    host, _, port = web.config.address.rpartition(":")
    server = _Server(
        uvicorn.Config(
            create_app(web),
            host=host.strip("[]"),
            port=int(port),
            log_level="warning",
            lifespan="off",
            server_header=False,
            access_log=False,
            timeout_graceful_shutdown=2,  # open event streams end with the server
        )
    )
    task = asyncio.create_task(_serve(server))
    while not server.started:
        if task.done():
            await task  # raises what stopped it, if it raised
            raise OSError(f"the web server could not listen on {web.config.address}")
        await asyncio.sleep(0.02)
    try:
        yield server
    finally:
        server.should_exit = True
        await task
        if web._engine is not None:
            web._engine.dispose()


def started_lines(web: Web) -> list[str]:
    how = f"OIDC ({web.config.oidc.issuer})" if web.config.oidc else f"users in {web.config.users_file}"
    return [
        f"web inbox at {web.config.public_url} (login: {how})",
        f"web signing key {web.signer.key}.pub; workers trust it with this allowed_signers line "
        f"(narrow `*` to the names it may attest for):\n  {web.signer.allowed_signers_line()}",
    ]


@asynccontextmanager
async def dev_web(settings: Settings, client: Client) -> AsyncIterator[list[str]]:
    """`signoff dev`'s web inbox with two demo users, `alice` and `bob`, with fresh passwords;
    yields the lines to print. A machine that cannot run it (no ssh-keygen, the port taken) gets
    the reason in one line, and the rest of `signoff dev` runs without it."""
    async with AsyncExitStack() as running:
        try:
            web = await build(settings, WebConfig.from_env(settings), client)
            passwords = {name: generate_password() for name in ("alice", "bob")}
            for name, password in passwords.items():
                web.users.add(name, password)
            await running.enter_async_context(serving(web))
            lines = [*started_lines(web), "demo users: " + ", ".join(f"{n} / {p}" for n, p in passwords.items())]
        except (OperationError, OSError, ConfigError) as err:
            lines = [f"web inbox not started: {err}"]
        yield lines
