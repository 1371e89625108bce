"""The function catalog: one `function.toml` per function, validated here.

A declaration says what a function is (handler, memory, timeout, architecture, models), how
it is triggered (HTTP routes with their access level) and what it may touch. CDK builds the
Lambda, its triggers and its IAM grants from it; the local runtime wires the same triggers.
Nothing about topology is written twice.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from aibackend.auth.plans import DEFAULT_PLANS, Plan, load_plans
from aibackend.capture import QUEUE as CAPTURE_QUEUE
from aibackend.capture import CaptureSettings, load_capture
from aibackend.errors import ConfigError

DECLARATION = "function.toml"
_IDENT = r"^[a-z][a-z0-9_]*$"
#: A deploy group: lowercase words joined by hyphens (it becomes part of a stack name).
_GROUP = r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$"
#: The deploy group of the REST API and its authorizer (the API stack): the authorizer ships
#: with the route table it enforces, so no group stack has to change when routes do.
API_GROUP = "api"
_PATH = re.compile(r"^(/[A-Za-z0-9._~-]+|/\{[A-Za-z_][A-Za-z0-9_]*\+?\})+$|^/$")


class Access(StrEnum):
    """Who may call a route. Every route must say it; there is no default."""

    PUBLIC = "public"  # health checks only (`GET .../health`)
    API_KEY = "api_key"
    TOKEN = "token"  # API key plus a bearer token carrying the route's scopes


#: `verb:object`, e.g. `predict:fraud`, `models:admin` (OAuth scope characters, no spaces).
SCOPE = re.compile(r"^[a-z][a-z0-9_-]*:[a-z0-9_*-]+$")
#: The only routes that may be `public`.
HEALTH = re.compile(r"^(/[A-Za-z0-9._~-]+)*/health$")


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    path: Annotated[str, Field(description="API Gateway resource path, e.g. /v1/fraud/score")]
    access: Access
    scopes: tuple[str, ...] = ()
    #: Largest request body this route accepts, in KiB (1 KiB = 1,024 bytes); a bigger one is
    #: refused with 413 before the function runs. API Gateway's own hard limit is 10 MiB.
    max_body_kb: Annotated[int, Field(ge=1, le=10_240)] = 1024

    @property
    def max_body_bytes(self) -> int:
        return self.max_body_kb * 1024

    @field_validator("path")
    @classmethod
    def _path_shape(cls, v: str) -> str:
        if not _PATH.match(v):
            raise ValueError(
                "must start with '/' and contain only literal segments or {param} segments, "
                f"got {v!r}"
            )
        return v

    @field_validator("scopes")
    @classmethod
    def _scope_shape(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for scope in v:
            if not SCOPE.match(scope):
                raise ValueError(
                    f"scope {scope!r} must look like 'verb:object' (lowercase), e.g. "
                    "'predict:fraud' or 'models:admin'"
                )
        return v

    @model_validator(mode="after")
    def _scopes_need_token(self) -> Route:
        if self.access is Access.PUBLIC and not (self.method == "GET" and HEALTH.match(self.path)):
            raise ValueError(
                f"access = 'public' is for health checks only (GET .../health); {self.method} "
                f"{self.path} needs access = 'api_key' or 'token'"
            )
        if self.scopes and self.access is not Access.TOKEN:
            raise ValueError("scopes are only checked on access = 'token' routes")
        if self.access is Access.TOKEN and not self.scopes:
            raise ValueError(
                "access = 'token' needs at least one scope, e.g. scopes = ['predict:x']"
            )
        return self


class Grant(StrEnum):
    READ = "read"
    WRITE = "write"
    READ_WRITE = "readwrite"


_RESOURCE = r"^[a-z][a-z0-9-]{0,62}$"
ResourceName = Annotated[str, Field(pattern=_RESOURCE)]

#: The platform's own event bus (custom events); AWS services publish to `default`.
PLATFORM_BUS = "aib"
DEFAULT_BUS = "default"
#: The model store's logical bucket name (AIB_MODEL_BUCKET); never a data bucket.
MODEL_BUCKET = "models"


class Resources(BaseModel):
    """What a function may touch, by logical name; CDK turns each entry into one IAM grant.

    `read` on a queue means consume, `write` means send; `write` on a bus means put events.
    A topic (SNS) is created by CDK for the functions that name it; `publish` is its one grant.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    buckets: dict[ResourceName, Grant] = Field(default_factory=dict)
    tables: dict[ResourceName, Grant] = Field(default_factory=dict)
    queues: dict[ResourceName, Grant] = Field(default_factory=dict)
    buses: dict[ResourceName, Grant] = Field(default_factory=dict)
    topics: dict[ResourceName, Literal["publish"]] = Field(default_factory=dict)


