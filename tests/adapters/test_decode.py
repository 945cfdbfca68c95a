"""`adapters.http.decode`: an answer that no longer fits is ContractChanged naming the field, never quoting a value."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Annotated

import msgspec
import pytest

from adapters.errors import ContractChanged
from adapters.http import decode


class Kind(enum.Enum):
    A = "a"


class Item(msgspec.Struct):
    scheduled_duration: int
    kind: Kind = Kind.A
    code: Annotated[str, msgspec.Meta(max_length=3)] = ""
    at: dt.datetime | None = None


class Page(msgspec.Struct):
    treatments: list[Item]


@pytest.mark.parametrize(
    ("body", "path", "problem"),
    [
        (
            b'{"treatments": [{"treatment_duration": 1800}]}',
            "$.treatments[0].scheduled_duration",
            "missing required field",
        ),
        (
            b'{"treatments": [{"scheduled_duration": "30"}]}',
            "$.treatments[0].scheduled_duration",
            "expected int, got str",
        ),
        (
            b'{"treatments": [{"scheduled_duration": 30, "kind": "Jane Citizen"}]}',
            "$.treatments[0].kind",
            "a value outside the known set",
        ),
        (
            b'{"treatments": [{"scheduled_duration": 30, "code": "jane@x.com"}]}',
            "$.treatments[0].code",
            "a str outside the expected format",
        ),
        (
            b'{"treatments": [{"scheduled_duration": 30, "at": "12/04/1985 Jane"}]}',
            "$.treatments[0].at",
            "invalid RFC3339 encoded datetime",
        ),
        (b"<html>", "$", "not valid JSON"),
    ],
)
def test_shape_errors_name_the_field_and_never_a_value(body: bytes, path: str, problem: str) -> None:
    with pytest.raises(ContractChanged) as caught:
        decode(body, Page, emr="Jane", status=200)
    assert (caught.value.path, caught.value.problem) == (path, problem)
    for value in ("Jane Citizen", "jane@x.com", "1985", "<html>"):
        assert value not in caught.value.message


def test_unknown_extra_fields_are_ignored() -> None:
    page = decode(b'{"treatments": [{"scheduled_duration": 30, "brand_new": {"x": 1}}], "more": 1}', Page, emr="Jane")
    assert page.treatments[0].scheduled_duration == 30
