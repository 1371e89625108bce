"""Live recommendations through the local runtime: a `Product Viewed` event changes the
session's next answer (ordering: the view is delivered, then the request is made)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from aibackend.adapters.local import connection
from aibackend.local.runtime import LocalRuntime
from aibackend.ports import PutEvent
from tests.conftest import load_event
from tests.support import running_runtime, runtime_client, sqs_batch, wait_for


@pytest.fixture(scope="module")
def shop_runtime(
    shop_state: Path, shop_functions: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalRuntime]:
    state = tmp_path_factory.mktemp("shop-runtime") / "state"
    with running_runtime(shop_functions, state, seed_state=shop_state) as rt:
        yield rt


def view(session: str, item: str) -> PutEvent:
    return PutEvent(
        source="aib.shop",
        detail_type="Product Viewed",
        detail={
            "schema_version": "1",
            "session_id": session,
            "user_id": "u000001",
            "item_id": item,
            "viewed_at": datetime.now(UTC).isoformat(),
        },
    )


def consumed(rt: LocalRuntime, event_id: str) -> bool:
    """shop_events has handled the event (ordering, not a timed wait): the bus delivered it
    into the consumer's queue, and the consumer deleted that message (`queue_done`), as
    `aib simulate` reads it."""
    with connection(rt.bus.db_path) as c:
        row = c.execute(
            "SELECT state, message_id FROM bus_deliveries WHERE event_id = ?", (event_id,)
        ).fetchone()
    if row is None or row["state"] != "delivered" or row["message_id"] is None:
        return False
    with connection(rt.bus.db_path.parent / "queues.db") as c:
        done = c.execute("SELECT 1 FROM queue_done WHERE id = ?", (row["message_id"],))
        return done.fetchone() is not None


def recommend(rt: LocalRuntime, session: str) -> dict[str, Any]:
    r = runtime_client(rt).get("/v1/recommendations/u000001", params={"session": session})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_a_view_changes_the_sessions_next_answer(shop_runtime: LocalRuntime) -> None:
    # GIVEN a session without views: the user's own ranking
    before = recommend(shop_runtime, "s-live-1")
    assert before["session_items"] == 0
    top = before["results"][0]["item_id"]
    # WHEN the session views the user's top item, and shop_events has handled the event
    put = shop_runtime.bus.put_events([view("s-live-1", top)])
    wait_for(lambda: consumed(shop_runtime, str(put.event_ids[0])))
    # THEN the next answer ranks from the session's profile: that item is no longer offered
    after = recommend(shop_runtime, "s-live-1")
    assert after["session_items"] == 1
    assert top not in [r["item_id"] for r in after["results"]]
    assert [r["item_id"] for r in after["results"]] != [r["item_id"] for r in before["results"]]
    # AND another session is unaffected
    other = recommend(shop_runtime, "s-live-2")
    assert [r["item_id"] for r in other["results"]] == [r["item_id"] for r in before["results"]]


def test_the_lambda_handler_records_the_sample_aws_event(shop_runtime: LocalRuntime) -> None:
    # GIVEN the AWS-shaped sample (an SQS batch of two views of session s-7f3a9c), made now (a
    # view two hours old has decayed out of the profile)
    sample = load_event("sqs/shop_events_batch")
    for record in sample["Records"]:
        body = json.loads(record["body"])
        body["detail"]["viewed_at"] = datetime.now(UTC).isoformat()
        record["body"] = json.dumps(body)
    # WHEN the Lambda handler gets it / THEN it records both, and the session's next answer
    # uses them
    assert shop_runtime.hosts["shop_events"].invoke(sample) == {"batchItemFailures": []}
    assert recommend(shop_runtime, "s-7f3a9c")["session_items"] == 2


def test_a_view_no_contract_accepts_is_kept_in_the_dlq_with_its_reason(
    shop_runtime: LocalRuntime,
) -> None:
    # GIVEN a view without its item, in a batch beside a good one
    bad = load_event("eventbridge/product_viewed")
    bad["id"] = "view-without-item"
    del bad["detail"]["item_id"]
    good = load_event("eventbridge/product_viewed")
    good["id"], good["detail"]["session_id"] = "view-beside-it", "s-beside"
    good["detail"]["viewed_at"] = datetime.now(UTC).isoformat()
    # WHEN shop_events gets the batch THEN the batch succeeds (a retry cannot help the bad one)
    answer = shop_runtime.hosts["shop_events"].invoke(sqs_batch("shop-events-views", bad, good))
    assert answer == {"batchItemFailures": []}
    assert recommend(shop_runtime, "s-beside")["session_items"] == 1
    # AND the bad view is kept, as it came, in the queue's DLQ with the reason, never lost
    [kept] = shop_runtime.queues.get("shop-events-views-dlq").receive(10, visibility_timeout_s=0)
    assert json.loads(kept.body)["id"] == "view-without-item"
    assert "item_id" in kept.message_attributes["ERROR_MESSAGE"]["StringValue"]


def test_an_unknown_session_id_shape_is_a_problem_not_a_crash(shop_runtime: LocalRuntime) -> None:
    r = runtime_client(shop_runtime).get("/v1/recommendations/u1", params={"session": "a b"})
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
