"""The Lambda-side endpoint client: retries with backoff and jitter, a time budget, the
circuit breaker, and how SageMaker's errors are classified. Fake transports; no network."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, Literal

import pytest

from aibackend.embeddings.client import (
    CircuitBreaker,
    CircuitState,
    ClientSettings,
    EndpointClient,
    EndpointRequestError,
    EndpointResponseError,
    EndpointUnavailableError,
    HttpTransport,
    RetryPolicy,
    SageMakerTransport,
    TransportError,
    endpoint_client,
)
from aibackend.embeddings.contract import InvocationRequest, Search
from aibackend.errors import ConfigError
from aibackend.settings import PlatformSettings

REQUEST = InvocationRequest(inputs=["a", "b"])


def answer(n: int = 2, *, embeddings: bool = True) -> bytes:
    import json

    return json.dumps(
        {
            "model": {
                "name": "e",
                "version": 1,
                "sha256": "0" * 64,
                "dimension": 2,
                "max_tokens": 8,
            },
            "embeddings": [[1.0, 0.0]] * n if embeddings else None,
            "tokens": [3] * n,
        }
    ).encode()


class Clock:
    """Monotonic time that only moves when the code under test sleeps (or a test says so)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Script:
    """A transport that plays a list of outcomes (bytes to return, errors to raise)."""

    def __init__(self, *outcomes: bytes | TransportError) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[float] = []

    def invoke(self, body: bytes, *, timeout_s: float) -> bytes:
        self.calls.append(timeout_s)
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, TransportError):
            raise outcome
        return outcome


def busy(status: int = 503) -> TransportError:
    return TransportError(f"answered {status}", retryable=True, status=status)


def make(transport: Script | None, clock: Clock, **kwargs: Any) -> EndpointClient:
    return EndpointClient(
        "embeddings",
        transport,
        clock=clock,
        sleep=clock.sleep,
        jitter=lambda: 1.0,  # the top of each jitter range: waits are deterministic
        **kwargs,
    )


def test_retryable_failures_are_retried_with_exponential_backoff() -> None:
    # GIVEN an endpoint that is throttled twice, then answers
    clock, transport = Clock(), Script(busy(429), busy(503), answer())
    client = make(transport, clock, retry=RetryPolicy(attempts=3, base_s=0.1, cap_s=1.0))
    # WHEN it is called
    response = client.invoke(REQUEST)
    # THEN the third attempt's answer comes back after waits of 0.1 s and 0.2 s
    assert response.tokens == [3, 3]
    assert clock.sleeps == [0.1, 0.2]
    assert client.breaker.state is CircuitState.CLOSED


def test_jitter_spreads_each_wait_over_zero_to_its_exponential_cap() -> None:
    policy = RetryPolicy(base_s=0.05, cap_s=0.3)
    assert [policy.delay(n, lambda: 1.0) for n in range(5)] == [0.05, 0.1, 0.2, 0.3, 0.3]
    assert policy.delay(3, lambda: 0.5) == 0.15
    assert policy.delay(3, lambda: 0.0) == 0.0


def test_a_4xx_is_not_retried_and_does_not_count_against_the_endpoint() -> None:
    clock = Clock()
    transport = Script(TransportError("answered 422", retryable=False, status=422))
    client = make(transport, clock, breaker=CircuitBreaker(failure_threshold=1))
    with pytest.raises(EndpointRequestError) as err:
        client.invoke(REQUEST)
    assert err.value.status == 502
    assert len(transport.calls) == 1 and clock.sleeps == []
    assert client.breaker.state is CircuitState.CLOSED


def test_giving_up_after_the_last_attempt_is_a_503() -> None:
    clock, transport = Clock(), Script(busy())
    client = make(transport, clock, retry=RetryPolicy(attempts=3))
    with pytest.raises(EndpointUnavailableError) as err:
        client.invoke(REQUEST)
    assert err.value.status == 503
    assert "3 attempt(s)" in str(err.value)
    assert len(transport.calls) == 3


