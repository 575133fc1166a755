"""The audit view of a change request: JSON-safe, with extra-var values left out.

Extra vars may carry credentials, so the DB and git keep only their names.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from workflows.types import ChangeRequestStatus


def public_status(status: ChangeRequestStatus) -> dict[str, Any]:
    doc = dataclasses.asdict(status)
    if status.request is not None:
        doc["request"]["vars"] = sorted(status.request.vars)
    return doc

