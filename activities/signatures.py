"""Signed decisions: an approve, reject or decide checked against the worker's OpenSSH
allowed_signers file (SIGNOFF_ALLOWED_SIGNERS).

The principals of an allowed_signers line are an OpenSSH pattern list: a line whose principals
are patterns (`*@example.com`) is an attesting key, such as the web inbox's own key, which
signs the decisions of the people it has authenticated.

The workflow rebuilds the signed message from its own workflow id and the plan digest, so a
signature made for another request or another plan does not verify. Whether it verified, and
with which key, comes back as the activity's result and is recorded in history: replay reads
the answer instead of reading the file again. Verification is `sshsig` (the SSHSIG format of
`ssh-keygen -Y sign`); the allowed_signers file is parsed by sshsig too.
"""

from __future__ import annotations

import logging
import unicodedata
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
    if not any(principals_match(s.principals, inp.who) for s in allowed):
        shown = sorted({_shown(p) for s in allowed for p in s.principals.split(",") if p.strip()})
        attesting = any(ch in "".join(shown) for ch in "*?!")
        owner = f"signs for {', '.join(shown)}, not for" if attesting else f"belongs to {', '.join(shown)}, not to"
        return VerifySignatureResult(False, key_fingerprint=fingerprint, reason=f"key {fingerprint} {owner} {inp.who}")
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


def principals_match(principals: str, who: str) -> bool:
    """Whether an allowed_signers principals field covers `who` (a normalised name), as OpenSSH's
    match_pattern_list decides: comma-separated patterns where `*` matches any run of characters
    and `?` one; a pattern starting with `!` that matches refuses, whatever else matches. A line
    with patterns is an attesting key (the web inbox's): it signs for everyone it covers.

    An exact principal is normalised as every name is (PRECIS). A pattern's literal text is
    width- and case-mapped the same way (NFKC, lowercase, NFC), so `*@Example.COM` covers
    `bob@example.com`; wildcards never match what a name cannot hold, since names are normalised
    (and look-alikes refused) before they get here."""
    matched = False
    for raw in principals.split(","):
        pattern = raw.strip()
        negated = pattern.startswith("!")
        pattern = pattern.removeprefix("!")
        if not pattern or not _glob(_normal(pattern), who):
            continue
        if negated:
            return False
        matched = True
    return matched


def _shown(principal: str) -> str:
    """A principal as a refusal names it: an exact one normalised, a pattern as written."""
    text = principal.strip()
    if any(ch in text for ch in "*?!"):
        return text
    try:
        return identify(text).name
    except IdentityRefused:
        return text


def _normal(pattern: str) -> str:
    if not any(ch in pattern for ch in "*?"):
        try:
            return identify(pattern).name
        except IdentityRefused:
            return "\0"  # matches no name: a principal that cannot be a person covers nobody
    return unicodedata.normalize("NFC", unicodedata.normalize("NFKC", pattern).lower())


def _glob(pattern: str, text: str) -> bool:
    """`*` and `?` only, in O(len(pattern) * len(text)) at worst: no backtracking blow-up."""
    p = t = 0
    star, mark = -1, 0
    while t < len(text):
        if p < len(pattern) and pattern[p] in ("?", text[t]) and pattern[p] != "*":
            p, t = p + 1, t + 1
        elif p < len(pattern) and pattern[p] == "*":
            star, mark, p = p, t, p + 1
        elif star >= 0:
            p, mark = star + 1, mark + 1
            t = mark
        else:
            return False
    return all(ch == "*" for ch in pattern[p:])
