"""Configuration, read once from the environment (DESIGN.md section 3) and passed down."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from workflows.approval import check_policy
from workflows.types import SITE_NAME, TASK_QUEUE, ApprovalPolicy, Budget


class ConfigError(ValueError):
    """A setting is present but unusable; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    task_queue: str
    data_dir: Path
    database_url: str | None
    playbook_dir: Path
    inventory: Path
    audit_repo: Path
    policy: ApprovalPolicy
    playbook_env: tuple[str, ...] = ()  # worker env vars playbooks also get (SIGNOFF_PLAYBOOK_ENV)
    audit_remote: str | None = None  # git URL of the shared audit repository (SIGNOFF_AUDIT_REMOTE)
    check_mode_preview: bool = True  # preview each step with --check --diff before approval (SIGNOFF_PREVIEW)
    failure_analysis: bool = True  # ansible-lint a failed step's playbook (SIGNOFF_FAILURE_ANALYSIS)
    playbook_concurrency: int = os.cpu_count() or 2  # playbooks at once per worker (SIGNOFF_PLAYBOOK_CONCURRENCY)
    # Requests kept in memory between workflow tasks (SIGNOFF_WORKFLOW_CACHE). Requests wait days
    # for people: one evicted from the cache is replayed from its history when someone answers.
    workflow_cache: int = 100
    # Ansible runs this much nicer than the worker (SIGNOFF_PLAYBOOK_NICE, 0-19): playbooks are
    # batch work, while approvals, locks and audit writes wait on the worker's own threads.
    playbook_nice: int = 10
    deployment: tuple[str, str] | None = None  # SIGNOFF_DEPLOYMENT_NAME, SIGNOFF_BUILD_ID: worker versioning
    breaker: tuple[int, float] = (3, 3600.0)  # SIGNOFF_BREAKER_FAILURES (0: off), SIGNOFF_BREAKER_WINDOW
    site: str | None = None  # SIGNOFF_SITE: run only the playbooks of hosts whose `signoff_site` is this
    metrics_address: str | None = None  # host:port serving Prometheus /metrics (SIGNOFF_METRICS_ADDRESS)
    # default `timeout` and `idle_timeout` of a playbook whose header sets none, in seconds
    playbook_timeouts: tuple[int, int] = (2 * 3600, 3600)
    allowed_signers: Path | None = None  # OpenSSH allowed_signers: decisions must be signed (SIGNOFF_ALLOWED_SIGNERS)
    notify_url: str | None = None  # POST here when a request waits for someone (SIGNOFF_NOTIFY_URL)
    notify_secret: str | None = field(default=None, repr=False)  # HMAC key for it (SIGNOFF_NOTIFY_SECRET)
    web_url: str | None = None  # the web inbox as browsers reach it (SIGNOFF_WEB_URL): notifications link to it
    budget: Budget = field(
        default_factory=Budget
    )  # SIGNOFF_MAX_STEPS, SIGNOFF_MAX_ATTEMPTS, SIGNOFF_MAX_EXECUTION_TIME

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        data_dir = Path(env.get("SIGNOFF_DATA_DIR") or default_data_dir(env)).expanduser()
        settings = cls(
            task_queue=_task_queue(env),
            data_dir=data_dir,
            database_url=env.get("SIGNOFF_DATABASE_URL") or None,
            playbook_dir=Path(env.get("SIGNOFF_PLAYBOOK_DIR") or data_dir / "playbooks").expanduser(),
            inventory=Path(env.get("SIGNOFF_INVENTORY") or data_dir / "inventory" / "hosts.yml").expanduser(),
            audit_repo=Path(env.get("SIGNOFF_AUDIT_REPO") or data_dir / "audit").expanduser(),
            audit_remote=env.get("SIGNOFF_AUDIT_REMOTE") or None,
            policy=ApprovalPolicy(
                approvers=[a.strip() for a in env.get("SIGNOFF_APPROVERS", "").split(",") if a.strip()],
                required_approvals=_positive_int(env, "SIGNOFF_REQUIRED_APPROVALS", 1),
                timeout_seconds=parse_duration(
                    env.get("SIGNOFF_APPROVAL_TIMEOUT") or "24h", "SIGNOFF_APPROVAL_TIMEOUT"
                ).total_seconds(),
                auto_approve_risk=_choice(env, "SIGNOFF_AUTO_APPROVE_RISK", ("none", "low"), "none"),
                decision_timeout_seconds=_seconds(env, "SIGNOFF_DECISION_TIMEOUT", "24h"),
                signatures_required=bool(env.get("SIGNOFF_ALLOWED_SIGNERS")),
            ),
            allowed_signers=_allowed_signers(env),
            notify_url=_http_url(env, "SIGNOFF_NOTIFY_URL"),
            notify_secret=env.get("SIGNOFF_NOTIFY_SECRET") or None,
            web_url=(_http_url(env, "SIGNOFF_WEB_URL") or "").rstrip("/") or None,
            playbook_env=tuple(n.strip() for n in env.get("SIGNOFF_PLAYBOOK_ENV", "").split(",") if n.strip()),
            check_mode_preview=_choice(env, "SIGNOFF_PREVIEW", ("on", "off"), "on") == "on",
            failure_analysis=_choice(env, "SIGNOFF_FAILURE_ANALYSIS", ("on", "off"), "on") == "on",
            playbook_concurrency=_positive_int(env, "SIGNOFF_PLAYBOOK_CONCURRENCY", os.cpu_count() or 2),
            workflow_cache=_positive_int(env, "SIGNOFF_WORKFLOW_CACHE", 100),
            playbook_nice=_int_in(env, "SIGNOFF_PLAYBOOK_NICE", 0, 19, 10),
            metrics_address=_address(env, "SIGNOFF_METRICS_ADDRESS"),
            site=_site(env),
            breaker=(
                _int_in(env, "SIGNOFF_BREAKER_FAILURES", 0, 1000, 3),
                _seconds(env, "SIGNOFF_BREAKER_WINDOW", "1h"),
            ),
            deployment=_deployment(env),
            playbook_timeouts=(
                int(_seconds(env, "SIGNOFF_PLAYBOOK_TIMEOUT", "2h")),
                int(_seconds(env, "SIGNOFF_IDLE_TIMEOUT", "1h")),
            ),
            budget=Budget(
                max_steps=_positive_int(env, "SIGNOFF_MAX_STEPS", 50),
                max_attempts=_positive_int(env, "SIGNOFF_MAX_ATTEMPTS", 25),
                max_execution_seconds=_seconds(env, "SIGNOFF_MAX_EXECUTION_TIME", "24h"),
            ),
        )
        problems = check_policy(settings.policy)
        if problems:
            raise ConfigError(f"SIGNOFF_APPROVERS / SIGNOFF_REQUIRED_APPROVALS: {'; '.join(problems)}")
        return settings

    def require_database_url(self) -> str:
        if not self.database_url:
            raise ConfigError("SIGNOFF_DATABASE_URL is not set (postgresql+psycopg://user:pass@host/db)")
        return self.database_url


