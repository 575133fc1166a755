"""Worker logs: text by default, one JSON object a line with SIGNOFF_LOG_FORMAT=json. Every line
logged under a workflow or one of its activities carries the workflow id, and the step where
there is one, whichever logger wrote it: the SDK's workflow and activity loggers put their
details on the record, and a playbook activity names its step in `activities.playbooks.STEP`."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from temporalio import activity, workflow

from activities.playbooks import STEP
from workers.settings import ConfigError

FORMATS = ("text", "json")


class WorkflowContext(logging.Filter):
    """Sets `workflow_id`, `step` and `activity` on each record (None outside a workflow)."""

    def filter(self, record: logging.LogRecord) -> bool:
        details: dict[str, Any] = getattr(record, "temporal_workflow", None) or {}
        found = getattr(record, "temporal_activity", None) or {}
        workflow_id = details.get("workflow_id") or found.get("workflow_id")
        kind = found.get("activity_type")
        if workflow_id is None and activity.in_activity():  # signoff's own loggers, in an activity
            info = activity.info()
            workflow_id, kind = info.workflow_id, info.activity_type
        record.workflow_id = workflow_id
        record.activity = kind
        if getattr(record, "step", None) is None:
            record.step = STEP.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("workflow_id", "step", "activity"):
            value = getattr(record, key, None)
            if value is not None:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        workflow_id, step = getattr(record, "workflow_id", None), getattr(record, "step", None)
        if workflow_id and " 'workflow_id': " not in text:  # the SDK's loggers append their own
            text += f" [{workflow_id}" + (f" step {step}]" if step is not None else "]")
        return text


def configure(level: int, log_format: str | None = None) -> None:
    """Log to stderr in `log_format` (SIGNOFF_LOG_FORMAT: text or json)."""
    chosen = (log_format or "text").strip().lower()
    if chosen not in FORMATS:
        raise ConfigError(f"SIGNOFF_LOG_FORMAT={log_format!r}: expected one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler()
    handler.addFilter(WorkflowContext())
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    if chosen == "json":  # the details are fields; the SDK need not repeat them in the message
        workflow.logger.workflow_info_on_message = False
        activity.logger.activity_info_on_message = False
    logging.basicConfig(level=level, handlers=[handler], force=True)