class Subscription(BaseModel):
    """Events of a bus that match `pattern` (EventBridge pattern syntax, checked at load)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bus: ResourceName = PLATFORM_BUS
    pattern: dict[str, Any]

    @field_validator("pattern")
    @classmethod
    def _valid_pattern(cls, v: dict[str, Any]) -> dict[str, Any]:
        from aibackend.events.patterns import compile_pattern

        compile_pattern(v)  # InvalidPatternError (a ValueError) names the path and the reason
        return v


class QueueTrigger(BaseModel):
    """An SQS event source mapping. The consuming function owns the queue and its DLQ.

    `[[queues.events]]` entries fill the queue from the event bus: one EventBridge rule each,
    whose target is the queue (EventBridge -> SQS -> the function in batches). The pattern for
    a high-rate consumer: one invocation handles up to `batch_size` events, where an
    `[[events]]` trigger invokes the function once an event. Each message body is the whole
    EventBridge event; an event EventBridge cannot put into the queue lands in the queue's DLQ
    with its reason (message attributes), as does one the consumer rejects itself.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    queue: ResourceName
    events: tuple[Subscription, ...] = ()
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 10
    batching_window_s: Annotated[int, Field(ge=0, le=300)] = 0
    #: Most concurrent batches for this source (SQS event source "maximum concurrency").
    max_concurrency: Annotated[int, Field(ge=2, le=1000)] | None = None
    #: Default: six times the function timeout, as AWS recommends for Lambda consumers.
    visibility_timeout_s: Annotated[int, Field(ge=0, le=43_200)] | None = None
    max_receive_count: Annotated[int, Field(ge=1, le=1000)] = 5
    retention_s: Annotated[int, Field(ge=60, le=1_209_600)] = 345_600
    #: On AWS, an alarm fires when the oldest message has waited longer than this (the consumer
    #: is stuck or falling behind); another fires on any message in the DLQ.
    oldest_message_alarm_s: Annotated[int, Field(ge=60, le=1_209_600)] = 300

    @model_validator(mode="after")
    def _window_for_big_batches(self) -> QueueTrigger:
        if self.batch_size > 10 and self.batching_window_s < 1:
            raise ValueError("batch_size above 10 needs batching_window_s of at least 1 (as SQS)")
        return self

    def visibility_for(self, timeout_s: int) -> int:
        return self.visibility_timeout_s if self.visibility_timeout_s is not None else 6 * timeout_s