def _allowed_signers(env: Mapping[str, str]) -> Path | None:
    """Read when a signature is checked, not here: the CLI shares these settings and need not
    have the workers' file. A worker that cannot read it refuses every signed decision, saying so."""
    raw = env.get("SIGNOFF_ALLOWED_SIGNERS")
    return Path(raw).expanduser() if raw else None


def _http_url(env: Mapping[str, str], name: str) -> str | None:
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name}: expected an http:// or https:// URL with a host")
    return raw


def default_data_dir(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "signoff"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str, name: str) -> timedelta:
    """'90s', '15m', '24h', '7d' or plain seconds."""
    found = _DURATION.match(value.lower())
    problem = f"{name}={value!r}: expected a duration such as 90s, 15m, 24h or 7d"
    if not found or float(found.group(1)) <= 0:
        raise ConfigError(problem)
    try:
        return timedelta(seconds=float(found.group(1)) * _UNITS[found.group(2)])
    except OverflowError:
        raise ConfigError(f"{problem}, not more than {timedelta.max.days} days") from None


def _seconds(env: Mapping[str, str], name: str, default: str) -> float:
    return parse_duration(env.get(name) or default, name).total_seconds()


_MOST = 1_000_000  # counts past this are a typo; the SDK's slot and cache sizes overflow far above it


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    return _int_in(env, name, 1, _MOST, default)


def _deployment(env: Mapping[str, str]) -> tuple[str, str] | None:
    name = (env.get("SIGNOFF_DEPLOYMENT_NAME") or "").strip()
    build = (env.get("SIGNOFF_BUILD_ID") or "").strip()
    if bool(name) != bool(build):
        raise ConfigError("SIGNOFF_DEPLOYMENT_NAME and SIGNOFF_BUILD_ID go together: set both for worker versioning")
    for value, var in ((name, "SIGNOFF_DEPLOYMENT_NAME"), (build, "SIGNOFF_BUILD_ID")):
        if value and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", value):
            raise ConfigError(f"{var}={value!r}: expected letters, digits, '.', '_' or '-'")
    return (name, build) if name else None


def _task_queue(env: Mapping[str, str]) -> str:
    """Lock workflows, playbook queues (`<queue>-playbooks`, `<queue>-<site>`) and ids derive from
    it, and Temporal refuses names past 1000 bytes: a long one is a typo, caught here."""
    raw = env.get("SIGNOFF_TASK_QUEUE") or TASK_QUEUE
    if len(raw) > 200 or not raw.isprintable() or raw != raw.strip():
        raise ConfigError(f"SIGNOFF_TASK_QUEUE={raw[:40]!r}: expected a name of at most 200 printable characters")
    return raw


def _site(env: Mapping[str, str]) -> str | None:
    raw = (env.get("SIGNOFF_SITE") or "").strip()
    if raw and not SITE_NAME.fullmatch(raw):
        raise ConfigError(
            f"SIGNOFF_SITE={raw!r}: expected a site name (lowercase letters, digits and dashes, at most 40, "
            "not `playbooks`), as the inventory's signoff_site says"
        )
    return raw or None


def _address(env: Mapping[str, str], name: str) -> str | None:
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    host, _, port = raw.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{name}={raw!r}: expected host:port, such as 127.0.0.1:9464")
    return raw


def _int_in(env: Mapping[str, str], name: str, low: int, high: int, default: int) -> int:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    digits = raw.lstrip("0") or "0"  # int() refuses over 4300 digits: never let it see them
    if not re.fullmatch(r"[0-9]+", raw) or len(digits) > len(str(high)) or not low <= int(digits) <= high:
        raise ConfigError(f"{name}={raw[:40]!r}: expected a whole number from {low} to {high}")
    return int(digits)


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    raw = (env.get(name) or default).strip().lower()
    if raw not in allowed:
        raise ConfigError(f"{name}={raw!r}: expected one of {', '.join(allowed)}")
    return raw
