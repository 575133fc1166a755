"""Worker settings read from an explicit environment: defaults, parsing, and errors that name
the variable at fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.settings import ConfigError, Settings
from workflows.types import TASK_QUEUE, ApprovalPolicy

DATA = "/srv/signoff-data"


def from_env(**env: str) -> Settings:
    return Settings.from_env({"SIGNOFF_DATA_DIR": DATA, **env})


def test_defaults() -> None:
    settings = from_env()

    assert settings.task_queue == TASK_QUEUE == "signoff"
    assert settings.data_dir == Path(DATA)
    assert settings.database_url is None
    assert settings.playbook_dir == Path(DATA) / "playbooks"
    assert settings.inventory == Path(DATA) / "inventory" / "hosts.yml"
    assert settings.audit_repo == Path(DATA) / "audit"
    assert settings.policy == ApprovalPolicy()
    assert settings.policy.approvers == []
    assert settings.policy.required_approvals == 1
    assert settings.policy.timeout_seconds == 24 * 3600
    assert settings.policy.auto_approve_risk == "none"


def test_empty_values_mean_the_default() -> None:
    settings = from_env(
        SIGNOFF_TASK_QUEUE="",
        SIGNOFF_DATABASE_URL="",
        SIGNOFF_APPROVERS="",
        SIGNOFF_REQUIRED_APPROVALS="",
        SIGNOFF_APPROVAL_TIMEOUT="",
        SIGNOFF_AUTO_APPROVE_RISK="",
    )

    assert settings.task_queue == "signoff"
    assert settings.database_url is None
    assert settings.policy == ApprovalPolicy()


def test_explicit_values(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "SIGNOFF_TASK_QUEUE": "ops",
            "SIGNOFF_DATA_DIR": str(tmp_path),
            "SIGNOFF_DATABASE_URL": "postgresql+psycopg://u@/db",
            "SIGNOFF_PLAYBOOK_DIR": str(tmp_path / "pb"),
            "SIGNOFF_INVENTORY": str(tmp_path / "hosts.ini"),
            "SIGNOFF_AUDIT_REPO": str(tmp_path / "git"),
            "SIGNOFF_REQUIRED_APPROVALS": "2",
            "SIGNOFF_AUTO_APPROVE_RISK": " LOW ",
        }
    )

    assert settings.task_queue == "ops"
    assert settings.require_database_url() == "postgresql+psycopg://u@/db"
    assert (settings.playbook_dir, settings.inventory, settings.audit_repo) == (
        tmp_path / "pb",
        tmp_path / "hosts.ini",
        tmp_path / "git",
    )
    assert settings.policy.required_approvals == 2
    assert settings.policy.auto_approve_risk == "low"


def test_missing_database_url_is_a_config_error_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="SIGNOFF_DATABASE_URL"):
        from_env().require_database_url()


@pytest.mark.parametrize(
    ("raw", "approvers"),
    [
        ("bob", ["bob"]),
        ("bob,carol", ["bob", "carol"]),
        ("  bob , ,carol ,, ", ["bob", "carol"]),
        (" , ,", []),
    ],
)
def test_approvers_are_trimmed_and_empties_dropped(raw: str, approvers: list[str]) -> None:
    assert from_env(SIGNOFF_APPROVERS=raw).policy.approvers == approvers


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("90s", 90),
        ("15m", 15 * 60),
        ("24h", 24 * 3600),
        ("7d", 7 * 86400),
        ("3600", 3600),
        ("1.5h", 5400),
        (" 90 S ", 90),
    ],
)
def test_approval_timeout_forms(raw: str, seconds: float) -> None:
    assert from_env(SIGNOFF_APPROVAL_TIMEOUT=raw).policy.timeout_seconds == seconds


@pytest.mark.parametrize(
    "raw", ["0", "0s", "-5m", "15 minutes", "1w", "h", "nan", "1e3", "24h30m", "1000000000d", "9" * 400]
)
def test_bad_approval_timeout_names_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        from_env(SIGNOFF_APPROVAL_TIMEOUT=raw)

    assert "SIGNOFF_APPROVAL_TIMEOUT" in str(caught.value)
    assert repr(raw) in str(caught.value)


@pytest.mark.parametrize("raw", ["0", "x", "-1", "1.5", "two", "²", "1000001", "9" * 5000])
def test_bad_required_approvals_names_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError, match="SIGNOFF_REQUIRED_APPROVALS"):
        from_env(SIGNOFF_REQUIRED_APPROVALS=raw)


@pytest.mark.parametrize("raw", ["medium", "high", "all", "yes"])
def test_bad_auto_approve_risk_names_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        from_env(SIGNOFF_AUTO_APPROVE_RISK=raw)

    assert "SIGNOFF_AUTO_APPROVE_RISK" in str(caught.value)
    assert "none, low" in str(caught.value)


@pytest.mark.parametrize("raw", ["q" * 201, "sign\noff", " signoff", "sign\x00off"])
def test_a_task_queue_temporal_or_its_derived_names_would_refuse_is_a_config_error(raw: str) -> None:
    with pytest.raises(ConfigError, match="SIGNOFF_TASK_QUEUE"):
        from_env(SIGNOFF_TASK_QUEUE=raw)
    assert from_env(SIGNOFF_TASK_QUEUE="q" * 200).task_queue == "q" * 200


def test_worker_tuning_defaults_and_bounds() -> None:
    settings = from_env()
    assert (settings.workflow_cache, settings.playbook_nice) == (100, 10)
    tuned = from_env(SIGNOFF_WORKFLOW_CACHE="25", SIGNOFF_PLAYBOOK_NICE="0")
    assert (tuned.workflow_cache, tuned.playbook_nice) == (25, 0)
    bad = [("SIGNOFF_WORKFLOW_CACHE", "0"), ("SIGNOFF_PLAYBOOK_NICE", "20"), ("SIGNOFF_PLAYBOOK_NICE", "-5")]
    # past what the SDK's worker config holds: once a TypeError from deep inside the SDK at start
    bad += [(name, "99999999999999999999") for name in ("SIGNOFF_WORKFLOW_CACHE", "SIGNOFF_PLAYBOOK_CONCURRENCY")]
    bad += [("SIGNOFF_MAX_ATTEMPTS", "9" * 5000), ("SIGNOFF_PLAYBOOK_NICE", "0" * 5000 + "20")]
    assert from_env(SIGNOFF_PLAYBOOK_CONCURRENCY="1000000", SIGNOFF_PLAYBOOK_NICE="0019").playbook_nice == 19
    for name, raw in bad:
        with pytest.raises(ConfigError, match=name):
            from_env(**{name: raw})
