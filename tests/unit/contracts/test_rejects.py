"""`rejects_contract_errors`: an event no contract accepts is sent to the consumer's failure
queue once, on its first attempt; anything else still propagates to Lambda's retries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aibackend.adapters.local_queue import SqliteQueueService
from aibackend.contracts import UnknownVersionError, parse
from aibackend.contracts.rejects import CONTRACT_REJECTED, rejects_contract_errors
from aibackend.local.context import LocalLambdaContext
from aibackend.ports import QueueConfig
from tests.conftest import load_event


@pytest.fixture
def queues(tmp_path: Path) -> SqliteQueueService:
    service = SqliteQueueService(tmp_path / "queues.db")
    service.ensure(QueueConfig(name="consumer-failures"))
    return service


def context() -> LocalLambdaContext:
    return LocalLambdaContext(function_name="consumer", memory_limit_in_mb=256, timeout_s=10)


def records(queues: SqliteQueueService) -> list[dict[str, Any]]:
    messages = queues.get("consumer-failures").receive(10, visibility_timeout_s=0)
    return [json.loads(m.body) for m in messages]


def test_a_contract_error_is_sent_once_to_the_failure_queue_and_answered(
    queues: SqliteQueueService,
) -> None:
    # GIVEN a consumer that parses its event, and an event of a version no contract has
    calls: list[str] = []

    @rejects_contract_errors("consumer", queues=lambda: queues)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append(event["id"])
        parse(event)
        return {"ok": True}

    event = load_event("eventbridge/transaction_created")
    event["detail"] = {**event["detail"], "schema_version": "7"}
    # WHEN it is invoked once
    answer = handler(event, context())
    # THEN the invocation succeeds (nothing for Lambda to retry) and says why it refused
    assert answer["rejected"]["errorType"] == "UnknownVersionError"
    assert "unknown schema_version '7'" in answer["rejected"]["errorMessage"]
    assert calls == [event["id"]]
    # AND the failure queue holds Lambda's on-failure record for it, marked as a rejection
    [record] = records(queues)
    assert record["requestPayload"] == event
    assert record["responsePayload"] == answer["rejected"]
    assert record["requestContext"]["condition"] == CONTRACT_REJECTED
    assert record["requestContext"]["approximateInvokeCount"] == 1
    assert record["requestContext"]["functionArn"].endswith(":function:consumer")


def test_other_errors_still_propagate_to_lambdas_retries(queues: SqliteQueueService) -> None:
    # GIVEN a consumer whose downstream call fails (retrying may help)
    @rejects_contract_errors("consumer", queues=lambda: queues)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise TimeoutError("model endpoint timed out")

    # WHEN it is invoked THEN the error propagates and nothing is sent
    with pytest.raises(TimeoutError):
        handler(load_event("eventbridge/transaction_created"), context())
    assert records(queues) == []


def test_a_failed_send_propagates_so_the_event_takes_the_retry_path(tmp_path: Path) -> None:
    # GIVEN a failure queue that does not exist (the send fails)
    service = SqliteQueueService(tmp_path / "queues.db")

    @rejects_contract_errors("consumer", queues=lambda: service)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        parse(event)
        return {"ok": True}

    event = load_event("eventbridge/transaction_created")
    event["detail"] = {**event["detail"], "schema_version": "7"}
    # WHEN it is invoked THEN it fails (Lambda retries, then its on-failure destination keeps
    # the event) and the contract error is the cause
    with pytest.raises(Exception) as e:
        handler(event, context())
    assert isinstance(e.value.__context__, UnknownVersionError)
