"""Audit write speed: git audit commits through `AuditRepo` (git plumbing) against the same files
committed with the git command line and with GitPython's index API.

Run from the repository root: `.venv/bin/python -m bench.audit`. Every figure is printed beside
its anchor measured in the same run, and their ratio; see bench/README.md.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import git
import psutil

from activities.audit_git import AuditGitActivities, audit_files
from activities.audit_repo import AuditRepo, init_repo
from bench.audit_db import database_figures
from bench.machine import machine
from workflows.runs import TaskRecord
from workflows.types import AuditRecord, ChangeRequestInput, ChangeRequestStatus, Phase, StepState, StepStatus

COMMITS = 240  # per way of committing and per mode, over ROUNDS rounds
ROUNDS = 3
THREADS = 8
TASKS = 3  # task files per commit, beside the request file
TARGET_MS = 25.0  # an audit commit, one thread, median
IDENTITY = {
    "GIT_AUTHOR_NAME": "signoff",
    "GIT_AUTHOR_EMAIL": "signoff@localhost",
    "GIT_COMMITTER_NAME": "signoff",
    "GIT_COMMITTER_EMAIL": "signoff@localhost",
}


# --- the workload ---------------------------------------------------------------------------


def record(n: int) -> AuditRecord:
    """A finished request of 3 steps with one task each, as commit_audit gets it."""
    wf_id = f"cr-bench-{n:05d}"
    tasks = [
        TaskRecord(f"{wf_id}.{step}.1.1", step, 1, 1, f"Step {step}", "Say it", "debug", "web1", "ok", "done", 0.2)
        for step in range(1, TASKS + 1)
    ]
    steps = [
        StepStatus(t.step, f"web-step{t.step}.yml", StepState.SUCCEEDED, 1, ok=1, task_ids=[t.task_id]) for t in tasks
    ]
    status = ChangeRequestStatus(
        workflow_id=wf_id,
        phase=Phase.SUCCEEDED,
        request=ChangeRequestInput(f"deploy, configure and update web{n}", "alice", vars={"version": n}),
        steps=steps,
    )
    return AuditRecord(status=status, tasks=tasks)


def message(rec: AuditRecord) -> str:
    request = rec.status.request.request if rec.status.request else ""
    return f"{rec.status.workflow_id}: {rec.status.phase}\n\n{request}\n"


# --- three ways to commit the same files ----------------------------------------------------


class Committer(Protocol):
    name: str

    def commit(self, files: Mapping[str, bytes], message: str) -> None: ...

    def close(self) -> None: ...


class Plumbing:
    """signoff: AuditRepo.commit (thread-safe itself). Times each git call it makes."""

    name = "AuditRepo.commit (git plumbing)"

    def __init__(self, path: Path) -> None:
        self.repo = TimedRepo(path)
        self.repo.ensure()
        self.repo.calls.clear()  # only the commits' calls

    def commit(self, files: Mapping[str, bytes], message: str) -> None:
        if not self.repo.commit(files, message).created:
            raise RuntimeError("nothing committed")

    def close(self) -> None:
        pass


class TimedRepo(AuditRepo):
    """AuditRepo that keeps how long each git call took."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.calls: dict[str, list[float]] = {}

    def _git(
        self,
        *args: str,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        network: bool = False,
    ) -> subprocess.CompletedProcess[bytes]:
        start = time.perf_counter()
        try:
            return super()._git(*args, input=input, env=env, check=check, network=network)
        finally:
            self.calls.setdefault(args[0], []).append(time.perf_counter() - start)


class GitCli:
    """Anchor: write the files into a checkout, `git add` and `git commit -q`. One commit at a
    time: two git commands cannot share one index."""

    name = "git add + git commit -q"

    def __init__(self, path: Path) -> None:
        self.path = plain_repo(path)
        self._lock = threading.Lock()

    def commit(self, files: Mapping[str, bytes], message: str) -> None:
        with self._lock:
            write_files(self.path, files)
            run(["git", "-C", str(self.path), "add", "--", *files])
            run(["git", "-C", str(self.path), "commit", "-q", "-F", "-"], message.encode())

    def close(self) -> None:
        pass


class GitPythonIndex:
    """Anchor: what signoff did before, `repo.index.add` + `repo.index.commit`, one Repo."""

    name = "GitPython repo.index.add + repo.index.commit"

    def __init__(self, path: Path) -> None:
        self.repo = git.Repo(plain_repo(path))
        self.actor = git.Actor("signoff", "signoff@localhost")
        self._lock = threading.Lock()

    def commit(self, files: Mapping[str, bytes], message: str) -> None:
        with self._lock:  # index.add changes the process's cwd: one at a time (GitPython #1052)
            write_files(Path(self.repo.working_dir), files)
            self.repo.index.add(list(files))
            self.repo.index.commit(message, author=self.actor, committer=self.actor)

    def close(self) -> None:
        self.repo.close()  # its persistent `git cat-file` processes


def plain_repo(path: Path) -> Path:
    run(["git", "init", "-q", "--initial-branch=main", str(path)])
    (path / "README.md").write_text("# signoff audit trail\n")
    run(["git", "-C", str(path), "add", "README.md"])
    run(["git", "-C", str(path), "commit", "-q", "-m", "signoff audit repository"])
    return path


def write_files(root: Path, files: Mapping[str, bytes]) -> None:
    for rel, content in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


