"""Event contracts: parsing, typed errors, chaining, the samples and the JSON Schema files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest

from aibackend.contracts import (
    ContractError,
    Detail,
    InvalidDetailError,
    UnknownDetailTypeError,
    UnknownVersionError,
    contracts,
    emit,
    expect,
    parse,
    register,
)
from aibackend.contracts.fraud import (
    FraudSuspectedV1,
    TransactionCreatedV1,
)
from aibackend.contracts.schemas import drift, json_schema, kebab, write

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = ROOT / "events" / "eventbridge"
SCHEMAS = ROOT / "events" / "schemas"


def sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / f"{name}.json").read_text(encoding="utf-8"))
    return data


#: Every sample under events/eventbridge/ whose detail-type has a contract (the others are
#: AWS services' events, e.g. S3's `Object Created`). A new contract adds a sample file there.
CONTRACT_SAMPLES = sorted(
    p.stem for p in SAMPLES.glob("*.json") if sample(p.stem)["detail-type"] in contracts()
)


@pytest.mark.parametrize("name", CONTRACT_SAMPLES)
def test_each_sample_event_validates_against_its_contract(name: str) -> None:
    event = sample(name)
    parsed = parse(event)
    version = event["detail"].get("schema_version", "1")
    assert type(parsed.detail) is contracts()[event["detail-type"]][version]


def test_every_contract_has_a_sample_event() -> None:
    covered = {
        (sample(n)["detail-type"], sample(n)["detail"].get("schema_version", "1"))
        for n in CONTRACT_SAMPLES
    }
    registered = {(t, v) for t, versions in contracts().items() for v in versions}
    assert registered - covered == set()
    # the unversioned sample (what producers sent before versioning) is read as v1
    assert "custom_event" in CONTRACT_SAMPLES
    assert "schema_version" not in sample("custom_event")["detail"]


def test_an_event_without_a_correlation_id_starts_its_own_chain() -> None:
    parsed = parse(sample("transaction_created"))
    assert parsed.correlation_id == parsed.event_id == sample("transaction_created")["id"]


def test_an_emitted_event_keeps_the_chain_and_names_its_direct_cause() -> None:
    # GIVEN a Transaction Scored that itself belongs to a chain started elsewhere
    cause = parse(sample("transaction_scored"))
    # WHEN an event is emitted because of it
    out = emit(
        cause,
        "aib.test",
        FraudSuspectedV1,
        transaction_id="t",
        card_id="c",
        score=0.9,
        model={"name": "fraud", "version": 3},
    )
    # THEN it carries the chain's correlation id and the Transaction Scored event as its cause
    assert out.detail_type == "Fraud Suspected"
    assert out.detail["correlation_id"] == sample("transaction_scored")["detail"]["correlation_id"]
    assert out.detail["caused_by"] == cause.event_id
    assert out.detail["schema_version"] == "1"
    assert "run_id" not in out.detail  # unset optional fields are left out, not null
    assert parse({"id": "x", "detail-type": out.detail_type, "detail": out.detail}).detail


def test_an_unknown_version_is_refused_with_the_versions_known() -> None:
    event = sample("transaction_created")
    event["detail"]["schema_version"] = "2"
    with pytest.raises(UnknownVersionError) as e:
        parse(event)
    assert str(e.value) == (
        f"event {event['id']}: 'Transaction Created': unknown schema_version '2'; known: 1"
    )


def test_an_unknown_detail_type_is_refused_naming_the_known_ones() -> None:
    event = {**sample("transaction_created"), "detail-type": "Transaction Exploded"}
    with pytest.raises(UnknownDetailTypeError, match="unknown detail-type 'Transaction Exploded'"):
        parse(event)


def test_an_invalid_detail_names_every_bad_field() -> None:
    event = sample("transaction_created")
    event["detail"]["amount"] = -5
    del event["detail"]["card_id"]
    with pytest.raises(InvalidDetailError) as e:
        parse(event)
    message = str(e.value)
    assert "'Transaction Created' v1" in message
    assert "detail.card_id: Field required" in message
    assert "detail.amount: Input should be greater than 0" in message


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"detail-type": "Transaction Created", "detail": {}}, "`id` is missing"),
        ({"id": "e1", "detail": {}}, "`detail-type` is missing"),
        ({"id": "e1", "detail-type": "Transaction Created", "detail": "x"}, "not an object"),
    ],
)
def test_a_malformed_envelope_is_a_contract_error(event: dict[str, Any], expected: str) -> None:
    with pytest.raises(ContractError, match=expected):
        parse(event)


def test_contract_errors_are_value_errors_with_distinct_types() -> None:
    kinds = (UnknownDetailTypeError, UnknownVersionError, InvalidDetailError)
    assert all(issubclass(k, ContractError) and issubclass(k, ValueError) for k in kinds)
    assert len({k.__name__ for k in kinds}) == 3


def test_expect_refuses_another_contract() -> None:
    with pytest.raises(UnknownDetailTypeError, match="expected 'Transaction Created' v1, got "):
        expect(parse(sample("fraud_suspected")), TransactionCreatedV1)


def test_velocity_fields_of_a_created_transaction_are_optional() -> None:
    detail = sample("transaction_created")["detail"]
    assert "txn_count_1h" not in detail
    assert TransactionCreatedV1.model_validate(detail).txn_count_1h is None


def test_registering_a_second_model_for_a_version_is_refused() -> None:
    class Duplicate(Detail):
        detail_type = "Transaction Created"
        version = "1"
        schema_version: Literal["1"] = "1"

    with pytest.raises(ValueError, match="already registered by TransactionCreatedV1"):
        register(Duplicate)


def test_a_contract_whose_schema_version_disagrees_is_refused() -> None:
    class Mismatch(Detail):
        detail_type = "Test Mismatch"
        version = "2"
        schema_version: Literal["1"] = "1"

    with pytest.raises(ValueError, match="declare schema_version"):
        register(Mismatch)
    assert "Test Mismatch" not in contracts()


# -- JSON Schema files ----------------------------------------------------------------------------


def test_committed_schema_files_match_the_models() -> None:
    # Fails when a contract changed without `aib events schemas` (or a file was edited by hand).
    assert drift(SCHEMAS) == []


def test_drift_names_a_changed_a_missing_and_an_orphan_file(tmp_path: Path) -> None:
    write(tmp_path)
    changed = tmp_path / "transaction-scored" / "v1.json"
    changed.write_text(changed.read_text().replace('"score"', '"points"'))
    (tmp_path / "fraud-suspected" / "v1.json").unlink()
    (tmp_path / "fraud-suspected" / "v9.json").write_text("{}")
    assert drift(tmp_path) == [
        f"{tmp_path / 'fraud-suspected' / 'v1.json'}: missing",
        f"{changed}: differs from transaction-scored v1's model",
        f"{tmp_path / 'fraud-suspected' / 'v9.json'}: no contract has this detail-type and version",
    ]
    assert write(tmp_path) == [
        tmp_path / "transaction-scored" / "v1.json",
        tmp_path / "fraud-suspected" / "v1.json",
    ]


def test_a_schema_file_names_its_detail_type_and_version() -> None:
    schema = json_schema(TransactionCreatedV1)
    assert kebab("Transaction Created") == "transaction-created"
    assert schema["$id"] == "aib:events/transaction-created/v1.json"
    assert schema["x-detail-type"] == "Transaction Created"
    assert schema["properties"]["schema_version"]["const"] == "1"
    assert "card_id" in schema["required"] and "txn_count_1h" not in schema["required"]


@pytest.mark.parametrize("name", CONTRACT_SAMPLES)
def test_the_schema_files_accept_the_samples(name: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    event = sample(name)
    version = event["detail"].get("schema_version", "1")
    schema_file = SCHEMAS / kebab(event["detail-type"]) / f"v{version}.json"
    jsonschema.validate(event["detail"], json.loads(schema_file.read_text()))


def test_the_cli_writes_the_schema_files_then_checks_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from aibackend.cli import main

    out = tmp_path / "schemas"
    # GIVEN an empty folder: the check fails and says how to fix it
    assert main(["events", "schemas", "--check", "--out", str(out)]) == 1
    assert "run `aib events schemas`" in capsys.readouterr().err
    # WHEN the files are written  THEN they are the committed ones and the check passes
    assert main(["events", "schemas", "--out", str(out)]) == 0
    for path in SCHEMAS.glob("*/v*.json"):
        assert (out / path.relative_to(SCHEMAS)).read_text() == path.read_text()
    assert main(["events", "schemas", "--check", "--out", str(out)]) == 0
    # AND writing again changes nothing, and says so
    capsys.readouterr()
    assert main(["events", "schemas", "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"{out}: every event contract's schema file is up to date\n"
