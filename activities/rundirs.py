"""What one ansible-runner run is given: a private data dir (removed after a crash too), a
minimal environment, and its extra vars as data Ansible never templates.

A run dir holds the extra-vars file and ansible-runner's artifacts (its stdout and the command
with its environment): values that must not outlive the run. Each dir is removed when its run
ends; a worker killed mid-run cannot do that, so each dir also holds a lock the running worker
keeps, and `remove_stale_runs()` at worker start removes every dir whose lock nobody holds.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

_LOCK = ".signoff-lock"
# Private data dirs from releases before the lock existed: removed once older than any run.
_LEGACY_PREFIX = "signoff-run-"
_LEGACY_MAX_AGE = 3 * 3600


def runs_root() -> Path:
    """One 0700 dir per user under the temp dir (so another user cannot plant or read one)."""
    root = Path(tempfile.gettempdir()) / f"signoff-runs-{os.getuid()}"
    root.mkdir(mode=0o700, exist_ok=True)
    info = root.lstat()
    if root.is_symlink() or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise PermissionError(f"{root} must be a directory of uid {os.getuid()} with mode 0700")
    return root


@contextmanager
def run_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="run-", dir=runs_root()))
    lock = os.open(path / _LOCK, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(lock)


def remove_stale_runs() -> list[Path]:
    """Remove the run dirs of dead attempts on this host; returns what was removed."""
    removed = []
    for path in runs_root().iterdir():
        if path.is_dir() and not _in_use(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    for path in Path(tempfile.gettempdir()).glob(f"{_LEGACY_PREFIX}*"):
        try:
            if (
                path.is_dir()
                and path.stat().st_uid == os.getuid()
                and time.time() - path.stat().st_mtime > _LEGACY_MAX_AGE
            ):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        except OSError:
            continue
    return removed


def _in_use(path: Path) -> bool:
    try:
        fd = os.open(path / _LOCK, os.O_WRONLY)
    except FileNotFoundError:
        # Between mkdtemp and creating the lock, or a dir with no lock at all: judge by age.
        return time.time() - path.stat().st_mtime < 60
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def write_private(path: Path, content: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)


MARKERS = frozenset({"SIGNOFF_WORKFLOW_ID", "SIGNOFF_STEP"})
# What a playbook inherits from the worker's environment. Everything else (SIGNOFF_DATABASE_URL,
# TEMPORAL_* credentials, cloud keys) stays with the worker unless SIGNOFF_PLAYBOOK_ENV names it.
INHERITED_ENV = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM", "SSH_AUTH_SOCK", "SIGNOFF_SITE"}
)


def playbook_env(worker_env: Mapping[str, str], passthrough: Iterable[str] = ()) -> dict[str, str]:
    """The environment every playbook runs with, built from the worker's: the basics, the
    operator's ANSIBLE_* settings and the names in `passthrough` (SIGNOFF_PLAYBOOK_ENV)."""
    extra = set(passthrough)
    env = {k: v for k, v in worker_env.items() if k in INHERITED_ENV or k in extra or k.startswith(("LC_", "ANSIBLE_"))}
    # ansible-playbook is beside this interpreter, on PATH or not
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{worker_env.get('PATH', os.defpath)}"
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_LOCALHOST_WARNING"] = "0"
    # ansible-runner turns host key checking off unless told otherwise; a change tool keeps it on.
    env.setdefault("ANSIBLE_HOST_KEY_CHECKING", "True")
    return env


def unsafe_yaml(extra_vars: Mapping[str, Any]) -> str:
    """Extra vars as YAML with every string tagged `!unsafe`, so Ansible never templates them
    (the workflow already refuses Jinja in vars; this holds even if a check is missed)."""

    class _Dumper(yaml.SafeDumper):
        pass

    def unsafe(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        return dumper.represent_scalar("!unsafe", value)

    _Dumper.add_representer(str, unsafe)
    return yaml.dump(dict(extra_vars), Dumper=_Dumper, allow_unicode=True, sort_keys=True)
