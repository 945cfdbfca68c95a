"""The support matrix in the README is the one the code generates."""

from __future__ import annotations

from pathlib import Path

from gateway.support_matrix import BEGIN, END, block

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_matrix_is_generated_from_capabilities() -> None:
    text = README.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    assert text[start:end] == block(), "README support matrix is stale: run `emr-gateway support-matrix --write`"
