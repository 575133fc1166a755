"""`signoff audit`, `signoff audit verify`, `signoff failures` and `signoff db upgrade`: the
audit commands. They read PostgreSQL and the git audit repository; none needs Temporal."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from activities.db import make_engine, migrate
from workers import audit_queries, ops, render
from workers.settings import ConfigError, Settings

console = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
errors = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)

db_app = typer.Typer(help="The audit database.", no_args_is_help=True)


def audit(
    request_id: Annotated[str, typer.Argument(help="The change request id, or `verify`.", show_default=False)],
    verify_id: Annotated[str | None, typer.Argument(help="With `verify`: only this request.")] = None,
    json: Annotated[bool, typer.Option("--json", help="Print JSON instead of lines.")] = False,
) -> None:
    """Print a request's audit trail (`signoff audit <id>`), or check that nobody edited it
    (`signoff audit verify [<id>]`: the event chain, and git against the database)."""
    try:
        settings = Settings.from_env()
        if request_id == "verify":
            _verify(verify_id, settings)
        found = audit_queries.get_request(request_id)
        if json:
            console.print(render.as_json(found))
            return
        commit = found["request"]["audit_commit"]
        for line in ops.audit_report(None, settings.audit_repo, request_id, commit):
            console.print(line)
    except (audit_queries.NotFound, ops.OperationError, ConfigError) as err:
        errors.print(f"error: {err}")
        raise typer.Exit(1) from None


def _verify(request_id: str | None, settings: Settings) -> None:
    report = audit_queries.verify(request_id, audit_repo=settings.audit_repo)
    console.print(f"checked {report.events} audit events and {report.requests} git records")
    for problem in report.broken:
        errors.print(f"broken: {problem}")
    if report.broken:
        raise typer.Exit(2)
    console.print("the audit trail is intact")
    raise typer.Exit(0)


def failures(
    days: Annotated[float, typer.Option(help="How far back, in days.")] = 7,
    json: Annotated[bool, typer.Option("--json", help="Print JSON instead of lines.")] = False,
) -> None:
    """Failed tasks of the last days, with their failure class and evidence."""
    try:
        found = audit_queries.get_failures(days)
    except (audit_queries.NotFound, ConfigError) as err:
        errors.print(f"error: {err}")
        raise typer.Exit(1) from None
    if json:
        console.print(render.as_json(found))
        return
    if not found:
        console.print(f"no failed steps in the last {days:g} days")
    for f in found:
        where = f" on {f['host']}: task {f['task']!r}" if f["task_id"] else ""
        console.print(f"{f['at'][:19]}  {f['change_request_id']}  step {f['step']} {f['playbook']} "
                      f"(attempt {f['attempt']}){where}")  # fmt: skip
        console.print(f"    {f['failure_class']}: {f['evidence'] or f.get('msg') or ''}")


@db_app.command()
def upgrade() -> None:
    """Bring the database schema to the newest migration (workers do this at start, too)."""
    try:
        engine = make_engine(audit_queries.database_url(None))
    except (audit_queries.NotFound, ConfigError) as err:
        errors.print(f"error: {err}")
        raise typer.Exit(1) from None
    try:
        migrate(engine)
    finally:
        engine.dispose()
    console.print("database schema is up to date")


def register(app: typer.Typer) -> None:
    app.command()(audit)
    app.command()(failures)
    app.add_typer(db_app, name="db")
