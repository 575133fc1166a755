"""The audit view of a change request, JSON-safe.

Extra vars appear as the approver saw them: values, except secrets (declared `secret: true` or
named like a credential), which the plan replaced by a short hash before the status held them.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from workflows.types import ChangeRequestStatus


def public_status(status: ChangeRequestStatus) -> dict[str, Any]:
    return dataclasses.asdict(status)


def plain(value: Any) -> Any:
    """`dataclasses.asdict` for values that came from JSON (an activity's input), without its
    deep copy of every leaf, which is most of its cost: dataclasses become dicts, tuples lists."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    names = _field_names(value.__class__)
    if names:
        return {name: plain(getattr(value, name)) for name in names}
    return value


@functools.cache
def _field_names(cls: Any) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) else ()
