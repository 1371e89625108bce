"""The score stage's logic with a real trained fraud model: scores, bands, reason codes,
events."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from aibackend.errors import ConfigError
from aibackend.fraud.features import FEATURE_NAMES, matrix
from aibackend.fraud.generator import generate_transactions, to_records
from aibackend.models.card import Baseline
from aibackend.models.runtime import LoadedModel, load_model_dir
from aibackend.pipeline.features import SqliteFeatureStore
from aibackend.pipeline.messages import Columns, from_records
from aibackend.pipeline.messages import to_records as rows_of
from aibackend.pipeline.score import (
    TOP_REASONS,
    Bands,
    model_columns,
    online_columns,
    reference_row,
    score_chunk,
    score_matrix,
    suspected_events,
)


@pytest.fixture(scope="module")
def model(fraud_model_state: Path) -> LoadedModel:
    return load_model_dir(fraud_model_state / "buckets" / "models" / "fraud" / "1")


@pytest.fixture(scope="module")
def ref(model: LoadedModel) -> np.ndarray:
    return reference_row(Baseline.read(model.path))


def _records(n: int, seed: int) -> Columns:
    return from_records(to_records(generate_transactions(n, seed=seed, fraud_rate=0.2, n_cards=20)))


def test_scores_equal_a_raw_onnxruntime_session_on_the_same_matrix(
    model: LoadedModel, ref: np.ndarray, tmp_path: Path
) -> None:
    # GIVEN a chunk's model input, features from the online table
    records = _records(300, seed=1)
    x = matrix(model_columns(records, online_columns(records, SqliteFeatureStore(tmp_path / "f"))))
    # WHEN it is scored by the stage and by a plain onnxruntime session
    got = score_matrix(model, x, ref).score
    session = ort.InferenceSession(
        str(model.path / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    raw = session.run(None, {session.get_inputs()[0].name: x})[1][:, 1]
    # THEN the scores are the same, to float32 rounding: the stage's one run also holds the
    # reason codes' occluded rows, and onnxruntime's tree sums vary with the batch by an ulp
    np.testing.assert_allclose(got, raw, rtol=0, atol=1e-6)
    assert np.array_equal(got >= 0.5, raw >= 0.5)


def test_reason_codes_are_deterministic_and_at_most_three_known_features(
    model: LoadedModel, ref: np.ndarray, tmp_path: Path
) -> None:
    # GIVEN a chunk's model input
    records = _records(300, seed=2)
    x = matrix(model_columns(records, online_columns(records, SqliteFeatureStore(tmp_path / "f"))))
    # WHEN it is scored twice, and once in reverse row order
    first, second = score_matrix(model, x, ref), score_matrix(model, x, ref)
    backwards = score_matrix(model, x[::-1].copy(), ref)
    # THEN the reasons are the same every time, per row
    assert first.reasons == second.reasons == backwards.reasons[::-1]
    assert all(len(r) <= TOP_REASONS and set(r) <= set(FEATURE_NAMES) for r in first.reasons)
    assert any(len(r) == TOP_REASONS for r in first.reasons)


def full_occlusion_reasons(model: LoadedModel, x: np.ndarray, ref: np.ndarray) -> list[list[str]]:
    """Reasons by occluding every feature of every row (one scoring per occluded matrix), a
    feature already at its reference value contributing 0: the definition `score_matrix`
    computes with one run and without the copies that change nothing."""
    score = model.predict_proba(x)
    contribution = np.zeros((x.shape[1], len(x)))
    for j in range(x.shape[1]):
        occluded = x.copy()
        occluded[:, j] = ref[j]
        contribution[j] = np.where(x[:, j] == ref[j], 0.0, score - model.predict_proba(occluded))
    order = np.argsort(-contribution, axis=0, kind="stable")[:TOP_REASONS]
    return [
        [FEATURE_NAMES[j] for j in js if contribution[j, i] > 0]
        for i, js in enumerate(order.T.tolist())
    ]


def test_reason_codes_are_full_occlusions_without_the_features_at_their_reference(
    model: LoadedModel, ref: np.ndarray, tmp_path: Path
) -> None:
    # GIVEN a chunk's model input, where some categorical features hold the reference category
    records = _records(400, seed=5)
    x = matrix(model_columns(records, online_columns(records, SqliteFeatureStore(tmp_path / "f"))))
    at_reference = x == ref[np.newaxis, :]
    assert at_reference.any() and not at_reference.all()
    # WHEN it is scored by the stage
    got = score_matrix(model, x, ref)
    # THEN its reasons are those of occluding every feature one at a time
    assert got.reasons == full_occlusion_reasons(model, x, ref)
    # AND a feature at its reference value is never a reason
    names = np.array(FEATURE_NAMES)
    for row, reasons in zip(at_reference, got.reasons, strict=True):
        assert not set(reasons) & set(names[row])


def test_a_row_that_differs_from_the_baseline_in_one_feature_has_only_that_reason(
    model: LoadedModel, ref: np.ndarray
) -> None:
    # GIVEN the typical row, and copies that differ from it in one feature each, riskier
    j_ratio, j_1h = FEATURE_NAMES.index("amount_ratio"), FEATURE_NAMES.index("txn_count_1h")
    rows = np.repeat(ref[np.newaxis], 3, axis=0)
    rows[1, j_ratio] = 40.0
    rows[2, j_1h] = 8.0
    # WHEN scored
    s = score_matrix(model, rows, ref)
    assert s.score[1] > s.score[0] and s.score[2] > s.score[0]
    # THEN the typical row has no reason, and each other row only the feature that differs
    assert s.reasons == [[], ["amount_ratio"], ["txn_count_1h"]]


def test_score_chunk_rows_carry_online_features_score_band_reasons_and_model(
    model: LoadedModel, ref: np.ndarray, tmp_path: Path
) -> None:
    # GIVEN a chunk whose rows carry the client's own (wrong) history features
    records = _records(200, seed=3) | {"txn_count_1h": [77] * 200, "txn_count_24h": [77] * 200}
    bands = Bands(medium_at=0.2, high_at=0.5)
    # WHEN the stage scores it
    scored = score_chunk(
        records, model=model, features=SqliteFeatureStore(tmp_path / "f"), bands=bands, ref=ref
    )
    rows = rows_of(scored)
    # THEN each row has the online features, its score's band, reasons and the model version
    assert [r["transaction_id"] for r in rows] == records["transaction_id"]
    assert list(rows[0])[: len(records)] == list(records)  # the row's fields, then the scores
    assert all(r["txn_count_1h"] != 77 and r["txn_count_24h"] >= r["txn_count_1h"] for r in rows)
    assert all(r["band"] == bands.band(r["score"]) for r in rows)
    assert all(r["model"] == {"name": "fraud", "version": model.version} for r in rows)
    # AND exactly the high-risk rows become `Fraud Suspected` events keyed by transaction id
    events = suspected_events("run-1", scored)
    high = [r["transaction_id"] for r in rows if r["band"] == "high"]
    assert high, "the chunk should hold some high-risk rows"
    assert [e.detail["idempotency_key"] for e in events] == high
    assert {(e.source, e.detail_type) for e in events} == {("aib.pipeline", "Fraud Suspected")}
    # AND they are version 1 of the contract, in the chain of their run
    assert {(e.detail["schema_version"], e.detail["correlation_id"]) for e in events} == {
        ("1", "run-1")
    }


def test_bands_given_unordered_cut_offs_name_the_variables_to_fix() -> None:
    # GIVEN cut-offs in the wrong order WHEN read THEN the error names both variables
    with pytest.raises(ConfigError, match=r"FRAUD_RISK_MEDIUM_AT .* < FRAUD_RISK_HIGH_AT"):
        Bands.from_env({"FRAUD_RISK_MEDIUM_AT": "0.6", "FRAUD_RISK_HIGH_AT": "0.5"})
    assert Bands.from_env({}) == Bands(0.2, 0.5)
    assert Bands().band(0.5) == "high" and Bands().band(0.2) == "medium"
    assert Bands().band(0.19) == "low"
    # AND a whole column gets the bands its scores get one by one, float32 scores included
    column = np.array([0.0, 0.19, 0.2, 0.35, 0.4999999, 0.5, 0.7, 1.0], dtype=np.float32)
    odd = Bands(medium_at=0.35, high_at=0.7)  # cut-offs float32 rounds down
    for bands in (Bands(), odd):
        assert bands.bands(column) == [bands.band(float(x)) for x in column]
