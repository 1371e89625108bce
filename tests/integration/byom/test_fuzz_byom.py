"""Every route of two generic model services, fuzzed from the merged OpenAPI as the repo's own
functions are (`tests/integration/test_fuzz_routes.py`): the request schema built from each
model's card must say exactly what the service accepts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.result import Ok

from aibackend.local.runtime import LocalRuntime
from tests.integration.byom.conftest import Workspace
from tests.integration.test_fuzz_routes import _fuzz
from tests.support import bearer, running_runtime

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runtime(
    byom_workspace: Workspace, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalRuntime]:
    ws = byom_workspace.copy(tmp_path_factory.mktemp("fuzz") / "ws")
    with running_runtime(ws.functions, ws.state, sources=False) as rt:
        yield rt


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_generic_model_routes_survive_fuzzing(runtime: LocalRuntime, mode: GenerationMode) -> None:
    # GIVEN the merged document of a trained model (churn) and an imported one (tiny)
    schema = schemathesis.openapi.from_asgi("/openapi.json", runtime.gateway().current())
    operations = [r.ok() for r in schema.get_all_operations() if isinstance(r, Ok)]
    assert {op.label for op in operations} >= {
        "POST /v1/models/churn/predict",
        "POST /v1/models/tiny/predict",
    }
    credentials = {
        "x-api-key": runtime.access.ensure_dev_key()[0],
        **bearer(runtime.access, "predict:churn", "predict:tiny"),
    }
    failures = []
    for operation in operations:
        # WHEN seeded valid (or invalid) requests are sent through the gateway
        try:
            successes = _fuzz(operation, mode, credentials)
        except Unsatisfiable:
            continue  # nothing to make invalid (GET routes without parameters)
        except (Exception, BaseExceptionGroup) as e:
            failures.append(f"{operation.label}: {e}")
            continue
        if mode is GenerationMode.POSITIVE and not successes:
            failures.append(f"{operation.label}: no schema-valid case got a 2xx")
    # THEN no 5xx, every 4xx a problem document, every 2xx as documented
    assert not failures, "\n\n".join(failures)
