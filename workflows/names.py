"""Names Temporal takes that signoff derives from others: the playbook task queues, and workflow
ids built from a request's id or a host name, kept within Temporal's limit on an id.

Standard library only: this module is imported inside the workflow sandbox.
"""

from __future__ import annotations

import hashlib


def playbook_queue(task_queue: str, site: str | None = None) -> str:
    """Where playbook activities run: their own queue, so they have their own worker slots; for
    a step whose hosts name a site, `<task queue>-<site>`, served by that site's workers only."""
    return f"{task_queue}-{site}" if site else f"{task_queue}-playbooks"


MAX_ID_BYTES = 1000  # Temporal's default limit on a workflow id (limit.maxIDLength), in bytes


def bounded_id(whole: str) -> str:
    """A workflow id derived from others (a request's id, a host name) as it is when it fits
    Temporal's limit; else cut short and ended with a hash of all of it, so two long ones stay
    apart. An id over the limit fails, as a command, every workflow task that sends it."""
    data = whole.encode()
    if len(data) <= MAX_ID_BYTES:
        return whole
    digest = hashlib.sha256(data).hexdigest()[:32]
    return f"{data[: MAX_ID_BYTES - len(digest) - 1].decode(errors='ignore')}~{digest}"