def test_the_time_budget_bounds_attempts_and_waits_together() -> None:
    # GIVEN attempts that each time out after 2 s, a 5 s budget and room for 10 attempts
    clock = Clock()

    class Slow(Script):
        def invoke(self, body: bytes, *, timeout_s: float) -> bytes:
            self.calls.append(timeout_s)
            clock.now += timeout_s
            raise TransportError("timed out", retryable=True)

    transport = Slow(b"")
    client = make(transport, clock, timeout_s=2.0, budget_s=5.0, retry=RetryPolicy(attempts=10))
    # WHEN the endpoint never answers
    with pytest.raises(EndpointUnavailableError):
        client.invoke(REQUEST)
    # THEN the attempts stop within the budget, the last one shortened to what was left
    assert clock.now <= 5.0
    assert transport.calls[:2] == [2.0, 2.0] and transport.calls[-1] < 2.0


def test_the_circuit_opens_after_consecutive_failures_and_fails_fast() -> None:
    # GIVEN a breaker that opens after 2 failed calls, for 30 s
    clock, transport = Clock(), Script(busy())
    client = make(
        transport,
        clock,
        retry=RetryPolicy(attempts=1),
        breaker=CircuitBreaker(failure_threshold=2, cooldown_s=30, clock=clock),
    )
    for _ in range(2):
        with pytest.raises(EndpointUnavailableError):
            client.invoke(REQUEST)
    assert client.breaker.state is CircuitState.OPEN
    # WHEN another call comes 10 s later
    clock.now += 10
    with pytest.raises(EndpointUnavailableError) as err:
        client.invoke(REQUEST)
    # THEN it fails without reaching the endpoint, saying when to come back
    assert len(transport.calls) == 2
    assert "circuit open" in str(err.value)
    assert err.value.retry_after_s == pytest.approx(20)


def test_half_open_lets_one_trial_through_and_its_success_closes_the_circuit() -> None:
    clock = Clock()
    transport = Script(busy(), answer())
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=30, clock=clock)
    client = make(transport, clock, retry=RetryPolicy(attempts=1), breaker=breaker)
    with pytest.raises(EndpointUnavailableError):
        client.invoke(REQUEST)
    # WHEN the cool-down has passed
    clock.now += 30
    assert breaker.state is CircuitState.HALF_OPEN
    # THEN one trial may go (a second caller meanwhile may not) and its success closes it
    assert breaker.acquire() is True
    assert breaker.acquire() is False
    breaker.success()
    assert client.invoke(REQUEST).tokens == [3, 3]
    assert breaker.state is CircuitState.CLOSED


def test_a_failed_trial_opens_the_circuit_for_another_cool_down() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=30, clock=clock)
    for _ in range(3):
        breaker.failure()
    clock.now += 30
    assert breaker.acquire()  # the trial
    breaker.failure()  # ... fails: one failure is enough in half-open
    assert breaker.state is CircuitState.OPEN
    assert breaker.retry_after() == pytest.approx(30)


def test_an_answer_that_breaks_the_contract_is_a_502_and_counts_as_a_failure() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=5, clock=clock)
    client = make(Script(answer(n=1)), clock, breaker=breaker)  # one vector for two inputs
    with pytest.raises(EndpointResponseError) as err:
        client.invoke(REQUEST)
    assert err.value.status == 502
    assert "1 embeddings for 2 input(s)" in str(err.value)
    client = make(Script(b"<html>oops</html>"), clock, breaker=breaker)
    with pytest.raises(EndpointResponseError):
        client.invoke(REQUEST)
    assert breaker._failures == 2


def test_search_answers_need_one_list_of_matches_per_input() -> None:
    clock = Clock()
    request = InvocationRequest(inputs=["a", "b"], search=Search(), return_embeddings=False)
    client = make(Script(answer(embeddings=False)), clock)
    with pytest.raises(EndpointResponseError, match="0 matches for 2 input"):
        client.invoke(request)


def test_an_unconfigured_endpoint_fails_at_once_with_the_hint() -> None:
    client = make(None, Clock(), unavailable_hint="Build it with `make embeddings`.")
    assert not client.configured
    with pytest.raises(EndpointUnavailableError, match="make embeddings"):
        client.invoke(REQUEST)


