"""What metrics and tracing cost on the execution benchmark (issue 11): bench/execute.py's 8 change
requests of 3 playbook steps, with Prometheus metrics (SIGNOFF_METRICS_ADDRESS) and OpenTelemetry
tracing (OTEL_EXPORTER_OTLP_ENDPOINT) both on, against both off, in one run.

Run from the repository root: `.venv/bin/python -m bench.observability [--pairs N]`. See
bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import tempfile
import threading
import urllib.request
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from temporalio.client import Client

from bench.execute import (
    ACTIONS,
    REQUESTS,
    Cpu,
    SignoffRun,
    check_plans,
    cpu_now,
    run_signoff,
    signoff_stack,
    verdict,
    write_inventory,
    write_playbooks,
)
from bench.machine import machine
from workers import tracing
from workers.devstack import free_port
from workers.settings import Settings
from workers.worker import connect, running_worker

TARGET_RATIO = 1.02
SERVICE = "signoff-bench"


class Receiver:
    """An OTLP/HTTP receiver that answers every export at once and keeps the bodies, unread until
    the end (decoding them here would charge the collector's work to the worker)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                bodies.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="otlp-receiver", daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def spans(self) -> int:
        count = 0
        for body in self.bodies:
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            count += sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
        return count

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclasses.dataclass(frozen=True)
class Round:
    on: bool
    run: SignoffRun


def order(pairs: int) -> list[bool]:
    """off, on, on, off, off, on, ...: each setting as often first as second, so a drift in the
    machine's other load over the run weighs on both alike."""
    return [on for i in range(pairs) for on in ((False, True) if i % 2 == 0 else (True, False))]


async def one_round(
    driver: Client, worker: Client, settings: Settings, out_dir: Path, label: str, on: bool, cpu: Any
) -> SignoffRun:
    """A worker on `worker`'s connection and a task queue of its own, one warm-up request, then
    the batch. The requests are started, queried and approved on `driver`, which never traces,
    as the CLI's commands and `temporal` do not: their runs get a trace of their own."""
    settings = dataclasses.replace(settings, task_queue=f"{settings.task_queue}-{label}")
    async with running_worker(worker, settings):
        await run_signoff(driver, settings, out_dir, f"warm-{label}", 1, cpu)
        batch = await run_signoff(driver, settings, out_dir, label, REQUESTS, cpu)
    if on:  # what is still queued goes now, not into the next round's time
        await asyncio.to_thread(tracing.flush)
    return batch


def scrape(address: str) -> tuple[int, float]:
    """Samples served on /metrics, and signoff_requests_total{phase="succeeded"} among them."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as answer:
        lines = [ln for ln in answer.read().decode().splitlines() if ln and not ln.startswith("#")]
    succeeded = sum(
        float(ln.rsplit(" ", 1)[1])
        for ln in lines
        if ln.startswith("signoff_requests_total{") and 'phase="succeeded"' in ln
    )
    return len(lines), succeeded


def mean(xs: Sequence[float]) -> float:
    return statistics.mean(xs)


def table(rounds: Sequence[Round], spans: int, exports: int, samples: int, succeeded: float) -> str:
    on = [r.run for r in rounds if r.on]
    off = [r.run for r in rounds if not r.on]
    wall_on, wall_off = mean([r.wall for r in on]), mean([r.wall for r in off])
    ratio = wall_on / wall_off

    def each(runs: Sequence[SignoffRun], part: str) -> str:
        return " / ".join(f"{getattr(r.cpu, part) if part else r.wall:.2f}" for r in runs)

    def cpu(runs: Sequence[SignoffRun], part: str) -> float:
        return mean([getattr(r.cpu, part) for r in runs])

    n = len(on)
    work = f"{REQUESTS} requests × {len(ACTIONS)} steps"
    anchor = f"metrics and tracing off, same run, mean of {len(off)}"
    rows = [
        "| figure | both on | anchor | anchor value | ratio | target |",
        "|---|---|---|---|---|---|",
        f"| wall time, {work}, approve all → all results, mean of {n} | {wall_on:.2f} s ({each(on, '')}) | "
        f"{anchor} | {wall_off:.2f} s ({each(off, '')}) | {ratio:.3f}× | "
        f"< {TARGET_RATIO} {verdict(ratio < TARGET_RATIO)} |",
    ]
    pairs = [rounds[i : i + 2] for i in range(0, len(rounds) - 1, 2)]
    paired = [next(r.run.wall for r in p if r.on) / next(r.run.wall for r in p if not r.on) for p in pairs]
    rows.append(
        f"| wall time ratio per pair of neighbouring rounds, median | {statistics.median(paired):.3f}× "
        f"({' / '.join(f'{x:.3f}' for x in paired)}) | | | | |"
    )
    for part, doc in (
        ("worker", "this process: worker, SDK, OTLP receiver thread"),
        ("children", "Ansible, git"),
        ("temporal", "dev server"),
    ):
        rows.append(
            f"| CPU s, {doc}, mean of {n} | {cpu(on, part):.2f} ({each(on, part)}) | {anchor} | "
            f"{cpu(off, part):.2f} ({each(off, part)}) | {cpu(on, part) / cpu(off, part):.3f}× | |"
        )
    requests = n * (REQUESTS + 1)
    rows += [
        f"| spans received by the OTLP receiver (all rounds with tracing, warm-ups included) | "
        f"{spans} in {exports} exports, {spans / requests:.0f} per request | | | | |",
        f"| Prometheus /metrics scraped at the end | {samples} samples, "
        f'signoff_requests_total{{phase="succeeded"}} {succeeded:.0f} | | | | |',
    ]
    return "\n".join(rows)


async def main(pairs: int) -> None:
    print(machine())
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    receiver = Receiver()
    os.environ.update(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_SERVICE_NAME": SERVICE}
    )  # read by workers.tracing when the traced client connects
    metrics_address = f"127.0.0.1:{free_port()}"
    rounds: list[Round] = []
    with tempfile.TemporaryDirectory(prefix="signoff-bench-") as tmp:
        work = Path(tmp)
        out_dir = work / "out"
        out_dir.mkdir()
        write_playbooks(work / "playbooks")
        check_plans(work / "playbooks", write_inventory(work / "inventory" / "hosts.yml", out_dir))
        env, postgres, settings = await signoff_stack(work)

        def cpu() -> Cpu:
            return cpu_now(work / "pgdata")

        try:
            address = env.client.service_client.config.target_host
            driver, off = await connect(address), await connect(address)
            on = await connect(address, metrics_address, tracing=True)
            if not on.config()["interceptors"]:
                raise RuntimeError("the worker's client does not trace")
            counts = {True: 0, False: 0}
            for traced in order(pairs):
                counts[traced] += 1
                label = f"{'on' if traced else 'off'}{counts[traced]}"
                run = await one_round(driver, on if traced else off, settings, out_dir, label, traced, cpu)
                print(f"{label}: {run.wall:.2f} s", flush=True)
                rounds.append(Round(traced, run))
            samples, succeeded = await asyncio.to_thread(scrape, metrics_address)
            await asyncio.to_thread(tracing.shutdown)
        finally:
            await env.shutdown()
            postgres.stop()
            receiver.close()
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    print(table(rounds, receiver.spans(), len(receiver.bodies), samples, succeeded))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=2, help="rounds of each setting (default 2: off, on, on, off)")
    asyncio.run(main(parser.parse_args().pairs))
