"""The flood-defence building blocks are part of the pure core: same guard as test_purity."""

import ast

import pytest

try:
    from tests.core.test_purity import FORBIDDEN_CALLS, FORBIDDEN_IMPORTS, ROOT, _imports
except ModuleNotFoundError:  # a bare `pytest` does not put the project root on sys.path
    from test_purity import FORBIDDEN_CALLS, FORBIDDEN_IMPORTS, ROOT, _imports

FLOOD_MODULES = [
    "actors/gcra.py",
    "actors/pacing.py",
    "actors/surge.py",
    "actors/textfilter.py",
]


@pytest.mark.parametrize("module", FLOOD_MODULES)
def test_flood_module_imports_nothing_impure(module):
    tree = ast.parse((ROOT / module).read_text())
    assert _imports(tree) & FORBIDDEN_IMPORTS == set()


@pytest.mark.parametrize("module", FLOOD_MODULES)
def test_flood_module_imports_only_the_standard_library(module):
    tree = ast.parse((ROOT / module).read_text())
    assert _imports(tree) <= {"__future__", "bisect", "dataclasses", "functools", "typing", "unicodedata"}


@pytest.mark.parametrize("module", FLOOD_MODULES)
def test_flood_module_calls_no_io_builtin(module):
    tree = ast.parse((ROOT / module).read_text())
    calls = {
        node.func.id for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert calls & FORBIDDEN_CALLS == set()
