"""The workflow sandbox every signoff worker runs its workflows in, with signoff's own
deterministic modules passed through.

The sandbox guards determinism in two ways. Each workflow run gets its own copy of every
module that is not passed through: the workflow's module and all it imports are executed
again, per run, and kept as long as the run is cached. And code in those copies sees the
standard library through proxies that refuse non-deterministic calls (`datetime.now()`,
`os.*`, `random.*`, ...). The default passes through only the standard library and
`temporalio`, so every cached ChangeRequestWorkflow held its own copy of every
`workflows.*` module: every dataclass, enum and compiled regex again, about 0.9 MiB per
request awaiting approval, against about 0.14 MiB with the modules below passed through and
0.05 MiB for a bare workflow (bench/README.md, "worker memory").

Passed through here, loaded once per process and shared by every run:

- `workflows.types`, `workflows.runs`: the payload dataclasses and enums, and constants.
- `workflows.names`: the playbook task queues and derived workflow ids (functions).
- `workflows.validation`, `workflows.payloads`, `workflows.digest`, `workflows.signatures`:
  input and decision decoding, the plan digest, what a signed decision signs (constants,
  frozensets, compiled regexes, functions).
- `workflows.approval`, `workflows.identity`: the policy and PRECIS names. `identity` holds the
  only module state of them all: `_latin`'s `lru_cache` of a pure function of one character,
  which a run can fill but whose answers do not depend on it (and it is thread-safe);
  shared, it is bounded once per process instead of once per run.
- `workflows.audit`, `workflows.options`, `workflows.interceptors`: audit record types,
  timeouts and retry policies, the one-argument interceptor.
- `workflows.handlers`, `workflows.locking`, `workflows.auditing`: ChangeRequestWorkflow's
  mixins (its signal, update and query handlers, its locks, its audit writes). They keep all
  state on the workflow instance and none in the module.
- `precis_i18n`, `confusable_homoglyphs`: read-only Unicode tables (`identity` already imports
  them passed through; listed here so that an import they make lazily is passed through too).

None of these has module state a workflow changes, so a per-run copy bought no isolation. A
side effect is one class per type: activity results (decoded against `activities.*`, which is
passed through already) are now instances of the same `workflows.types` classes the workflow
sees, not of its own copies.

Still sandboxed, per run (`SANDBOXED`): the modules that define workflows,
`workflows.change_request`, `workflows.lock` and `workflows.analysis` (a passed-through
workflow module would run its whole workflow unsandboxed), and the `workflows` package itself.
tests/test_sandbox.py fails on a `workflows` module in neither list, so a new one is placed
on purpose.

What passing through costs: the proxies do not reach into a passed-through module, so a
`datetime.now()` written there would not be refused at run time (builtins such as `open()`
still are, on every workflow thread). tests/test_sandbox.py therefore reads these modules and
fails if one names anything the sandbox's default restrictions refuse, and
tests/test_workflow_imports.py keeps I/O and clocks out of `workflows/` altogether.

`SIGNOFF_SANDBOX_PASSTHROUGH=off` gives the default sandbox instead: a benchmark and
diagnostic switch (bench/memory.py compares the two), not a setting to run with.
"""

from __future__ import annotations

import os

from temporalio.worker import WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

PASSED_THROUGH = (
    "workflows.types",
    "workflows.names",
    "workflows.runs",
    "workflows.validation",
    "workflows.payloads",
    "workflows.digest",
    "workflows.signatures",
    "workflows.approval",
    "workflows.identity",
    "workflows.audit",
    "workflows.options",
    "workflows.interceptors",
    "workflows.handlers",
    "workflows.locking",
    "workflows.auditing",
    "workflows.inbox",
    "workflows.metrics",
    "workflows.waiting",
    "workflows.steps",
    "workflows.targets",
    "precis_i18n",
    "confusable_homoglyphs",
)
SANDBOXED = ("workflows", "workflows.change_request", "workflows.lock", "workflows.analysis")


def restrictions() -> SandboxRestrictions:
    return SandboxRestrictions.default.with_passthrough_modules(*PASSED_THROUGH)


def workflow_runner() -> WorkflowRunner:
    if os.environ.get("SIGNOFF_SANDBOX_PASSTHROUGH", "on").strip().lower() == "off":
        return SandboxedWorkflowRunner()
    return SandboxedWorkflowRunner(restrictions=restrictions())
