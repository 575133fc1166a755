"""The worker: ChangeRequestWorkflow plus every activity, wired from Settings."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import sys
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from datetime import timedelta
from typing import NoReturn

from sqlalchemy.engine import Engine
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import WorkerDeploymentVersion
from temporalio.envconfig import ClientConfig
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError
from temporalio.worker import Worker, WorkerDeploymentConfig

from activities.audit_db import AuditDbActivities
from activities.audit_git import AuditGitActivities
from activities.audit_repo import AuditRepo, init_repo
from activities.audit_trail import AuditTrail
from activities.catalog import Planner, PlanningActivities
from activities.db import make_engine, migrate_in_child
from activities.lint import LintActivities
from activities.locks import LockActivities
from activities.notify import NotifyActivities
from activities.playbook_cache import CatalogCache
from activities.playbooks import PlaybookActivities
from activities.rundirs import playbook_env, remove_stale_runs
from activities.signatures import SignatureActivities
from activities.sites import SiteActivities
from workers import logs, tracing
from workers.codec import data_converter_from_env
from workers.process import exit_now, until_terminated
from workers.sandbox import workflow_runner
from workers.settings import ConfigError, Settings
from workers.tracing import interceptors as tracing_interceptors
from workflows.analysis import FailureAnalysisWorkflow
from workflows.change_request import SEARCH_ATTRIBUTES, VERSIONING_BEHAVIOR, ChangeRequestWorkflow
from workflows.interceptors import SignoffInterceptor
from workflows.lock import TargetLockWorkflow
from workflows.metrics import BUCKETS
from workflows.names import playbook_queue

log = logging.getLogger("signoff.worker")

BOOKKEEPING_SLOTS = 8  # planning and audit writes: short, and mostly waiting on I/O
# On SIGTERM / Ctrl-C a running playbook may finish for this long before it is stopped (and
# then retried on another worker once its heartbeat times out).
SHUTDOWN_GRACE = timedelta(seconds=60)
DEFAULT_ADDRESS = "localhost:7233"


async def connect(address: str | None = None, metrics_address: str | None = None, *, tracing: bool = False) -> Client:
    """A client from TEMPORAL_* variables and the Temporal profile file (envconfig); its
    payloads are encrypted with SIGNOFF_PAYLOAD_KEYS_FILE's keys where that is set. With
    `metrics_address` (a worker's SIGNOFF_METRICS_ADDRESS), its runtime serves Prometheus
    `/metrics` there: the SDK's metrics and signoff's own (workflows.metrics). With `tracing`
    (a worker's, and `signoff dev`'s; the CLI's commands leave it off) and
    OTEL_EXPORTER_OTLP_ENDPOINT set, the client and the workers built on it export OpenTelemetry
    spans there (workers.tracing; call `workers.tracing.shutdown()` on the way out)."""
    config = ClientConfig.load_client_connect_config()
    if address:
        config["target_host"] = address
    config.setdefault("target_host", DEFAULT_ADDRESS)
    runtime = metrics_runtime(metrics_address) if metrics_address else None
    return await Client.connect(
        **config,
        data_converter=data_converter_from_env(),
        runtime=runtime,
        interceptors=tracing_interceptors() if tracing else [],
    )


def metrics_runtime(address: str) -> Runtime:
    prometheus = PrometheusConfig(bind_address=address, histogram_bucket_overrides=BUCKETS)
    return Runtime(telemetry=TelemetryConfig(metrics=prometheus))


async def ensure_search_attributes(client: Client) -> None:
    """Register signoff's search attributes where missing; warn where we may not."""
    service = client.operator_service
    existing = await service.list_search_attributes(ListSearchAttributesRequest(namespace=client.namespace))
    missing = {
        key.name: IndexedValueType.ValueType(key.indexed_value_type)
        for key in SEARCH_ATTRIBUTES
        if key.name not in existing.custom_attributes
    }
    if not missing:
        return
    try:
        await service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )
    except RPCError as err:
        raise RuntimeError(
            f"search attributes {', '.join(missing)} are not registered in namespace "
            f"{client.namespace!r} and registering them failed ({err.message}); ask an operator "
            "to run: temporal operator search-attribute create --name SignoffPhase --type Keyword "
            "(likewise SignoffRequester Keyword, SignoffServices KeywordList, SignoffApprovals Int, "
            "SignoffApprovalsNeeded Int, SignoffWaitingFor KeywordList)"
        ) from err


def build_workers(
    client: Client,
    settings: Settings,
    engine: Engine,
    executor: ThreadPoolExecutor,
    playbook_executor: ThreadPoolExecutor,
) -> list[Worker]:
    """Two pollers in one process. The task queue serves workflows and bookkeeping; playbooks
    run from their own queue (`<task queue>-playbooks`) with their own slots, so an audit write
    never waits behind Ansible, and at most `playbook_concurrency` of them run at once (Ansible
    is CPU-bound: more than the cores only makes each slower)."""
    planner = Planner(settings.playbook_dir, settings.inventory, CatalogCache(engine).load)
    planning = PlanningActivities(
        planner,
        settings.policy,
        settings.check_mode_preview,
        settings.playbook_timeouts,
        settings.budget,
        failure_analysis=settings.failure_analysis,
        notify=settings.notify_url is not None,
        breaker=settings.breaker,
    )
    lint = LintActivities(engine, settings.playbook_dir)
    audit_db = AuditDbActivities(engine)
    audit_git = AuditGitActivities(settings.audit_repo, settings.audit_remote)
    trail = AuditTrail(engine, AuditRepo(settings.audit_repo, settings.audit_remote))
    locks = LockActivities(client)
    sites = SiteActivities(client)
    signatures = SignatureActivities(settings.allowed_signers)
    notify = NotifyActivities(settings.notify_url, settings.notify_secret, settings.web_url)
    playbooks = PlaybookActivities(
        settings.playbook_dir,
        settings.inventory,
        playbook_env(os.environ, settings.playbook_env),
        record_tasks=audit_db.write_tasks,
    )
    main = Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[ChangeRequestWorkflow, TargetLockWorkflow, FailureAnalysisWorkflow],
        interceptors=[SignoffInterceptor()],
        workflow_runner=workflow_runner(),
        # Playbooks here too, only for requests scheduled before they had their own queue.
        activities=[
            planning.plan_change,
            trail.append,
            trail.finish,
            # Whole-status records, for requests started before the chained audit events.
            audit_db.record,
            audit_db.record_target_event,
            audit_git.commit_audit,
            locks.acquire_lock,
            locks.request_lock,
            locks.is_running,
            sites.has_worker,
            signatures.verify,
            notify.notify,
            playbooks.run_playbook,
        ],
        activity_executor=executor,
        max_concurrent_activities=BOOKKEEPING_SLOTS,
        max_cached_workflows=settings.workflow_cache,
        deployment_config=deployment_config(settings),
    )
    runner = Worker(
        client,
        task_queue=playbook_queue(settings.task_queue, settings.site),
        # ansible-lint of a failed step is CPU-bound for seconds, like a playbook: the same slots.
        activities=[playbooks.run_playbook, playbooks.preview_playbook, lint.analyze_failure],
        activity_executor=playbook_executor,
        max_concurrent_activities=settings.playbook_concurrency,
        # Heartbeats carry live playbook progress: send the latest at most a second late
        # instead of the default 80% of the heartbeat timeout.
        max_heartbeat_throttle_interval=timedelta(seconds=1),
        graceful_shutdown_timeout=SHUTDOWN_GRACE,
        deployment_config=deployment_config(settings),
    )
    # A site's worker (SIGNOFF_SITE) runs its site's playbooks only; workflows and bookkeeping
    # stay with the workers of the main task queue.
    return [runner] if settings.site else [main, runner]


