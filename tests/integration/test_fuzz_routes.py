"""Property-based fuzzing of every operation in the gateway's merged /openapi.json.

The operations come from the document at run time, so a route a function declares later is
fuzzed here without new test code.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import schemathesis
from hypothesis import given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok
from starlette.applications import Starlette
from starlette.testclient import TestClient

from aibackend.local.gateway import PROBLEM, build_gateway
from aibackend.local.runtime import LocalRuntime
from tests.integration.embeddings.tiny_model import register_tiny_embeddings
from tests.support import FUNCTIONS, bearer, running_runtime

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]

#: Cases per operation and generation mode: fixed, so CI time grows only with the route count.
MAX_EXAMPLES = 100
#: Far below a function's timeout_s; a case this slow on every retry is a bug of its own.
DEADLINE = timedelta(seconds=3)
#: Methods schemathesis' coverage phase sends to a path that does not declare them.
#: HEAD is left out: its answer has no body to hold a problem document.
UNDECLARED = ("GET", "PUT", "POST", "DELETE", "OPTIONS", "PATCH", "TRACE", "QUERY")
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace", "query"}


@pytest.fixture(scope="module")
def runtime(fraud_state: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    # A copy: nothing here should touch the session's trained state. HTTP only (no pollers,
    # bus or watchers): fuzzing needs the gateway and the functions behind it.
    state = tmp_path_factory.mktemp("fuzz") / "state"
    shutil.copytree(fraud_state, state)
    # The heavy tier's model needs torch to build; a real 16-dimension ONNX encoder stands in
    # for it, so the embeddings and search routes are fuzzed with their server running.
    register_tiny_embeddings(state)
    with running_runtime(FUNCTIONS, state, sources=False) as rt:
        yield rt


@pytest.fixture(scope="module")
def gateway(runtime: LocalRuntime) -> Starlette:
    return build_gateway(
        runtime.catalog, runtime.hosts, health=runtime.health, access=runtime.access
    )


@pytest.fixture(scope="module")
def credentials(runtime: LocalRuntime) -> dict[str, str]:
    """The development key and a token with every scope a route declares: fuzzing reaches
    the functions (access itself is tested in test_access.py)."""
    scopes = sorted({s for _, r in runtime.catalog.routes() for s in r.scopes})
    return {"x-api-key": runtime.access.ensure_dev_key()[0], **bearer(runtime.access, *scopes)}


@pytest.fixture(scope="module")
def api_schema(gateway: Starlette) -> schemathesis.BaseSchema:
    # Built by hand rather than via `schemathesis.pytest.from_fixture`: its lazy loader sets
    # `Item._nodeid`, which pytest 9.2 no longer has (AttributeError before any case runs).
    return schemathesis.openapi.from_asgi("/openapi.json", gateway)


def client_errors_are_problem_details(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> None:
    """A 4xx says what to fix as an RFC 9457 problem document."""
    if not 400 <= response.status_code < 500:
        return
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.split(";")[0].strip() == PROBLEM, (
        f"{response.status_code} answered as {content_type!r}, not {PROBLEM}"
    )
    try:
        body = json.loads(response.content)
    except ValueError as e:
        raise AssertionError(f"problem body is not JSON: {response.content[:200]!r}") from e
    assert isinstance(body, dict), f"problem body is not a JSON object: {body!r}"
    missing = {"title", "status", "detail"} - body.keys()
    assert not missing, f"problem body lacks {sorted(missing)}: {body!r}"
    assert isinstance(body["title"], str) and isinstance(body["detail"], str), body
    assert body["status"] == response.status_code, (
        f"problem status {body['status']!r} != response status {response.status_code}"
    )


def _fuzz(
    operation: schemathesis.APIOperation, mode: GenerationMode, credentials: dict[str, str]
) -> int:
    """Run MAX_EXAMPLES seeded cases of `mode` against `operation`; return how many got a 2xx."""
    successes = 0

    @settings(max_examples=MAX_EXAMPLES, deadline=DEADLINE, derandomize=True, database=None)
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        nonlocal successes
        response = case.call(headers=credentials)
        checks = [not_a_server_error, client_errors_are_problem_details]
        if 200 <= response.status_code < 300:
            successes += 1
            checks += [status_code_conformance, content_type_conformance]
            checks += [response_schema_conformance]
        # Raises one report per failed check, with a curl command that replays the case.
        case.validate_response(response, checks=checks)

    run()
    return successes


#: Operations whose schema-valid requests may all fail for data reasons (e.g. a lookup by id
#: that answers 404 to random ids). Everything else must answer some valid request with a 2xx.
NO_2XX_EXPECTED: set[str] = {
    # A run id the fuzzer makes up is no run (the fuzz state has none): 404 by design.
    "GET /v1/pipeline/runs/{run_id}",
    # A model name the fuzzer makes up is no registered model: 404 by design (GET /v1/models,
    # which lists the real ones, must answer 2xx).
    "GET /v1/models/{name}/versions",
    "GET /v1/models/{name}/versions/{version}",
}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_every_declared_operation_survives_fuzzing(
    api_schema: schemathesis.BaseSchema, mode: GenerationMode, credentials: dict[str, str]
) -> None:
    # GIVEN every operation of the merged document
    results = list(api_schema.get_all_operations())
    errors = [r.err() for r in results if not isinstance(r, Ok)]
    assert not errors, f"operations schemathesis cannot read: {errors}"
    operations = [r.ok() for r in results if isinstance(r, Ok)]
    assert operations, "the merged /openapi.json declares no operation"
    failures: list[str] = []
    for operation in operations:
        # WHEN seeded valid (or invalid) requests are sent through the gateway
        try:
            successes = _fuzz(operation, mode, credentials)
        except Unsatisfiable as e:
            # Not a bug: an operation without parameters or body (GET /v1/fraud/model), or
            # one that accepts any JSON, has nothing to make invalid.
            if mode is not GenerationMode.NEGATIVE:
                failures.append(f"{operation.label}: no valid request can be generated: {e}")
            continue
        except (Exception, BaseExceptionGroup) as e:  # schemathesis' FailureGroup is the latter
            failures.append(f"{operation.label}: {e}")  # every operation runs, then all fail
            continue
        if (
            mode is GenerationMode.POSITIVE
            and not successes
            and operation.label not in NO_2XX_EXPECTED
        ):
            failures.append(
                f"{operation.label}: no schema-valid case got a 2xx, so its documented "
                "response schema went unchecked: the request schema is looser than the "
                "validation behind it (document the real constraints)"
            )
    # THEN none got a 5xx, every 4xx was a problem document, every 2xx was as documented
    assert not failures, "\n\n".join(failures)


def test_undeclared_methods_on_declared_paths_answer_405_problems(
    api_schema: schemathesis.BaseSchema, gateway: Starlette
) -> None:
    client = TestClient(gateway)
    wrong: list[str] = []
    for path, item in api_schema.raw_schema["paths"].items():
        declared = {m.upper() for m in item if m in HTTP_METHODS}
        url = re.sub(r"\{[^}]+\}", "fuzz", path)
        for method in sorted(set(UNDECLARED) - declared):
            # WHEN a declared path is called with a method it does not declare
            r = client.request(method, url)
            # THEN the answer is a 405 problem whose Allow header names the declared methods
            content_type = r.headers.get("content-type", "").split(";")[0]
            allow = {m.strip() for m in r.headers.get("allow", "").split(",")}
            problem = r.json() if content_type == PROBLEM else {}
            if (
                r.status_code != 405
                or content_type != PROBLEM
                or problem.get("status") != 405
                or not {"title", "detail"} <= problem.keys()
                or allow != declared
            ):
                wrong.append(
                    f"{method} {url} -> {r.status_code} {r.headers.get('content-type')!r} "
                    f"Allow {r.headers.get('allow')!r} {r.text[:120]!r}"
                )
    assert not wrong, "\n".join(wrong)
