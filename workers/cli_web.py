"""`signoff web`: the approval inbox in a browser, and its local users."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from workers.cli_run import connect, console, errors, run
from workers.settings import Settings
from workers.web.config import WebConfig
from workers.web.server import build, serving, started_lines
from workers.web.users import UserFile, generate_password

app = typer.Typer(
    help="Serve the web approval inbox on SIGNOFF_WEB_ADDRESS (default 127.0.0.1:8080); `user` manages its users.",
    no_args_is_help=False,
)
users = typer.Typer(help="Local users of the web inbox (when no OIDC issuer is set).", no_args_is_help=True)
app.add_typer(users, name="user")


@app.callback(invoke_without_command=True)
def serve(ctx: typer.Context) -> None:
    """Serve the web inbox on SIGNOFF_WEB_ADDRESS (default 127.0.0.1:8080)."""
    if ctx.invoked_subcommand is not None:
        return

    async def main() -> None:
        settings = Settings.from_env()
        config = WebConfig.from_env(settings)
        web = await build(settings, config, await connect())
        async with serving(web):
            for line in started_lines(web):
                console.print(line)
            await asyncio.Event().wait()

    run(main())


@users.command("add")
def add_user(
    name: Annotated[str, typer.Argument(help="The user's name, as decisions will record it.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin instead of generating one.")
    ] = False,
) -> None:
    """Add a user (or set a new password); prints a generated password unless --password-stdin."""
    config = WebConfig.from_env(Settings.from_env())
    password = sys.stdin.readline().rstrip("\n") if password_stdin else generate_password()
    try:
        added = UserFile(config.users_file).add(name, password)
    except ValueError as err:
        errors.print(f"error: {err}", markup=False)
        raise typer.Exit(1) from None
    console.print(f"{added} can log in to the web inbox ({config.users_file})")
    if not password_stdin:
        console.print(f"password: {password}")


@users.command("remove")
def remove_user(name: Annotated[str, typer.Argument(help="The user to remove.")]) -> None:
    """Remove a user; their open sessions end at their next request."""
    config = WebConfig.from_env(Settings.from_env())
    if not UserFile(config.users_file).remove(name):
        errors.print(f"no user {name!r} in {config.users_file}", markup=False)
        raise typer.Exit(1)
    console.print(f"removed {name}")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="web")
