"""Signing a decision on the user's machine with `ssh-keygen -Y sign` (OpenSSH), for the CLI.

The private key never leaves ssh-keygen (or ssh-agent): this process hands it the message on
stdin and reads the armored signature from stdout. With no key file, the first key ssh-agent
holds signs: ssh-keygen accepts a public key for `-f` when its private half is in the agent.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

from workers.ops import OperationError
from workflows.identity import IdentityRefused, identify
from workflows.signatures import SIGNATURE_NAMESPACE, decision_run, signing_message
from workflows.types import ChangeRequestStatus, Phase, StepState


async def sign_decision(
    verdict: str, workflow_id: str, plan_digest: str, who: str, key: Path | None, run: str | None = None
) -> str:
    """The armored signature over the decision's message naming `who` (normalised as the workflow
    will), which every key may sign, and for a decide the failed `run` (`failed_run`);
    OperationError when it cannot be made."""
    try:
        name = identify(who).name
    except IdentityRefused as err:
        raise OperationError(str(err)) from None
    message = signing_message(verdict, workflow_id, plan_digest, name, run).encode()
    if key is not None:
        return await _ssh_keygen_sign(key, message)
    public = await _agent_key()
    with tempfile.TemporaryDirectory(prefix="signoff-sign-") as tmp:
        path = Path(tmp) / "agent-key.pub"
        path.write_text(public + "\n")
        return await _ssh_keygen_sign(path, message)


def failed_run(status: ChangeRequestStatus) -> str | None:
    """The failed run a decide on `status` is about, while one awaits a decision."""
    if status.phase != Phase.AWAITING_DECISION:
        return None
    failed = next((s for s in status.steps if s.state == StepState.FAILED), None)
    return decision_run(failed.index, failed.runs) if failed else None


async def _ssh_keygen_sign(key: Path, message: bytes) -> str:
    if shutil.which("ssh-keygen") is None:
        raise OperationError("ssh-keygen is not installed: it signs decisions (OpenSSH 8.1 or later)")
    proc = await asyncio.create_subprocess_exec(
        "ssh-keygen",
        "-q",
        "-Y",
        "sign",
        "-n",
        SIGNATURE_NAMESPACE,
        "-f",
        str(key),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(message)
    if proc.returncode != 0:
        raise OperationError(f"ssh-keygen could not sign with {key}: {err.decode(errors='replace').strip()}")
    return out.decode()


async def _agent_key() -> str:
    if shutil.which("ssh-add") is None:
        raise OperationError("no --key given and ssh-add is not installed: name a key with --key")
    proc = await asyncio.create_subprocess_exec(
        "ssh-add", "-L", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    keys = [line for line in out.decode().splitlines() if line.strip()]
    if proc.returncode != 0 or not keys:
        raise OperationError("this decision must be signed: pass --key FILE, or load your key into ssh-agent (ssh-add)")
    return keys[0]
