"""`aib functions new NAME --http | --queue Q | --event SOURCE TYPE [--batch] | --schedule EXPR
| --bucket B`.

Writes a function that runs as written, for each kind of trigger the catalog declares: its
`function.toml`, a handler in the platform's habits (Powertools logger and metrics, FastAPI +
Mangum and problem+json errors for HTTP, partial batch failures for a queue, and for events in
batches a queue a rule fills (`--batch`)) and a test that
invokes the handler the way Lambda does. The folder is written beside the project's functions
and loaded with them as one catalog before it is renamed into `functions/` whole: a running
`aib dev` never sees half a function, or one the catalog refuses (a queue another function
consumes, a route another function serves), which leaves nothing behind.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from aibackend.byom.scaffold import check_identifier, check_not_shadowing
from aibackend.catalog import (
    DECLARATION,
    SCOPE,
    ScheduleTrigger,
    dead_letter_queue,
    load_catalog,
)
from aibackend.errors import ConfigError

Kind = Literal["http", "queue", "event", "batch", "schedule", "object"]
KINDS: tuple[Kind, ...] = get_args(Kind)


@dataclass(frozen=True)
class Trigger:
    """What invokes the new function: exactly one kind, with its settings."""

    kind: Kind
    #: HTTP: the scopes a bearer token must carry for the echo route (none: an API key only).
    scopes: tuple[str, ...] = ()
    queue: str = ""
    source: str = ""
    detail_type: str = ""
    expression: str = ""
    bucket: str = ""
    prefix: str = ""
    suffix: str = ""


def slug(name: str) -> str:
    """The route segment of a function: `order_lookup` -> `order-lookup`."""
    return name.replace("_", "-")


def _toml_str(s: str) -> str:
    """A TOML basic string (the same escapes as JSON's)."""
    return json.dumps(s)


# --- function.toml ------------------------------------------------------------------------

_HEAD = """\
# Scaffolded by `aib functions new`. Every field: README "Add a function"; `aib functions`
# lists what the catalog read, `aib dev` serves it, `cdk synth` builds its Lambda and grants.
description = {description}
handler = "handler.handler"
memory_mb = 256
timeout_s = 10
"""

_DECLARATIONS = {
    "http": """
# Access: `public` is for health checks only; `api_key` needs a key (x-api-key, counted
# against its usage plan); `token` also needs a bearer token carrying every listed scope.
[[routes]]
method = "GET"
path = "{prefix}/health"
access = "public"

[[routes]]
method = "POST"
path = "{prefix}/echo"
{echo_access}max_body_kb = 64

[[routes]]
method = "GET"
path = "{prefix}/openapi.json"
access = "api_key"
""",
    "queue": """
# An SQS event source mapping; this function owns the queue and its dead-letter queue
# ({queue}-dlq): a message that fails max_receive_count times moves there.
[[queues]]
queue = {queue_toml}
batch_size = 10
max_receive_count = 5
""",
    "event": """
# An EventBridge rule on the platform bus "aib": failed invocations are retried
# (max_attempts), then kept in {name}-failures with the error.
[[events]]
pattern = {{ source = [{source_toml}], detail-type = [{detail_type_toml}] }}
max_attempts = 2
max_event_age_s = 3600
""",
    "batch": """
# EventBridge -> SQS -> this function in batches: a rule on the platform bus "aib" fills the
# queue, and each invocation gets up to batch_size of its events (a message body is one whole
# event). A message that fails max_receive_count times, or that the handler rejects (with the
# reason), waits in the queue's DLQ (<queue>-dlq).
[[queues]]
queue = {queue_toml}
batch_size = 10
max_receive_count = 3

[[queues.events]]
pattern = {{ source = [{source_toml}], detail-type = [{detail_type_toml}] }}

[resources]
# The queue's DLQ: the handler puts a message that is no event there, with the reason.
queues = {{ {dlq_toml} = "write" }}
""",
    "schedule": """
# rate(...) or cron(...), as EventBridge schedules (UTC).
[[schedules]]
expression = {expression_toml}
""",
    "object": """
# Object Created in bucket {bucket}, under {prefix_or_any}; `aib put {bucket} KEY FILE` drops one.
[[objects]]
bucket = {bucket_toml}
prefix = {prefix_toml}
suffix = {suffix_toml}

[resources]
buckets = {{ {bucket_toml} = "read" }}
""",
}

# --- handlers -----------------------------------------------------------------------------

_HANDLERS = {
    "http": '''"""HTTP API of function {name}.

API Gateway REST proxy event -> FastAPI via Mangum (scaffolded by `aib functions new`). Errors
leave as application/problem+json; the OpenAPI document is served under the prefix:
{prefix}/openapi.json.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from fastapi import APIRouter
from mangum import Mangum
from pydantic import BaseModel, Field

from aibackend.catalog import load_function
from aibackend.http import problem_responses, serve_openapi, service_app
from aibackend.masking import masked_logger

logger = masked_logger()
metrics = Metrics()
# The health check records no metric; Powertools would warn about that on every call.
warnings.filterwarnings("ignore", "No application metrics to publish", UserWarning)

PREFIX = "{prefix}"
TITLE = "{name}"
DESCRIPTION = load_function(Path(__file__).parent).description  # function.toml's


class EchoRequest(BaseModel):
    text: str = Field(min_length=1, max_length=10_000, description="Any text")


class EchoResponse(BaseModel):
    text: str
    length: int


class Health(BaseModel):
    status: str = "ok"


app = service_app(TITLE, DESCRIPTION)
v1 = APIRouter(prefix=PREFIX, responses=problem_responses(422))


@v1.get("/health", response_model=Health)
async def health() -> Health:
    """Liveness (public: no key needed)."""
    return Health()


@v1.post("/echo", response_model=EchoResponse)
async def echo(body: EchoRequest) -> EchoResponse:
    """The text sent, and its length. Replace with what this function is for."""
    metrics.add_metric(name="Echoes", unit=MetricUnit.Count, value=1)
    return EchoResponse(text=body.text, length=len(body.text))


app.include_router(v1)
OPENAPI = f"{{PREFIX}}/openapi.json"  # a route of its own, as API Gateway routes it
serve_openapi(app, OPENAPI, v1, title=TITLE, version="1", description=DESCRIPTION)

# lifespan="off": otherwise Mangum runs the ASGI lifespan on every invocation.
_asgi = Mangum(app, lifespan="off")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return _asgi(event, context)  # type: ignore[no-any-return]
''',
    "queue": '''"""Function {name}: consumes its SQS queue.

Scaffolded by `aib functions new`. Each message of a batch is handled on its own: one that
raises is reported as a batch item failure, so only it is retried, and after max_receive_count
attempts it moves to the queue's dead-letter queue (`<queue>-dlq`); the rest of the batch is done.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from aibackend.masking import masked_logger

logger = masked_logger()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS)


def handle(record: SQSRecord) -> dict[str, Any]:
    """One message: a JSON object. Anything else raises, and fails this message only."""
    message = json.loads(record.body)
    if not isinstance(message, dict):
        raise ValueError(f"a message must be a JSON object, not {{type(message).__name__}}")
    handled = {{"message_id": record.message_id, "keys": sorted(message)}}
    logger.info("message handled", extra=handled)
    metrics.add_metric(name="MessagesHandled", unit=MetricUnit.Count, value=1)
    return message


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=handle, processor=processor, context=context
    )
''',
    "event": '''"""Function {name}: handles its rule's events.

Scaffolded by `aib functions new`: an EventBridge rule on the platform bus `aib`. An exception
fails the invocation: it is retried (max_attempts), then kept with its error in the function's
failure queue (`aib queues <name>-failures`).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from aibackend.masking import masked_logger

logger = masked_logger()
metrics = Metrics()


# The platform's events carry the correlation id of the event that caused them.
@logger.inject_lambda_context(correlation_id_path="detail.correlation_id || id")
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    received = EventBridgeEvent(event)
    logger.info(
        "event handled",
        extra={{"event_id": received.get_id, "detail_type": received.detail_type}},
    )
    metrics.add_metric(name="EventsHandled", unit=MetricUnit.Count, value=1)
    return {{"event_id": received.get_id, "detail_keys": sorted(received.detail)}}
''',
    "batch": '''"""Function {name}: handles its rule's events in batches.

Scaffolded by `aib functions new --batch`. A rule on the platform bus `aib` fills the queue
named below, and each invocation gets up to 10 of its events. Work on the batch as a whole
(one model call, one table write, one PutEvents of up to 10 entries: see
functions/fraud_events). A message that is no event goes to the queue's DLQ at once, with
the reason; one whose handling fails is returned in batchItemFailures, retried alone, and
after max_receive_count receives waits in the DLQ too (`aib queues <queue>-dlq` shows them).
SQS delivers at least once: make the work idempotent (`aibackend.ledger` skips events
handled already).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from aibackend.events.batches import Rejections, add_counts, bus_messages, partial_response
from aibackend.masking import masked_logger

logger = masked_logger()
metrics = Metrics()

#: The queue its `function.toml` declares; a message it rejects goes to its DLQ.
QUEUE = "{queue}"
REJECTIONS = Rejections(QUEUE)


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    messages, rejected = bus_messages(event)
    failed = REJECTIONS.send(rejected)  # those whose send failed come back for a retry
    # The batch's events, in order: work on them together here.
    handled = [m.event["id"] for m in messages]
    logger.info("events handled", extra={{"event_ids": handled}})
    add_counts(metrics, EventsHandled=len(handled), EventsRejected=len(rejected))
    return partial_response(failed)
''',
    "schedule": '''"""Function {name}: runs on its schedule.

Scaffolded by `aib functions new`. `aib dev` fires it on time (UTC), EventBridge Scheduler on
AWS; `aib invoke <name> --event FILE` runs it now.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from aibackend.masking import masked_logger

logger = masked_logger()
metrics = Metrics()


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    scheduled = EventBridgeEvent(event)  # detail-type "Scheduled Event", time: when it was due
    logger.info("scheduled run", extra={{"due": scheduled.time}})
    metrics.add_metric(name="Runs", unit=MetricUnit.Count, value=1)
    return {{"due": scheduled.time}}
''',
    "object": '''"""Function {name}: handles new objects.

Scaffolded by `aib functions new`: S3 `Object Created` events through EventBridge. The object is
read through `aibackend.adapters.object_store`: a folder under `.aib/buckets/` locally, S3 on
AWS (the logical bucket name maps to the deployed bucket).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from aibackend.adapters import object_store
from aibackend.catalog import load_function
from aibackend.masking import masked_logger

logger = masked_logger()
metrics = Metrics()
#: The bucket's logical name, as function.toml declares it.
BUCKET = load_function(Path(__file__).parent).objects[0].bucket


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    key = EventBridgeEvent(event).detail["object"]["key"]
    info = object_store(BUCKET).head(key)
    logger.info("object handled", extra={{"key": key, "size": info.size}})
    metrics.add_metric(name="ObjectsHandled", unit=MetricUnit.Count, value=1)
    return {{"key": key, "size": info.size}}
''',
}

# --- tests --------------------------------------------------------------------------------

_TEST_DOC = '''"""Function {name}: its handler, invoked as Lambda does.

Scaffolded by `aib functions new`; `make test` runs it. Events come from
`aibackend.events.shapes`, the shapes `aib dev` delivers."""

from __future__ import annotations

'''

#: Each kind's imports, sorted as ruff's isort sorts them (the test must pass `make lint`).
_TEST_IMPORTS = {
    "http": """import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aibackend.catalog import load_catalog
from aibackend.local.apigw import build_event, parse_response
from aibackend.local.host import FunctionHost
from aibackend.local.invoke import local_function
from aibackend.settings import PlatformSettings
""",
    "queue": """import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aibackend.catalog import load_catalog
from aibackend.events.shapes import sqs_event
from aibackend.local.host import FunctionHost
from aibackend.local.invoke import local_function
from aibackend.ports import QueueMessage
from aibackend.settings import PlatformSettings
""",
    "event": """from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aibackend.catalog import load_catalog
from aibackend.events.shapes import eventbridge_event
from aibackend.local.host import FunctionHost
from aibackend.local.invoke import local_function
from aibackend.ports import PutEvent
from aibackend.settings import PlatformSettings
""",
    "batch": """import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aibackend.adapters import queue_service
from aibackend.catalog import dead_letter_queue, load_catalog
from aibackend.events.shapes import eventbridge_event, sqs_event
from aibackend.local.host import FunctionHost
from aibackend.local.invoke import local_function
from aibackend.ports import PutEvent, QueueMessage
from aibackend.settings import PlatformSettings
""",
    "schedule": """from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aibackend.catalog import load_catalog
from aibackend.events.shapes import scheduled_event
from aibackend.local.host import FunctionHost
from aibackend.local.invoke import local_function
from aibackend.settings import PlatformSettings
""",
    "object": """from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aibackend.adapters import object_store
from aibackend.catalog import load_catalog
from aibackend.events.shapes import s3_object_created_event
from aibackend.local.host import FunctionHost
from aibackend.local.invoke import local_function
from aibackend.settings import PlatformSettings
""",
}

_TEST_FIXTURE = '''
NAME = "{name}"
FOLDER = Path(__file__).resolve().parents[2] / "functions" / NAME


@pytest.fixture
def host(tmp_path: Path) -> Iterator[FunctionHost]:
    """The function loaded as `aib dev` loads it, on a state folder of its own."""
    settings = PlatformSettings(state_dir=tmp_path / "state")
    with local_function(load_catalog(FOLDER.parent), NAME, settings) as loaded:
        yield loaded
'''

_TESTS = {
    "http": """

PREFIX = "{prefix}"


def call(host: FunctionHost, method: str, path: str, body: object = None) -> tuple[int, Any]:
    event = build_event(
        method=method,
        path=path,
        resource=path,
        path_parameters=None,
        headers=[("content-type", "application/json")],
        query=[],
        body=b"" if body is None else json.dumps(body).encode(),
    )
    # Decoded as API Gateway does (Mangum base64-encodes a problem+json body).
    status, _headers, raw = parse_response(host.invoke(event))
    return status, json.loads(raw)


def test_echo_answers_the_text_and_its_length(host: FunctionHost) -> None:
    # GIVEN the function WHEN a text is posted THEN it comes back with its length
    status, body = call(host, "POST", f"{{PREFIX}}/echo", {{"text": "hello"}})
    assert (status, body) == (200, {{"text": "hello", "length": 5}})


def test_a_body_without_text_is_a_problem_naming_the_field(host: FunctionHost) -> None:
    # GIVEN a body that lacks the field WHEN it is posted THEN a 422 problem names it
    status, body = call(host, "POST", f"{{PREFIX}}/echo", {{"txt": "hello"}})
    assert status == 422
    assert body["title"] == "Invalid request" and "text" in body["detail"]
""",
    "queue": """

def message(message_id: str, body: str) -> QueueMessage:
    md5 = hashlib.md5(body.encode(), usedforsecurity=False).hexdigest()
    return QueueMessage(
        message_id=message_id, receipt_handle=f"rh-{{message_id}}", body=body, md5_of_body=md5
    )


def test_only_the_message_that_fails_is_returned_for_a_retry(host: FunctionHost) -> None:
    # GIVEN a batch with one good message and one that is not JSON
    event = sqs_event(
        [message("m-1", json.dumps({{"order": 1}})), message("m-2", "not json")],
        queue_name=host.spec.queues[0].queue,
        now=datetime.now(UTC),
    )
    # WHEN the batch is handled THEN only the bad one is reported (SQS retries it, then
    # moves it to the dead-letter queue), and the good one is done
    assert host.invoke(event) == {{"batchItemFailures": [{{"itemIdentifier": "m-2"}}]}}
""",
    "event": """

def test_an_event_of_its_pattern_is_handled(host: FunctionHost) -> None:
    # GIVEN the event this function's rule matches
    pattern = host.spec.events[0].pattern
    entry = PutEvent(
        source=pattern["source"][0], detail_type=pattern["detail-type"][0], detail={{"example": 1}}
    )
    event = eventbridge_event(entry, event_id="e-1", time=datetime.now(UTC))
    # WHEN it is delivered THEN the handler answers for it
    assert host.invoke(event) == {{"event_id": "e-1", "detail_keys": ["example"]}}
""",
    "batch": """

def message(message_id: str, body: str) -> QueueMessage:
    return QueueMessage(
        message_id=message_id, receipt_handle=f"rh-{{message_id}}", body=body, md5_of_body=""
    )


def test_a_batch_is_handled_and_a_message_that_is_no_event_is_dead_lettered(
    host: FunctionHost, tmp_path: Path
) -> None:
    # GIVEN a batch from its queue: an event its rule matches, and a message that is no event
    queue = host.spec.queues[0]
    pattern = queue.events[0].pattern
    entry = PutEvent(
        source=pattern["source"][0], detail_type=pattern["detail-type"][0], detail={{"example": 1}}
    )
    event = eventbridge_event(entry, event_id="e-1", time=datetime.now(UTC))
    batch = sqs_event(
        [message("m-1", json.dumps(event)), message("m-2", "not an event")],
        queue_name=queue.queue,
        now=datetime.now(UTC),
    )
    # WHEN the batch is handled THEN nothing is left for a retry
    assert host.invoke(batch) == {{"batchItemFailures": []}}
    # AND the message that is no event waits in the DLQ, as it came, with the reason
    dlq = queue_service(PlatformSettings(state_dir=tmp_path / "state")).get(
        dead_letter_queue(queue.queue)
    )
    [kept] = dlq.receive(10)
    assert kept.body == "not an event"
    assert kept.message_attributes["ERROR_MESSAGE"]["StringValue"].startswith(
        "the body is not JSON"
    )
""",
    "schedule": """

def test_a_scheduled_run_reports_when_it_was_due(host: FunctionHost) -> None:
    # GIVEN the event its schedule sends
    due = datetime(2026, 1, 1, 6, 0, tzinfo=UTC)
    event = scheduled_event(rule_name=f"{{NAME}}-0", time=due, event_id="e-1")
    # WHEN it runs THEN it says which run it was
    assert host.invoke(event) == {{"due": "2026-01-01T06:00:00Z"}}
""",
    "object": """

def test_a_created_object_is_read(host: FunctionHost, tmp_path: Path) -> None:
    # GIVEN an object in the bucket
    trigger = host.spec.objects[0]
    key = f"{{trigger.prefix}}example{{trigger.suffix}}"
    store = object_store(trigger.bucket, PlatformSettings(state_dir=tmp_path / "state"))
    store.put(key, b"12345")
    info = store.head(key)
    # WHEN its Object Created event is delivered THEN the handler read it
    event = s3_object_created_event(
        bucket=trigger.bucket,
        key=key,
        size=info.size,
        etag=info.etag,
        sequencer="0A1B2C3D4E5F678901",
        time=datetime.now(UTC),
        event_id="e-1",
        request_id="r-1",
    )
    assert host.invoke(event) == {{"key": key, "size": 5}}
""",
}


def check_new_name(name: str, functions_dir: Path) -> None:
    """Refuse a name that cannot be a new function in `functions_dir`."""
    check_identifier(name, "function", "it names the folder, the Python package and the routes")
    if (functions_dir / name).exists():
        raise ConfigError(f"{functions_dir / name} exists; pick another name")
    check_not_shadowing(name, functions_dir, "pick another name")


def check_trigger(trigger: Trigger) -> None:
    """Refuse settings the declaration would refuse, before anything is written."""
    if trigger.kind not in KINDS:
        raise ConfigError(f"unknown trigger kind {trigger.kind!r}: one of {', '.join(KINDS)}")
    bad = [scope for scope in trigger.scopes if not SCOPE.match(scope)]
    if bad:
        raise ConfigError(
            f"--scopes {', '.join(bad)}: a scope is `resource:action`, e.g. predict:orders"
        )
    if trigger.kind == "schedule":
        try:
            ScheduleTrigger(expression=trigger.expression)
        except ValueError as e:
            raise ConfigError(f"--schedule {trigger.expression!r}: {e}") from None


def render(name: str, trigger: Trigger, description: str) -> dict[str, str]:
    """File name (relative to the function's folder, or `test` for its test) -> text."""
    prefix = f"/v1/{slug(name)}"
    echo_access = 'access = "api_key"\n'
    if trigger.scopes:
        listed = ", ".join(_toml_str(scope) for scope in trigger.scopes)
        echo_access = f'access = "token"\nscopes = [{listed}]\n'
    values = {
        "name": name,
        "echo_access": echo_access,
        "description": description,
        "prefix": prefix,
        "queue": trigger.queue,
        "queue_toml": _toml_str(trigger.queue),
        "dlq_toml": _toml_str(dead_letter_queue(trigger.queue)),
        "source_toml": _toml_str(trigger.source),
        "detail_type_toml": _toml_str(trigger.detail_type),
        "expression_toml": _toml_str(trigger.expression),
        "bucket": trigger.bucket,
        "bucket_toml": _toml_str(trigger.bucket),
        "prefix_or_any": f"{trigger.prefix}*{trigger.suffix}",
        "prefix_toml": _toml_str(trigger.prefix),
        "suffix_toml": _toml_str(trigger.suffix),
    }
    declaration = _HEAD.format(description=_toml_str(description)) + _DECLARATIONS[
        trigger.kind
    ].format(**values)
    return {
        DECLARATION: declaration,
        "handler.py": _HANDLERS[trigger.kind].format(**values),
        "test": _TEST_DOC.format(**values)
        + _TEST_IMPORTS[trigger.kind]
        + _TEST_FIXTURE.format(**values)
        + _TESTS[trigger.kind].format(**values),
    }


def default_description(name: str, trigger: Trigger) -> str:
    return {
        "http": f"HTTP API under /v1/{slug(name)}.",
        "queue": f"Consumes queue {trigger.queue}.",
        "event": f"Handles {trigger.detail_type} events from {trigger.source}.",
        "batch": f"Handles {trigger.detail_type} events from {trigger.source} in batches.",
        "schedule": f"Runs on {trigger.expression}.",
        "object": f"Handles objects created in bucket {trigger.bucket}.",
    }[trigger.kind]


def new_function(
    functions_dir: Path,
    name: str,
    trigger: Trigger,
    *,
    description: str = "",
    tests_dir: Path | None = None,
) -> list[Path]:
    """Write `functions_dir/<name>/` (and `tests_dir/test_<name>.py`); returns what was written.

    Raises `ConfigError`, leaving nothing behind, when the name, the trigger, or the catalog
    with the new function in it is refused."""
    check_new_name(name, functions_dir)
    check_trigger(trigger)
    files = render(name, trigger, description or default_description(name, trigger))
    test = tests_dir / f"test_{name}.py" if tests_dir is not None else None
    if test is not None and test.exists():
        raise ConfigError(f"{test} exists; pick another name or pass --no-test")
    if trigger.kind in ("queue", "batch") and functions_dir.is_dir():
        consumers = {
            q.queue: f.name for f in load_catalog(functions_dir).functions for q in f.queues
        }
        if trigger.queue in consumers:
            raise ConfigError(
                f"queue {trigger.queue!r} is consumed by function {consumers[trigger.queue]!r}, "
                "and a queue has one consumer: pick another queue, or fan out with the event bus"
            )
    folder = functions_dir / name
    functions_dir.mkdir(parents=True, exist_ok=True)
    # Written and checked beside the others first, then moved in whole (a rename), so that a
    # running `aib dev` never sees half a function, or one the catalog refuses.
    with tempfile.TemporaryDirectory(dir=functions_dir.parent, prefix=".aib-new-") as tmp:
        staging = Path(tmp)
        for entry in functions_dir.iterdir():  # the catalog as it is: functions, plans, ...
            (staging / entry.name).symlink_to(entry.resolve())
        new = staging / name
        new.mkdir()
        (new / "__init__.py").write_text("", encoding="utf-8")
        (new / "handler.py").write_text(files["handler.py"], encoding="utf-8")
        (new / DECLARATION).write_text(files[DECLARATION], encoding="utf-8")
        try:
            load_catalog(staging)  # the new function among the others, or why not
        except ConfigError as e:
            where = str(staging.resolve())
            raise ConfigError(str(e).replace(where, str(functions_dir))) from None
        new.rename(folder)
    written = [folder / DECLARATION, folder / "handler.py", folder / "__init__.py"]
    if test is not None:
        test.parent.mkdir(parents=True, exist_ok=True)
        test.write_text(files["test"], encoding="utf-8")
        written.append(test)
    return written
