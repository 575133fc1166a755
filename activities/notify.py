"""POST "this request waits for you" to SIGNOFF_NOTIFY_URL (a chat webhook, a pager, an inbox).

The body is the workflow's Notification as JSON, with `url`, the request's page in the web
inbox, when SIGNOFF_WEB_URL is set; with SIGNOFF_NOTIFY_SECRET it is signed:
`X-Signoff-Signature: sha256=<hex HMAC-SHA256 of "<X-Signoff-Timestamp>.<body>">`, so a
receiver can check it came from signoff and is fresh. `X-Signoff-Delivery` is the same on every
retry of one event. The URL and secret are the operator's settings; the request supplies only
data inside the JSON body. Redirects are not followed: the body goes to the configured URL only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from typing import Any, NoReturn
from urllib.parse import quote

from temporalio import activity
from temporalio.exceptions import ApplicationError

from workflows.inbox import Notification
from workflows.types import ErrorType

SEND_TIMEOUT = 10  # seconds per POST; the activity retries (workflows.options.NOTIFY_RETRY)
USER_AGENT = "signoff-notify/1"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises the 3xx as an HTTPError


_opener = urllib.request.build_opener(_NoRedirect)


class NotifyActivities:
    def __init__(self, url: str | None, secret: str | None = None, web_url: str | None = None) -> None:
        self._url = url
        self._secret = secret
        self._web_url = web_url  # SIGNOFF_WEB_URL: the body links to the request's page there

    @activity.defn(name="notify")
    def notify(self, note: Notification) -> int:
        """Deliver one notification; returns the receiver's HTTP status."""
        if not self._url:  # retried: another worker of the fleet may have it
            raise RuntimeError("SIGNOFF_NOTIFY_URL is not set on this worker")
        doc = dataclasses.asdict(note)
        if self._web_url:
            doc["url"] = f"{self._web_url}/requests/{quote(note.id, safe='')}"
        body = json.dumps(doc, sort_keys=True).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Signoff-Delivery": note.delivery,
            "X-Signoff-Event": note.event,
            "X-Signoff-Timestamp": timestamp,
        }
        if self._secret:
            headers["X-Signoff-Signature"] = signature(self._secret, timestamp, body)
        post = urllib.request.Request(self._url, data=body, headers=headers, method="POST")
        try:
            with _opener.open(post, timeout=SEND_TIMEOUT) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as err:
            _failed(err.code)
        except (urllib.error.URLError, OSError) as err:  # refused, unresolvable, timed out: retried
            reason = getattr(err, "reason", err)
            raise RuntimeError(f"notification not delivered: {reason}") from None


def _failed(code: int) -> NoReturn:
    """5xx, 408 and 429 are worth another try; any other answer will not change."""
    if code >= 500 or code in (408, 429):
        raise RuntimeError(f"notification receiver answered HTTP {code}")
    raise ApplicationError(
        f"notification receiver answered HTTP {code}: not retried (check SIGNOFF_NOTIFY_URL)",
        type=ErrorType.NOTIFY_REFUSED,
        non_retryable=True,
    )