def deployment_config(settings: Settings) -> WorkerDeploymentConfig | None:
    """With SIGNOFF_DEPLOYMENT_NAME and SIGNOFF_BUILD_ID, the worker is a version of a Temporal
    Worker Deployment: new requests go to the version an operator makes current, and each
    workflow type says whether its runs stay on their version or follow (README, rollouts)."""
    if settings.deployment is None:
        return None
    name, build = settings.deployment
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(name, build),
        use_worker_versioning=True,
        # ChangeRequestWorkflow's, and so the lock workflows' (they live as long as their target is
        # locked) and the failure analysis' (seconds long, and its code replays as well).
        default_versioning_behavior=VERSIONING_BEHAVIOR,
    )


@asynccontextmanager
async def running_worker(client: Client, settings: Settings) -> AsyncIterator[Worker]:
    """A started worker with its engine and thread pool; all closed on exit. Migrates the
    database and creates the audit repository first, where they are not there yet."""
    engine = make_engine(settings.require_database_url())
    executor = ThreadPoolExecutor(max_workers=BOOKKEEPING_SLOTS, thread_name_prefix="signoff-activity")
    playbook_executor = ThreadPoolExecutor(
        max_workers=settings.playbook_concurrency,
        thread_name_prefix="signoff-playbook",
        initializer=lower_priority,
        initargs=(settings.playbook_nice,),
    )
    try:
        await asyncio.to_thread(migrate_in_child, engine)
        if not settings.site:  # a site's worker commits no audit
            await asyncio.to_thread(init_repo, settings.audit_repo, settings.audit_remote)
        for stale in await asyncio.to_thread(remove_stale_runs):
            log.warning("removed %s, left by an Ansible run whose worker died", stale)
        workers = build_workers(client, settings, engine, executor, playbook_executor)
        async with AsyncExitStack() as running:
            for started in reversed(workers):  # the playbook poller first
                await running.enter_async_context(started)
            yield workers[0]
    finally:
        playbook_executor.shutdown(wait=True, cancel_futures=True)
        executor.shutdown(wait=True, cancel_futures=True)
        engine.dispose()


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Let glibc's malloc keep at most `arenas` arenas (as MALLOC_ARENA_MAX=2 would). By default
    every thread that allocates while another does may get an arena of its own, up to 8 per
    core, and freed memory stays in them: a worker's activity, SDK and gRPC threads then hold
    ~10 MiB more for nothing (bench/memory.py). A MALLOC_ARENA_MAX in the environment wins; on a
    libc without mallopt this does nothing."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    with suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, arenas)


