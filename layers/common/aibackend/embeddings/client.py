"""Call the embeddings endpoint from a Lambda function (or anything else).

Ports and adapters: `EndpointClient` speaks the `/invocations` contract through a
`Transport`: SageMaker runtime's `InvokeEndpoint` on AWS (boto3), plain HTTP to the loopback
server of `aib dev` locally, chosen by `AIB_ADAPTERS` like every other adapter.

Failures a retry can cure (throttling, 5xx, timeouts, refused connections) are retried with
exponential backoff and full jitter; a circuit breaker opens after `failure_threshold`
consecutive failed calls, so a sick endpoint costs callers nothing while it recovers: calls
fail at once with `EndpointUnavailableError` (a 503 problem at the HTTP edge) until the
cool-down has passed, then one trial call decides (half-open). A 4xx from the endpoint is the
request's fault: not retried, not counted against the endpoint.
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, NoReturn, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aibackend.embeddings.contract import InvocationRequest, InvocationResponse
from aibackend.errors import AibError, ConfigError
from aibackend.settings import PlatformSettings, platform_settings, resource_env

JSON = "application/json"


class EndpointUnavailableError(AibError):
    """The endpoint cannot answer now (not built, down, throttling, circuit open)."""

    status = 503
    title = "Endpoint unavailable"

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        #: Seconds after which a retry may succeed (the breaker's remaining cool-down).
        self.retry_after_s = retry_after_s


class EndpointRequestError(AibError):
    """The endpoint refused the request itself (its 4xx): a bug on this side, not its."""

    status = 502
    title = "Bad gateway"


class EndpointResponseError(AibError):
    """The endpoint's answer breaks the `/invocations` contract."""

    status = 502
    title = "Bad gateway"


class TransportError(Exception):
    """One failed call; `retryable` when trying again may succeed."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class Transport(Protocol):
    """Sends one JSON body to the endpoint's `/invocations`; returns the response body."""

    def invoke(self, body: bytes, *, timeout_s: float) -> bytes: ...


