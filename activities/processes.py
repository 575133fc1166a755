"""Stopping Ansible's process trees: on cancel, on a watchdog, and before a step starts again.

Every process of a run carries SIGNOFF_WORKFLOW_ID and SIGNOFF_STEP in its environment, which
is how a new attempt finds the leftovers of an earlier one on this host (a worker that lost its
heartbeat may still be running it) and stops them before it starts: never two copies at once.
None of this may raise: it runs inside ansible-runner's cancel callback, where an exception
would leave Ansible running.
"""

from __future__ import annotations

import contextlib
import logging
import os

import psutil

log = logging.getLogger("signoff.processes")
STOP_GRACE_SECONDS = 5.0


def stop_process_tree(pid: int, grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM ansible-playbook and all below it; SIGKILL what is below it after `grace` seconds.

    Ansible's worker processes call setsid(), so killing ansible-playbook's process group, as
    ansible-runner does, would leave them and the commands they run behind. ansible-playbook
    itself is left to ansible-runner, whose child it is: waiting on it here would reap it.
    """
    try:
        root = psutil.Process(pid)
        below = root.children(recursive=True)
    except psutil.NoSuchProcess:
        return
    for proc in (root, *below):
        _terminate(proc)
    try:
        _, alive = psutil.wait_procs(below, timeout=grace)
    except psutil.Error:
        alive = below
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            continue


def _terminate(proc: psutil.Process) -> None:
    """SIGTERM `proc`; when it is not ours to signal (a `become` child running as root), its
    nearest ancestor that is ours gets the signal instead, so the chain above it ends."""
    try:
        proc.terminate()
    except psutil.AccessDenied:
        for parent in _parents(proc):
            try:
                parent.terminate()
                return
            except psutil.AccessDenied:
                continue
            except psutil.Error:
                return
    except psutil.Error:  # already gone
        return


def _parents(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [p for p in proc.parents() if p.pid != os.getpid()]
    except psutil.Error:
        return []


def stop_leftovers(workflow_id: str, step: int) -> list[int]:
    """Stop every process on this host still running a step of this workflow; returns their pids."""
    roots = []
    for proc in psutil.process_iter():
        try:
            env = proc.environ()
            if env.get("SIGNOFF_WORKFLOW_ID") == workflow_id and env.get("SIGNOFF_STEP") == str(step):
                roots.append(proc)
        except psutil.Error:  # exited, or not ours to read
            continue
    pids = {p.pid for p in roots}
    # Stop only the top of each tree: stop_process_tree takes what is below it.
    tops = [p for p in roots if not any(parent.pid in pids for parent in _parents(p))]
    for top in tops:
        log.warning("stopping pid %s, left running by an earlier attempt of %s step %s", top.pid, workflow_id, step)
        stop_process_tree(top.pid)
        with contextlib.suppress(psutil.Error):  # gone already, or not ours to wait for
            top.wait(timeout=STOP_GRACE_SECONDS)
    return sorted(pids)
