"""Signed decisions: an approve, reject or decide checked against the worker's OpenSSH
allowed_signers file (SIGNOFF_ALLOWED_SIGNERS).

The workflow rebuilds the signed message from its own workflow id and the plan digest, so a
signature made for another request or another plan does not verify. Whether it verified, and
with which key, comes back as the activity's result and is recorded in history: replay reads
the answer instead of reading the file again. Verification is `sshsig` (the SSHSIG format of
`ssh-keygen -Y sign`); the allowed_signers file is parsed by sshsig too.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sshsig import InvalidSignature, PublicKey, check_signature
from sshsig.allowed_signers import AllowedSigner, load_allowed_signers_file
from temporalio import activity

from workflows.identity import IdentityRefused, identify
from workflows.signatures import SIGNATURE_NAMESPACE, VerifySignatureInput, VerifySignatureResult, signing_message

log = logging.getLogger("signoff.signatures")


class SignatureActivities:
    def __init__(self, allowed_signers: Path | None) -> None:
        self._allowed_signers = allowed_signers

    @activity.defn(name="verify_decision_signature")
    def verify(self, inp: VerifySignatureInput) -> VerifySignatureResult:
        """Never raises for a bad signature: a refusal is an answer, recorded with the decision."""
        if self._allowed_signers is None:
            return VerifySignatureResult(verified=False, checked=False, reason="no allowed_signers file is configured")
        try:
            signers = list(load_allowed_signers_file(self._allowed_signers))
        except (OSError, ValueError, NotImplementedError) as err:
            log.warning("cannot read allowed_signers %s: %s", self._allowed_signers, err)
            return VerifySignatureResult(False, reason=f"the worker cannot read its allowed_signers file: {err}")
        return verify_signature(inp, signers)


def verify_signature(inp: VerifySignatureInput, signers: list[AllowedSigner]) -> VerifySignatureResult:
    message = signing_message(inp.verdict, inp.workflow_id, inp.plan_digest)
    try:
        key = check_signature(message.encode(), inp.signature, namespace=SIGNATURE_NAMESPACE)
    except (InvalidSignature, NotImplementedError, ValueError) as err:
        log.debug("signature refused for %s: %s", inp.workflow_id, err)  # the blob itself is never logged
        return VerifySignatureResult(
            False,
            reason=f"the signature does not verify over {message!r} in namespace {SIGNATURE_NAMESPACE!r}",
        )
    fingerprint = key.sha256_str()
    allowed = [s for s in signers if _key_of(s) == key and _namespace_allowed(s)]
    if not allowed:
        return VerifySignatureResult(
            False, key_fingerprint=fingerprint, reason=f"key {fingerprint} is not in the allowed_signers file"
        )
    if not any(inp.who in _principals(s) for s in allowed):
        names = sorted({p for s in allowed for p in _principals(s)})
        return VerifySignatureResult(
            False,
            key_fingerprint=fingerprint,
            reason=f"key {fingerprint} belongs to {', '.join(names)}, not to {inp.who}",
        )
    return VerifySignatureResult(True, key_fingerprint=fingerprint)


def _key_of(signer: AllowedSigner) -> PublicKey | None:
    try:
        return PublicKey.from_openssh_str(f"{signer.key_type} {signer.base64_key}")
    except (ValueError, NotImplementedError):
        return None


def _namespace_allowed(signer: AllowedSigner) -> bool:
    """A line with `namespaces="..."` is valid only for those. `cert-authority`, `valid-after`
    and `valid-before` lines are not supported and never match: failing closed beats trusting a
    key outside the window or a certificate whose principal nobody checked."""
    options = signer.options or {}
    if {"cert-authority", "valid-after", "valid-before"} & set(options):
        return False
    namespaces = options.get("namespaces")
    return namespaces is None or SIGNATURE_NAMESPACE in namespaces.split(",")


def _principals(signer: AllowedSigner) -> set[str]:
    """The line's principals as identities (PRECIS, as every other name is compared); patterns
    (`*`, `?`) are not expanded: a principal must name one person."""
    names = set()
    for principal in signer.principals.split(","):
        if any(ch in principal for ch in "*?!"):
            continue
        try:
            names.add(identify(principal).name)
        except IdentityRefused:
            continue
    return names
