"""What a signed decision signs, and the payloads of the activity that checks a signature
(activities/signatures.py). Standard library only: imported inside the workflow sandbox."""

from __future__ import annotations

from dataclasses import dataclass

SIGNATURE_NAMESPACE = "signoff"  # the `-n` of `ssh-keygen -Y sign`


def signing_message(verdict: str, workflow_id: str, plan_digest: str) -> str:
    """What a signed decision signs (DESIGN.md section 3). `verdict`: approve, reject, or the
    decide action (retry, skip, abort), which is signed as `decide-<action>`."""
    signed = verdict if verdict in ("approve", "reject") else f"decide-{verdict}"
    return f"signoff:{signed}:{workflow_id}:{plan_digest}"


@dataclass(frozen=True)
class VerifySignatureInput:
    """A decision's signature, checked by the worker against its allowed_signers file."""

    workflow_id: str
    verdict: str  # approve | reject | retry | skip | abort
    plan_digest: str
    who: str  # PRECIS-normalised approver or operator: must be the key's principal
    signature: str


@dataclass(frozen=True)
class VerifySignatureResult:
    verified: bool
    key_fingerprint: str | None = None  # SHA256:... as `ssh-keygen -l` prints it
    reason: str | None = None  # why not verified
    checked: bool = True  # False: no allowed_signers file is configured and none is required
