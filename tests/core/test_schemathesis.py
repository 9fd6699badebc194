"""Property-based requests from the OpenAPI schema of every other endpoint: none gets a 5xx,
and every answer is one the schema documents (status, content type, body, headers).

tests/ingest/api/test_schemathesis.py covers predictions and feedback with more examples;
this run draws valid and invalid requests (bodies, path and query parameters) for every
other operation of /api/v1/ and sends them over real HTTP to a live server, with a key
holding every scope and a world (a model, versions, an experiment) for the parameters to
hit. Bounded and derandomized: the same requests every run.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from apps.accounts import services as account_services
from tests.ingest.factories import churn_experiment, register_churn

EXAMPLES_PER_OPERATION = 12
# Beyond "no 5xx": every status is documented, the body is the documented one (API.md's error
# body for errors) with its content type and headers, and a request the schema calls invalid
# is refused with a 4xx.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]


def _schema() -> Any:
    raw = SchemaGenerator().get_schema(request=None, public=True)
    loaded = (
        schemathesis.openapi.from_dict(raw)
        .include(path_regex=r"^/api/v1/")
        .exclude(path_regex=r"^/api/v1/(predictions|feedback)")
    )
    loaded.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        max_examples=EXAMPLES_PER_OPERATION,
    )
    return loaded


schema = _schema()


@pytest.fixture
def every_scope_key(transactional_db: None) -> str:
    churn_experiment(register_churn())
    _, raw = account_services.api_key_create(
        application="schemathesis", name="all", scopes=["ingest", "read", "manage"]
    )
    return raw


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api__generated_requests__never_5xx_and_as_the_schema_says(
    case, live_server, every_scope_key
):
    # When a generated request is sent with a valid key
    response = case.call(
        base_url=live_server.url, headers={"Authorization": f"Bearer {every_scope_key}"}
    )
    # Then the server answers it without a server error, as its schema documents
    case.validate_response(response, checks=CHECKS)
    assert response.status_code < 500
