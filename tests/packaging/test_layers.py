"""Dependencies go one way (`gateway -> adapters -> schemas`); inside the gateway, only the app factory registers
route modules and storage knows no domain module. Read from every import statement, including ones inside
functions, so a layer cannot be crossed lazily either."""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _imported_modules(path: Path) -> Iterator[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this file's package
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parent, base] if base else parent)
            yield base, node.lineno
            for alias in node.names:  # `from gateway import routes` imports gateway.routes
                yield f"{base}.{alias.name}", node.lineno


def _within(module: str, package: str) -> bool:
    """`package` and its submodules; `gateway.` means the submodules only (`from gateway import x` names `gateway`)."""
    if package.endswith("."):
        return module.startswith(package)
    return module == package or module.startswith(package + ".")


def _is_leaf_utility(module: str) -> bool:
    """A gateway module that itself imports nothing from the gateway (key formats, encryption): no domain logic."""
    parts = module.split(".")
    for cut in range(len(parts), 1, -1):  # `gateway.apikeys.is_test_prefix` names a function of gateway.apikeys
        path = REPO.joinpath(*parts[:cut]).with_suffix(".py")
        if path.exists():
            return not any(_within(m, "gateway") for m, _ in _imported_modules(path))
    return False


Rule = tuple[str, Callable[[Path], bool], Callable[[str], bool]]
RULES: list[Rule] = [
    (
        "schemas import neither adapters nor the gateway",
        lambda p: p.parts[0] == "schemas",
        lambda m: _within(m, "adapters") or _within(m, "gateway"),
    ),
    ("adapters never import the gateway", lambda p: p.parts[0] == "adapters", lambda m: _within(m, "gateway")),
    (
        "only the app factory imports route modules",
        lambda p: p.parts[0] == "gateway" and p.parts[1] != "routes" and p.as_posix() != "gateway/app.py",
        lambda m: _within(m, "gateway.routes"),
    ),
    (
        "storage imports no domain module (from the gateway, only storage and leaf utilities such as crypto)",
        lambda p: p.parts[:2] == ("gateway", "storage"),
        lambda m: _within(m, "gateway.") and not _within(m, "gateway.storage") and not _is_leaf_utility(m),
    ),
]


@pytest.mark.parametrize(("rule", "applies", "forbidden"), RULES, ids=[r[0] for r in RULES])
def test_dependencies_go_one_way(rule: str, applies: Callable[[Path], bool], forbidden: Callable[[str], bool]) -> None:
    crossings = [
        f"{path.relative_to(REPO)}:{line} imports {module}"
        for top in ("schemas", "adapters", "gateway")
        for path in sorted((REPO / top).rglob("*.py"))
        if applies(path.relative_to(REPO))
        for module, line in _imported_modules(path)
        if forbidden(module)
    ]
    assert not crossings, f"{rule}:\n" + "\n".join(crossings)
