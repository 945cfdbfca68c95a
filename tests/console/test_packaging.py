"""The console's templates and stylesheet ship in the wheel: every file under gateway/console/templates and
gateway/console/static matches a package-data pattern (tests/packaging/test_install.py then serves the sign-in
page and the CSS from the installed wheel)."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_console_asset_is_package_data() -> None:
    with (REPO / "pyproject.toml").open("rb") as handle:
        patterns = tomllib.load(handle)["tool"]["setuptools"]["package-data"]["gateway"]
    console = REPO / "gateway" / "console"
    assets = [p for folder in ("templates", "static") for p in (console / folder).rglob("*") if p.is_file()]
    assert any(p.suffix == ".html" for p in assets)
    assert any(p.suffix == ".css" for p in assets)
    for asset in assets:
        relative = asset.relative_to(REPO / "gateway").as_posix()
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), f"{relative} is not in the wheel"
