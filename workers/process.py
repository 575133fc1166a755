"""How a `signoff` process runs a coroutine to its end and exits, shared by the CLI's commands and
the worker's fast start (workers.main). Imports nothing heavy: the worker keeps what it loads."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from typing import Any, NoReturn


async def until_terminated(main: Coroutine[Any, Any, int | None]) -> int | None:
    """SIGTERM (systemd, Kubernetes) stops a command as cleanly as Ctrl-C does."""
    task = asyncio.ensure_future(main)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        return 0


def exit_now(code: int) -> NoReturn:
    """Exit without interpreter finalization. The Temporal client's Rust threads can call into
    a finalizing interpreter, which aborts a finished command with SIGABRT now and then
    (temporalio/sdk-python#300; seen here in 3 of 40 runs on a busy machine). Everything this
    process started has been stopped by now; only output is left to flush."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
