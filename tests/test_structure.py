"""The shape of the code, held by one short test: each list below must stay empty.

- modules over 600 lines, functions over 80 (the package: actors, infra, schemas, streams);
- imports of another module's private ``_name`` (the package and the tests);
- imports running back up the rooms: each room imports only the rooms of ``MAY_IMPORT``
  (the README's "How it works" draws the same table).
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.factories import ROOT

PACKAGE = ("actors", "infra", "schemas", "streams")
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80

# Each room and the rooms it may import (schemas at the bottom, the command at the top).
MAY_IMPORT = {
    "schemas": set(),
    "actors": {"schemas"},
    "infra": {"schemas"},
    "infra.faust": {"schemas", "infra"},
    "streams.rules": {"schemas", "actors"},
    "streams.intake": {"schemas", "infra"},
    "streams.settings": {"schemas", "infra"},
    "streams.audit": {"schemas", "actors", "streams.rules"},
    "streams.console": {"schemas", "actors", "infra", "streams.settings"},
    "streams.simulate": {"schemas", "actors", "infra", "streams.rules", "streams.intake"},
    "streams.stages": {"schemas", "actors", "infra", "infra.faust", "streams.rules",
                       "streams.intake", "streams.settings"},
    "streams.app": {"schemas", "actors", "infra", "infra.faust", "streams.intake",
                    "streams.settings", "streams.stages"},
    "streams": set(),  # streams/__init__.py: the package, empty
    "streams.cli": {"schemas", "actors", "infra", "infra.faust", "streams.rules",
                    "streams.intake", "streams.settings", "streams.audit", "streams.console",
                    "streams.simulate", "streams.stages", "streams.app"},
}

# The campaign core is cut where its meaning divides (issue 28: state, evidence, queue,
# decide, evolve): no module takes another's private name; nothing may be added here.
ACTORS_PRIVATE_IMPORTS: set[tuple[str, str]] = set()


def _modules(*tops: str) -> list[Path]:
    return [p for top in tops for p in sorted((ROOT / top).rglob("*.py"))]


def _tree(path: Path) -> ast.AST:
    return ast.parse(path.read_text())


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def long_modules() -> dict[str, int]:
    return {_name(p): n for p in _modules(*PACKAGE)
            if (n := p.read_text().count("\n")) > MAX_MODULE_LINES}


def long_functions() -> dict[str, int]:
    return {f"{_name(p)}:{node.lineno} {node.name}": length for p in _modules(*PACKAGE)
            for node in ast.walk(_tree(p))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and (length := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES}


def private_imports(tree: ast.AST) -> set[str]:
    """``module._name`` for each private name imported from another module."""
    return {f"{node.module}.{alias.name}" for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
            for alias in node.names
            if alias.name.startswith("_") and not alias.name.startswith("__")}


def room(module: str) -> str:
    """The room of a dotted module name: ``streams.X`` and ``infra.faust`` are rooms of
    their own, every other module of infra, actors and schemas is its top package's."""
    parts = module.split(".")
    if parts[0] == "streams" and len(parts) > 1:
        return ".".join(parts[:2])
    if parts[:2] == ["infra", "faust"]:
        return "infra.faust"
    return parts[0]


def imported_rooms(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from streams import audit``: the room is the name imported.
            names = ([f"{node.module}.{alias.name}" for alias in node.names]
                     if node.module in ("streams", "infra") else [node.module])
        else:
            continue
        found |= {room(n) for n in names if n.split(".")[0] in PACKAGE}
    return found


def imports_up() -> dict[str, list[str]]:
    wrong = {}
    for path in _modules(*PACKAGE):
        here = room(_name(path).removesuffix(".py").replace("/", ".").removesuffix(".__init__"))
        found = imported_rooms(_tree(path)) - MAY_IMPORT[here] - {here}
        if found:
            wrong[_name(path)] = sorted(found)
    return wrong


def test_no_module_over_600_lines():
    assert long_modules() == {}


def test_no_function_over_80_lines():
    assert long_functions() == {}


def test_no_module_imports_another_s_private_name():
    found = {(_name(p), name) for p in _modules(*PACKAGE, "tests")
             for name in private_imports(_tree(p))}
    in_actors = {(path, name) for path, name in found if path.startswith("actors/")}
    assert found - in_actors == set()
    assert in_actors <= ACTORS_PRIVATE_IMPORTS  # and shrinking: see the list


def test_no_import_runs_back_up_the_rooms():
    assert imports_up() == {}


def test_every_room_is_in_the_table():
    rooms = {room(_name(p).removesuffix(".py").replace("/", ".").removesuffix(".__init__"))
             for p in _modules(*PACKAGE)}
    assert rooms == set(MAY_IMPORT)


def test_the_guards_see_what_they_look_for():
    tree = ast.parse("from streams.stages.send import x\nfrom infra.journal import _y\n"
                     "from streams import audit\nimport actors.campaign\n")
    assert private_imports(tree) == {"infra.journal._y"}
    assert imported_rooms(tree) == {"streams.stages", "infra", "streams.audit", "actors"}
    assert imported_rooms(tree) - MAY_IMPORT["streams.rules"] == {
        "streams.stages", "infra", "streams.audit"}
