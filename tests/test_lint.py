"""Failure analysis with the real ansible-lint: suggestions stored once, listed, and accepted
(ansible-lint's own fix on a branch of a real git playbook repository, or in place), or
acknowledged; through the functions and through `signoff suggestions`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker
from typer.testing import CliRunner

import activities.lint as lint
from activities.db import LintSuggestionRow, make_engine
from activities.lint import (
    AUTOFIX,
    Category,
    LintActivities,
    PathRefused,
    SuggestionState,
    lint_env,
    lint_playbook,
    list_suggestions,
)
from activities.lint_fix import SuggestionError, accept_suggestion
from tests.conftest import with_policy
from tests.helpers import assert_eventually, db_rows, start_request, wait_for_phase
from workers import cli
from workers.worker import running_worker
from workflows.analysis import FailureAnalysisWorkflow, analysis_workflow_id
from workflows.change_request import ChangeRequestWorkflow
from workflows.names import playbook_queue
from workflows.runs import AnalyzeFailureInput
from workflows.types import DecideInput, ErrorType, Phase

FIXTURE = Path(__file__).parent / "fixtures" / "lint" / "findings"
EXPECTED = {
    ("no-changed-when", Category.IDEMPOTENCY, 7, False),
    ("fqcn[action-core]", Category.STYLE, 8, True),
    ("risky-shell-pipe", Category.ERROR_HANDLING, 10, False),
    ("risky-file-permissions", Category.SECURITY, 14, False),
    ("deprecated-local-action", Category.DEPRECATED, 19, True),
}


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=Tess", "-c", "user.email=tess@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def failure(workflow_id: str = "cr-lint-1", playbook: str = "site.yml") -> AnalyzeFailureInput:
    return AnalyzeFailureInput(
        workflow_id=workflow_id, step=1, attempt=2, task_id=f"{workflow_id}.1.2.1", playbook=playbook
    )


def analyze(engine: Engine, playbooks: Path, inp: AnalyzeFailureInput | None = None) -> int:
    count: int = ActivityEnvironment().run(LintActivities(engine, playbooks).analyze_failure, inp or failure())
    return count


def by_rule(engine: Engine, rule: str, workflow_id: str = "cr-lint-1") -> lint.Suggestion:
    [found] = [s for s in list_suggestions(engine, workflow_id) if s.rule == rule]
    return found


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    made = make_engine(database_url)
    yield made
    made.dispose()


@pytest.fixture
def playbooks(tmp_path: Path) -> Path:
    """The fixture playbooks in a directory that is in no git repository."""
    path = tmp_path / "plain"
    shutil.copytree(FIXTURE, path)
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with the playbooks in `ops/`, the user on their own branch `work`
    with a change they have not committed."""
    top = tmp_path / "repo"
    shutil.copytree(FIXTURE, top / "ops")
    git(top, "init", "--quiet", "--initial-branch", "main")
    git(top, "add", "--all")
    git(top, "commit", "--quiet", "--message", "playbooks")
    git(top, "switch", "--quiet", "--create", "work")
    (top / "ops" / "notes.txt").write_text("work in progress\n")
    return top


@pytest.mark.slow
def test_findings_are_categorised_and_stored_once(engine: Engine, repo: Path) -> None:
    playbooks = repo / "ops"

    first = analyze(engine, playbooks)
    again = analyze(engine, playbooks)

    assert first == again == len(EXPECTED)
    found = list_suggestions(engine, "cr-lint-1")
    assert {(s.rule, s.category, s.line, s.fixable) for s in found} == EXPECTED
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(LintSuggestionRow)).scalar_one() == len(EXPECTED)
    assert {(s.step, s.attempt, s.task_id, s.playbook, s.path, s.state) for s in found} == {
        (1, 2, "cr-lint-1.1.2.1", "site.yml", "site.yml", SuggestionState.OPEN)
    }
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == "?? ops/notes.txt", "linting writes nothing"
    assert list_suggestions(engine, "cr-other") == []
    assert len(list_suggestions(engine)) == len(EXPECTED)