@pytest.mark.parametrize(
    ("adapters", "value", "transport"),
    [
        ("aws", "aib-embeddings", SageMakerTransport),
        ("local", "http://127.0.0.1:9", HttpTransport),
        ("local", "", type(None)),
        ("aws", "", type(None)),
    ],
)
def test_the_transport_follows_the_adapter_set(
    adapters: Literal["local", "aws"], value: str, transport: type[object]
) -> None:
    env = {"AIB_ENDPOINT_EMBEDDINGS": value} if value else {}
    client = endpoint_client("embeddings", settings=PlatformSettings(adapters=adapters), env=env)
    assert isinstance(client.transport, transport)


def test_client_settings_come_from_the_environment_and_bad_ones_name_the_variable() -> None:
    cfg = ClientSettings.from_env({"ENDPOINT_TIMEOUT_S": "2.5", "ENDPOINT_ATTEMPTS": "4"})
    assert (cfg.timeout_s, cfg.attempts, cfg.cooldown_s) == (2.5, 4, 30.0)
    with pytest.raises(ConfigError, match="ENDPOINT_ATTEMPTS"):
        ClientSettings.from_env({"ENDPOINT_ATTEMPTS": "0"})


# --- SageMaker runtime errors, with botocore's Stubber ---------------------------------


def stubbed(add: Callable[[Any], None]) -> tuple[SageMakerTransport, Any]:
    import boto3
    from botocore.stub import Stubber

    runtime = boto3.client("sagemaker-runtime", region_name="eu-west-1")
    stub = Stubber(runtime)
    add(stub)
    stub.activate()
    return SageMakerTransport("aib-embeddings", client=runtime), stub


def test_sagemaker_transport_sends_json_to_the_named_endpoint() -> None:
    transport, stub = stubbed(
        lambda s: s.add_response(
            "invoke_endpoint",
            {"Body": io.BytesIO(answer()), "ContentType": "application/json"},
            {
                "EndpointName": "aib-embeddings",
                "ContentType": "application/json",
                "Accept": "application/json",
                "Body": b'{"inputs":["a","b"]}',
            },
        )
    )
    assert transport.invoke(b'{"inputs":["a","b"]}', timeout_s=1) == answer()
    stub.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("code", "http", "original", "retryable"),
    [
        ("ThrottlingException", 400, None, True),
        ("ServiceUnavailable", 503, None, True),
        ("InternalFailure", 500, None, True),
        ("ModelNotReadyException", 429, None, True),
        ("ModelError", 424, 503, True),  # the container answered 503
        ("ModelError", 424, 422, False),  # the container refused the request
        ("ValidationError", 400, None, False),
    ],
)
def test_sagemaker_errors_are_classified_for_retry(
    code: str, http: int, original: int | None, retryable: bool
) -> None:
    # ModelError carries the container's own status as a modelled field
    modeled = {"OriginalStatusCode": original} if original else None
    transport, _ = stubbed(
        lambda s: s.add_client_error(
            "invoke_endpoint",
            service_error_code=code,
            service_message="boom",
            http_status_code=http,
            modeled_fields=modeled,
        )
    )
    with pytest.raises(TransportError) as err:
        transport.invoke(b"{}", timeout_s=1)
    assert err.value.retryable is retryable
    assert code in str(err.value)


def test_an_unexpected_error_in_a_trial_call_reopens_the_circuit() -> None:
    # GIVEN a half-open circuit and a transport that fails in a way nobody classified
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=30, clock=clock)
    breaker.failure()
    clock.now += 30

    class Broken(Script):
        def invoke(self, body: bytes, *, timeout_s: float) -> bytes:
            raise KeyError("a bug")

    client = make(Broken(b""), clock, breaker=breaker)
    # WHEN the trial call raises it
    with pytest.raises(KeyError):
        client.invoke(REQUEST)
    # THEN the circuit is open again (not stuck half-open with a trial that never ends)
    assert breaker.state is CircuitState.OPEN
    clock.now += 30
    assert breaker.acquire() is True
