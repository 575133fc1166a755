"""Worker memory: the RSS of a `signoff worker` process with 1,000 change requests awaiting
approval, against a worker of bare workflows that only wait for a signal, for the default
sandbox and for `workers.sandbox.workflow_runner()` (issue "Durable execution": worker RSS
under 200 MiB with 1,000 requests awaiting approval).

Run from the repository root: `.venv/bin/python -m bench.memory`. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import temporalio
from temporalio import workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributeKey
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities.catalog import Planner
from bench.machine import machine
from workers.devstack import EmbeddedPostgres, temporal_binary, write_local_inventory
from workers.sandbox import workflow_runner
from workers.worker import connect
from workflows.change_request import SEARCH_ATTRIBUTES, ChangeRequestWorkflow
from workflows.interceptors import SignoffInterceptor
from workflows.types import WORKFLOW_TYPE, ApproveInput, Phase, RejectInput

REQUESTS = 1000
WARM_UP = 10  # requests run start to end before the baseline: lazy imports, caches, pools
REQUEST = "Configure bench"
REQUESTER = "alice"
APPROVER = "bob"  # SIGNOFF_APPROVERS unset: anyone but the requester
TARGET_MIB = 200
BARE_TYPE = "BenchBareWorkflow"
BARE_WAITING = "bare_waiting"
RUNNERS = {"default sandbox": "off", "workflow_runner()": "on"}  # SIGNOFF_SANDBOX_PASSTHROUGH
WAIT = 4 * 3600.0  # seconds: a stuck run fails instead of hanging
IDLE_CPU = 0.05  # CPU-seconds per second under which the worker counts as idle
CONCURRENCY = 50  # client calls in flight
PHASE = SearchAttributeKey.for_keyword("SignoffPhase")


# --- the anchor: a workflow that only waits, in a worker process of its own -----------------


@workflow.defn(name=BARE_TYPE)
class BareWorkflow:
    """Waits for one signal. It sets SignoffPhase, as a change request does, so both are
    counted the same way."""

    def __init__(self) -> None:
        self._signalled = False

    @workflow.run
    async def run(self) -> None:
        workflow.upsert_search_attributes([PHASE.value_set(BARE_WAITING)])
        await workflow.wait_condition(lambda: self._signalled)

    @workflow.signal
    def approve(self, _: ApproveInput) -> None:
        self._signalled = True


def bare_worker() -> None:
    """The anchor's worker process: `python -c "from bench.memory import bare_worker; bare_worker()"`
    with TEMPORAL_ADDRESS, SIGNOFF_TASK_QUEUE and SIGNOFF_SANDBOX_PASSTHROUGH set."""
    asyncio.run(_bare_worker(os.environ["SIGNOFF_TASK_QUEUE"]))


async def _bare_worker(task_queue: str) -> None:
    runner = workflow_runner()
    assert isinstance(runner, SandboxedWorkflowRunner)
    # This module is passed through, so a run does not load all of this script again: the
    # anchor is what the SDK keeps per cached sandboxed workflow, the floor under any choice of
    # passed-through modules.
    restrictions = runner.restrictions.with_passthrough_modules("bench")
    client = await connect()
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[BareWorkflow],
        interceptors=[SignoffInterceptor()],
        workflow_runner=dataclasses.replace(runner, restrictions=restrictions),
    ):
        print(f"bare worker polling task queue {task_queue!r}", flush=True)
        await asyncio.Event().wait()


# --- worker processes -----------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """One kind of worker under test: how to start it and its workflows, and how to end them."""

    name: str
    workflow_type: str
    waiting: str  # SignoffPhase of a workflow that waits
    ready_line: str  # what the worker logs once it polls
    command: list[str]
    args: Callable[[int], list[Any]]  # the start arguments of the n-th workflow
    end: Callable[[WorkflowHandle[Any, Any]], Coroutine[Any, Any, None]]


def signoff_kind(how_to_end: str) -> Kind:
    async def end(handle: WorkflowHandle[Any, Any]) -> None:
        if how_to_end == "approve":
            await handle.signal(ChangeRequestWorkflow.approve, ApproveInput(APPROVER))  # type: ignore[call-overload]  # approve takes a RawValue
        else:
            await handle.signal(ChangeRequestWorkflow.reject, RejectInput(APPROVER, "bench"))  # type: ignore[call-overload]  # reject takes a RawValue

    return Kind(
        name="signoff",
        workflow_type=WORKFLOW_TYPE,
        waiting=Phase.AWAITING_APPROVAL,
        ready_line="worker polling task queue",
        command=[str(Path(sys.executable).parent / "signoff"), "worker"],
        # A raw dict, as `temporal workflow start --input` sends it (README).
        args=lambda n: [{"request": REQUEST, "requester": REQUESTER}],
        end=end,
    )


def bare_kind() -> Kind:
    async def end(handle: WorkflowHandle[Any, Any]) -> None:
        await handle.signal(BareWorkflow.approve, ApproveInput(APPROVER))

    return Kind(
        name="bare",
        workflow_type=BARE_TYPE,
        waiting=BARE_WAITING,
        ready_line="bare worker polling",
        command=[sys.executable, "-c", "from bench.memory import bare_worker; bare_worker()"],
        args=lambda n: [],
        end=end,
    )


def worker_env(work: Path, label: str, address: str, database_url: str, passthrough: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNOFF_", "TEMPORAL_"))}
    env.update(
        TEMPORAL_ADDRESS=address,
        SIGNOFF_TASK_QUEUE=f"bench-memory-{label}",
        SIGNOFF_DATA_DIR=str(work / label),
        SIGNOFF_DATABASE_URL=database_url,
        SIGNOFF_PLAYBOOK_DIR=str(work / "playbooks"),
        SIGNOFF_INVENTORY=str(work / "inventory" / "hosts.yml"),
        SIGNOFF_AUDIT_REPO=str(work / label / "audit"),
        SIGNOFF_PREVIEW="off",
        SIGNOFF_FAILURE_ANALYSIS="off",
        SIGNOFF_SANDBOX_PASSTHROUGH=passthrough,
        SIGNOFF_WORKFLOW_CACHE=os.environ.get("SIGNOFF_WORKFLOW_CACHE", "100"),
        PYTHONPATH=str(Path(__file__).resolve().parent.parent),  # the bare worker imports bench.memory
    )
    return env


async def start_process(kind: Kind, env: dict[str, str], log_path: Path) -> asyncio.subprocess.Process:
    with log_path.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            *kind.command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 120
    while kind.ready_line not in (text := await asyncio.to_thread(log_path.read_text, errors="replace")):
        if process.returncode is not None or time.monotonic() > deadline:
            await stop_process(process)
            raise RuntimeError(f"{kind.name} worker did not start:\n{text[-3000:]}")
        await asyncio.sleep(0.2)
    return process


async def stop_process(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 90)
        except TimeoutError:
            process.kill()
            await process.wait()


def rss(pid: int) -> int:
    """Bytes resident in the worker process and its children (Ansible, git), if any."""
    process = psutil.Process(pid)
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


async def settled_rss(pid: int) -> int:
    """The RSS once the worker is idle (under IDLE_CPU CPU-seconds in a second, or after a
    minute): the median of 3 readings."""
    process = psutil.Process(pid)
    deadline = time.monotonic() + 60

    def cpu() -> float:
        t = process.cpu_times()
        return t.user + t.system

    used = cpu()
    while True:
        await asyncio.sleep(1.0)
        used, last = cpu(), used
        if used - last < IDLE_CPU or time.monotonic() > deadline:
            break
    samples = []
    for _ in range(3):
        samples.append(rss(pid))
        await asyncio.sleep(0.5)
    return sorted(samples)[1]


async def in_batches(calls: list[Coroutine[Any, Any, Any]]) -> list[Any]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(call: Coroutine[Any, Any, Any]) -> Any:
        async with gate:
            return await call

    return await asyncio.gather(*(one(c) for c in calls))


async def wait_count(client: Client, query: str, want: int, what: str, *, fail_if: str | None = None) -> None:
    """Poll the visibility count of `query` until it is `want`. With `fail_if`, stop at once when
    that query counts any (a request that fails planning never waits: no need to time out)."""
    deadline = time.monotonic() + WAIT
    while (got := (await client.count_workflows(query)).count) != want:
        if fail_if and (await client.count_workflows(fail_if)).count:
            raise RuntimeError(f"{what}: a workflow ended before it waited; see the worker's log")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: {got} of {want} after {WAIT:.0f} s ({query})")
        await asyncio.sleep(1.0)


@dataclass(frozen=True)
class Batch:
    handles: list[WorkflowHandle[Any, Any]]
    these: str  # a visibility query for exactly these workflows
    to_wait: float  # seconds from the first start until all wait
    waiting: int  # RSS bytes with all of them waiting


async def fill(client: Client, kind: Kind, queue: str, label: str, count: int, pid: int) -> Batch:
    """Start `count` workflows, wait until all wait, and read the RSS."""
    these = f"WorkflowType = '{kind.workflow_type}' AND TaskQueue = '{queue}' AND WorkflowId STARTS_WITH '{label}-'"
    start = time.monotonic()
    handles: list[WorkflowHandle[Any, Any]] = await in_batches(
        [
            client.start_workflow(kind.workflow_type, args=kind.args(n), id=f"{label}-{n}", task_queue=queue)
            for n in range(count)
        ]
    )
    await wait_count(
        client,
        f"{these} AND SignoffPhase = '{kind.waiting}'",
        count,
        f"{label} waiting",
        fail_if=f"{these} AND ExecutionStatus != 'Running'",
    )
    to_wait = time.monotonic() - start
    return Batch(handles, these, to_wait, await settled_rss(pid))


async def drain(client: Client, kind: Kind, batch: Batch) -> float:
    """End every workflow of `batch` and wait until all have ended; returns the seconds it took."""
    start = time.monotonic()
    await in_batches([kind.end(h) for h in batch.handles])
    await wait_count(client, f"{batch.these} AND ExecutionStatus = 'Running'", 0, f"{batch.these}: ending")
    return time.monotonic() - start


@dataclass(frozen=True)
class Memory:
    count: int
    before: int  # RSS bytes after the warm-up
    waiting: int  # with `count` workflows waiting
    after: int  # after all of them ended
    again: int  # with a second `count` waiting, in the same process
    to_wait: float  # seconds until all of the first batch waited
    to_end: float  # seconds from their signals until all ended

    @property
    def per_workflow_kib(self) -> float:
        return (self.waiting - self.before) / self.count / 1024

    @property
    def kept(self) -> float:
        """Share of the growth still resident after the workflows ended."""
        return (self.after - self.before) / (self.waiting - self.before)


async def measure(client: Client, kind: Kind, env: dict[str, str], log_path: Path, label: str, count: int) -> Memory:
    """One worker process: its RSS after a warm-up, with `count` workflows waiting, after they
    all ended, and with a second `count` waiting: whether what the first left is used again."""
    process = await start_process(kind, env, log_path)
    queue = env["SIGNOFF_TASK_QUEUE"]
    try:
        await drain(client, kind, await fill(client, kind, queue, f"warm-{label}", WARM_UP, process.pid))
        before = await settled_rss(process.pid)
        first = await fill(client, kind, queue, label, count, process.pid)
        to_end = await drain(client, kind, first)
        after = await settled_rss(process.pid)
        # Left waiting: the dev server goes when the script ends.
        second = await fill(client, kind, queue, f"again-{label}", count, process.pid)
    finally:
        await stop_process(process)
    return Memory(count, before, first.waiting, after, second.waiting, first.to_wait, to_end)


# --- the workload ---------------------------------------------------------------------------


def write_playbooks(root: Path) -> Path:
    """One playbook that only prints; REQUEST plans it alone."""
    root.mkdir(parents=True)
    (root / "bench-configure.yml").write_text(
        "# signoff:\n#   service: bench\n#   action: configure\n#   description: Print a line\n#   risk: low\n"
        "- name: Configure bench\n  hosts: homelab\n  gather_facts: false\n  tasks:\n"
        "    - name: Say it\n      ansible.builtin.debug:\n        msg: configured\n"
    )
    return root


def check_plan(playbooks: Path, inventory: Path) -> None:
    draft = Planner(playbooks, inventory).plan(REQUEST)
    if draft.error is not None or [s.playbook for s in draft.steps] != ["bench-configure.yml"]:
        raise RuntimeError(f"{REQUEST!r} plans {[s.playbook for s in draft.steps]} ({draft.error})")


# --- the report -----------------------------------------------------------------------------


def mib(n: float) -> str:
    return f"{n / 2**20:.1f}"


def table(results: list[tuple[str, Memory, Memory]], how_to_end: str) -> str:
    rows = [
        "| figure | value | anchor | anchor value | ratio | target |",
        "|---|---|---|---|---|---|",
    ]
    for runner, signoff, bare in results:
        n = signoff.count
        bare_anchor = f"bare workflows waiting for a signal, {runner}, a worker process of their own"
        ok = signoff.waiting < TARGET_MIB * 2**20
        rows += [
            f"| {runner}: worker RSS with {n:,} requests awaiting approval | {mib(signoff.waiting)} MiB | "
            f"{bare_anchor} | {mib(bare.waiting)} MiB | | < {TARGET_MIB} MiB {'met' if ok else 'MISSED'} |",
            f"| {runner}: RSS growth per request awaiting approval | {signoff.per_workflow_kib:.0f} KiB | "
            f"{bare_anchor}, per workflow | {bare.per_workflow_kib:.0f} KiB | "
            f"{signoff.per_workflow_kib / bare.per_workflow_kib:.2f}× | |",
            f"| {runner}: worker RSS before → {n:,} waiting → all ended ({how_to_end}) | "
            f"{mib(signoff.before)} → {mib(signoff.waiting)} → {mib(signoff.after)} MiB | {bare_anchor} | "
            f"{mib(bare.before)} → {mib(bare.waiting)} → {mib(bare.after)} MiB | | |",
            f"| {runner}: share of the growth still resident after all ended | {signoff.kept:.0%} | "
            f"{bare_anchor} | {bare.kept:.0%} | | |",
            f"| {runner}: worker RSS with a second {n:,} waiting, same process | {mib(signoff.again)} MiB | "
            f"{bare_anchor} | {mib(bare.again)} MiB | | |",
        ]
    return "\n".join(rows)


def timings(results: list[tuple[str, Memory, Memory]]) -> str:
    lines = []
    for runner, signoff, bare in results:
        for name, m in (("signoff", signoff), ("bare", bare)):
            lines.append(
                f"{runner}, {name}: {m.count} started → all waiting in {m.to_wait:.0f} s, "
                f"all ended {m.to_end:.0f} s after the signals"
            )
    return "\n".join(lines)


async def main(count: int, how_to_end: str, only: str | None = None) -> None:
    print(machine())
    cache = os.environ.get("SIGNOFF_WORKFLOW_CACHE", "100")
    print(f"SIGNOFF_WORKFLOW_CACHE={cache} (the bare anchor keeps the SDK's 1000)")
    print(f"temporalio {temporalio.__version__}, {platform.python_implementation()} {platform.python_version()}")
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    results: list[tuple[str, Memory, Memory]] = []
    with tempfile.TemporaryDirectory(prefix="signoff-bench-memory-") as tmp:
        work = Path(tmp)
        playbooks = write_playbooks(work / "playbooks")
        inventory = write_local_inventory(work / "inventory" / "hosts.yml", ("homelab",), {})
        check_plan(playbooks, inventory)
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(temporal_binary()), search_attributes=SEARCH_ATTRIBUTES
        )
        postgres = EmbeddedPostgres.start(work / "pgdata")
        address = env.client.service_client.config.target_host
        try:
            for runner, passthrough in RUNNERS.items():
                if only and runner != only:
                    continue
                measured: dict[str, Memory] = {}
                for kind in (signoff_kind(how_to_end), bare_kind()):
                    label = f"{kind.name}-{passthrough}"
                    url = postgres.create_database(label.replace("-", "_"))
                    environ = worker_env(work, label, address, url, passthrough)
                    measured[kind.name] = await measure(env.client, kind, environ, work / f"{label}.log", label, count)
                    print(f"{runner}, {kind.name}: {mib(measured[kind.name].waiting)} MiB waiting", flush=True)
                results.append((runner, measured["signoff"], measured["bare"]))
        finally:
            await env.shutdown()
            postgres.stop()
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    print(timings(results))
    print(table(results, how_to_end))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=REQUESTS, help="workflows per batch (default %(default)s)")
    parser.add_argument(
        "--end",
        choices=("approve", "reject"),
        default="approve",
        help="how the change requests end (default %(default)s)",
    )
    parser.add_argument("--runner", choices=tuple(RUNNERS), help="measure with this runner only (default: both)")
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.end, args.runner))