def run(argv: list[str], input: bytes | None = None) -> None:
    subprocess.run(argv, input=input, check=True, capture_output=True, env={**os.environ, **IDENTITY})


# --- measuring ------------------------------------------------------------------------------


@dataclass
class Measured:
    serial: list[float]  # seconds per commit, one thread
    walls: list[float]  # seconds per round of COMMITS // ROUNDS commits from THREADS threads


def measure(
    makers: Sequence[Callable[[Path], Committer]], work: Path
) -> tuple[list[tuple[Committer, Measured]], list[float]]:
    """Each way gets a repository for one thread and one for THREADS threads, and the
    commit_audit activity one of its own. They take turns, round by round and in a rotating
    order, so a change in the machine's other load reaches all of them. Returns each way's
    times, and the activity's."""
    per_round = COMMITS // ROUNDS
    ways = [(make(work / f"serial{i}"), make(work / f"threads{i}"), Measured([], [])) for i, make in enumerate(makers)]
    init_repo(work / "activity")
    activities, activity = AuditGitActivities(work / "activity"), []
    for r in range(ROUNDS):
        records = [record(n) for n in range(r * per_round, (r + 1) * per_round)]
        for serial, threaded, measured in ways[r % len(ways) :] + ways[: r % len(ways)]:  # each goes first once
            for rec in records:
                files = audit_files(rec)
                start = time.perf_counter()
                serial.commit(files, message(rec))
                measured.serial.append(time.perf_counter() - start)
            batch = [(audit_files(rec), message(rec)) for rec in records]
            with ThreadPoolExecutor(THREADS) as pool:
                start = time.perf_counter()
                list(pool.map(threaded.commit, *zip(*batch, strict=True)))
                measured.walls.append(time.perf_counter() - start)
        for rec in records:
            start = time.perf_counter()
            activities.commit_audit(rec)  # JSON of the status and tasks, then AuditRepo.commit
            activity.append(time.perf_counter() - start)
    for serial, threaded, _ in ways:
        serial.close()
        threaded.close()
    return [(serial, measured) for serial, _, measured in ways], activity


# --- the report -----------------------------------------------------------------------------


def p90(xs: Sequence[float]) -> float:
    return statistics.quantiles(xs, n=10, method="inclusive")[-1] if len(xs) > 1 else xs[0]


def ms(xs: Sequence[float]) -> str:
    return f"{statistics.median(xs) * 1000:.1f} / {p90(xs) * 1000:.1f}"


def rate(measured: Measured) -> float:
    return COMMITS / sum(measured.walls)


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def table(results: list[tuple[Committer, Measured]], activity: list[float], leftover: int) -> str:
    (_, mine), *anchors = results
    median = statistics.median(mine.serial) * 1000
    rows = [
        "| figure | signoff | anchor | anchor value | ratio | target |",
        "|---|---|---|---|---|---|",
    ]
    for anchor, theirs in anchors:
        ratio = statistics.median(mine.serial) / statistics.median(theirs.serial)
        rows.append(
            f"| audit commit, 1 thread, ms median / p90 ({COMMITS} commits of {TASKS + 1} files) | {ms(mine.serial)} | "
            f"{anchor.name} | {ms(theirs.serial)} | {ratio:.2f}× | < {TARGET_MS:.0f} ms {verdict(median < TARGET_MS)} |"
        )
    for anchor, theirs in anchors:
        rows.append(
            f"| audit commits per second, {THREADS} threads ({COMMITS} commits) | {rate(mine):.1f} | {anchor.name}, "
            f"one at a time | {rate(theirs):.1f} | {rate(mine) / rate(theirs):.2f}× | |"
        )
    (cli_way, cli), activity_ms = anchors[0], statistics.median(activity) * 1000
    rows.append(
        f"| commit_audit activity (JSON + commit), 1 thread, ms median / p90 ({COMMITS} calls) | {ms(activity)} | "
        f"{cli_way.name} | {ms(cli.serial)} | {statistics.median(activity) / statistics.median(cli.serial):.2f}× | "
        f"< {TARGET_MS:.0f} ms {verdict(activity_ms < TARGET_MS)} |"
    )
    rows.append(f"| git processes left over after all runs | {leftover} | | | | 0 {verdict(leftover == 0)} |")
    return "\n".join(rows)


def breakdown(calls: Mapping[str, list[float]]) -> Iterable[str]:
    """signoff's commit, git call by call, in order."""
    yield "AuditRepo.commit, each git call (median / p90 ms):"
    for name, times in calls.items():
        yield f"  {name:<28} {ms(times)}  ({len(times)} calls)"


def main() -> None:
    print(machine())
    print(f"git {subprocess.run(['git', '--version'], capture_output=True, text=True).stdout.split()[-1]}")
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="signoff-bench-") as tmp:
        work = Path(tmp)
        results, activity = measure([Plumbing, GitCli, GitPythonIndex], work)
        leftover = len([p for p in psutil.Process().children(recursive=True) if p.name() == "git"])
        extra = database_figures(work)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    plumbing = results[0][0]
    assert isinstance(plumbing, Plumbing)
    print("\n".join(breakdown(plumbing.repo.calls)))
    print(table(results, activity, leftover))
    if extra:
        print("\n".join(extra))


if __name__ == "__main__":
    main()
