"""The `signoff` command. `signoff worker` alone, the long-running process, starts without loading
the other commands' modules (about 15 MiB it would never use: the CLI's rendering, the dev stack,
the codec server, lint fixes); any other command, and `signoff worker --check` or `--help`, goes
to the typer app in workers.cli."""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:] == ["worker"]:
        from workers.worker import main as worker

        worker()
    from workers.cli import app

    app()
