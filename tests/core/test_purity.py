"""The decision core must stay pure: no clock, no randomness, no I/O, no framework."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE_MODULES = [
    "actors/campaign.py",
    "schemas/segments.py",
    "actors/shard.py",
    "streams/screening.py",
    "streams/approvals.py",
    "streams/sendstate.py",
    "schemas/events.py",
    "schemas/commands.py",
    "schemas/campaign.py",
    "schemas/policy.py",
]
FORBIDDEN_IMPORTS = {
    "ray", "faust", "mode", "aiokafka", "kafka", "messagebird", "orjson", "requests",
    "time", "datetime", "random", "secrets", "uuid", "os", "socket", "asyncio", "threading",
    "subprocess", "pathlib", "io", "logging", "infra", "urllib", "http",
}
FORBIDDEN_CALLS = {"open", "print", "input", "exec", "eval", "__import__"}


def _imports(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_imports_nothing_impure(module):
    tree = ast.parse((ROOT / module).read_text())
    assert _imports(tree) & FORBIDDEN_IMPORTS == set()


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_calls_no_io_builtin(module):
    tree = ast.parse((ROOT / module).read_text())
    calls = {
        node.func.id for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert calls & FORBIDDEN_CALLS == set()


def test_the_guard_catches_an_impure_module():
    tree = ast.parse("import time\nfrom ray import remote\nprint(time.time())")
    assert _imports(tree) & FORBIDDEN_IMPORTS == {"time", "ray"}
