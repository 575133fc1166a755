"""The web server's own SSH key: it signs the decisions of the people it has authenticated.

Workers trust it through their allowed_signers file, on a line whose principals are a pattern
covering those people (`*@example.com namespaces="signoff" ssh-ed25519 ...`): the key attests
for them. Each decision is signed over the plan digest the user was shown, with `ssh-keygen -Y
sign` as the CLI does (workers.signing); the key is made with `ssh-keygen` on first start.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path

from workers.ops import OperationError
from workers.signing import sign_decision


@dataclass(frozen=True)
class WebSigner:
    key: Path  # private key; `<key>.pub` beside it

    @classmethod
    async def ensure(cls, key: Path) -> WebSigner:
        """The signer with `key`, generating an ed25519 key there when none exists."""
        if not await asyncio.to_thread(key.exists):
            if shutil.which("ssh-keygen") is None:
                raise OperationError("ssh-keygen is not installed: the web server signs decisions with it")
            key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            proc = await asyncio.create_subprocess_exec(
                "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "signoff-web", "-f", str(key),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            _, err = await proc.communicate()
            if proc.returncode != 0:
                raise OperationError(f"ssh-keygen could not make the web signing key {key}: {err.decode().strip()}")
        if not key.with_name(key.name + ".pub").exists():
            raise OperationError(f"{key}.pub is missing: the web server needs its signing key's public half")
        return cls(key)

    @property
    def public_key(self) -> str:
        return self.key.with_name(self.key.name + ".pub").read_text().strip()

    def allowed_signers_line(self, principals: str = "*") -> str:
        """The line that lets workers accept this server's signatures for `principals`."""
        key_type, blob = self.public_key.split()[:2]
        return f'{principals} namespaces="signoff" {key_type} {blob}'

    async def sign(self, verdict: str, workflow_id: str, plan_digest: str, who: str, run: str | None = None) -> str:
        """Signed over the message naming `who` (this key signs for many people) and, for a
        decide, the failed run it is about."""
        return await sign_decision(verdict, workflow_id, plan_digest, who, self.key, run)
