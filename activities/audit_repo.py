"""Audit commits in a git repository, written with git plumbing.

`AuditRepo` is the store: `ensure()` creates it, `commit()` writes files in one commit,
`push()` shares it with a remote, `read()` and `history()` read it back. Every change runs
`git --git-dir=<repo> ...` with argument lists (`hash-object`, `update-index --cacheinfo`,
`write-tree`, `commit-tree`, `update-ref` with the expected old value) on an index of its own,
which holds `main`'s tree and nothing else, so a commit holds exactly the files it was given,
whatever else runs in the process or beside it. Nothing calls `chdir` or reads the caller's cwd.

The working tree is not kept: new repositories are bare, and in an older checkout the files and
the index stay as they were. Read the audit with `git show main:.audit/requests/<id>.json`
and `git log -- <path>`, never from the files on disk.

Writers are serialised per repository by a thread lock and an flock on `signoff-audit.lock`
in the git directory, so threads and worker processes may share one repository. Paths must lie
under `.audit/` (see `check_path`); refs are fixed strings and the remote comes from settings,
so nothing from a request ever reaches git as an option or a ref.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import os
import random
import re
import subprocess
import tempfile
import threading
import time
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from activities.audit_paths import check_path

MAIN = "refs/heads/main"
TRACKING = "refs/remotes/origin/main"
README = (
    b"# signoff audit trail\n\nOne commit per change request, under .audit/. Read it with\n"
    b"`git show main:.audit/requests/<id>.json` and `git log -- .audit/`.\n"
)
IDENTITY = {"NAME": "signoff", "EMAIL": "signoff@localhost"}
_LOCK = "signoff-audit.lock"  # commits, merges and the first commit
_PUSH_LOCK = "signoff-push.lock"  # one push at a time; commits go on meanwhile
_INDEX = "signoff-index"  # commit()'s own index, never the repository's
_INDEX_STAMP = "signoff-index.main"  # the commit whose tree _INDEX holds; absent when not known
_PUSH_TRIES = 6  # waits of 0.25, 0.5, 1, 2, 4 s between them (with jitter): under ~10 s in all
_FIRST_WAIT = 0.25
# Local git fails at once on a held lock, so only the network gets a timeout: a wait with a
# timeout polls in sleeps of 0.5 ms and more, about a third of a local command's time.
_NETWORK_TIMEOUT = 60.0
# What git needs from the worker's environment to find its config, ssh and credentials; all
# else is dropped, GIT_DIR / GIT_INDEX_FILE / GIT_WORK_TREE first of all.
_KEEP_ENV = frozenset(
    "HOME PATH TMPDIR USER LOGNAME LANG XDG_CONFIG_HOME SSH_AUTH_SOCK GIT_SSH GIT_SSH_COMMAND GIT_ASKPASS "
    "GIT_SSL_CAINFO GIT_SSL_CAPATH SSL_CERT_FILE SSL_CERT_DIR HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy "
    "https_proxy no_proxy GIT_CONFIG_GLOBAL GIT_CONFIG_SYSTEM GIT_CONFIG_NOSYSTEM GIT_CONFIG_COUNT".split()
)
_BARE_LAYOUT = frozenset(
    {_LOCK, _PUSH_LOCK, "HEAD", "config", "description", "hooks", "info", "objects", "refs", "branches", "logs"}
)
_REV = re.compile(r"HEAD|main|refs/heads/main|refs/remotes/origin/main|[0-9a-f]{7,64}")
_SHA = re.compile(r"[0-9a-f]{40,64}")


class GitError(RuntimeError):
    """A git command failed. Retrying may help (a lock held elsewhere, the network)."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: bytes) -> None:
        self.returncode = returncode
        self.stderr = stderr.decode(errors="replace").strip()
        message = f"git {' '.join(argv)} exited {returncode}: {self.stderr[-2000:]}"
        # A token in an https remote URL must not reach logs and workflow histories.
        super().__init__(re.sub(r"://[^/@\s]+@", "://***@", message))


@dataclasses.dataclass(frozen=True)
class CommitResult:
    sha: str
    created: bool  # False: main held these files already; `sha` is the last commit of the first


