"""Decoding what arrives at the workflow: its input and decision payloads, and activity failures.

Input and signal payloads arrive as `RawValue` and are decoded here, inside workflow code,
because the SDK's own decoding fails outside it: a bad workflow argument retries the workflow
task forever and a bad signal payload is silently dropped. Runs in the workflow sandbox.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.converter import value_to_type
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.approval import Refused, identity_of
from workflows.identity import Identity
from workflows.runs import PlaybookResult
from workflows.types import ChangeRequestInput, Decision, ErrorType, Verdict
from workflows.validation import MAX_INPUT_BYTES, InvalidInput, parse_approve, parse_decide, parse_input, parse_reject


def invalid_input(message: str) -> ApplicationError:
    return ApplicationError(message, type=ErrorType.INVALID_INPUT, non_retryable=True)


def decode_input(raw: RawValue | None) -> tuple[ChangeRequestInput, Identity]:
    """The validated input with its requester normalised, and the requester's identity. Any
    problem ends the workflow non-retryably, naming it: an exception escaping here would fail
    the workflow task instead, which Temporal retries forever."""
    if raw is None:
        raise invalid_input("input is required: one JSON object with request and requester")
    if len(raw.payload.data) > MAX_INPUT_BYTES:
        raise invalid_input(f"input is larger than {MAX_INPUT_BYTES} bytes")
    try:
        value = workflow.payload_converter().from_payload(raw.payload)
    except RecursionError:
        raise invalid_input("input is not valid JSON: nested too deeply") from None
    except Exception as err:
        raise invalid_input(f"input is not valid JSON: {err}") from None
    try:
        request = parse_input(value)
        requester = identity_of(request.requester)
    except InvalidInput as err:
        raise invalid_input(f"invalid input: {err}") from None
    except Refused as err:
        raise invalid_input(f"invalid input: requester: {err.reason}") from None
    except Exception as err:  # a bug in validation must not loop the workflow task either
        raise invalid_input(f"invalid input: {type(err).__name__}: {err}") from None
    return dataclasses.replace(request, requester=requester.name), requester


def decode_decision(verdict: Verdict, raw: RawValue, *, step: int | None = None) -> tuple[Decision, str | None]:
    """An approve, reject or decide payload as a Decision by a normalised name, and the
    payload's signature if it has one; raises Refused. For `decide`, the verdict is the
    payload's action (retry, skip or abort)."""
    try:
        if len(raw.payload.data) > MAX_INPUT_BYTES:
            raise InvalidInput("", f"larger than {MAX_INPUT_BYTES} bytes")
        value = workflow.payload_converter().from_payload(raw.payload)
        if verdict == Verdict.APPROVE:
            approval = parse_approve(value)
            who, note = approval.approver, approval.comment
            digest, signature = approval.plan_digest, approval.signature
            via, subject = approval.via, approval.subject
        elif verdict == Verdict.REJECT:
            rejection = parse_reject(value)
            who, note, digest, signature = (
                rejection.approver,
                rejection.reason,
                rejection.plan_digest,
                rejection.signature,
            )
            via, subject = rejection.via, rejection.subject
        else:
            decided = parse_decide(value)
            who, note, verdict = decided.operator, decided.comment, Verdict(decided.action)
            digest, signature = decided.plan_digest, decided.signature
            via, subject = decided.via, decided.subject
    except InvalidInput as err:
        raise Refused(None, f"invalid {_payload_name(verdict)} payload: {err}") from None
    except Exception as err:  # the payload is not JSON at all
        raise Refused(
            None, f"invalid {_payload_name(verdict)} payload: not decodable JSON ({type(err).__name__})"
        ) from None
    identity = identity_of(who)
    raw_name = who if who != identity.name else None
    decision = Decision(
        identity.name, verdict, note, now(), raw=raw_name, step=step, plan_digest=digest, via=via, subject=subject
    )
    return decision, signature


def _payload_name(verdict: Verdict) -> str:
    return str(verdict) if verdict in (Verdict.APPROVE, Verdict.REJECT) else "decide"


def now() -> str:
    return workflow.now().isoformat()


def describe(err: ActivityError) -> str:
    cause = err.cause
    return cause.message if isinstance(cause, ApplicationError) else str(cause or err)


def result_from_details(err: ActivityError) -> PlaybookResult | None:
    """A failed playbook attaches its PlaybookResult so the tasks it ran are still audited."""
    cause = err.cause
    if not isinstance(cause, ApplicationError) or not cause.details:
        return None
    details: Any = cause.details[0]
    try:
        result: PlaybookResult = value_to_type(PlaybookResult, details)
        return result
    except (TypeError, ValueError, KeyError):
        return None
