"""Personal data and credentials are erased from log lines, at any depth and in any case."""

from __future__ import annotations

import io
import json
import logging

from aibackend.masking import MASK, erase, masked_logger, sensitive_fields
from tests.conftest import load_event


def test_an_event_logged_whole_leaves_no_key_token_or_card_id() -> None:
    # GIVEN the sample API Gateway event, with an API key and a bearer token, and its body's
    # transaction (card id, age band, region)
    event = load_event("apigw/fraud_score")
    event["headers"] = {
        **(event["headers"] or {}),
        "X-Api-Key": "aib_secret",
        "Authorization": "Bearer eyJ.x.y",
    }
    txn = json.loads(event["body"])
    txn.update(customer_age_band="30-44", region="north")
    logger = masked_logger(service="masking_test")
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(logger.registered_formatter)
    logging.getLogger("masking_test").addHandler(handler)
    # WHEN both are logged
    logger.info("incoming", extra={"event": event, "transactions": [txn]})
    # THEN none of their values is in the line, each is masked, and the rest is kept
    line = buf.getvalue()
    for secret in ("aib_secret", "eyJ.x.y", txn["card_id"], "30-44", "north"):
        assert secret not in line
    record = json.loads(line)
    assert record["event"]["headers"]["X-Api-Key"] == MASK
    assert record["event"]["headers"]["Authorization"] == MASK
    assert record["event"]["body"] == MASK  # a JSON string: erased whole
    assert record["event"]["httpMethod"] == "POST"
    assert record["transactions"][0]["card_id"] == MASK
    assert record["transactions"][0]["amount"] == txn["amount"]
    assert record["message"] == "incoming"


def test_a_function_adds_its_own_fields_by_environment() -> None:
    fields = sensitive_fields({"AIB_LOG_MASK": "Account_No, postcode"})
    assert {"account_no", "postcode", "card_id"} <= fields
    assert erase({"a": {"Account_No": 1, "postcode": "X1"}, "b": 2}, fields) == {
        "a": {"Account_No": MASK, "postcode": MASK},
        "b": 2,
    }
