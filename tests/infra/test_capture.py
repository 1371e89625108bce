"""Inference capture on AWS: functions serving a captured model may send to the capture queue,
its consumer writes to the monitoring bucket, and captured objects expire per model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aibackend.capture import ENV
from aibackend.catalog import load_catalog, load_function

ROOT = Path(__file__).resolve().parents[2]
CATALOG = load_catalog(ROOT / "functions")

pytestmark = pytest.mark.slow


def lambda_named(synth: Any, function: str) -> tuple[str, dict[str, Any]]:
    handler = load_function(ROOT / "functions" / function).lambda_handler
    fns = synth.service_resources("AWS::Lambda::Function")
    return next((k, f) for k, f in fns.items() if f["Properties"]["Handler"] == handler)


def statements_of(synth: Any, function_id: str) -> list[dict[str, Any]]:
    fn = synth.service_resources("AWS::Lambda::Function")[function_id]
    role = fn["Properties"]["Role"]["Fn::GetAtt"][0]
    policies = synth.service_resources("AWS::IAM::Policy")
    return [
        s
        for p in policies.values()
        if {"Ref": role} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_functions_serving_fraud_carry_the_capture_settings_and_may_send(synth: Any) -> None:
    # GIVEN monitoring.toml captures fraud; fraud_score serves fraud
    fid, fn = lambda_named(synth, "fraud_score")
    env = fn["Properties"]["Environment"]["Variables"]
    # THEN its environment holds the settings and its role may send to the capture queue
    assert json.loads(env[ENV])["fraud"] == CATALOG.capture["fraud"].model_dump(mode="json")
    sends = [s for s in statements_of(synth, fid) if "sqs:SendMessage" in s["Action"]]
    queues = synth.resources("AibShared", "AWS::SQS::Queue")
    (capture_queue,) = (k for k in queues if k.startswith("QueuesInferenceCaptureQueue"))
    capture_arn = synth.imported("AibShared", {"Fn::GetAtt": [capture_queue, "Arn"]})
    assert [s["Resource"] for s in sends] == [capture_arn]


def test_a_function_serving_no_captured_model_gets_neither(synth: Any) -> None:
    _, fn = lambda_named(synth, "sentiment")
    assert ENV not in fn["Properties"]["Environment"]["Variables"]


def test_captured_objects_expire_after_the_declared_days(synth: Any) -> None:
    # GIVEN the monitoring bucket in AibData
    buckets = synth.resources("AibData", "AWS::S3::Bucket")
    (monitoring,) = (b for k, b in buckets.items() if k.startswith("DataBucketsMonitoring"))
    rules = monitoring["Properties"]["LifecycleConfiguration"]["Rules"]
    # THEN a rule expires each captured model's prefix after its retention days
    expiring = {r["Prefix"]: r["ExpirationInDays"] for r in rules if "Prefix" in r}
    assert expiring == {f"capture/{m}/": s.retention_days for m, s in CATALOG.capture.items()}
    assert all(r["Status"] == "Enabled" for r in rules)
