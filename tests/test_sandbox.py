"""The workflow sandbox with signoff's deterministic modules passed through (workers/sandbox.py):
they are loaded once per process, the workflow modules are still loaded per run, the sandbox
still refuses non-deterministic calls, and a change request still runs and replays.

The workflows below are defined here, so the sandbox loads this module for each of their runs:
everything it imports that is not in the standard library or `temporalio` comes in passed
through."""

from __future__ import annotations

import ast
import asyncio
import builtins
import pkgutil
import sys
import uuid
from datetime import datetime
from pathlib import Path

from temporalio import workflow

# Outside the passed-through block on purpose: in the sandbox, this import loads the workflow
# modules as a ChangeRequestWorkflow run does, the passed-through ones from outside.
from workflows.change_request import ChangeRequestWorkflow

with workflow.unsafe.imports_passed_through():
    import pytest
    from temporalio.api.enums.v1 import EventType
    from temporalio.client import WorkflowHistory
    from temporalio.testing import WorkflowEnvironment
    from temporalio.worker import Replayer, Worker
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

    # The matcher's checks take a context; the class lives in the SDK's private module only.
    from temporalio.worker.workflow_sandbox._restrictions import RestrictionContext

    from tests.helpers import HISTORIES, assert_eventually, start_request, wait_for_phase
    from workers.sandbox import PASSED_THROUGH, SANDBOXED, workflow_runner
    from workers.settings import Settings
    from workers.worker import running_worker
    from workflows.interceptors import SignoffInterceptor
    from workflows.types import ApproveInput, Phase

ROOT = Path(__file__).parent.parent  # no resolve(): the sandbox refuses it while loading this module
DEBUG_ONLY = "Configure hello"  # plans hello-configure.yml alone: one debug task, low risk


@workflow.defn(sandboxed=True)
class ModulesSeen:
    """Which module objects a sandboxed run sees, by id, of those it has loaded."""

    @workflow.run
    async def run(self, names: list[str]) -> dict[str, int]:
        return {name: id(sys.modules[name]) for name in names if name in sys.modules}


@workflow.defn(sandboxed=True)
class ReadsTheClock:
    @workflow.run
    async def run(self) -> str:
        return datetime.now().isoformat()


@workflow.defn(sandboxed=True)
class OpensAFile:
    @workflow.run
    async def run(self) -> str:
        with open(__file__) as f:  # noqa: ASYNC230  # what the sandbox must refuse
            return f.readline()


def workflow_modules() -> list[str]:
    return ["workflows", *(f"workflows.{m.name}" for m in pkgutil.iter_modules([str(ROOT / "workflows")]))]


def defines_a_workflow(module: str) -> bool:
    source = ROOT.joinpath(*module.split(".")).with_suffix(".py")
    if not source.exists():
        source = ROOT.joinpath(*module.split("."), "__init__.py")
    tree = ast.parse(source.read_text(encoding="utf-8"))
    return any(
        ast.unparse(d).startswith("workflow.defn")
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        for d in node.decorator_list
    )


def test_every_workflows_module_is_placed_on_purpose() -> None:
    modules = workflow_modules()

    assert sorted(set(modules) - set(PASSED_THROUGH) - set(SANDBOXED)) == [], (
        "add each new workflows module to PASSED_THROUGH (no module state a run changes; see "
        "workers/sandbox.py) or to SANDBOXED"
    )
    assert set(PASSED_THROUGH).isdisjoint(SANDBOXED)
    assert [m for m in PASSED_THROUGH if m.startswith("workflows") and defines_a_workflow(m)] == []
    assert {m for m in modules if defines_a_workflow(m)} <= set(SANDBOXED)


