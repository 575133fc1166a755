"""The plan digest: `sha256:<hex>` over a canonical form of what will run.

For each step in order: the playbook's path and the SHA-256 of its content when planned, the
hosts it will touch (or its limit), the site whose workers run it (when one is named), and the
names of the vars it receives with a hash of each value. An approval that names this digest
approves exactly that; change a playbook, a host or a value and the digest changes, and the
approval is refused (workflows.approval.check_digest).

Standard library only, deterministic: it runs inside the workflow.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from workflows.types import Plan

DIGEST_FORMAT = 1  # part of what is hashed: a change of the canonical form changes every digest


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def value_hash(value: Any) -> str:
    return hashlib.sha256(_canonical(value)).hexdigest()


def plan_digest(plan: Plan, values: Mapping[str, Any]) -> str:
    """`values`: the request's vars; each step is hashed with the values it receives."""
    steps = [
        {
            "playbook": step.playbook,
            "sha256": step.sha256,
            "hosts": sorted(step.host_list),
            "limit": step.limit,
            "vars": {name: value_hash(values.get(name)) for name in sorted(step.vars)},
            # where it runs, only when a site is named: digests of plans without sites stay as they were
            **({"site": step.site} if step.site else {}),
        }
        for step in plan.steps
    ]
    canonical = _canonical({"format": DIGEST_FORMAT, "steps": steps})
    return f"sha256:{hashlib.sha256(canonical).hexdigest()}"
