"""What a signed decision signs, and the payloads of the activity that checks a signature
(activities/signatures.py). Standard library only: imported inside the workflow sandbox."""

from __future__ import annotations

from dataclasses import dataclass

SIGNATURE_NAMESPACE = "signoff"  # the `-n` of `ssh-keygen -Y sign`


def signing_message(
    verdict: str, workflow_id: str, plan_digest: str, who: str | None = None, run: str | None = None
) -> str:
    """What a signed decision signs (DESIGN.md section 3). `verdict`: approve, reject, or the
    decide action (retry, skip, abort), which is signed as `decide-<action>`.

    With `who` (the PRECIS-normalised name, as the workflow records it), the form that also names
    the person: `signoff:<verdict>:<id>:<digest>` + newline + `for:<who>`. A key that signs for
    several people (an attesting key such as the web inbox's) must use it, or one person's
    signature could be sent again under another's name. Names hold no newline and the digest
    has a fixed form, so the text can be read back one way only.

    With `run` too (a decide only: `decision_run`), the failed run it decides on, as a third line
    `run:<step>.<run>`: the same person can then sign a second retry of a step that failed
    again, which would otherwise be the same text, the same ed25519 signature, and refused as
    already used; and a signature for one failed run never decides on another."""
    signed = verdict if verdict in ("approve", "reject") else f"decide-{verdict}"
    message = f"signoff:{signed}:{workflow_id}:{plan_digest}"
    if who is None:
        return message
    return f"{message}\nfor:{who}" if run is None else f"{message}\nfor:{who}\nrun:{run}"


def decision_run(step: int, runs: int) -> str:
    """What a decide signs as its `run`: the failed step's index and how many times it ran."""
    return f"{step}.{runs}"


@dataclass(frozen=True)
class VerifySignatureInput:
    """A decision's signature, checked by the worker against its allowed_signers file."""

    workflow_id: str
    verdict: str  # approve | reject | retry | skip | abort
    plan_digest: str
    who: str  # PRECIS-normalised approver or operator: the key's line must cover them
    signature: str
    run: str | None = None  # a decide: the failed run it decides on (decision_run)


@dataclass(frozen=True)
class VerifySignatureResult:
    verified: bool
    key_fingerprint: str | None = None  # SHA256:... as `ssh-keygen -l` prints it
    reason: str | None = None  # why not verified
    checked: bool = True  # False: no allowed_signers file is configured and none is required
