"""Events no contract accepts go to the consumer's failure queue on the first attempt.

Lambda's asynchronous invocation has no non-retryable error: a `ContractError` raised by a
handler would be invoked 1 + `max_attempts` times, each failing the same way in `parse`,
before Lambda's on-failure destination kept it. `rejects_contract_errors` catches it instead
and sends the record Lambda would have written (same queue, same `requestPayload` and
`responsePayload.errorType` / `errorMessage`; `requestContext.condition` is
`ContractRejected`), then returns normally. If that send fails the error propagates, so the
event takes Lambda's retry path and still ends in the same queue: never lost.

Both topologies hold the send right already: CDK's on-failure `SqsDestination` grants the
function's role `sqs:SendMessage` on its failure queue, and the platform sets the queue's URL
in `AIB_QUEUE_<FUNCTION>_FAILURES`; locally the queue lives in `.aib/queues.db`.

Apply it under Powertools' `@idempotent` (nearer the function), so a redelivered rejected event
returns the first answer instead of sending a second record.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from aibackend.adapters import queue_service
from aibackend.catalog import failure_queue
from aibackend.contracts.base import ContractError
from aibackend.ports import QueueService

log = logging.getLogger(__name__)

#: `requestContext.condition` of a record sent by `rejects_contract_errors` (Lambda's own are
#: `RetriesExhausted` and `EventAgeExceeded`).
CONTRACT_REJECTED = "ContractRejected"

Handler = TypeVar("Handler", bound=Callable[..., Any])


def rejection_record(event: Any, error: ContractError, context: Any) -> dict[str, Any]:
    """Lambda's on-failure destination record for `event`, refused on its first attempt."""
    return {
        "version": "1.0",
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "requestContext": {
            "requestId": getattr(context, "aws_request_id", None),
            "functionArn": getattr(context, "invoked_function_arn", None),
            "condition": CONTRACT_REJECTED,
            "approximateInvokeCount": 1,
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "functionError": "Handled"},
        "responsePayload": {"errorType": type(error).__name__, "errorMessage": str(error)},
    }


def rejects_contract_errors(
    function: str, queues: Callable[[], QueueService] = queue_service
) -> Callable[[Handler], Handler]:
    """Decorate an asynchronous consumer: a `ContractError` it raises is sent once to
    `<function>-failures` and answered with `{"rejected": {...}}` instead of retried.

    `function` is the function's name in `function.toml` (its directory); `queues` is resolved
    on the first rejection, so importing the handler touches no queue.
    """

    def decorate(handler: Handler) -> Handler:
        queue_name = failure_queue(function)

        @functools.wraps(handler)
        def wrapper(event: Any, context: Any) -> Any:
            try:
                return handler(event, context)
            except ContractError as e:
                record = rejection_record(event, e, context)
                # A failed send propagates (chained to the contract error): Lambda's retries
                # and its on-failure destination take over, as without this decorator.
                queues().get(queue_name).send(json.dumps(record))
                log.warning(
                    "event %s rejected to %s: %s: %s",
                    event.get("id") if isinstance(event, dict) else None,
                    queue_name,
                    type(e).__name__,
                    e,
                )
                return {"rejected": record["responsePayload"]}

        return wrapper  # type: ignore[return-value]

    return decorate
