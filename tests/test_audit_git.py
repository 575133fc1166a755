"""The git audit store (activities/audit_git.py) against real repositories in tmp_path:
commits hold only their own files, many threads and processes share one repository, clones
share one remote, and nothing from a request can become a git option or leave .audit/."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.synchronize import Barrier as BarrierType
from pathlib import Path

import psutil
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.audit_git import AuditGitActivities
from activities.audit_paths import safe_name
from activities.audit_repo import AuditRepo, init_repo
from workflows.runs import TaskRecord
from workflows.types import AuditRecord, ChangeRequestStatus, ErrorType, Phase

COMMITS, THREADS, PROCESSES = 500, 8, 4


def git(git_dir: Path, *args: str, input: bytes | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        ["git", f"--git-dir={git_dir}", *args],
        input=input,
        capture_output=True,
        check=True,
        env={**os.environ, **(env or {})},
    )
    return proc.stdout.decode().strip()


def tree_paths(git_dir: Path, rev: str = "main") -> list[str]:
    return git(git_dir, "ls-tree", "-r", "--name-only", rev).splitlines()


def changed_paths(git_dir: Path, sha: str) -> list[str]:
    return sorted(git(git_dir, "show", "--name-only", "--format=", sha).splitlines())


def git_children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if p.name() == "git"]


@pytest.fixture
def repo(tmp_path: Path) -> AuditRepo:
    made = AuditRepo(tmp_path / "audit")
    made.ensure()
    return made


def test_a_commit_holds_only_its_own_files(repo: AuditRepo) -> None:
    first = repo.commit({".audit/requests/a.json": b"a\n", ".audit/tasks/a.1.json": b"t\n"}, "a: succeeded\n")
    second = repo.commit({".audit/requests/b.json": b"b\n"}, "b: succeeded\n")

    assert (first.created, second.created) == (True, True)
    assert changed_paths(repo.path, first.sha) == [".audit/requests/a.json", ".audit/tasks/a.1.json"]
    assert changed_paths(repo.path, second.sha) == [".audit/requests/b.json"]
    assert git(repo.path, "rev-parse", "main^") == first.sha
    assert git(repo.path, "show", "HEAD:.audit/requests/a.json") == "a"
    assert git(repo.path, "log", "-1", "--format=%an <%ae> %cn <%ce> %s", second.sha) == (
        "signoff <signoff@localhost> signoff <signoff@localhost> b: succeeded"
    )
    assert repo.read(".audit/requests/b.json") == b"b\n"
    assert repo.read(".audit/requests/a.json", first.sha) == b"a\n"
    assert repo.read(".audit/requests/b.json", first.sha) is None
    assert repo.read(".audit/requests") is None, "a directory is not a file"
    assert repo.history(".audit/requests/a.json") == [first.sha]


def test_files_staged_in_an_existing_checkout_stay_out(tmp_path: Path) -> None:
    """A checkout made by `git init` (compose, systemd) keeps working; what someone staged
    there is not ours to commit."""
    checkout = tmp_path / "audit"
    subprocess.run(["git", "init", "-q", "--initial-branch=main", str(checkout)], check=True)
    init_repo(checkout)
    (checkout / "notes.txt").write_text("staged by someone else\n")
    git(checkout / ".git", f"--work-tree={checkout}", "add", "notes.txt")

    made = AuditRepo(checkout).commit({".audit/requests/a.json": b"a\n"}, "a\n")

    assert changed_paths(checkout / ".git", made.sha) == [".audit/requests/a.json"]
    assert tree_paths(checkout / ".git") == [".audit/requests/a.json", "README.md"]


def test_unchanged_content_makes_no_commit(repo: AuditRepo) -> None:
    files = {".audit/requests/a.json": b"a\n", ".audit/tasks/a.1.json": b"t\n"}
    first = repo.commit(files, "a\n")
    other = repo.commit({".audit/requests/b.json": b"b\n"}, "b\n")

    again = repo.commit(files, "a, retried\n")

    assert (again.sha, again.created) == (first.sha, False), "the last commit of the first path"
    assert git(repo.path, "rev-parse", "main") == other.sha, "no new commit"


@pytest.mark.slow
def test_500_commits_from_8_threads_all_land(repo: AuditRepo) -> None:
    cwd = os.getcwd()
    seen_cwds: set[str] = set()

    def one(n: int) -> str:
        seen_cwds.add(os.getcwd())  # another thread is in the middle of a commit now
        files = {f".audit/requests/r{n}.json": f"{n}\n".encode(), f".audit/tasks/r{n}.1.json": b"task\n"}
        made = repo.commit(files, f"r{n}\n")
        seen_cwds.add(os.getcwd())
        assert made.created
        return made.sha

    with ThreadPoolExecutor(THREADS) as pool:
        shas = list(pool.map(one, range(COMMITS)))

    assert len(set(shas)) == COMMITS
    requests = [p for p in tree_paths(repo.path) if p.startswith(".audit/requests/")]
    assert len(requests) == COMMITS
    assert int(git(repo.path, "rev-list", "--count", "main")) == COMMITS + 1
    assert sorted(changed_paths(repo.path, shas[7])) == [".audit/requests/r7.json", ".audit/tasks/r7.1.json"]
    assert git_children() == []
    assert seen_cwds == {cwd}
    assert os.getcwd() == cwd


def ensure_in_child(path: str, ready: BarrierType) -> None:
    """Run in a spawned process: all of them call ensure() at the same moment."""
    ready.wait(timeout=60)
    AuditRepo(Path(path)).ensure()


def test_ensure_from_4_processes_at_once_makes_one_repository(tmp_path: Path) -> None:
    path = tmp_path / "new" / "audit"
    spawn = multiprocessing.get_context("spawn")
    ready = spawn.Barrier(PROCESSES)
    children = [spawn.Process(target=ensure_in_child, args=(str(path), ready)) for _ in range(PROCESSES)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)

    assert [c.exitcode for c in children] == [0] * PROCESSES
    assert git(path, "rev-list", "--max-parents=0", "main").split() == [git(path, "rev-parse", "main")]
    assert git(path, "rev-parse", "--is-bare-repository") == "true"
    assert git(path, "show", "HEAD:README.md").startswith("# signoff audit trail")


def test_a_relative_path_does_not_depend_on_the_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    repo = AuditRepo(Path("audit"))
    monkeypatch.chdir("/")

    repo.ensure()

    assert repo.path == tmp_path / "audit"
    assert (tmp_path / "audit" / "HEAD").is_file()


def test_ensure_leaves_a_directory_of_other_files_alone(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not an audit repository\n")
    with pytest.raises(FileExistsError):
        AuditRepo(tmp_path).ensure()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "signoff-audit.lock"]


def test_two_clones_of_one_remote_both_push(tmp_path: Path) -> None:
    remote = tmp_path / "shared.git"
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(remote)], check=True)
    first = AuditRepo(tmp_path / "worker1", str(remote))
    first.ensure()  # the remote is empty: a first commit, pushed
    second = AuditRepo(tmp_path / "worker2", str(remote))
    second.ensure()  # a clone of it

    one = first.commit({".audit/requests/one.json": b"1\n", ".audit/requests/both.json": b"first\n"}, "one\n")
    two = second.commit({".audit/requests/two.json": b"2\n", ".audit/requests/both.json": b"second\n"}, "two\n")
    first.push()
    second.push()  # rejected, merged, pushed again

    assert tree_paths(remote) == [
        ".audit/requests/both.json",
        ".audit/requests/one.json",
        ".audit/requests/two.json",
        "README.md",
    ]
    assert git(remote, "show", "main:.audit/requests/both.json") == "second", "a path on both sides: ours"
    assert git(remote, "rev-parse", "main^1", "main^2").split() == [two.sha, one.sha]
    assert len(git(remote, "rev-list", "--max-parents=0", "main").split()) == 1
    first.push()  # nothing to push: first's main is behind, not ahead
    assert git(remote, "rev-parse", "main") == git(second.path, "rev-parse", "main")


def test_a_repository_made_before_the_remote_joins_it(tmp_path: Path) -> None:
    remote = tmp_path / "shared.git"
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(remote)], check=True)
    AuditRepo(tmp_path / "worker1", str(remote)).ensure()
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(tmp_path / "worker2")], check=True)
    AuditRepo(tmp_path / "worker2").commit({".audit/requests/early.json": b"early\n"}, "early\n")  # a root of its own

    joined = AuditRepo(tmp_path / "worker2", str(remote))
    joined.ensure()  # pushes: unrelated histories are merged

    assert tree_paths(remote) == [".audit/requests/early.json", "README.md"]
    assert len(git(remote, "rev-list", "--max-parents=0", "main").split()) == 2, "unrelated histories, merged"


@pytest.mark.parametrize(
    "path",
    [
        "../x",
        ".audit/../../x",
        "-x",
        "/etc/passwd",
        ".audit/a\nb",
        ".audit",
        ".audit/",
        ".audit//x",
        ".audit/./x",
        ".audit/-x",
        ".audit/.git/config",
        ".audit/a\x7fb",
        ".audit/a\\b",
        "README.md",
        "x/.audit/y",
    ],
)
def test_hostile_paths_are_refused(repo: AuditRepo, path: str) -> None:
    before = git(repo.path, "rev-parse", "main")
    with pytest.raises(ValueError, match="audit path"):
        repo.commit({path: b"x\n"}, "hostile\n")
    with pytest.raises(ValueError, match="audit path"):
        repo.read(path)
    with pytest.raises(ValueError, match="audit path"):
        repo.history(path)
    assert git(repo.path, "rev-parse", "main") == before


def test_a_rev_or_remote_cannot_be_an_option(repo: AuditRepo, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="rev"):
        repo.read(".audit/requests/a.json", "--output=/tmp/x")
    with pytest.raises(ValueError, match="remote"):
        AuditRepo(tmp_path / "other", "--upload-pack=touch /tmp/x")


def status(workflow_id: str) -> ChangeRequestStatus:
    return ChangeRequestStatus(workflow_id=workflow_id, phase=Phase.SUCCEEDED)


def test_an_option_like_workflow_id_is_a_plain_file(repo: AuditRepo, tmp_path: Path) -> None:
    wf_id = f"--upload-pack=touch {tmp_path / 'pwned'}"
    task = TaskRecord(f"{wf_id}.1.1.1", 1, 1, 1, "play", "task", "ping", "localhost", "ok")
    record = AuditRecord(status=status(wf_id), tasks=[task])

    result = ActivityEnvironment().run(AuditGitActivities(repo.path).commit_audit, record)

    request_file = f".audit/requests/{safe_name(wf_id)}.json"
    assert result.files == sorted([request_file, f".audit/tasks/{safe_name(task.task_id)}.json"])
    assert request_file.startswith(".audit/requests/upload-pack")
    assert changed_paths(repo.path, result.sha) == result.files
    assert f'"workflow_id": "{wf_id}"' in (repo.read(request_file) or b"").decode()
    assert not (tmp_path / "pwned").exists()
    for odd in ("...", "///", "-", "--"):
        assert safe_name(odd)[0].isalnum(), odd


def commit_elsewhere(repo: AuditRepo, path: str, content: bytes, tmp_path: Path) -> str:
    """A commit on main by someone else (git plumbing, not AuditRepo)."""
    blob = git(repo.path, "hash-object", "-w", "--stdin", input=content)
    index = {"GIT_INDEX_FILE": str(tmp_path / "elsewhere.index")}
    git(repo.path, "read-tree", "main", env=index)
    git(repo.path, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=index)
    tree = git(repo.path, "write-tree", env=index)
    sha = git(repo.path, "commit-tree", tree, "-p", "main", "-m", f"{path} from elsewhere")
    git(repo.path, "update-ref", "refs/heads/main", sha)
    return sha


def test_a_commit_after_main_moved_elsewhere_keeps_what_is_there(repo: AuditRepo, tmp_path: Path) -> None:
    repo.commit({".audit/requests/a.json": b"a\n"}, "a\n")
    elsewhere = commit_elsewhere(repo, ".audit/requests/other.json", b"other\n", tmp_path)

    made = repo.commit({".audit/requests/b.json": b"b\n"}, "b\n")

    assert git(repo.path, "rev-parse", "main^") == elsewhere
    assert changed_paths(repo.path, made.sha) == [".audit/requests/b.json"]
    assert tree_paths(repo.path) == [
        ".audit/requests/a.json",
        ".audit/requests/b.json",
        ".audit/requests/other.json",
        "README.md",
    ]


def test_a_file_in_the_way_is_a_permanent_audit_failure(repo: AuditRepo, tmp_path: Path) -> None:
    """Someone committed a file `.audit`, where the audit's directory goes."""
    blocked = commit_elsewhere(repo, ".audit", b"in the way\n", tmp_path)

    with pytest.raises(ApplicationError) as failed:
        ActivityEnvironment().run(AuditGitActivities(repo.path).commit_audit, AuditRecord(status=status("cr-1")))

    assert failed.value.type == ErrorType.AUDIT_FAILED
    assert failed.value.non_retryable
    assert "cannot write the audit files" in str(failed.value)
    assert git(repo.path, "rev-parse", "main") == blocked
    assert tree_paths(repo.path) == [".audit", "README.md"]


def test_commit_audit_pushes_to_the_remote(tmp_path: Path) -> None:
    remote = tmp_path / "shared.git"
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(remote)], check=True)
    AuditRepo(tmp_path / "audit", str(remote)).ensure()
    activities = AuditGitActivities(tmp_path / "audit", str(remote))

    result = ActivityEnvironment().run(activities.commit_audit, AuditRecord(status=status("cr-1")))

    assert git(remote, "rev-parse", "main") == result.sha
    assert git_children() == []
