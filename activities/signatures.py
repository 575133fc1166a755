"""Signed decisions: an approve, reject or decide checked against the worker's OpenSSH
allowed_signers file (SIGNOFF_ALLOWED_SIGNERS).

The key must be allowed for the approver or operator: a line's principals are an OpenSSH
pattern list (`principals_match`). A line naming one person is that person's key; a line whose
principals are patterns (`*@example.com,!root@example.com`) is an attesting key, such as the web
inbox's own, which signs the decisions of the people it has authenticated and covers everyone
its patterns match, and must sign the message that names the person (`signing_message(...,
who)`): one person's signature is then no one else's. A decision's `via` and `subject` are the
sender's claims; what this module proves, and the workflow records, is which key signed.

The workflow rebuilds the signed message from its own workflow id, the plan digest and the
decider's normalised name, so a signature made for another request, another plan or another
person does not verify. Whether it verified, and with which key, comes back as the activity's
result and is recorded in history: replay reads the answer instead of reading the file again.
Verification is `sshsig` (the SSHSIG format of `ssh-keygen -Y sign`); the allowed_signers file
is parsed by sshsig too.
"""

from __future__ import annotations

import enum
import logging
import re
from pathlib import Path

import precis_i18n
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
    """Verified when the signature is over the message naming `who` (and, for a decide, maybe
    its run) by a key whose line covers them, or over the short message by a key whose line
    names `who` alone (the key is the person's own, so the message need not say whose it is)."""
    named = signing_message(inp.verdict, inp.workflow_id, inp.plan_digest, inp.who)
    short = signing_message(inp.verdict, inp.workflow_id, inp.plan_digest)
    # A decide may also name the failed run it decides on: the fullest text first.
    candidates = [named]
    if inp.run is not None:
        candidates.insert(0, signing_message(inp.verdict, inp.workflow_id, inp.plan_digest, inp.who, inp.run))
    key = next((k for message in candidates if (k := _signed_by(message, inp.signature))), None)
    names_person = key is not None
    key = key or _signed_by(short, inp.signature)
    if key is None:
        log.debug("signature refused for %s", inp.workflow_id)  # the blob itself is never logged
        return VerifySignatureResult(
            False,
            reason=f"the signature does not verify over {candidates[0]!r} (nor over {short!r}) "
            f"in namespace {SIGNATURE_NAMESPACE!r}",
        )
    fingerprint = key.sha256_str()
    allowed = [s for s in signers if _key_of(s) == key and _namespace_allowed(s)]
    if not allowed:
        return VerifySignatureResult(
            False, key_fingerprint=fingerprint, reason=f"key {fingerprint} is not in the allowed_signers file"
        )
    covering = [s for s in allowed if principals_match(s.principals, inp.who)]
    # In the file's order, so `*@example.com,!root@example.com` reads as written.
    shown = list(dict.fromkeys(_shown(p) for s in allowed for p in s.principals.split(",") if p.strip()))
    if not covering:
        attesting = any(ch in "".join(shown) for ch in "*?!")
        owner = f"signs for {', '.join(shown)}, not for" if attesting else f"belongs to {', '.join(shown)}, not to"
        return VerifySignatureResult(False, key_fingerprint=fingerprint, reason=f"key {fingerprint} {owner} {inp.who}")
    if not names_person and not any(_one_person(s.principals) for s in covering):
        return VerifySignatureResult(
            False,
            key_fingerprint=fingerprint,
            reason=f"key {fingerprint} signs for {', '.join(shown)}: its signature must name the person, "
            f"over {named!r}",
        )
    return VerifySignatureResult(True, key_fingerprint=fingerprint)


def _signed_by(message: str, signature: str) -> PublicKey | None:
    try:
        return check_signature(message.encode(), signature, namespace=SIGNATURE_NAMESPACE)
    except (InvalidSignature, NotImplementedError, ValueError):
        return None


def _one_person(principals: str) -> bool:
    """A line naming one person, no patterns: that person's own key."""
    names = [p.strip() for p in principals.split(",") if p.strip()]
    return len(names) == 1 and not any(ch in names[0] for ch in "*?!")


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

    Principals are compared as names are (workflows/identity.py), not as raw strings. An exact
    principal goes through `identify`, as every name does. A pattern is not a name, so it is not
    checked as one; instead each literal run between its wildcards gets the mappings `identify`
    applies to a name before checking it (PRECIS UsernameCaseMapped: width, lowercase, NFC) and
    nothing more. So `*@Example.COM` covers `bob@example.com`, and a mapped character never
    becomes a wildcard (FULLWIDTH ASTERISK U+FF0A stays a literal `*`).

    Names may themselves hold `*`, `?`, `!` or `,` (PRECIS allows ASCII punctuation). In `who`
    they are plain characters, never wildcards, so a sender cannot widen what a line covers; a
    person so named can only be covered by a pattern, as in OpenSSH, which has no escapes."""
    matched = False
    for raw in principals.split(","):
        pattern = raw.strip()
        negated = pattern.startswith("!")
        tokens = _compile(pattern.removeprefix("!"))
        if tokens is None or not _glob(tokens, who):
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


class _Wild(enum.Enum):
    RUN = "*"  # any run of characters, none included
    ONE = "?"  # exactly one character


_Token = str | _Wild  # a literal character, or a wildcard
_PROFILE = precis_i18n.get_profile("UsernameCaseMapped")


def _compile(pattern: str) -> tuple[_Token, ...] | None:
    """The pattern as tokens, or None when it can cover nobody (empty, or an exact principal
    that cannot be a person's name)."""
    if not pattern:
        return None
    if "*" not in pattern and "?" not in pattern:
        try:
            return tuple(identify(pattern).name)
        except IdentityRefused:
            return None
    tokens: list[_Token] = []
    for part in re.split(r"([*?])", pattern):
        if part in ("*", "?"):
            tokens.append(_Wild(part))
        elif part:
            mapped = _PROFILE.width_mapping_rule(part)
            tokens.extend(_PROFILE.normalization_rule(_PROFILE.case_mapping_rule(mapped)))
    return tuple(tokens)


def _glob(pattern: tuple[_Token, ...], text: str) -> bool:
    """Wildcard matching without recursion: on a mismatch only the last `*` seen takes one more
    character, so the work is at most len(pattern) * len(text) steps, whatever the pattern
    (a recursive matcher, as OpenSSH's match_pattern is, can take exponential time on `*a*a*a*...b`)."""
    p = t = 0
    star, mark = -1, 0
    while t < len(text):
        if p < len(pattern) and pattern[p] is _Wild.RUN:
            star, mark, p = p, t, p + 1
        elif p < len(pattern) and (pattern[p] is _Wild.ONE or pattern[p] == text[t]):
            p, t = p + 1, t + 1
        elif star >= 0:
            p, mark = star + 1, mark + 1
            t = mark
        else:
            return False
    return all(token is _Wild.RUN for token in pattern[p:])
