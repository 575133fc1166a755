"""What every `signoff` command shares: the consoles, the Temporal connection, and how a command
runs and exits (known errors as one line on stderr, SIGTERM like Ctrl-C)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from temporalio.client import Client
from temporalio.service import RPCError

from workers import ops
from workers.process import exit_now, until_terminated
from workers.settings import ConfigError
from workers.worker import connect as _connect

# Markup off: request text, var values and task names are user input and must show as typed.
console = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
errors = Console(stderr=True, highlight=False, soft_wrap=True)

RequestId = Annotated[str, typer.Argument(help="The change request id.")]
As = Annotated[str, typer.Option("--as", help="Who you are (recorded in the audit).")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


async def connect(address: str | None = None, metrics_address: str | None = None, *, tracing: bool = False) -> Client:
    try:
        return await _connect(address, metrics_address, tracing=tracing)
    except RuntimeError as err:  # the SDK's "Failed client connect"
        raise ops.OperationError(f"cannot reach Temporal ({err}); is `signoff dev` or a server running?") from None


def run(main: Coroutine[Any, Any, int | None]) -> NoReturn:
    """Run a command; known errors become one line on stderr and exit code 1."""
    try:
        code = asyncio.run(until_terminated(main)) or 0
    except (ops.OperationError, ConfigError) as err:
        errors.print(f"[red]error:[/red] {escape(str(err))}")
        code = 1
    except RPCError as err:  # unknown workflow id, closed workflow, permission ...
        errors.print(f"[red]error:[/red] Temporal refused: {escape(err.message)}")
        code = 1
    except KeyError as err:
        if "binary/encrypted" not in str(err):
            raise
        errors.print(
            "[red]error:[/red] this request's payloads are encrypted: set SIGNOFF_PAYLOAD_KEYS_FILE to the keys file"
        )
        code = 1
    except KeyboardInterrupt:
        code = 130
    exit_now(code)
