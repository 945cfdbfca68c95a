"""The committed OpenAPI document is the app's, and the app keeps every promise it makes there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.commands.openapi import document
from tests.gateway.conftest import Harness

COMMITTED = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"


def test_committed_document_matches_the_app() -> None:
    assert COMMITTED.exists(), "run `make openapi` and commit openapi/openapi.json"
    assert json.loads(COMMITTED.read_text()) == json.loads(document()), (
        "openapi/openapi.json is stale: run `make openapi` and commit it"
    )


schema = schemathesis.openapi.from_dict(json.loads(document()))


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
    derandomize=True,
)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_api_fuzz_no_server_error_no_schema_break(case: schemathesis.Case, harness: Harness) -> None:
    """Generated requests (authenticated as a real location) never get a 5xx and never an undocumented answer."""
    response = case.call(base_url=harness.base_url, headers={"x-api-key": harness.sites[0].api_key})
    assert response.status_code < 500 or response.status_code in (501,), (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
    )
    case.validate_response(
        response, checks=[status_code_conformance, content_type_conformance, response_schema_conformance]
    )
