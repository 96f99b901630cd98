"""The decision core must stay pure: no clock, no randomness, no I/O, no framework.

One list of every pure module (a folder's glob takes its new modules in by itself); the
flood-defence building blocks import the standard library only on top of that."""

import ast

import pytest

from tests.factories import ROOT

PURE_MODULES = [
    # the campaign core, cut where its meaning divides, and its shard
    "actors/campaign.py",
    "actors/state.py",
    "actors/decide.py",
    "actors/evolve.py",
    "actors/evidence.py",
    "actors/queue.py",
    "actors/shard.py",
    "actors/snapshot.py",  # bytes through schemas.codec only
    # the flood-defence building blocks (STDLIB_ONLY too)
    "actors/gcra.py",
    "actors/pacing.py",
    "actors/textfilter.py",
    "actors/words.py",
    # events, commands, config values, policy, reasons, segments (not the codec: orjson)
    "schemas/campaign.py",
    "schemas/commands.py",
    "schemas/events.py",
    "schemas/policy.py",
    "schemas/reasons.py",
    "schemas/segments.py",
    # the pure rooms, whole: the worker's rules (screening, the shells' rules, the pipeline
    # they compose) and the audit
    "streams/rules/*.py",
    "streams/audit/*.py",
    # the pure modules of the other rooms: the operators' projection and the audit's HTML
    # page, the named scenarios
    "streams/console/metrics.py",
    "streams/console/board.py",
    "streams/console/audit_html.py",
    "streams/simulate/scenarios.py",
]
STDLIB_ONLY = {"actors/gcra.py", "actors/pacing.py", "actors/textfilter.py", "actors/words.py",
               "actors/queue.py"}
STDLIB_ALLOWED = {"__future__", "bisect", "dataclasses", "functools", "typing", "unicodedata",
                  "zlib"}
FORBIDDEN_IMPORTS = {
    "ray", "faust", "mode", "aiokafka", "kafka", "messagebird", "orjson", "requests",
    "time", "datetime", "random", "secrets", "uuid", "os", "socket", "asyncio", "threading",
    "subprocess", "pathlib", "io", "logging", "infra", "urllib", "http",
}
FORBIDDEN_CALLS = {"open", "print", "input", "exec", "eval", "__import__"}


def _expand(patterns: list[str]) -> list[str]:
    out = []
    for pattern in patterns:
        found = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob(pattern))
        assert found, f"{pattern}: no such module"
        out += found
    return out


MODULES = _expand(PURE_MODULES)


def _imports(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def _calls(tree: ast.AST) -> set[str]:
    return {node.func.id for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}


@pytest.mark.parametrize("module", MODULES)
def test_core_module_imports_nothing_impure(module):
    tree = ast.parse((ROOT / module).read_text())
    assert _imports(tree) & FORBIDDEN_IMPORTS == set()


@pytest.mark.parametrize("module", MODULES)
def test_core_module_calls_no_io_builtin(module):
    tree = ast.parse((ROOT / module).read_text())
    assert _calls(tree) & FORBIDDEN_CALLS == set()


@pytest.mark.parametrize("module", sorted(STDLIB_ONLY))
def test_flood_module_imports_only_the_standard_library(module):
    # ... and the other building blocks (actors/words.py normalises as actors/textfilter.py)
    tree = ast.parse((ROOT / module).read_text())
    blocks = {node.module.replace(".", "/") + ".py" for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("actors.")}
    assert blocks <= STDLIB_ONLY
    assert _imports(tree) - {"actors"} <= STDLIB_ALLOWED


def test_the_list_holds_the_audit_and_the_flood_modules():
    assert STDLIB_ONLY <= set(MODULES)
    assert {"streams/audit/__init__.py", "streams/audit/replay.py", "streams/audit/whatif.py",
            "streams/audit/report.py", "streams/audit/results.py"} <= set(MODULES)
    assert {"streams/rules/screening.py", "streams/rules/approvals.py",
            "streams/rules/sendstate.py", "streams/rules/pipeline.py"} <= set(MODULES)


# Which room may import which: tests/test_structure.py (MAY_IMPORT).


def test_the_guard_catches_an_impure_module():
    tree = ast.parse("import time\nfrom ray import remote\nprint(time.time())")
    assert _imports(tree) & FORBIDDEN_IMPORTS == {"time", "ray"}
    assert _calls(tree) & FORBIDDEN_CALLS == {"print"}
