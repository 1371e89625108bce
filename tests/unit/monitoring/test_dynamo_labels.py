"""The DynamoDB label ledger (through moto) passes the same contract tests as the SQLite one:
the scenarios of test_labels.py run here against `DynamoLabelStore`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws

from aibackend.monitoring.dynamo_labels import DynamoLabelStore
from aibackend.monitoring.labels import CapturedPrediction, Label
from tests.support import create_data_table
from tests.unit.monitoring.test_labels import (
    test_a_label_before_its_capture_joins_when_the_capture_arrives,
    test_a_late_label_updates_the_window_of_its_prediction_time,
    test_a_later_different_label_is_a_correction_and_an_older_one_is_ignored,
    test_an_empty_window_reports_nothing_rather_than_zeros,
    test_labels_and_captures_delivered_twice_count_once,
    test_window_metrics_match_their_definitions,
)

__all__ = [
    "test_a_label_before_its_capture_joins_when_the_capture_arrives",
    "test_a_late_label_updates_the_window_of_its_prediction_time",
    "test_a_later_different_label_is_a_correction_and_an_older_one_is_ignored",
    "test_an_empty_window_reports_nothing_rather_than_zeros",
    "test_labels_and_captures_delivered_twice_count_once",
    "test_window_metrics_match_their_definitions",
]
TABLE = "aib-monitoring-labels"


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[DynamoLabelStore]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        ddb = boto3.client("dynamodb")
        create_data_table(ddb, TABLE)
        yield DynamoLabelStore(TABLE, "fraud", client=ddb, shards=4)


def test_models_share_the_table_without_seeing_each_others_rows(
    store: DynamoLabelStore,
) -> None:
    # GIVEN a prediction of fraud and one of churn, with the same inference id, in one table
    t = datetime(2026, 11, 27, 10, 5, tzinfo=UTC)
    churn = DynamoLabelStore(TABLE, "churn", client=store._ddb, shards=4)
    for s in (store, churn):
        s.put_predictions([CapturedPrediction(inference_id="x", time=t, score=0.9, predicted=1)])
    # WHEN only churn's is labelled
    churn.put_labels([Label(inference_id="x", label=1, received_at=t)])
    # THEN each model's window counts its own prediction, and only churn's is labelled
    hour = (t.replace(minute=0), t.replace(minute=0) + timedelta(hours=1))
    assert store.window(*hour).predictions == churn.window(*hour).predictions == 1
    assert (store.window(*hour).labelled, churn.window(*hour).labelled) == (0, 1)
