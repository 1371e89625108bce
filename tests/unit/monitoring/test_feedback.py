"""Labels files and feedback into the ledger: bad rows quarantined with reasons, the rest in."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from aibackend.monitoring.feedback import (
    FeedbackItem,
    LabelsFileError,
    model_of,
    parse_labels_csv,
    quarantine_key,
    record_labels,
    rejected_csv,
)
from aibackend.monitoring.labels import CapturedPrediction, SqliteLabelStore

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)


def test_good_rows_proceed_and_each_bad_row_is_rejected_with_its_line_and_reason() -> None:
    # GIVEN a file with three good rows and four bad ones
    data = (
        b"inference_id,label,observed_at\n"
        b"a,1,2026-11-27T09:00:00Z\n"
        b"b,false,\n"
        b"c,TRUE,\n"
        b"d,2,\n"
        b"e,1,yesterday\n"
        b",0,\n"
        b"f,1\n"
        b"\n"
    )
    # WHEN it is parsed
    got = parse_labels_csv(data, "labels/fraud/x.csv")
    # THEN the good rows are labels, the bad ones say what is wrong where
    assert [(i.inference_id, i.label) for i in got.items] == [("a", 1), ("b", 0), ("c", 1)]
    assert got.items[0].observed_at == datetime(2026, 11, 27, 9, tzinfo=UTC)
    reasons = {r.line: r.reason for r in got.rejected}
    assert set(reasons) == {5, 6, 7, 8}
    assert "label '2' is not 0/1" in reasons[5]
    assert "isoformat" in reasons[6]
    assert "inference_id" in reasons[7]
    assert "2 fields, expected 3" in reasons[8]
    assert rejected_csv(got.rejected).decode().splitlines()[0] == "line,reason,row"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"id,label\nx,1\n", "header must be inference_id,label"),
        (b"\xff\xfe", "not UTF-8"),
        (b"", "header must be"),
    ],
)
def test_a_file_that_cannot_be_read_as_a_whole_says_why(data: bytes, why: str) -> None:
    with pytest.raises(LabelsFileError, match=why):
        parse_labels_csv(data, "labels/fraud/x.csv")


def test_keys_give_the_model_and_the_quarantine_lies_outside_the_labels_prefix() -> None:
    assert model_of("labels/fraud/2026/x.csv") == "fraud"
    assert quarantine_key("labels/fraud/x.csv") == "labels-quarantine/fraud/x.csv.rejected.csv"
    with pytest.raises(LabelsFileError, match=r"expected labels/<model>/<file>\.csv"):
        model_of("labels/x.csv")


def test_recorded_labels_count_new_corrected_duplicate_and_unknown_yet(tmp_path: Path) -> None:
    # GIVEN a ledger with two captured predictions, one already labelled 0
    ledger = SqliteLabelStore(tmp_path / "labels.db")
    ledger.put_predictions(
        [CapturedPrediction(inference_id=i, time=NOW, score=0.2, predicted=0) for i in ("p1", "p2")]
    )
    record_labels(ledger, "fraud", [FeedbackItem(inference_id="p1", label=0)], NOW)
    # WHEN p1 is corrected to 1 later, p2 labelled, p2 repeated and p9 (not captured) labelled
    later = datetime(2026, 11, 28, tzinfo=UTC)
    items = [
        FeedbackItem(inference_id="p1", label=1, observed_at=later),
        FeedbackItem(inference_id="p2", label=1),
        FeedbackItem(inference_id="p2", label=1),
        FeedbackItem(inference_id="p9", label=0),
    ]
    got = record_labels(ledger, "fraud", items, NOW)
    # THEN the answer counts each kind
    assert (got.received, got.accepted, got.corrected, got.duplicates, got.unknown_yet) == (
        4,
        3,
        1,
        1,
        1,
    )
