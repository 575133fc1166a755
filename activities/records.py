"""The audit view of a change request, JSON-safe.

Extra vars appear as the approver saw them: values, except secrets (declared `secret: true` or
named like a credential), which the plan replaced by a short hash before the status held them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from workflows.types import ChangeRequestStatus


def public_status(status: ChangeRequestStatus) -> dict[str, Any]:
    return dataclasses.asdict(status)
