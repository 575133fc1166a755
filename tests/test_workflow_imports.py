"""Workflow modules import only the standard library, `temporalio` and `workflows.*`; activity
classes come in through `workflow.unsafe.imports_passed_through()`, and nothing that does I/O
or is non-deterministic is imported anywhere under workflows/ (STYLE.md item 3)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / "workflows"
BANNED = frozenset(
    {
        "sqlalchemy",
        "psycopg",
        "git",
        "ansible_runner",
        "requests",
        "httpx",
        "subprocess",
        "socket",
        "urllib",
        "random",
        "time",
    }
)
DYNAMIC_IMPORTS = frozenset({"__import__", "importlib.import_module", "import_module"})


def _is_passthrough(node: ast.With) -> bool:
    return any(ast.unparse(item.context_expr).endswith("unsafe.imports_passed_through()") for item in node.items)


def _modules(node: ast.Import | ast.ImportFrom, package: tuple[str, ...]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level == 0:
        return [node.module or ""]
    base = package[: len(package) - (node.level - 1)] if node.level - 1 < len(package) else ()
    if not base:
        return ["." * node.level + (node.module or "")]  # climbs out of the top-level package
    return [".".join((*base, *([node.module] if node.module else [])))]


def _allowed_outside(module: str) -> bool:
    top = module.split(".")[0]
    return top in sys.stdlib_module_names or top in ("temporalio", "workflows")


# Deterministic, I/O-free libraries (Unicode tables) that workflows may use, passed through the
# sandbox so they load once per process.
PURE_LIBRARIES = frozenset({"precis_i18n", "confusable_homoglyphs"})


def _allowed_inside(module: str) -> bool:
    return module.split(".")[0] in ("activities", *PURE_LIBRARIES)


def violations(source: str, filename: str = "<test>", package: tuple[str, ...] = ("workflows",)) -> list[str]:
    tree = ast.parse(source, filename)
    passed_through = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.With) and _is_passthrough(node)
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    found = []
    for node in ast.walk(tree):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Call) and ast.unparse(node.func) in DYNAMIC_IMPORTS:
            found.append(f"{where}: dynamic import {ast.unparse(node)}")
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        inside = id(node) in passed_through
        for module in _modules(node, package):
            if module.split(".")[0] in BANNED:
                found.append(f"{where}: imports {module}, which is banned in workflows/")
            elif inside and not _allowed_inside(module):
                found.append(
                    f"{where}: imports {module} through imports_passed_through (only activities.* and pure libraries)"
                )
            elif not inside and not _allowed_outside(module):
                found.append(f"{where}: imports {module} (only stdlib, temporalio and workflows.*)")
    return found


def workflow_files() -> list[Path]:
    return sorted(WORKFLOWS.rglob("*.py"))


def test_workflow_modules_are_found() -> None:
    names = {p.name for p in workflow_files()}

    assert {"__init__.py", "types.py", "change_request.py"} <= names


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_workflow_module_imports_are_sandbox_safe(path: Path) -> None:
    rel = path.relative_to(ROOT)

    assert violations(path.read_text(encoding="utf-8"), str(rel), rel.parent.parts) == []


GOOD = """
from __future__ import annotations
import asyncio
import dataclasses as dc
from datetime import timedelta
from collections.abc import Mapping
import temporalio.workflow
from temporalio import workflow
from workflows.types import Plan
from . import types
from .types import Risk

with workflow.unsafe.imports_passed_through():
    from activities.catalog import PlanningActivities
    import activities.playbooks
"""


def test_checker_accepts_what_workflows_may_import() -> None:
    assert violations(GOOD) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import sqlalchemy", "imports sqlalchemy, which is banned"),
        ("from psycopg.rows import dict_row", "imports psycopg.rows, which is banned"),
        ("from git import Repo", "imports git, which is banned"),
        ("import ansible_runner", "imports ansible_runner, which is banned"),
        ("import requests, httpx", "imports requests, which is banned"),
        ("import subprocess", "banned"),
        ("from socket import socket", "banned"),
        ("from urllib.request import urlopen", "imports urllib.request, which is banned"),
        ("import random", "banned"),
        ("from time import sleep", "imports time, which is banned"),
        ("def later():\n    import time\n", "imports time, which is banned"),
        ("import yaml", "imports yaml (only stdlib"),
        ("import temporalio_extras", "imports temporalio_extras (only stdlib"),
        ("from activities.catalog import PlanningActivities", "imports activities.catalog (only stdlib"),
        ("from workers.settings import Settings", "imports workers.settings (only stdlib"),
        ("from .. import activities", "imports .. (only stdlib"),
        ("import importlib\nimportlib.import_module('git')", "dynamic import"),
        ("__import__('socket')", "dynamic import"),
    ],
)
def test_checker_rejects_forbidden_imports(source: str, expected: str) -> None:
    found = violations(source)

    assert any(expected in v for v in found), found


@pytest.mark.parametrize(
    ("inner", "expected"),
    [
        ("import random", "imports random, which is banned"),
        ("from sqlalchemy import text", "imports sqlalchemy, which is banned"),
        ("import yaml", "imports yaml through imports_passed_through"),
        ("from workers.settings import Settings", "imports workers.settings through imports_passed_through"),
        ("import json", "imports json through imports_passed_through"),
    ],
)
def test_checker_allows_only_activities_in_the_passthrough_block(inner: str, expected: str) -> None:
    source = f"from temporalio import workflow\nwith workflow.unsafe.imports_passed_through():\n    {inner}\n"

    found = violations(source)

    assert any(expected in v for v in found), found
