"""EGW_DATABASE_URL or EGW_DATABASE_URL_FILE (a container secret), never both."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.storage import urls


def test_url_from_a_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "egw_database_url"
    secret.write_text("postgresql://egw:s3cret@db:5432/egw\n")
    env = {urls.ENV_URL_FILE: str(secret)}
    assert urls.from_env(env) == "postgresql://egw:s3cret@db:5432/egw"
    assert load_config(env).database_url == "postgresql://egw:s3cret@db:5432/egw"


def test_plain_variable_and_default() -> None:
    assert urls.from_env({urls.ENV_URL: "sqlite:///x.db"}) == "sqlite:///x.db"
    assert urls.from_env({}) == urls.DEFAULT_URL


@pytest.mark.parametrize(
    ("content", "both", "message"),
    [("", False, "is empty"), ("sqlite:///x.db", True, "not both"), (None, False, "cannot read")],
)
def test_bad_secret_files(tmp_path: Path, content: str | None, both: bool, message: str) -> None:
    secret = tmp_path / "url"
    if content is not None:
        secret.write_text(content)
    env = {urls.ENV_URL_FILE: str(secret), **({urls.ENV_URL: "sqlite:///y.db"} if both else {})}
    with pytest.raises(urls.DatabaseURLError, match=message) as caught:
        urls.from_env(env)
    assert "s3cret" not in str(caught.value)