def test_a_playbook_outside_the_playbook_dir_is_refused(engine: Engine, playbooks: Path, tmp_path: Path) -> None:
    (tmp_path / "outside.yml").write_text("- hosts: all\n")
    (playbooks / "link.yml").symlink_to(tmp_path / "outside.yml")

    for escape in ("../outside.yml", str(tmp_path / "outside.yml"), "link.yml", "missing.yml"):
        with pytest.raises(PathRefused):
            lint_playbook(playbooks, escape)
    with pytest.raises(ApplicationError) as refused:
        analyze(engine, playbooks, failure(playbook="../outside.yml"))
    assert refused.value.type == ErrorType.INVALID_INPUT
    assert refused.value.non_retryable


def test_ansible_lint_runs_without_the_workers_secrets(
    engine: Engine, playbooks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGNOFF_DATABASE_URL", "postgresql+psycopg://signoff:hunter2@db/signoff")
    monkeypatch.setenv("TEMPORAL_API_KEY", "secret")
    (playbooks / "ansible.cfg").write_text("[defaults]\n")
    monkeypatch.setenv("ANSIBLE_CONFIG", str(playbooks / "ansible.cfg"))
    seen: list[dict[str, str]] = []
    real_popen = subprocess.Popen

    def spy(*args: Any, **kwargs: Any) -> Any:
        proc = real_popen(*args, **kwargs)
        seen.append(psutil.Process(proc.pid).environ())  # what the running ansible-lint really has
        return proc

    monkeypatch.setattr(lint.subprocess, "Popen", spy)
    assert analyze(engine, playbooks) == len(EXPECTED)

    [env] = seen
    assert "SIGNOFF_DATABASE_URL" not in env
    assert "TEMPORAL_API_KEY" not in env
    assert env["ANSIBLE_CONFIG"] == str(playbooks / "ansible.cfg"), "the operator's Ansible settings pass"


def test_lint_env_keeps_only_the_basics() -> None:
    env = lint_env(
        {
            "SIGNOFF_DATABASE_URL": "postgresql+psycopg://u:p@db/x",
            "TEMPORAL_TLS_CLIENT_KEY_DATA": "key",
            "AWS_SECRET_ACCESS_KEY": "aws",
            "PATH": "/usr/bin",
            "HOME": "/home/w",
            "ANSIBLE_ROLES_PATH": "/roles",
        }
    )

    assert env["PATH"].split(os.pathsep) == [str(Path(sys.executable).parent), "/usr/bin"]
    assert env["HOME"] == "/home/w"
    assert env["ANSIBLE_ROLES_PATH"] == "/roles"
    assert env["NO_COLOR"] == "1"
    assert not any(k.startswith(("SIGNOFF_", "TEMPORAL_", "AWS_")) for k in env)


@pytest.mark.slow
def test_accepting_a_fixable_suggestion_commits_the_fix_on_a_branch(engine: Engine, repo: Path) -> None:
    playbooks = repo / "ops"
    # A workflow id may hold anything; in the commit message it must not forge a trailer.
    workflow_id = "cr-lint-1\nAccepted-by: mallory"
    analyze(engine, playbooks, failure(workflow_id))
    fqcn = by_rule(engine, "fqcn[action-core]", workflow_id)
    head = git(repo, "rev-parse", "HEAD")

    result = accept_suggestion(engine, playbooks, fqcn.id[:12], "Alice")

    assert result.state == SuggestionState.ACCEPTED
    assert result.branch == f"signoff/lint-{fqcn.id}"
    assert re.fullmatch(r"[0-9a-f]{40}", result.fix_commit or "")
    # The user's checkout, branch and uncommitted work are as they were, and no worktree is left.
    assert git(repo, "branch", "--show-current") == "work"
    assert git(repo, "rev-parse", "HEAD") == head
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == "?? ops/notes.txt"
    assert "command: echo hi" in (playbooks / "site.yml").read_text()
    assert len(git(repo, "worktree", "list", "--porcelain").split("\n\n")) == 1
    # One commit on top of HEAD, fixing exactly that.
    assert git(repo, "rev-list", f"{head}..{result.branch}").splitlines() == [result.fix_commit]
    diff = git(repo, "diff", "--unified=0", head, result.branch)
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == ["-      command: echo hi", "+      ansible.builtin.command: echo hi"]
    message = git(repo, "log", "-1", "--format=%B", result.branch)
    assert message.splitlines()[0] == "ansible-lint: fix fqcn[action-core] in ops/site.yml"
    assert git(repo, "log", "-1", "--format=%(trailers:only,unfold)", result.branch).splitlines() == [
        f"Suggestion: {fqcn.id}",
        "Change-request: cr-lint-1 Accepted-by: mallory",
        "Accepted-by: alice",
    ]
    assert [line for line in message.splitlines() if line.startswith("Accepted-by:")] == ["Accepted-by: alice"]

    decided = by_rule(engine, "fqcn[action-core]", workflow_id)
    assert (decided.state, decided.decided_by, decided.branch, decided.fix_commit) == (
        SuggestionState.ACCEPTED,
        "alice",
        result.branch,
        result.fix_commit,
    )
    assert decided.decided_at is not None
    with pytest.raises(SuggestionError, match="already accepted"):
        accept_suggestion(engine, playbooks, fqcn.id, "bob")


@pytest.mark.slow
def test_a_fix_without_git_is_applied_in_place_and_a_fix_that_changes_nothing_is_not_accepted(
    engine: Engine, playbooks: Path
) -> None:
    analyze(engine, playbooks)
    site = playbooks / "site.yml"
    # The finding was fixed by hand since: ansible-lint has nothing left to fix.
    site.write_text(site.read_text().replace("      command: echo hi", "      ansible.builtin.command: echo hi"))
    fqcn = by_rule(engine, "fqcn[action-core]")

    unchanged = accept_suggestion(engine, playbooks, fqcn.id, "alice")

    assert unchanged.state == SuggestionState.OPEN
    assert "nothing to fix" in unchanged.message
    assert by_rule(engine, "fqcn[action-core]").state == SuggestionState.OPEN

    local = by_rule(engine, "deprecated-local-action")
    accepted = accept_suggestion(engine, playbooks, local.id, "alice")

    assert accepted.state == SuggestionState.ACCEPTED
    assert (accepted.branch, accepted.fix_commit, accepted.path) == (None, None, site.resolve())
    text = site.read_text()
    assert "local_action" not in text
    assert "delegate_to: localhost" in text
    assert sorted(p.name for p in playbooks.iterdir()) == ["site.yml"], "no scratch files left behind"
    row = by_rule(engine, "deprecated-local-action")
    assert (row.state, row.decided_by, row.branch) == (SuggestionState.ACCEPTED, "alice", None)


@pytest.mark.slow
def test_cli_lists_acknowledges_and_refuses(engine: Engine, database_url: str, repo: Path, tmp_path: Path) -> None:
    playbooks = repo / "ops"
    analyze(engine, playbooks)
    runner = CliRunner()
    env = {
        "SIGNOFF_DATABASE_URL": database_url,
        "SIGNOFF_PLAYBOOK_DIR": str(playbooks),
        "SIGNOFF_DATA_DIR": str(tmp_path / "data"),
    }

    listed = runner.invoke(cli.app, ["suggestions", "cr-lint-1"], env=env)
    assert listed.exit_code == 0, listed.output
    pipe = by_rule(engine, "no-changed-when")
    assert re.search(rf"^  {pipe.id[:12]}  open +idempotency +no-changed-when +site\.yml:7$", listed.stdout, re.M)
    assert "cr-lint-1  step 1, attempt 2: site.yml  (task cr-lint-1.1.2.1)" in listed.stdout.splitlines()

    as_json = runner.invoke(cli.app, ["suggestions", "--json"], env=env)
    assert as_json.exit_code == 0, as_json.output
    rows = json.loads(as_json.stdout)
    assert {(r["rule"], r["category"], r["line"], r["fixable"]) for r in rows} == EXPECTED
    assert all(r["guidance"].endswith(f"/rules/{r['rule'].split('[')[0]}/") for r in rows)

    acknowledged = runner.invoke(cli.app, ["suggestions", "accept", pipe.id, "--as", "Bob"], env=env)
    assert acknowledged.exit_code == 0, acknowledged.output
    assert acknowledged.stdout.startswith(f"acknowledged {pipe.id}: ansible-lint has no automatic fix")
    assert "https://docs.ansible.com/projects/lint/rules/no-changed-when/" in acknowledged.stdout
    row = by_rule(engine, "no-changed-when")
    assert (row.state, row.decided_by, row.branch) == (SuggestionState.ACKNOWLEDGED, "bob", None)

    again = runner.invoke(cli.app, ["suggestions", "accept", pipe.id, "--as", "bob"], env=env)
    assert again.exit_code == 1
    assert "is already acknowledged (by bob" in again.stderr

    unknown = runner.invoke(cli.app, ["suggestions", "accept", "0123456789abcdef", "--as", "bob"], env=env)
    assert unknown.exit_code == 1
    assert "no suggestion 0123456789abcdef" in unknown.stderr

    for bad_id in ("--oops", "../../etc"):
        refused = runner.invoke(cli.app, ["suggestions", "accept", "--as", "bob", "--", bad_id], env=env)
        assert refused.exit_code == 1
        assert "is not a suggestion id" in refused.stderr

    nobody = runner.invoke(cli.app, ["suggestions", "cr-nonexistent"], env=env)
    assert nobody.exit_code == 1
    assert "no change request 'cr-nonexistent'" in nobody.stderr
    assert git(repo, "branch", "--list", "signoff/*") == ""


def test_autofix_table_matches_the_installed_ansible_lint() -> None:
    """ansible-lint -L tags `autofix` exactly the rules that implement TransformMixin."""
    listing = subprocess.run(
        [sys.executable, "-m", "ansiblelint", "--offline", "--nocolor", "-L", "-f", "md"],
        env={**lint_env(os.environ), "COLUMNS": "500"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    autofix, rule = set(), None
    for line in listing.splitlines():
        if started := re.match(r"^- (\S+) ", line):
            rule = started.group(1)
        elif line.strip().startswith("tags:") and "autofix" in line.split("tags:")[1].split()[0].split(","):
            autofix.add(rule)

    assert autofix == set(AUTOFIX)


@pytest.mark.slow
async def test_failure_analysis_workflow_runs_the_activity_on_the_playbook_queue(
    env: WorkflowEnvironment, engine: Engine, playbooks: Path
) -> None:
    queue = f"lint-{uuid.uuid4()}"
    inp = failure("cr-lint-wf")
    with ThreadPoolExecutor(max_workers=2) as pool:
        async with (
            Worker(env.client, task_queue=queue, workflows=[FailureAnalysisWorkflow]),
            Worker(
                env.client,
                task_queue=playbook_queue(queue),
                activities=[LintActivities(engine, playbooks).analyze_failure],
                activity_executor=pool,
            ),
        ):
            count = await env.client.execute_workflow(
                FailureAnalysisWorkflow.run, inp, id=analysis_workflow_id(inp), task_queue=queue
            )

    assert count == len(EXPECTED)
    assert {s.rule for s in list_suggestions(engine, "cr-lint-wf")} == {rule for rule, *_ in EXPECTED}


SLOPPY = """\
# signoff:
#   service: sloppy
#   action: deploy
#   risk: low
- name: Deploy sloppy
  hosts: local
  gather_facts: false
  tasks:
    - name: Check something the sloppy way
      ansible.builtin.shell: cat /etc/hostname | grep -q never-there
"""


async def test_a_failed_step_is_analysed_while_the_operator_decides(
    env: WorkflowEnvironment, settings: Any, database_url: str
) -> None:
    """The request's own failure starts the analysis; its suggestions name the failed task."""
    (settings.playbook_dir / "sloppy-deploy.yml").write_text(SLOPPY)
    settings = with_policy(replace(settings, failure_analysis=True), auto_approve_risk="low")
    async with running_worker(env.client, settings):
        handle = await start_request(env, settings, "Deploy sloppy")
        waiting = await wait_for_phase(handle, Phase.AWAITING_DECISION)

        async def suggested() -> list[dict[str, Any]]:
            rows = db_rows(database_url, "SELECT rule, category, task_id, step FROM lint_suggestions "
                           "WHERE change_request_id = :id", id=handle.id)  # fmt: skip
            assert rows
            return rows

        rows = await assert_eventually(suggested)
        await handle.signal(ChangeRequestWorkflow.decide, DecideInput(operator="bob", action="abort"))
        assert (await handle.result()).outcome == Phase.FAILED

    assert waiting.steps[0].failure_class == "task_failed"
    [failed_task] = db_rows(database_url, "SELECT task_id FROM tasks WHERE change_request_id = :id AND status = "
                            "'failed'", id=handle.id)  # fmt: skip
    assert {(r["rule"], r["category"]) for r in rows} >= {("risky-shell-pipe", "error handling")}
    assert {(r["task_id"], r["step"]) for r in rows} == {(failed_task["task_id"], 1)}