class AsyncDelivery(BaseModel):
    """Lambda asynchronous invocation settings: retries, maximum age, then the on-failure DLQ."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Retries after the first attempt (Lambda allows 0 to 2 for asynchronous invocation).
    max_attempts: Annotated[int, Field(ge=0, le=2)] = 2
    #: Lambda keeps an event for at most six hours.
    max_event_age_s: Annotated[int, Field(ge=60, le=21_600)] = 3600


class EventTrigger(AsyncDelivery, Subscription):
    """An EventBridge rule whose target is this function."""

    #: JSONPath of the part of the event the function receives, e.g. `$.detail`.
    input_path: Annotated[str, Field(pattern=r"^\$(\.[A-Za-z0-9_-]+)*$")] | None = None


class ObjectTrigger(AsyncDelivery):
    """Object-created notifications of a bucket, filtered by key prefix and suffix."""

    bucket: ResourceName
    prefix: str = ""
    suffix: str = ""
    #: The shape the function receives. `eventbridge`: S3's EventBridge `Object Created` event
    #: as the default bus carries it. `s3`: an S3 event notification (`{"Records": [...]}`, what
    #: Powertools' `S3Model` parses), built from that event by the rule's input transformer on
    #: AWS and by the local runtime alike. EventBridge cannot URL-encode, so unlike in the
    #: notification S3 sends itself the key arrives as it is (`a b.csv`, not `a+b.csv`), in both
    #: topologies; `aibackend.local.triggers.s3_notification_from_eventbridge` lists the other
    #: differences. All `[[objects]]` triggers of a function use one shape.
    notification: Literal["eventbridge", "s3"] = "eventbridge"

    def event_pattern(self, bucket_name: str) -> dict[str, Any]:
        """The EventBridge pattern (on the default bus) both topologies subscribe with."""
        detail: dict[str, Any] = {"bucket": {"name": [bucket_name]}}
        if self.prefix and self.suffix:
            esc = str.maketrans({"*": "\\*", "\\": "\\\\"})
            wildcard = f"{self.prefix.translate(esc)}*{self.suffix.translate(esc)}"
            detail["object"] = {"key": [{"wildcard": wildcard}]}
        elif self.prefix:
            detail["object"] = {"key": [{"prefix": self.prefix}]}
        elif self.suffix:
            detail["object"] = {"key": [{"suffix": self.suffix}]}
        return {"source": ["aws.s3"], "detail-type": ["Object Created"], "detail": detail}


def _may_match_s3(pattern: dict[str, Any]) -> bool:
    """Whether an event pattern could match S3's `Object Created` event. Conservative: only a
    plain list of `source`s without `aws.s3` (or of `detail-type`s without `Object Created`)
    rules it out."""
    for field, value in (("source", "aws.s3"), ("detail-type", "Object Created")):
        listed = pattern.get(field)
        if not isinstance(listed, list) or not all(isinstance(v, str) for v in listed):
            continue
        if value not in listed:
            return False
    return True


class ScheduleTrigger(BaseModel):
    """`rate(5 minutes)` or `cron(0 6 * * ? *)` in AWS syntax; sends a Scheduled Event."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    expression: str

    @field_validator("expression")
    @classmethod
    def _valid(cls, v: str) -> str:
        from aibackend.events.schedule import parse_schedule

        parse_schedule(v)  # raises ValueError saying what is wrong
        return v


class AlarmSettings(BaseModel):
    """CloudWatch alarms of the function on AWS (each notifies the stack's alarm topic)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Errors as a share of invocations over 5 minutes, in percent, that raises the alarm.
    error_rate_percent: Annotated[float, Field(gt=0, le=100)] = 1.0
    #: p99 duration over 5 minutes, twice in a row, that raises the alarm; default: 80% of
    #: `timeout_s` (a function that close to its timeout is about to fail).
    p99_ms: Annotated[int, Field(ge=1)] | None = None

    def p99_threshold_ms(self, timeout_s: int) -> int:
        return self.p99_ms if self.p99_ms is not None else int(timeout_s * 1000 * 0.8)


def dead_letter_queue(queue: str) -> str:
    """The DLQ of a consumed queue (`[[queues]]`), in both topologies."""
    return f"{queue}-dlq"


def failure_queue(function: str) -> str:
    """The on-failure destination of a function's asynchronous invocations (events, objects,
    schedules): Lambda's on-failure records, and the events a consumer rejects outright."""
    return f"{function}-failures"


def default_group(name: str, authorizer: bool) -> str:
    """The deploy group of a function that declares none: `api` for the authorizer, else the
    first word of its name (`fraud_score` -> `fraud`)."""
    return API_GROUP if authorizer else name.split("_", 1)[0]