M_ARENA_MAX = -8  # glibc's malloc.h


def lower_priority(nice: int) -> None:
    """Make the calling thread, and every process it starts, `nice` steps nicer. On Linux the
    nice value belongs to the thread, and a child inherits its parent thread's: Ansible then
    yields the cores to the worker's event loop and bookkeeping threads, which it would
    otherwise slow down as much as it slows itself."""
    if not nice:
        return
    thread = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + nice))
    except OSError as err:  # not Linux, or a sandbox that forbids it: run at the worker's priority
        log.warning("cannot lower the priority of playbook threads: %s", err)


def main() -> NoReturn:
    """`signoff worker`: run until SIGTERM or Ctrl-C; a configuration problem is one line on
    stderr and exit code 1."""
    try:
        logs.configure(logging.INFO, os.environ.get("SIGNOFF_LOG_FORMAT"))
        code = asyncio.run(until_terminated(run_worker(Settings.from_env()))) or 0
    except (ConfigError, RuntimeError) as err:  # settings; Temporal unreachable, search attributes
        print(f"error: {err}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    exit_now(code)


async def run_worker(settings: Settings, address: str | None = None) -> None:
    settings.require_database_url()
    limit_malloc_arenas()
    client = await connect(address, settings.metrics_address, tracing=True)
    try:
        await ensure_search_attributes(client)
        async with running_worker(client, settings):
            log.info(
                "worker polling task queue %r on %s", settings.task_queue, client.service_client.config.target_host
            )
            await asyncio.Event().wait()
    finally:
        await asyncio.to_thread(tracing.shutdown)  # export the spans still queued