class AuditRepo:
    """The audit store at `path`: a bare repository when it creates one (an existing checkout
    is used as it is), shared with `remote` (a git URL from settings) when that is set.
    Safe from many threads and processes at once. The constructor touches nothing."""

    def __init__(self, path: Path, remote: str | None = None) -> None:
        self.path = Path(path).expanduser().resolve()
        self.remote = _remote_url(remote) if remote else None
        self._thread_locks = {_LOCK: threading.Lock(), _PUSH_LOCK: threading.Lock()}
        self._env = {k: v for k, v in os.environ.items() if k in _KEEP_ENV or k.startswith("GIT_CONFIG_")}
        self._env |= {"GIT_TERMINAL_PROMPT": "0", "GIT_LITERAL_PATHSPECS": "1", "LC_ALL": "C"}
        self._env |= {f"GIT_{who}_{key}": value for who in ("AUTHOR", "COMMITTER") for key, value in IDENTITY.items()}

    # --- the repository -----------------------------------------------------------------

    def ensure(self) -> None:
        """Create the repository with a first commit on `main`, unless it has one: safe when
        several processes call it at once. With a remote, start from the remote's `main`, or
        push ours when the remote has none yet."""
        self.path.mkdir(parents=True, exist_ok=True)
        with self._locked(_LOCK):
            if not self._exists():
                if set(os.listdir(self.path)) - _BARE_LAYOUT:
                    raise FileExistsError(errno.EEXIST, "not a git repository and not empty", str(self.path))
                self._git("init", "-q", "--bare", "--initial-branch=main")
                self._git("config", "core.logAllRefUpdates", "true")  # a reflog of main, in a bare repo too
            if self.remote:
                self._git("config", "remote.origin.url", self.remote)
                self._git("config", "remote.origin.fetch", f"+{MAIN}:{TRACKING}")
            if self._rev(MAIN) is None:
                if self.remote and self._git("ls-remote", "origin", MAIN, network=True).stdout.strip():
                    self._git("fetch", "-q", "--no-tags", "origin", f"+{MAIN}:{TRACKING}", network=True)
                    self._git(
                        "update-ref", "-m", "signoff: from the remote", MAIN, self._out("rev-parse", TRACKING), ""
                    )
                else:
                    self._first_commit()
                self._git("symbolic-ref", "HEAD", MAIN)  # also where `git init` chose another name
        self._git("-c", "gc.autoDetach=false", "gc", "--auto", "--quiet")  # plumbing never packs by itself
        self.push()

    def commit(self, files: Mapping[str, bytes], message: str) -> CommitResult:
        """Commit `files` (path under .audit/ -> content) on `main`, and only them. When `main`
        holds them already, make no commit and return the last commit of the first path.
        ValueError for a path `check_path` refuses; NotADirectoryError when a file in the
        repository is in the way of one (retrying will not help)."""
        paths = [check_path(p) for p in files]
        if not paths:
            raise ValueError("nothing to commit")
        for path in paths:
            if any(other.startswith(path + "/") for other in paths):
                raise ValueError(f"audit path {path!r} is also a directory of another path")
        with self._locked(_LOCK), tempfile.TemporaryDirectory(prefix="signoff-audit-") as tmp:
            blobs = self._write_blobs(Path(tmp), [files[p] for p in paths])
            head, head_tree = self._head()
            index = self._private_index(head)
            cacheinfo = [
                arg for path, blob in zip(paths, blobs, strict=True) for arg in ("--cacheinfo", f"100644,{blob},{path}")
            ]
            added = self._git("update-index", "--add", *cacheinfo, env=index, check=False)
            if added.returncode:
                self._raise_conflict(head, paths)
                if b"Invalid path" in added.stderr:  # git's own checks, beyond check_path's
                    raise ValueError(f"audit path refused by git: {added.stderr.decode(errors='replace').strip()}")
                raise GitError(["update-index"], added.returncode, added.stderr)
            # --missing-ok: no lookup of every entry; the blobs were just written, the rest is main's
            tree = self._out("write-tree", "--missing-ok", env=index)
            if tree == head_tree:
                self._index_mirrors(head)
                return CommitResult(self._out("rev-list", "-n", "1", MAIN, "--", paths[0]), created=False)
            sha = self._commit_tree(tree, [head] if head else [], message)
            self._git("update-ref", "-m", "signoff: audit commit", MAIN, sha, head or "")
            self._index_mirrors(sha)
            return CommitResult(sha, created=True)

    def push(self) -> None:
        """Push `main` to the remote (nothing without one, or when the remote has it already).
        When the remote moved on, merge its `main` (same path on both sides: ours wins) and
        push again, backing off; GitError after `_PUSH_TRIES` tries."""
        if not self.remote:
            return
        wait, failure = _FIRST_WAIT, None
        for attempt in range(_PUSH_TRIES):
            with self._locked(_PUSH_LOCK):
                local = self._rev(MAIN)
                if local is None or local == self._rev(TRACKING):
                    return  # pushed already, by us or another thread
                pushed = self._git("push", "-q", "--porcelain", "origin", f"{MAIN}:{MAIN}", network=True, check=False)
                if pushed.returncode == 0:
                    return
                failure = GitError(["push", "origin"], pushed.returncode, pushed.stderr + pushed.stdout)
                fetched = self._git(
                    "fetch", "-q", "--no-tags", "origin", f"+{MAIN}:{TRACKING}", network=True, check=False
                )
                merged = fetched.returncode == 0 and self._merge_remote()
            if merged and attempt == 0:
                continue  # the usual case: someone pushed first; try again at once
            if attempt + 1 < _PUSH_TRIES:
                time.sleep(wait * random.uniform(0.75, 1.25))
                wait *= 2
        assert failure is not None
        raise failure

    def read(self, path: str, rev: str = "HEAD") -> bytes | None:
        """The file at `path` in `rev` (HEAD, main, origin/main's ref or a commit sha), or None."""
        if not _REV.fullmatch(rev):
            raise ValueError(f"rev {rev!r}: expected HEAD, main or a commit sha")
        out = self._git("cat-file", "--batch", input=f"{rev}:{check_path(path)}\n".encode()).stdout
        header, _, rest = out.partition(b"\n")
        fields = header.split()
        if len(fields) != 3 or not _SHA.fullmatch(fields[0].decode()) or fields[1] != b"blob":
            return None
        return rest[: int(fields[2])]

    def history(self, path: str) -> list[str]:
        """The commits on `main` that changed `path`, newest first."""
        if self._rev(MAIN) is None:
            return []
        return self._out("rev-list", MAIN, "--", check_path(path)).split()

    # --- plumbing ---------------------------------------------------------------------

    @property
    def git_dir(self) -> Path:
        dot_git = self.path / ".git"
        return dot_git if dot_git.is_dir() else self.path

    def _exists(self) -> bool:
        return (self.path / ".git").exists() or (self.path / "HEAD").is_file()

    def _git(
        self,
        *args: str,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        network: bool = False,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run one git command and wait for it (`subprocess.run` kills and reaps it when the
        wait is interrupted): no git process outlives the call."""
        proc = subprocess.run(
            ["git", f"--git-dir={self.git_dir}", *args],
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            env={**self._env, **(env or {})},
            timeout=_NETWORK_TIMEOUT if network else None,
            check=False,
        )
        if check and proc.returncode:
            raise GitError(args, proc.returncode, proc.stderr)
        return proc

    def _out(self, *args: str, input: bytes | None = None, env: Mapping[str, str] | None = None) -> str:
        return self._git(*args, input=input, env=env).stdout.decode().strip()

    def _rev(self, ref: str) -> str | None:
        found = self._git("rev-parse", "-q", "--verify", f"{ref}^{{commit}}", check=False)
        return found.stdout.decode().strip() if found.returncode == 0 else None

    def _private_index(self, head: str | None) -> dict[str, str]:
        """The environment for our own index file, holding `head`'s tree: kept from the last
        commit when it mirrors `head` (which saves a `read-tree` of the whole tree), read
        afresh otherwise. Only its user's commits touch it, under the lock; until it is
        known to mirror a commit again, its stamp is gone, so a failed commit leaves nothing
        for the next one."""
        index, stamp = self.git_dir / _INDEX, self.git_dir / _INDEX_STAMP
        try:
            mirrors = stamp.read_text() == head
        except FileNotFoundError:
            mirrors = False
        stamp.unlink(missing_ok=True)
        env = {"GIT_INDEX_FILE": str(index)}
        if not mirrors:
            index.unlink(missing_ok=True)
            if head:
                self._git("read-tree", head, env=env)
        return env

    def _index_mirrors(self, sha: str | None) -> None:
        if sha:
            (self.git_dir / _INDEX_STAMP).write_text(sha)

    def _write_blobs(self, tmp: Path, contents: Sequence[bytes]) -> list[str]:
        """`hash-object -w` of each content, in one call."""
        names = []
        for n, content in enumerate(contents):
            (tmp / str(n)).write_bytes(content)
            names.append(f"{tmp / str(n)}\n")
        return self._out("hash-object", "-w", "--no-filters", "--stdin-paths", input="".join(names).encode()).split()

    def _head(self) -> tuple[str | None, str | None]:
        """main's commit and tree; (None, None) before the first commit."""
        fields = self._out("for-each-ref", "--format=%(objectname) %(tree)", MAIN).split()
        return (fields[0], fields[1]) if len(fields) == 2 else (None, None)

    def _commit_tree(self, tree: str, parents: Sequence[str], message: str) -> str:
        # The message goes on stdin, never argv; git refuses NUL in it.
        text = message.replace("\0", "\\0").encode(errors="replace")
        return (
            self._git("commit-tree", tree, *(a for p in parents for a in ("-p", p)), input=text).stdout.decode().strip()
        )

    def _first_commit(self) -> None:
        blob = self._git("hash-object", "-w", "--no-filters", "--stdin", input=README).stdout.decode().strip()
        tree = self._git("mktree", input=f"100644 blob {blob}\tREADME.md\n".encode()).stdout.decode().strip()
        sha = self._commit_tree(tree, [], "signoff audit repository\n")
        # Expected old value "": the ref must not exist, so only one first commit can win.
        self._git("update-ref", "-m", "signoff: first commit", MAIN, sha, "")

    def _raise_conflict(self, head: str | None, paths: Sequence[str]) -> None:
        """NotADirectoryError when a file in `head` is where a directory of `paths` goes, or
        a directory where a file goes. Returns when there is no such conflict."""
        if head is None:
            return
        wanted: dict[str, str] = {}
        for path in paths:
            parts = path.split("/")
            wanted |= {"/".join(parts[:n]): "tree" for n in range(1, len(parts))}
            wanted[path] = "blob"
        query = "".join(f"{head}:{p}\n" for p in wanted).encode()
        lines = self._git("cat-file", "--batch-check=%(objecttype)", input=query).stdout.decode().splitlines()
        for (path, kind), found in zip(wanted.items(), lines, strict=True):
            if not found.endswith(" missing") and found != kind:
                raise NotADirectoryError(errno.ENOTDIR, f"{path} is a {found} in the audit repository", path)

    def _merge_remote(self) -> bool:
        """Bring the fetched remote main into ours: fast-forward, or a merge commit where
        both moved (a path changed on both sides keeps our version). True if main moved."""
        with self._locked(_LOCK):
            ours, theirs = self._rev(MAIN), self._rev(TRACKING)
            if theirs is None or ours == theirs or (ours and self._is_ancestor(theirs, ours)):
                return False
            if ours is None or self._is_ancestor(ours, theirs):
                self._git("update-ref", "-m", "signoff: fast-forward to the remote", MAIN, theirs, ours or "")
                return True
            merge = self._git(
                "merge-tree", "--write-tree", "--allow-unrelated-histories", "--no-messages", "-z", "--name-only",
                ours, theirs, check=False,
            )  # fmt: skip
            if merge.returncode not in (0, 1):
                raise GitError(["merge-tree"], merge.returncode, merge.stderr)
            tree, *conflicted = merge.stdout.split(b"\0\0", 1)[0].decode(errors="surrogateescape").split("\0")
            if merge.returncode == 1:
                tree = self._keep_ours(tree, ours, sorted({p for p in conflicted if p}))
            sha = self._commit_tree(tree, [ours, theirs], "signoff: merge the remote's main\n")
            self._git("update-ref", "-m", "signoff: merge the remote's main", MAIN, sha, ours)
            return True

    def _keep_ours(self, tree: str, ours: str, paths: Sequence[str]) -> str:
        with tempfile.TemporaryDirectory(prefix="signoff-merge-") as tmp:
            index = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            self._git("read-tree", tree, env=index)
            listed = self._git("ls-tree", "-r", "-z", "--full-tree", ours, "--", *paths).stdout.decode(
                errors="surrogateescape"
            )
            entries = {line.split("\t", 1)[1]: line.split("\t", 1)[0].split() for line in listed.split("\0") if line}
            self._git("update-index", "--force-remove", "--", *(p for p in paths if p not in entries), env=index)
            cacheinfo = [a for p, (mode, _, sha) in entries.items() for a in ("--cacheinfo", f"{mode},{sha},{p}")]
            if cacheinfo:
                self._git("update-index", "--add", "--replace", *cacheinfo, env=index)
            return self._out("write-tree", env=index)

    def _is_ancestor(self, ancestor: str, descendant: str) -> bool:
        return self._git("merge-base", "--is-ancestor", ancestor, descendant, check=False).returncode == 0

    @contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        """One holder at a time: a thread lock for this object's threads, an flock for other
        objects and processes (both needed: flock alone would also serialise, but a thread
        waiting in flock holds a file descriptor and a kernel wait per thread)."""
        with self._thread_locks[name]:
            fd = os.open(self.git_dir / name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the flock


def _remote_url(remote: str) -> str:
    """The remote as git gets it: a URL or scp-like address as given; a local path made
    absolute (git would read a relative one from the repository, not the caller's cwd)."""
    if remote.startswith("-") or any(unicodedata.category(c) == "Cc" for c in remote):
        raise ValueError(f"audit remote {remote!r}: not a git URL")
    if "://" in remote or re.match(r"^[^/:]+:", remote):
        return remote
    return str(Path(remote).expanduser().resolve())


def init_repo(path: Path, remote: str | None = None) -> None:
    """Create the audit repository with a first commit, unless it exists already (see ensure)."""
    AuditRepo(path, remote).ensure()