class FunctionSpec(BaseModel):
    """A validated `function.toml`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=_IDENT, max_length=48)]
    description: str = ""
    #: `module.attribute` inside the function's package, e.g. `handler.handler`.
    handler: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*\.[A-Za-z_]\w*$")] = "handler.handler"
    runtime: Literal["python3.12", "python3.13"] = "python3.12"
    architecture: Literal["arm64", "x86_64"] = "arm64"
    memory_mb: Annotated[int, Field(ge=128, le=10240)] = 512
    timeout_s: Annotated[int, Field(ge=1, le=900)] = 10
    #: Registry names of the models this function serves; each one's production version is
    #: pinned into the function's environment at deploy time.
    models: tuple[Annotated[str, Field(pattern=_IDENT)], ...] = ()
    #: Inference endpoints (SageMaker-contract servers, e.g. `embeddings`) this function calls.
    #: It finds one through `AIB_ENDPOINT_<NAME>`: the SageMaker endpoint's name on AWS (CDK
    #: also grants sagemaker:InvokeEndpoint on it), the loopback URL of its server under
    #: `aib dev`, which runs the server while the endpoint's model is built.
    endpoints: tuple[Annotated[str, Field(pattern=_IDENT, max_length=48)], ...] = ()
    routes: tuple[Route, ...] = ()
    queues: tuple[QueueTrigger, ...] = ()
    events: tuple[EventTrigger, ...] = ()
    objects: tuple[ObjectTrigger, ...] = ()
    schedules: tuple[ScheduleTrigger, ...] = ()
    #: Most concurrent invocations of this function (Lambda reserved concurrency).
    reserved_concurrency: Annotated[int, Field(ge=1, le=1000)] | None = None
    #: Execution environments kept initialized ahead of traffic (Lambda provisioned
    #: concurrency on the `live` alias; billed while deployed). Under `aib dev --isolate` this
    #: many workers run their INIT at load, so a burst does not wait for, or share the CPU
    #: with, new workers' imports and model loads; one process has one copy of each function
    #: anyway.
    provisioned_concurrency: Annotated[int, Field(ge=1, le=1000)] | None = None
    resources: Resources = Resources()
    environment: dict[str, str] = Field(default_factory=dict)
    #: SSM Parameter Store SecureStrings the function reads, by logical name, e.g.
    #: `stripe_key = "/aib/payments/stripe-key"`. On AWS, CDK sets `AIB_SECRET_<NAME>` to the
    #: parameter name and grants `ssm:GetParameter` on that parameter only; the function reads
    #: the value with `aibackend.secrets.get_secret("stripe_key")`.
    secrets: dict[
        Annotated[str, Field(pattern=_IDENT, max_length=64)],
        Annotated[str, Field(pattern=r"^/[A-Za-z0-9_.\-/]+$", max_length=1011)],
    ] = Field(default_factory=dict)
    alarms: AlarmSettings = AlarmSettings()
    #: Whether this function captures the predictions of the models it serves when
    #: `monitoring.toml` turns capture on for them (false, e.g., for batch scoring whose
    #: output is stored anyway).
    capture: bool = True
    #: Extra Lambda layers beyond `common` and `api`: `ml` (numpy, onnxruntime, datasketches)
    #: for functions that compute with numpy without serving a model (a function with `models`
    #: gets it anyway), e.g. the monitoring services.
    layers: tuple[Literal["ml"], ...] = ()
    #: This function is the REST API's Lambda REQUEST authorizer (AWS only: `aib dev` runs the
    #: same code in its gateway). At most one per project; it has no routes or triggers.
    authorizer: bool = False
    #: Deploy group: the functions of a group deploy together, in their own stack, without
    #: touching other groups (`infra.application.group_stack_name`). Default: the first word of
    #: the function's name (`fraud_score` and `fraud_events` -> `fraud`); the authorizer's is
    #: always `api`, deployed with the REST API.
    group: Annotated[str, Field(pattern=_GROUP, max_length=32)] | None = None
    #: Folder holding the declaration; filled in by the loader, not written in the file.
    directory: Path = Field(default=Path(), exclude=True)

    @property
    def deploy_group(self) -> str:
        """The declared `group`, else `default_group`'s."""
        return self.group if self.group is not None else default_group(self.name, self.authorizer)

    @property
    def package(self) -> str:
        """Import name of the function's folder (functions are packages: relative imports work)."""
        return self.directory.name

    @property
    def handler_module(self) -> str:
        return f"{self.package}.{self.handler.rsplit('.', 1)[0]}"

    @property
    def handler_attr(self) -> str:
        return self.handler.rsplit(".", 1)[1]

    @property
    def lambda_handler(self) -> str:
        """Handler string as Lambda wants it, relative to the function's asset root."""
        return f"{self.package}.{self.handler}"

    @property
    def async_delivery(self) -> AsyncDelivery | None:
        """The one asynchronous-invocation setting of this function (None: nothing invokes it
        asynchronously). Lambda has one per alias, so `[[events]]` and `[[objects]]` agree
        (checked at load); schedules alone get the defaults."""
        declared = [*self.events, *self.objects]
        if declared:
            return AsyncDelivery(
                max_attempts=declared[0].max_attempts, max_event_age_s=declared[0].max_event_age_s
            )
        return AsyncDelivery() if self.schedules else None

    @model_validator(mode="after")
    def _triggers_fit_lambda(self) -> FunctionSpec:
        declared = [(f"events.{i}", t) for i, t in enumerate(self.events)] + [
            (f"objects.{i}", t) for i, t in enumerate(self.objects)
        ]
        if len({(t.max_attempts, t.max_event_age_s) for _, t in declared}) > 1:
            found = "; ".join(
                f"{where}: max_attempts={t.max_attempts}, max_event_age_s={t.max_event_age_s}"
                for where, t in declared
            )
            raise ValueError(
                f"asynchronous delivery settings disagree ({found}); Lambda has one "
                "asynchronous invoke configuration per alias: give every [[events]] and "
                "[[objects]] trigger of this function the same max_attempts and max_event_age_s"
            )
        for i, q in enumerate(self.queues):
            if q.visibility_for(self.timeout_s) < self.timeout_s:
                raise ValueError(
                    f"queues.{i}.visibility_timeout_s ({q.visibility_timeout_s}) is shorter than "
                    f"timeout_s ({self.timeout_s}): a message would reappear while still being "
                    "handled (AWS refuses this mapping)"
                )
        for i, o in enumerate(self.objects):
            if o.bucket == MODEL_BUCKET:
                raise ValueError(
                    f"objects.{i}.bucket: {MODEL_BUCKET!r} is the model store, not a data bucket"
                )
        # The local bus hands a delivery to the function without saying which rule matched, so
        # the shape an S3 event arrives in must follow from the function alone.
        shapes = {o.notification for o in self.objects}
        if len(shapes) > 1:
            found = ", ".join(
                f"objects.{i}: {t.notification!r}" for i, t in enumerate(self.objects)
            )
            raise ValueError(
                f"object triggers disagree on notification ({found}); a function receives one "
                "shape: give every [[objects]] trigger the same notification, or subscribe a "
                "second function for the other shape"
            )
        if "s3" in shapes:
            for i, e in enumerate(self.events):
                whole = e.input_path in (None, "$")  # a part of the event is no S3 event
                if e.bus == DEFAULT_BUS and whole and _may_match_s3(e.pattern):
                    raise ValueError(
                        f"events.{i}.pattern may match S3's `Object Created` events, which this "
                        "function receives as S3 notifications (its [[objects]] notification is "
                        "'s3'): name the sources or detail-types it wants, leaving out "
                        "'aws.s3' or 'Object Created', or use [[objects]] for S3's events"
                    )
        return self

    @model_validator(mode="after")
    def _provisioned_within_reserved(self) -> FunctionSpec:
        p, r = self.provisioned_concurrency, self.reserved_concurrency
        if p is not None and r is not None and p > r:
            raise ValueError(
                f"provisioned_concurrency ({p}) must not exceed reserved_concurrency ({r}): "
                "Lambda refuses environments the function may never use"
            )
        return self

    @model_validator(mode="after")
    def _p99_alarm_below_timeout(self) -> FunctionSpec:
        p99 = self.alarms.p99_ms
        if p99 is not None and p99 >= self.timeout_s * 1000:
            raise ValueError(
                f"alarms.p99_ms ({p99}) must be below timeout_s ({self.timeout_s} s = "
                f"{self.timeout_s * 1000} ms): past the timeout an invocation fails instead"
            )
        return self

    @model_validator(mode="after")
    def _authorizer_is_not_triggered(self) -> FunctionSpec:
        if self.authorizer:
            triggers = [
                n
                for n in ("routes", "queues", "events", "objects", "schedules")
                if getattr(self, n)
            ]
            if triggers:
                raise ValueError(
                    f"authorizer = true: API Gateway invokes an authorizer itself; remove its "
                    f"{', '.join(triggers)}"
                )
        return self

    @model_validator(mode="after")
    def _api_group_is_the_authorizers(self) -> FunctionSpec:
        if (self.deploy_group == API_GROUP) != self.authorizer:
            fix = "remove `group`" if self.authorizer else "declare another `group`"
            raise ValueError(
                f"group: {API_GROUP!r} is the REST API's own group, the authorizer's "
                f"(authorizer = true) and no other function's; {fix}"
            )
        return self

    @field_validator("endpoints")
    @classmethod
    def _endpoints_once(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        twice = sorted({e for e in v if v.count(e) > 1})
        if twice:
            raise ValueError(f"{', '.join(twice)} listed more than once")
        return v

    @field_validator("secrets")
    @classmethod
    def _secret_names_stay_apart(cls, v: dict[str, str]) -> dict[str, str]:
        reserved = sorted(n for n in v if n.startswith("value_"))
        if reserved:
            raise ValueError(
                f"{', '.join(reserved)}: secret names may not start with 'value_' "
                "(AIB_SECRET_VALUE_<NAME> holds a secret's value when running locally)"
            )
        return v

    @model_validator(mode="after")
    def _unique_routes(self) -> FunctionSpec:
        seen: set[tuple[str, str]] = set()
        for r in self.routes:
            if (r.method, r.path) in seen:
                raise ValueError(f"route {r.method} {r.path} is declared twice")
            seen.add((r.method, r.path))
        return self


def _describe(err: ValidationError, path: Path) -> str:
    lines = [f"{path}: invalid function declaration"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(file)"
        lines.append(f"  - {loc}: {e['msg'].removeprefix('Value error, ')}")
    return "\n".join(lines)


def load_function(directory: Path) -> FunctionSpec:
    """Read and validate `directory/function.toml`; errors name the file and each bad field."""
    path = directory / DECLARATION
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: missing; every function folder needs a {DECLARATION}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    raw.setdefault("name", directory.name)
    if raw["name"] != directory.name:
        raise ConfigError(
            f"{path}: name: {raw['name']!r} must equal the folder name {directory.name!r} "
            "(the folder is the function's Python package)"
        )
    try:
        spec = FunctionSpec.model_validate({**raw, "directory": directory})
    except ValidationError as e:
        raise ConfigError(_describe(e, path)) from e
    handler_file = directory / (spec.handler.rsplit(".", 1)[0].replace(".", "/") + ".py")
    if not handler_file.is_file():
        raise ConfigError(f"{path}: handler: {handler_file} does not exist")
    return spec


class Catalog(BaseModel):
    """Every function of the project, in name order."""

    model_config = ConfigDict(frozen=True)

    root: Path
    functions: tuple[FunctionSpec, ...]
    #: Usage plans by name (`plans.toml` beside the functions, or the defaults).
    plans: dict[str, Plan] = Field(default_factory=lambda: dict(DEFAULT_PLANS))
    #: Inference capture by model (`monitoring.toml` beside the functions; none: no capture).
    capture: dict[str, CaptureSettings] = Field(default_factory=dict)

    @property
    def authorizer(self) -> FunctionSpec | None:
        """The function declared `authorizer = true`, if any."""
        return next((f for f in self.functions if f.authorizer), None)

    def get(self, name: str) -> FunctionSpec:
        for f in self.functions:
            if f.name == name:
                return f
        known = ", ".join(f.name for f in self.functions) or "none"
        raise ConfigError(f"no function named {name!r} (known: {known})")

    def consumer_of(self, queue: str) -> FunctionSpec | None:
        for f in self.functions:
            if any(q.queue == queue for q in f.queues):
                return f
        return None

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(sorted({m for f in self.functions for m in f.models}))

    @property
    def bucket_names(self) -> tuple[str, ...]:
        """Buckets the declarations name (`[[objects]]` or `resources.buckets`), the model
        store's included if a function names it."""
        names = {o.bucket for f in self.functions for o in f.objects}
        names |= {b for f in self.functions for b in f.resources.buckets}
        return tuple(sorted(names))

    @property
    def groups(self) -> dict[str, tuple[FunctionSpec, ...]]:
        """Deploy group -> its functions, both in name order."""
        out: dict[str, list[FunctionSpec]] = {}
        for f in self.functions:
            out.setdefault(f.deploy_group, []).append(f)
        return {g: tuple(out[g]) for g in sorted(out)}

    def routes(self) -> Iterable[tuple[FunctionSpec, Route]]:
        for f in self.functions:
            for r in f.routes:
                yield f, r


def load_catalog(root: Path) -> Catalog:
    """Load every `functions/*/function.toml` under `root`, refusing clashing routes."""
    root = root.resolve()
    if not root.is_dir():
        raise ConfigError(f"{root}: functions folder not found")
    specs = [load_function(d) for d in sorted(root.iterdir()) if (d / DECLARATION).is_file()]
    consumers: dict[str, str] = {}
    for spec in specs:
        for q in spec.queues:
            other = consumers.setdefault(q.queue, spec.name)
            if other != spec.name:
                raise ConfigError(
                    f"{spec.directory / DECLARATION}: queues: {q.queue!r} is already consumed by "
                    f"function {other!r}; a queue has one consumer (fan out with the event bus)"
                )
    owners: dict[tuple[str, str], str] = {}
    for spec in specs:
        for r in spec.routes:
            other = owners.setdefault((r.method, r.path), spec.name)
            if other != spec.name:
                raise ConfigError(
                    f"{spec.directory / DECLARATION}: routes: {r.method} {r.path} is already "
                    f"served by function {other!r}"
                )
    authorizers = [s.name for s in specs if s.authorizer]
    if len(authorizers) > 1:
        raise ConfigError(
            f"{root}: functions {', '.join(authorizers)} all declare authorizer = true; the API "
            "has one authorizer"
        )
    capture = load_capture(root)
    unknown = sorted(set(capture) - {m for s in specs for m in s.models})
    if unknown:
        raise ConfigError(
            f"{root / 'monitoring.toml'}: capture: no function serves model(s) "
            f"{', '.join(map(repr, unknown))}; name a model some function.toml lists in `models`"
        )
    if any(s.rate > 0 for s in capture.values()) and CAPTURE_QUEUE not in consumers:
        raise ConfigError(
            f"{root / 'monitoring.toml'}: capture is on but no function consumes the "
            f"{CAPTURE_QUEUE!r} queue; keep functions/monitor_capture (or set rate = 0)"
        )
    specs = [_with_capture(s, capture) for s in specs]
    return Catalog(root=root, functions=tuple(specs), plans=load_plans(root), capture=capture)


def _with_capture(spec: FunctionSpec, capture: dict[str, CaptureSettings]) -> FunctionSpec:
    """A function serving a captured model may send to the capture queue: declared once per
    model, not repeated in every function.toml. (The platform sets `AIB_CAPTURE` for it: CDK
    in its environment, `aib dev` in the process's.)"""
    if not spec.capture or not any(capture[m].rate > 0 for m in spec.models if m in capture):
        return spec
    queues = {**spec.resources.queues, CAPTURE_QUEUE: Grant.WRITE}
    return spec.model_copy(
        update={"resources": spec.resources.model_copy(update={"queues": queues})}
    )


def default_functions_dir() -> Path:
    """`functions/` of the project this process runs in (the working directory, or its parents)."""
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if (d / "functions").is_dir() and (d / "pyproject.toml").is_file():
            return d / "functions"
    return here / "functions"
