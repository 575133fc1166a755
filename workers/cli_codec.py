"""`signoff codec-server` and `signoff payload-key new`: encrypted Temporal payloads, readable
through a codec server by those holding its token (workers/codec.py, workers/codec_server.py)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from workers.codec import KEYS_ENV, add_new_key, keys_from_env
from workers.codec_server import ADDRESS_ENV, DEFAULT_ADDRESS, CodecHTTPServer, CodecServerConfig
from workers.settings import ConfigError

console = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
errors = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)

key_app = typer.Typer(help=f"Keys that encrypt Temporal payloads ({KEYS_ENV}).", no_args_is_help=True)


def codec_server(
    address: Annotated[
        str | None, typer.Option(help=f"host:port to listen on (env {ADDRESS_ENV}; default {DEFAULT_ADDRESS})")
    ] = None,
) -> None:
    """Decode payloads for `temporal --codec-endpoint` and the Web UI (Temporal's codec server).

    The keys come from SIGNOFF_PAYLOAD_KEYS_FILE. Callers need SIGNOFF_CODEC_TOKEN,
    as `Authorization: Bearer <token>` or as the URL's first path segment.
    SIGNOFF_CODEC_ORIGINS lists the Web UI origins CORS allows."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = CodecServerConfig.from_env(address=address)
        keys = keys_from_env()
        if keys is None:
            raise ConfigError(f"{KEYS_ENV} is not set: the codec server needs the keys file workers use")
        server = CodecHTTPServer(config, keys)
    except ConfigError as err:
        errors.print(f"error: {err}")
        raise typer.Exit(1) from None
    console.print(
        f"codec server on {server.url} (keys {', '.join(keys.ids)}; Web UI origins {', '.join(config.origins)})\n"
        f"  temporal workflow show --codec-endpoint {server.url} --codec-auth 'Bearer <token>' ...\n"
        f"  Web UI codec endpoint: {server.url}/<token>"
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def new(
    file: Annotated[Path, typer.Argument(help="The keys file (created with mode 0600 if missing).")],
) -> None:
    """Put a new random key first in FILE (a rotation); print its id.

    New payloads are encrypted with it; the keys already there still decrypt. Workers and
    codec servers read the file at start, and again when they meet a key id they do not know."""
    try:
        key_id = add_new_key(file)
    except ConfigError as err:
        errors.print(f"error: {err}")
        raise typer.Exit(1) from None
    console.print(key_id)


key_app.command()(new)


def register(app: typer.Typer) -> None:
    app.command("codec-server")(codec_server)
    app.add_typer(key_app, name="payload-key")