def test_runner_passes_signoff_modules_through(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = workflow_runner()
    monkeypatch.setenv("SIGNOFF_SANDBOX_PASSTHROUGH", "off")
    default = workflow_runner()

    assert isinstance(runner, SandboxedWorkflowRunner)
    assert set(PASSED_THROUGH) <= runner.restrictions.passthrough_modules
    assert runner.restrictions.invalid_module_members == SandboxRestrictions.default.invalid_module_members
    assert not runner.restrictions.passthrough_all_modules
    assert default == SandboxedWorkflowRunner()


# --- nothing a passed-through module runs is something the sandbox refuses ------------------

_CONTEXT = RestrictionContext()
_CONTEXT.is_runtime = True


def refused_uses(source: str) -> list[str]:
    """Names the sandbox's default restrictions refuse that `source` uses, resolved through its
    imports. The sandbox checks these at run time only in the modules it loads itself."""
    tree = ast.parse(source)
    qualified: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                local = alias.asname or alias.name.split(".")[0]
                qualified[local] = alias.name if alias.asname else local
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                qualified[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    bound = {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)} | {
        n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    }
    found = []
    for node in ast.walk(tree):
        parts: list[str] = []
        inner: ast.expr = node if isinstance(node, ast.expr) else ast.Constant(None)
        while isinstance(inner, ast.Attribute):
            parts.insert(0, inner.attr)
            inner = inner.value
        if not isinstance(inner, ast.Name) or not isinstance(getattr(node, "ctx", None), ast.Load):
            continue
        if inner.id in qualified:
            path = [*qualified[inner.id].split("."), *parts]
        elif hasattr(builtins, inner.id) and inner.id not in bound:
            path = ["__builtins__", inner.id, *parts]
        else:
            continue
        matcher = SandboxRestrictions.default.invalid_module_members
        if any(matcher.match_access(_CONTEXT, *p, include_use=True) for p in (path, [*path, "__call__"])):
            found.append(f"line {node.lineno}: {'.'.join(path)}")
    return found


@pytest.mark.parametrize("module", [m for m in PASSED_THROUGH if m.startswith("workflows.")])
def test_passed_through_module_uses_nothing_the_sandbox_refuses(module: str) -> None:
    source = ROOT.joinpath(*module.split(".")).with_suffix(".py").read_text(encoding="utf-8")

    assert refused_uses(source) == []


@pytest.mark.parametrize(
    "source",
    [
        "from datetime import datetime\ndatetime.now()",
        "import datetime as dt\ndt.date.today()",
        "import os\nos.getenv('HOME')",
        "from os import environ\nenviron['HOME']",
        "import random\nrandom.random()",
        "from uuid import uuid4\nuuid4()",
        "import time\ntime.time()",
        "open('/etc/hosts')",
        "import asyncio\nasyncio.wait([])",
    ],
)
def test_checker_finds_what_the_sandbox_refuses(source: str) -> None:
    assert refused_uses(source) != []


def test_checker_accepts_deterministic_code() -> None:
    source = (
        "import hashlib, json, re\nfrom datetime import timedelta\nfrom temporalio import workflow\n"
        "hashlib.sha256(json.dumps({}).encode()); re.compile('x'); timedelta(seconds=1); workflow.now()\n"
        "def execute(input):\n    return input.args"
    )

    assert refused_uses(source) == []


# --- at run time ----------------------------------------------------------------------------


async def test_workflow_modules_passed_through_and_sandboxed_as_listed(env: WorkflowEnvironment) -> None:
    queue = f"sandbox-{uuid.uuid4()}"
    async with Worker(env.client, task_queue=queue, workflows=[ModulesSeen], workflow_runner=workflow_runner()):
        with env.with_time_skipping_disabled():
            seen = await env.client.execute_workflow(
                ModulesSeen.run, [*PASSED_THROUGH, *SANDBOXED], id=f"modules-{uuid.uuid4()}", task_queue=queue
            )

    assert {name for name in PASSED_THROUGH if seen.get(name) != id(sys.modules[name])} == set()
    # workflows.lock and .analysis load only in runs of their own workflows
    assert {"workflows", "workflows.change_request"} <= seen.keys()
    assert {name for name in SANDBOXED if name in seen and seen[name] == id(sys.modules[name])} == set()


@pytest.mark.parametrize(
    ("refused", "message"),
    [(ReadsTheClock, "datetime.datetime.now"), (OpensAFile, "__builtins__.open")],
    ids=["datetime.now", "open"],
)
async def test_sandbox_still_refuses_non_deterministic_calls(
    env: WorkflowEnvironment, refused: type, message: str
) -> None:
    queue = f"sandbox-{uuid.uuid4()}"
    async with Worker(env.client, task_queue=queue, workflows=[refused], workflow_runner=workflow_runner()):
        with env.with_time_skipping_disabled():
            handle = await env.client.start_workflow(refused.run, id=f"refused-{uuid.uuid4()}", task_queue=queue)  # type: ignore[attr-defined]

        async def task_failed() -> str:
            async for event in handle.fetch_history_events():
                if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                    return event.workflow_task_failed_event_attributes.failure.message
            raise AssertionError("no workflow task has failed yet")

        failure = await assert_eventually(task_failed)
        await handle.terminate("refused as expected")

    assert message in failure


async def test_change_request_runs_on_the_worker_with_the_runner(env: WorkflowEnvironment, settings: Settings) -> None:
    async with running_worker(env.client, settings) as main:
        runner = main.config()["workflow_runner"]
        handle = await start_request(env, settings, DEBUG_ONLY)
        await wait_for_phase(handle, Phase.AWAITING_APPROVAL)
        await handle.signal(ChangeRequestWorkflow.approve, ApproveInput(approver="bob"))  # type: ignore[call-overload]  # approve takes a RawValue
        result = await handle.result()

    assert isinstance(runner, SandboxedWorkflowRunner)
    assert set(PASSED_THROUGH) <= runner.restrictions.passthrough_modules
    assert (result.outcome, result.error) == (Phase.SUCCEEDED, None)


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
async def test_recorded_history_replays_with_the_runner(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, await asyncio.to_thread(path.read_text))
    replayer = Replayer(
        workflows=[ChangeRequestWorkflow], interceptors=[SignoffInterceptor()], workflow_runner=workflow_runner()
    )

    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)

    assert result.replay_failure is None, f"{path.name} does not replay with workflow_runner(): {result.replay_failure}"
