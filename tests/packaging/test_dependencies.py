"""The product's run-time imports are exactly its declared dependencies; `[test]` holds only test and lint tools.

Read from the source (every `import`, including the ones inside functions, minus `if TYPE_CHECKING:` blocks, plus
`importlib.import_module("literal")`), so a new import of an undeclared package fails here, not in a user's venv.
tests/packaging/test_install.py proves the same from the other side: every module imports in a fresh virtualenv that
holds only the wheel and its declared dependencies.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("schemas", "adapters", "gateway")
FIRST_PARTY = {*PRODUCT, "tests", "bench"}

# Declared run-time dependencies that no `import` names, and why they are needed anyway.
USED_WITHOUT_IMPORT = {
    "aiosqlite": "SQLAlchemy's sqlite+aiosqlite dialect, chosen by the database URL",
    "psycopg": "SQLAlchemy's postgresql+psycopg dialect (psycopg is also imported directly)",
    "tzdata": "zoneinfo's data on systems without /usr/share/zoneinfo (slim containers, Windows)",
    "uvloop": "uvicorn's event loop when installed (`serve` measured faster with it)",
    "httptools": "uvicorn's HTTP parser when installed (`serve` measured faster with it)",
}
# Test extras that no test imports, and why they are there.
TOOLS = {
    "mypy": "`make test` runs mypy --strict",
    "ruff": "`make test` runs ruff check",
    "pytest-asyncio": "pytest plugin (asyncio_mode = auto)",
    "pytest-xdist": "`make test` runs the suite on TEST_WORKERS processes",
    "py-spy": "`python -m bench.overhead --py-spy-dir` samples the gateway with it",
    "openapi-python-client": "tests/gateway/test_generated_client.py runs its CLI on openapi/openapi.json",
}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return _canonical(match.group(1))


def _pyproject() -> dict[str, object]:
    with (REPO / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)


def runtime_requirements() -> set[str]:
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    return {_requirement_name(r) for r in project["dependencies"]}


def declared_test_requirements() -> set[str]:
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    return {_requirement_name(r) for r in project["optional-dependencies"]["test"]}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[tuple[str, int]]:
    """Top-level module names imported at run time, with their line numbers."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            skip.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0], node.lineno
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.args[0].value.split(".")[0], node.lineno


def third_party_imports(packages: tuple[str, ...]) -> dict[str, list[str]]:
    """Import name -> where it is imported (path:line), for every non-stdlib, non-first-party import."""
    found: dict[str, list[str]] = {}
    for package in packages:
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for name, line in _imports(tree):
                if name in sys.stdlib_module_names or name in FIRST_PARTY or name == "__future__":
                    continue
                found.setdefault(name, []).append(f"{path.relative_to(REPO)}:{line}")
    return found


def distributions_of(import_name: str) -> set[str]:
    return {_canonical(d) for d in importlib.metadata.packages_distributions().get(import_name, [])}


def test_every_runtime_import_is_a_declared_dependency() -> None:
    declared = runtime_requirements()
    undeclared: list[str] = []
    for name, places in sorted(third_party_imports(PRODUCT).items()):
        dists = distributions_of(name)
        if not dists:
            undeclared.append(f"{name} (installed by nothing in this environment) at {', '.join(places[:3])}")
        elif not dists & declared:
            undeclared.append(f"{name} (from {', '.join(sorted(dists))}) at {', '.join(places[:3])}")
    assert not undeclared, "imported at run time but not in [project].dependencies:\n" + "\n".join(undeclared)


def test_every_declared_dependency_is_used() -> None:
    imported: set[str] = set()
    for name in third_party_imports(PRODUCT):
        imported |= distributions_of(name)
    unused = sorted(runtime_requirements() - imported - set(USED_WITHOUT_IMPORT))
    assert not unused, f"in [project].dependencies but never imported (move to [test] or drop): {unused}"


def test_test_extra_holds_only_test_tools() -> None:
    runtime = runtime_requirements()
    extra = declared_test_requirements()
    assert not extra & runtime, f"listed both as run-time and test dependencies: {sorted(extra & runtime)}"
    used: set[str] = set()
    for name in third_party_imports(("tests", "bench")):
        used |= distributions_of(name)
    idle = sorted(extra - used - {_canonical(t) for t in TOOLS})
    assert not idle, f"in [test] but no test, benchmark or check uses them: {idle}"


def test_the_checker_sees_a_missing_declaration(tmp_path: Path) -> None:
    """The scan itself: a function-level import is found, a TYPE_CHECKING one is not."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import yaml\n"
        "def f():\n    import standardwebhooks\n    importlib.import_module('msgspec.json')\n"
    )
    names = {name for name, _ in _imports(ast.parse(source))}
    assert {"standardwebhooks", "msgspec"} <= names
    assert "yaml" not in names


@pytest.mark.parametrize("requirement", sorted(USED_WITHOUT_IMPORT))
def test_unimported_dependencies_are_declared(requirement: str) -> None:
    assert requirement in runtime_requirements()
