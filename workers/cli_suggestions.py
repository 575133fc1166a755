"""`signoff suggestions`: what ansible-lint suggested for failed steps, and accepting one.

signoff suggestions [<change request id>] [--json]
signoff suggestions accept <suggestion id> --as <user>
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from itertools import groupby
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from activities.db import ChangeRequestRow, make_engine
from activities.lint import Suggestion, SuggestionState, list_suggestions
from activities.lint_fix import AcceptResult, SuggestionError, accept_suggestion
from workers.devstack import embedded_database_url
from workers.settings import ConfigError, Settings

_LIST = "list"  # the hidden command a first word that is no subcommand goes to


class _ListUnlessSubcommand(typer.core.TyperGroup):
    """`suggestions [<id>]` lists and `suggestions accept <id>` accepts. A group cannot take an
    optional argument and subcommands both (the argument would swallow `accept`), so a first
    word that is not a subcommand, or none, is handed to the hidden `list` command."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = [_LIST, *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_ListUnlessSubcommand,
    help="ansible-lint's suggestions for failed steps: `signoff suggestions [<id>]` lists them, "
    "`signoff suggestions accept <suggestion id> --as <user>` applies one's fix or acknowledges it.",
    subcommand_metavar="[<change request id>] [--json] | accept <suggestion id> --as <user>",
    add_completion=False,
)
# Markup off: messages, paths and ids are the playbook's and the user's text.
console = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
errors = Console(stderr=True, highlight=False, soft_wrap=True)


@app.command(_LIST, hidden=True)
def list_command(
    request_id: Annotated[str | None, typer.Argument(help="Only this change request's suggestions.")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON instead of lines.")] = False,
) -> None:
    """List suggestions, for one change request or all."""
    with _engine() as engine:
        found = list_suggestions(engine, request_id)
        if not found and request_id is not None and not _request_exists(engine, request_id):
            _fail(f"no change request {request_id!r} in the audit database")
    if json_:
        console.print_json(json.dumps([_as_dict(s) for s in found], default=_json_value))
        return
    if not found:
        console.print(f"no suggestions for {request_id}" if request_id else "no suggestions")
        return
    width = {name: max(len(str(getattr(s, name))) for s in found) for name in ("state", "category", "rule")}
    for (request, step, attempt, playbook, task), group in groupby(
        found, key=lambda s: (s.change_request_id, s.step, s.attempt, s.playbook, s.task_id)
    ):
        console.print(f"{request}  step {step}, attempt {attempt}: {playbook}" + (f"  (task {task})" if task else ""))
        for s in group:
            where = f"{s.path}:{s.line}" if s.line is not None else s.path
            fix = "  [fixable]" if s.fixable and s.state == SuggestionState.OPEN else ""
            columns = "  ".join(f"{getattr(s, name)!s:<{size}}" for name, size in width.items())
            console.print(f"  {s.id[:12]}  {columns}  {where}{fix}")
            console.print(f"      {s.message}")


@app.command("accept")
def accept_command(
    suggestion_id: Annotated[str, typer.Argument(help="The suggestion id (or its first 8 or more hex digits).")],
    as_: Annotated[str, typer.Option("--as", help="Who you are (recorded with the suggestion and the commit).")],
) -> None:
    """Apply ansible-lint's fix (on a branch, in a git playbook repo), or acknowledge the guidance."""
    settings = _settings()
    with _engine(settings) as engine:
        try:
            result = accept_suggestion(engine, settings.playbook_dir, suggestion_id, as_)
        except SuggestionError as err:
            _fail(str(err))
    _print_accepted(result)
    if result.state == SuggestionState.OPEN:
        raise typer.Exit(1)


def _print_accepted(result: AcceptResult) -> None:
    if result.state == SuggestionState.OPEN:
        errors.print(f"[red]not accepted:[/red] {escape(result.message)}")
        errors.print(escape(_indented(result.guidance)))
        return
    console.print(f"{result.state} {result.suggestion_id}: {result.message}")
    if result.branch:
        console.print(f"  review it: git log -p -1 {result.branch}")
    if result.state == SuggestionState.ACKNOWLEDGED:
        console.print(_indented(result.guidance))


def _indented(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


def _as_dict(s: Suggestion) -> dict[str, Any]:
    return {**dataclasses.asdict(s), "guidance": s.guidance}


def _json_value(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as err:
        _fail(str(err))


@contextmanager
def _engine(settings: Settings | None = None) -> Iterator[Engine]:
    settings = settings or _settings()
    url = settings.database_url or embedded_database_url(settings.data_dir)
    if not url:
        _fail("SIGNOFF_DATABASE_URL is not set and no `signoff dev` database is running")
    engine = make_engine(url)
    try:
        yield engine
    except DBAPIError as err:
        _fail(f"audit database: {str(err.orig).strip()}")
    finally:
        engine.dispose()


def _request_exists(engine: Engine, request_id: str) -> bool:
    with engine.connect() as conn:
        return conn.execute(select(ChangeRequestRow.id).where(ChangeRequestRow.id == request_id)).first() is not None


def _fail(message: str) -> NoReturn:
    errors.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(1)