#: HTTP statuses worth another try (SageMaker: throttling 429, the model's 5xx).
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class HttpTransport:
    """`POST <url>/invocations` (the local server of `aib dev`)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/") + "/invocations"

    def invoke(self, body: bytes, *, timeout_s: float) -> bytes:
        request = urllib.request.Request(
            self.url, data=body, method="POST", headers={"Content-Type": JSON, "Accept": JSON}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                data: bytes = response.read()
                return data
        except urllib.error.HTTPError as e:
            detail = e.read()[:300].decode("utf-8", "replace")
            raise TransportError(
                f"{self.url} answered {e.code}: {detail}",
                retryable=e.code in RETRYABLE_STATUSES,
                status=e.code,
            ) from e
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            reason = getattr(e, "reason", e)
            raise TransportError(f"{self.url} is not answering ({reason})", retryable=True) from e


#: SageMaker runtime error codes a retry may cure.
_RETRYABLE_CODES = frozenset(
    {"ThrottlingException", "ServiceUnavailable", "InternalFailure", "ModelNotReadyException"}
)


class SageMakerTransport:
    """`InvokeEndpoint` through boto3's `sagemaker-runtime` client (retries are ours).

    botocore fixes timeouts per client, not per call: every attempt may take `timeout_s`
    (the client's budget still stops retries in time)."""

    def __init__(self, endpoint_name: str, *, timeout_s: float = 5.0, client: Any = None) -> None:
        self.endpoint_name = endpoint_name
        self.timeout_s = timeout_s
        self._client = client

    def _runtime(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "sagemaker-runtime",
                config=Config(
                    connect_timeout=min(self.timeout_s, 2.0),
                    read_timeout=self.timeout_s,
                    retries={"max_attempts": 1, "mode": "standard"},
                ),
            )
        return self._client

    def invoke(self, body: bytes, *, timeout_s: float) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._runtime().invoke_endpoint(
                EndpointName=self.endpoint_name, ContentType=JSON, Accept=JSON, Body=body
            )
            data: bytes = response["Body"].read()
            return data
        except ClientError as e:
            error = e.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = _status(e.response)
            # ModelError: the container answered with an error status of its own.
            retryable = code in _RETRYABLE_CODES or (
                code == "ModelError" and (status or 500) in RETRYABLE_STATUSES
            )
            raise TransportError(
                f"endpoint {self.endpoint_name}: {code or 'error'}: {error.get('Message', e)}",
                retryable=retryable,
                status=status,
            ) from e
        except BotoCoreError as e:  # connection refused, timeouts, DNS...
            raise TransportError(f"endpoint {self.endpoint_name}: {e}", retryable=True) from e


def _status(response: Mapping[str, Any]) -> int | None:
    """The container's own status (ModelError), else the HTTP status of SageMaker's answer."""
    raw = response.get("OriginalStatusCode") or response.get("ResponseMetadata", {}).get(
        "HTTPStatusCode"
    )
    try:
        return int(raw) if raw else None
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` tries in all; the n-th wait is uniform in [0, min(cap, base * 2**n)]."""

    attempts: int = 3
    base_s: float = 0.05
    cap_s: float = 1.0

    def delay(self, retry: int, rng: Callable[[], float] = random.random) -> float:
        return rng() * min(self.cap_s, self.base_s * 2.0**retry)


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Opens after `failure_threshold` consecutive failures; after `cooldown_s` lets one trial
    call through (half-open): its success closes the circuit, its failure opens it again."""

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> CircuitState:
        with self._lock:
            return self._state()

    def _state(self) -> CircuitState:
        if self._opened_at is None:
            return CircuitState.CLOSED
        if self._clock() - self._opened_at >= self.cooldown_s:
            return CircuitState.HALF_OPEN
        return CircuitState.OPEN

    def retry_after(self) -> float:
        """Seconds until the circuit lets a trial call through (0 when it would now)."""
        with self._lock:
            if self._opened_at is None:
                return 0.0
            return max(0.0, self.cooldown_s - (self._clock() - self._opened_at))

    def acquire(self) -> bool:
        """Whether a call may go ahead now (in half-open: only one trial at a time)."""
        with self._lock:
            state = self._state()
            if state is CircuitState.CLOSED:
                return True
            if state is CircuitState.HALF_OPEN and not self._trial_running:
                self._trial_running = True
                return True
            return False

    def success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_running = False

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial_running or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()
            self._trial_running = False


class EndpointClient:
    """Calls one endpoint within a time budget, with retries and a circuit breaker."""

    def __init__(
        self,
        name: str,
        transport: Transport | None,
        *,
        timeout_s: float = 5.0,
        budget_s: float = 8.0,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        unavailable_hint: str = "",
    ) -> None:
        """`timeout_s` bounds one attempt, `budget_s` all attempts and waits together (keep it
        under the function's timeout). `transport` None: the endpoint is not configured here;
        calls fail with a 503 whose message ends with `unavailable_hint`."""
        self.name = name
        self.transport = transport
        self.timeout_s = timeout_s
        self.budget_s = budget_s
        self.retry = retry or RetryPolicy()
        self.breaker = breaker or CircuitBreaker()
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self.unavailable_hint = unavailable_hint

    @property
    def configured(self) -> bool:
        return self.transport is not None

    def invoke(self, request: InvocationRequest) -> InvocationResponse:
        """One `/invocations` call, retried; raises `EndpointUnavailableError` (503) or
        `EndpointRequestError` (502)."""
        if self.transport is None:
            raise EndpointUnavailableError(
                f"the {self.name} endpoint is not available here. {self.unavailable_hint}".strip()
            )
        if not self.breaker.acquire():
            wait = self.breaker.retry_after()
            raise EndpointUnavailableError(
                f"the {self.name} endpoint failed {self.breaker.failure_threshold} times in a "
                f"row; calls are paused for {math.ceil(wait)} s while it recovers (circuit open)",
                retry_after_s=wait,
            )
        body = request.model_dump_json(exclude_defaults=True).encode()
        try:
            raw = self._send(self.transport, body)
        except _AttemptsFailedError as failed:
            self._failed(failed)
        except BaseException:
            self.breaker.failure()  # never leave a half-open trial hanging
            raise
        try:
            response = InvocationResponse.model_validate_json(raw)
            _check_shape(request, response)
        except (ValidationError, ValueError) as e:
            self.breaker.failure()
            raise EndpointResponseError(
                f"the {self.name} endpoint's answer breaks the invocation contract: {e}"
            ) from e
        self.breaker.success()
        return response

    def _failed(self, failed: _AttemptsFailedError) -> NoReturn:
        """Every attempt failed: a 503 if the endpoint is unwell, a 502 if it refused."""
        e = failed.error
        if e.retryable:
            self.breaker.failure()
            raise EndpointUnavailableError(
                f"the {self.name} endpoint failed {failed.attempts} attempt(s); last: {e}",
                retry_after_s=self.breaker.retry_after() or None,
            ) from e
        self.breaker.success()  # it answered: the endpoint is up, the request was wrong
        raise EndpointRequestError(f"the {self.name} endpoint refused the request: {e}") from e

    def _send(self, transport: Transport, body: bytes) -> bytes:
        """The response body; `_AttemptsFailedError` when no attempt succeeded."""
        deadline = self._clock() + self.budget_s
        attempt = 0
        while True:
            attempt += 1
            timeout = min(self.timeout_s, deadline - self._clock())
            try:
                return transport.invoke(body, timeout_s=timeout)
            except TransportError as e:
                delay = self.retry.delay(attempt - 1, self._jitter)
                out_of_time = self._clock() + delay >= deadline
                if not e.retryable or attempt >= self.retry.attempts or out_of_time:
                    raise _AttemptsFailedError(e, attempt) from e
                self._sleep(delay)


def _check_shape(request: InvocationRequest, response: InvocationResponse) -> None:
    """One answer per input: embeddings (unless left out), token counts, matches (if asked)."""
    n = len(request.inputs)
    counts = {"tokens": len(response.tokens)}
    if request.return_embeddings:
        counts["embeddings"] = len(response.embeddings or [])
    if request.search is not None:
        counts["matches"] = len(response.matches or [])
    wrong = {k: v for k, v in counts.items() if v != n}
    if wrong:
        found = ", ".join(f"{v} {k}" for k, v in wrong.items())
        raise ValueError(f"{found} for {n} input(s)")


class _AttemptsFailedError(Exception):
    def __init__(self, error: TransportError, attempts: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.attempts = attempts


#: Variables a function's `[environment]` may set to tune its endpoint clients.
CLIENT_ENV_PREFIX = "ENDPOINT_"


class ClientSettings(BaseModel):
    """`ENDPOINT_TIMEOUT_S`, `ENDPOINT_BUDGET_S`, `ENDPOINT_ATTEMPTS`,
    `ENDPOINT_FAILURE_THRESHOLD`, `ENDPOINT_COOLDOWN_S`: read once, at import."""

    model_config = ConfigDict(frozen=True)

    timeout_s: Annotated[float, Field(gt=0, le=60)] = 5.0
    budget_s: Annotated[float, Field(gt=0, le=900)] = 8.0
    attempts: Annotated[int, Field(ge=1, le=10)] = 3
    failure_threshold: Annotated[int, Field(ge=1, le=1000)] = 5
    cooldown_s: Annotated[float, Field(gt=0, le=3600)] = 30.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ClientSettings:
        env = os.environ if env is None else env
        names = {f: CLIENT_ENV_PREFIX + f.upper() for f in cls.model_fields}
        raw = {f: env[var] for f, var in names.items() if var in env}
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            problems = "; ".join(
                f"{names[str(err['loc'][0])]}: {err['msg']}" for err in e.errors() if err["loc"]
            )
            raise ConfigError(f"invalid endpoint client settings: {problems}") from e


def endpoint_client(
    name: str,
    *,
    settings: PlatformSettings | None = None,
    env: Mapping[str, str] | None = None,
    unavailable_hint: str = "",
) -> EndpointClient:
    """The client of endpoint `name` this process is configured for.

    `AIB_ENDPOINT_<NAME>` holds the SageMaker endpoint's name on AWS (set by CDK) and the
    loopback server's URL locally (set by `aib dev` while the server runs; empty otherwise).
    """
    s = settings or platform_settings()
    env = os.environ if env is None else env
    target = env.get(resource_env("endpoint", name), "").strip()
    transport: Transport | None = None
    cfg = ClientSettings.from_env(env)
    if target:
        transport = (
            SageMakerTransport(target, timeout_s=cfg.timeout_s)
            if s.adapters == "aws"
            else HttpTransport(target)
        )
    return EndpointClient(
        name,
        transport,
        timeout_s=cfg.timeout_s,
        budget_s=cfg.budget_s,
        retry=RetryPolicy(attempts=cfg.attempts),
        breaker=CircuitBreaker(failure_threshold=cfg.failure_threshold, cooldown_s=cfg.cooldown_s),
        unavailable_hint=unavailable_hint,
    )
