"""Event plumbing from declarations: queues, the platform bus, rules, data buckets, object
notifications, schedules.

One synth of a catalog with one function per trigger kind plus a sender; the error cases
build the app only (they fail before synthesis).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser.models import S3Model

from aibackend.errors import ConfigError
from aibackend.local.triggers import s3_notification_from_eventbridge
from infra.application import build_app

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CONTEXT = {"aws:cdk:bundling-stacks": [], "model:fraud:version": "1"}

FUNCTIONS = {
    "ingest": """
timeout_s = 30
reserved_concurrency = 20
provisioned_concurrency = 2
[[queues]]
queue = "transactions"
batch_size = 100
batching_window_s = 5
max_concurrency = 10
max_receive_count = 3
retention_s = 86400
""",
    "sender": """
[resources.queues]
transactions = "write"
[resources.buses]
aib = "write"
[resources.buckets]
raw = "readwrite"
""",
    "on_event": """
[[events]]
input_path = "$.detail"
max_attempts = 1
max_event_age_s = 900
[events.pattern]
source = [{ prefix = "aib." }]
"detail-type" = ["TransactionScored"]
detail = { score = [{ numeric = [">=", 0.9] }] }
[[events]]
bus = "default"
pattern = { source = ["aws.sagemaker"] }
max_attempts = 1
max_event_age_s = 900
""",
    "on_object": """
[[objects]]
bucket = "raw"
prefix = "incoming/"
suffix = ".csv"
[[objects]]
bucket = "raw"
prefix = "manual/"
[[objects]]
bucket = "raw"
suffix = ".json"
""",
    "on_report": """
[[objects]]
bucket = "raw"
prefix = "reports/"
notification = "s3"
""",
    "nightly": """
[[schedules]]
expression = "cron(0 6 * * ? *)"
""",
}

Resources = dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def plumbing(
    tmp_path_factory: pytest.TempPathFactory,
    new_function: Callable[..., Path],
    synthesizer: Callable[..., Any],
) -> Any:
    functions_dir = tmp_path_factory.mktemp("plumbing") / "functions"
    functions_dir.mkdir()
    for name, toml in FUNCTIONS.items():
        new_function(functions_dir, name, toml)
    return synthesizer(
        tmp_path_factory.mktemp("plumbing.out"), functions_dir=functions_dir, context=CONTEXT
    )


def services(plumbing: Any, type_: str) -> Resources:
    """Resources of AibShared (the consumed queues) and of every group stack together."""
    resources: Resources = {
        **plumbing.resources("AibShared", type_),
        **plumbing.service_resources(type_),
    }
    return resources


def imported(plumbing: Any, value: Any) -> dict[str, str]:
    """An AibShared value (a queue's ARN, its URL, the key's ARN) as a group stack sees it."""
    return plumbing.imported("AibShared", value)  # type: ignore[no-any-return]


def one(resources: Resources, prefix: str) -> tuple[str, dict[str, Any]]:
    """The only resource whose logical id starts with `prefix` (construct path, PascalCase)."""
    (item,) = ((k, v) for k, v in resources.items() if k.startswith(prefix))
    return item


def props(plumbing: Any, type_: str, prefix: str) -> dict[str, Any]:
    properties: dict[str, Any] = one(services(plumbing, type_), prefix)[1]["Properties"]
    return properties


def ref(plumbing: Any, type_: str, prefix: str) -> dict[str, str]:
    return {"Ref": one(services(plumbing, type_), prefix)[0]}


def arn(plumbing: Any, type_: str, prefix: str) -> dict[str, list[str]]:
    return {"Fn::GetAtt": [one(services(plumbing, type_), prefix)[0], "Arn"]}


def statements(plumbing: Any, function: str) -> list[dict[str, Any]]:
    policy = props(plumbing, "AWS::IAM::Policy", f"{function}RoleDefaultPolicy")
    found: list[dict[str, Any]] = policy["PolicyDocument"]["Statement"]
    return found


def env(plumbing: Any, function: str) -> dict[str, Any]:
    variables: dict[str, Any] = props(plumbing, "AWS::Lambda::Function", f"{function}Function")[
        "Environment"
    ]["Variables"]
    return variables


def queue_key(plumbing: Any) -> dict[str, list[str]]:
    """AibShared's own key, the one every queue is encrypted under."""
    return arn(plumbing, "AWS::KMS::Key", "QueueKey")


def actions(statement: dict[str, Any]) -> set[str]:
    a = statement["Action"]
    return {a} if isinstance(a, str) else set(a)


QUEUE = "AWS::SQS::Queue"
RULE = "AWS::Events::Rule"
CONSUME = {
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
}


# --- queues -----------------------------------------------------------------------------------


def test_consumed_queue_is_encrypted_and_redrives_to_its_dead_letter_queue(plumbing: Any) -> None:
    # GIVEN ingest consumes "transactions" (timeout 30 s, 3 receives, 1 day retention)
    queue = props(plumbing, QUEUE, "QueuesTransactionsQueue")
    dlq = props(plumbing, QUEUE, "QueuesTransactionsDeadLetters")
    # THEN the queue keeps messages as declared, hides them 6 x the timeout, then redrives
    assert queue["MessageRetentionPeriod"] == 86400
    assert queue["VisibilityTimeout"] == 180
    assert queue["KmsMasterKeyId"] == queue_key(plumbing)
    assert queue["KmsDataKeyReusePeriodSeconds"] == 300
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": arn(plumbing, QUEUE, "QueuesTransactionsDeadLetters"),
        "maxReceiveCount": 3,
    }
    # AND the DLQ keeps failures for SQS's maximum of 14 days
    assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert dlq["KmsMasterKeyId"] == queue_key(plumbing)
    assert "RedrivePolicy" not in dlq


def test_every_queue_refuses_plain_http(plumbing: Any) -> None:
    queues = services(plumbing, QUEUE)
    ssl_only = {
        q["Ref"]
        for p in services(plumbing, "AWS::SQS::QueuePolicy").values()
        for q in p["Properties"]["Queues"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    }
    assert ssl_only == set(queues)
    assert len(queues) == 6  # transactions + DLQ, and a failure queue per async consumer


def test_queue_feeds_the_consumers_live_alias_with_partial_batch_failures(plumbing: Any) -> None:
    (mapping,) = services(plumbing, "AWS::Lambda::EventSourceMapping").values()
    p = mapping["Properties"]
    assert p["EventSourceArn"] == imported(
        plumbing, arn(plumbing, QUEUE, "QueuesTransactionsQueue")
    )
    assert p["BatchSize"] == 100
    assert p["MaximumBatchingWindowInSeconds"] == 5
    assert p["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert p["ScalingConfig"] == {"MaximumConcurrency": 10}
    # "<function name>:live", from the alias ARN
    name = p["FunctionName"]["Fn::Join"][1]
    assert name[1] == ":live"
    assert name[0]["Fn::Select"][1]["Fn::Split"][1] == ref(
        plumbing, "AWS::Lambda::Alias", "IngestLive"
    )


def test_consumer_may_consume_only_its_queue(plumbing: Any) -> None:
    queue = imported(plumbing, arn(plumbing, QUEUE, "QueuesTransactionsQueue"))
    sqs = [
        s for s in statements(plumbing, "Ingest") if any(a.startswith("sqs:") for a in actions(s))
    ]
    assert sqs == [{"Action": sorted(CONSUME), "Effect": "Allow", "Resource": queue}]
    assert env(plumbing, "Ingest")["AIB_QUEUE_TRANSACTIONS"] == imported(
        plumbing, ref(plumbing, QUEUE, "QueuesTransactionsQueue")
    )


def test_sender_may_send_to_the_queue_and_learns_its_url(plumbing: Any) -> None:
    queue = imported(plumbing, arn(plumbing, QUEUE, "QueuesTransactionsQueue"))
    sqs = [
        s for s in statements(plumbing, "Sender") if any(a.startswith("sqs:") for a in actions(s))
    ]
    assert sqs == [
        {
            "Action": ["sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:SendMessage"],
            "Effect": "Allow",
            "Resource": queue,
        }
    ]
    assert env(plumbing, "Sender")["AIB_QUEUE_TRANSACTIONS"] == imported(
        plumbing, ref(plumbing, QUEUE, "QueuesTransactionsQueue")
    )


def test_reserved_concurrency_is_set_where_declared_only(plumbing: Any) -> None:
    fns = services(plumbing, "AWS::Lambda::Function")
    reserved = {k: v["Properties"].get("ReservedConcurrentExecutions") for k, v in fns.items()}
    assert {k for k, v in reserved.items() if v is not None} == {one(fns, "IngestFunction")[0]}
    assert reserved[one(fns, "IngestFunction")[0]] == 20


def test_provisioned_concurrency_is_on_the_live_alias_where_declared_only(plumbing: Any) -> None:
    aliases = services(plumbing, "AWS::Lambda::Alias")
    provisioned = {
        k: v["Properties"].get("ProvisionedConcurrencyConfig") for k, v in aliases.items()
    }
    (ingest,) = [k for k in aliases if k.startswith("IngestLive")]
    assert provisioned[ingest] == {"ProvisionedConcurrentExecutions": 2}
    assert {k for k, v in provisioned.items() if v is not None} == {ingest}


# --- the platform bus ---------------------------------------------------------------------------


def test_platform_bus_archives_every_event(plumbing: Any) -> None:
    buses = plumbing.resources("AibData", "AWS::Events::EventBus")
    ((bus_id, bus),) = buses.items()
    assert bus["Properties"]["Name"] == "aib"
    (archive,) = plumbing.resources("AibData", "AWS::Events::Archive").values()
    assert archive["Properties"]["SourceArn"] == {"Fn::GetAtt": [bus_id, "Arn"]}
    assert archive["Properties"]["RetentionDays"] == 30
    assert "EventPattern" not in archive["Properties"]  # no pattern: every event


def test_sender_may_put_events_on_the_platform_bus_only(plumbing: Any) -> None:
    (put,) = [s for s in statements(plumbing, "Sender") if "events:PutEvents" in actions(s)]
    assert actions(put) == {"events:PutEvents"}
    assert put["Resource"]["Fn::Join"][1][-2:] == [
        ":event-bus/",
        {"Fn::ImportValue": "AibData-BusName"},
    ]
    assert env(plumbing, "Sender")["AIB_BUS_AIB"] == {"Fn::ImportValue": "AibData-BusName"}
    for other in ("Ingest", "OnEvent", "OnObject", "Nightly"):
        assert not [s for s in statements(plumbing, other) if "events:PutEvents" in actions(s)]


def test_groups_deploy_after_the_shared_stacks_and_never_after_each_other(
    plumbing: Any,
) -> None:
    built = plumbing.built
    # GIVEN the group stacks: the sender and the consumer of the queue in groups of their own
    assert set(built.groups) == {"api", "ingest", "sender", "on", "nightly"}
    for group, stack in built.groups.items():
        depends_on = {s.stack_name for s in stack.dependencies}
        if stack is built.api:
            # THEN AibApi comes after every group (deploy order; no export ties them)
            others = {s.stack_name for s in built.service_stacks if s is not stack}
            assert depends_on == {"AibModels", "AibData", "AibShared", *others}
        else:
            # AND every other group after the shared stacks only
            assert depends_on == {"AibModels", "AibData", "AibShared"}, group
    # AND the shared stacks depend on nothing
    for stack in (built.models, built.data, built.shared):
        assert stack.dependencies == []
    exports = {
        o["Export"]["Name"]
        for o in plumbing.template_json("AibData")["Outputs"].values()
        if "Export" in o
    }
    assert exports == {
        "AibData-BusName",
        "AibData-BucketRawArn",
        "AibData-BucketRawName",
        "AibData-DataKeyArn",
    }


# --- event rules and asynchronous delivery ------------------------------------------------------


def test_event_rule_targets_the_live_alias_with_retries_and_a_dead_letter_queue(
    plumbing: Any,
) -> None:
    rule = props(plumbing, RULE, "OnEventEvent0")
    assert rule["EventBusName"] == {"Fn::ImportValue": "AibData-BusName"}
    # The pattern exactly as declared: JSON keys and content filters untouched
    assert rule["EventPattern"] == {
        "source": [{"prefix": "aib."}],
        "detail-type": ["TransactionScored"],
        "detail": {"score": [{"numeric": [">=", 0.9]}]},
    }
    (target,) = rule["Targets"]
    assert target["Arn"] == ref(plumbing, "AWS::Lambda::Alias", "OnEventLive")
    assert target["InputPath"] == "$.detail"
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 900, "MaximumRetryAttempts": 185}
    assert target["DeadLetterConfig"] == {"Arn": arn(plumbing, QUEUE, "OnEventFailures")}


def test_event_rule_on_the_default_bus(plumbing: Any) -> None:
    rule = props(plumbing, RULE, "OnEventEvent1")
    assert rule["EventBusName"] == "default"
    assert rule["EventPattern"] == {"source": ["aws.sagemaker"]}
    assert "InputPath" not in rule["Targets"][0]


def test_only_its_rules_may_invoke_the_alias_and_fill_the_failure_queue(plumbing: Any) -> None:
    rules = {k for k in services(plumbing, RULE) if k.startswith("OnEventEvent")}
    permissions = [
        p["Properties"]
        for p in services(plumbing, "AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] == ref(plumbing, "AWS::Lambda::Alias", "OnEventLive")
    ]
    assert {p["SourceArn"]["Fn::GetAtt"][0] for p in permissions} == rules
    assert {p["Principal"] for p in permissions} == {"events.amazonaws.com"}

    policy = props(plumbing, "AWS::SQS::QueuePolicy", "OnEventFailuresPolicy")
    allowed = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    assert {s["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::GetAtt"][0] for s in allowed} == rules
    assert {s["Action"] for s in allowed} == {"sqs:SendMessage"}


def test_alias_retries_then_sends_failures_to_the_functions_failure_queue(plumbing: Any) -> None:
    config = props(plumbing, "AWS::Lambda::EventInvokeConfig", "OnEventLiveEventInvokeConfig")
    assert config["FunctionName"] == ref(plumbing, "AWS::Lambda::Function", "OnEventFunction")
    # The alias's name, taken from its ARN (which also orders the config after the alias)
    assert config["Qualifier"]["Fn::Select"][1]["Fn::Split"][1] == ref(
        plumbing, "AWS::Lambda::Alias", "OnEventLive"
    )
    assert config["MaximumRetryAttempts"] == 1
    assert config["MaximumEventAgeInSeconds"] == 900
    failures = arn(plumbing, QUEUE, "OnEventFailures")
    assert config["DestinationConfig"] == {"OnFailure": {"Destination": failures}}
    # Lambda sends the on-failure record with the function's role
    assert any(
        "sqs:SendMessage" in actions(s) and s["Resource"] == failures
        for s in statements(plumbing, "OnEvent")
    )
    # The function knows the queue's URL, to reject an event no contract accepts there itself
    environment = props(plumbing, "AWS::Lambda::Function", "OnEventFunction")["Environment"]
    assert environment["Variables"]["AIB_QUEUE_ON_EVENT_FAILURES"] == ref(
        plumbing, QUEUE, "OnEventFailures"
    )
    queue = props(plumbing, QUEUE, "OnEventFailures")
    assert queue["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert queue["KmsMasterKeyId"] == imported(plumbing, queue_key(plumbing))


def test_functions_without_asynchronous_triggers_get_no_async_config(plumbing: Any) -> None:
    configs = services(plumbing, "AWS::Lambda::EventInvokeConfig")
    owners = {k.split("Live")[0] for k in configs}
    assert owners == {"OnEvent", "OnObject", "OnReport", "Nightly"}


# --- data buckets and object triggers -----------------------------------------------------------


def test_data_bucket_is_private_versioned_logged_and_sends_eventbridge_events(
    plumbing: Any,
) -> None:
    buckets = plumbing.resources("AibData", "AWS::S3::Bucket")
    raw_id, raw = one(buckets, "DataBucketsRaw")
    p = raw["Properties"]
    assert p["NotificationConfiguration"] == {
        "EventBridgeConfiguration": {"EventBridgeEnabled": True}
    }
    assert p["VersioningConfiguration"] == {"Status": "Enabled"}
    (key_id,) = plumbing.resources("AibData", "AWS::KMS::Key")
    assert p["BucketEncryption"]["ServerSideEncryptionConfiguration"] == [
        {
            "BucketKeyEnabled": True,
            "ServerSideEncryptionByDefault": {
                "SSEAlgorithm": "aws:kms",
                "KMSMasterKeyID": {"Fn::GetAtt": [key_id, "Arn"]},
            },
        }
    ]
    assert set(p["PublicAccessBlockConfiguration"].values()) == {True}
    assert p["LoggingConfiguration"]["DestinationBucketName"] == {
        "Ref": one(buckets, "DataBucketsAccessLogs")[0]
    }
    assert raw["DeletionPolicy"] == "Retain"
    policies = plumbing.resources("AibData", "AWS::S3::BucketPolicy").values()
    assert any(
        pol["Properties"]["Bucket"] == {"Ref": raw_id}
        and {"Bool": {"aws:SecureTransport": "false"}}
        in [s.get("Condition") for s in pol["Properties"]["PolicyDocument"]["Statement"]]
        for pol in policies
    )
    # Natively, not through CDK's notifications custom resource (an extra Lambda)
    assert not plumbing.resources("AibData", "AWS::Lambda::Function")
    for stack in ("AibData", *plumbing.service_stacks):
        assert not plumbing.resources(stack, "Custom::S3BucketNotifications")


@pytest.mark.parametrize(
    ("rule", "key_filter"),
    [
        ("OnObjectObjects0", {"wildcard": "incoming/*.csv"}),
        ("OnObjectObjects1", {"prefix": "manual/"}),
        ("OnObjectObjects2", {"suffix": ".json"}),
    ],
)
def test_object_trigger_is_a_default_bus_rule_on_object_created(
    plumbing: Any, rule: str, key_filter: dict[str, str]
) -> None:
    p = props(plumbing, RULE, rule)
    assert p["EventBusName"] == "default"
    assert p["EventPattern"] == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {
            "bucket": {"name": [{"Fn::ImportValue": "AibData-BucketRawName"}]},
            "object": {"key": [key_filter]},
        },
    }
    (target,) = p["Targets"]
    assert target["Arn"] == ref(plumbing, "AWS::Lambda::Alias", "OnObjectLive")
    assert target["DeadLetterConfig"] == {"Arn": arn(plumbing, QUEUE, "OnObjectFailures")}
    assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] == 3600
    # notification = "eventbridge" (the default): the event as the bus carries it
    assert not {"Input", "InputPath", "InputTransformer"} & set(target)


def test_object_subscriber_reads_only_keys_its_filters_can_match(plumbing: Any) -> None:
    (read,) = [s for s in statements(plumbing, "OnObject") if actions(s) == {"s3:GetObject"}]
    bucket = {"Fn::ImportValue": "AibData-BucketRawArn"}
    assert read["Resource"] == [
        {"Fn::Join": ["", [bucket, "/*.json"]]},
        {"Fn::Join": ["", [bucket, "/incoming/*.csv"]]},
        {"Fn::Join": ["", [bucket, "/manual/*"]]},
    ]
    assert env(plumbing, "OnObject")["AIB_BUCKET_RAW"] == {
        "Fn::ImportValue": "AibData-BucketRawName"
    }
    assert env(plumbing, "Sender")["AIB_BUCKET_RAW"] == {"Fn::ImportValue": "AibData-BucketRawName"}


_PLACEHOLDER = re.compile(r"<([A-Za-z0-9_.-]+)>")
_STEP = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]")


def _at(event: dict[str, Any], path: str) -> Any:
    """The value an input path such as `$.detail.object.key` or `$.resources[0]` selects."""
    value: Any = event
    for name, index in _STEP.findall(path.removeprefix("$")):
        value = value[name] if name else value[int(index)]
    return value


def render_input(transformer: dict[str, Any], event: dict[str, Any]) -> Any:
    """What EventBridge hands the target for `event`: each `<name>` of the template replaced by
    the value at its input path, as JSON outside a JSON string and as text inside one."""
    template = transformer["InputTemplate"]
    assert isinstance(template, str), "the template should need no deploy-time values"
    values = {name: _at(event, path) for name, path in transformer["InputPathsMap"].items()}
    out: list[str] = []
    in_string, i = False, 0
    while i < len(template):
        placeholder = _PLACEHOLDER.match(template, i)
        if placeholder:
            value = values[placeholder.group(1)]
            out.append(json.dumps(str(value))[1:-1] if in_string else json.dumps(value))
            i = placeholder.end()
            continue
        if template[i] == "\\" and in_string:
            out.append(template[i : i + 2])
            i += 2
            continue
        if template[i] == '"':
            in_string = not in_string
        out.append(template[i])
        i += 1
    return json.loads("".join(out))


def test_s3_notification_trigger_turns_the_event_into_an_s3_notification(
    plumbing: Any, event: Callable[[str], dict[str, Any]]
) -> None:
    # GIVEN the rule of a `notification = "s3"` trigger
    p = props(plumbing, RULE, "OnReportObjects0")
    assert p["EventBusName"] == "default"
    assert p["EventPattern"]["detail"]["object"] == {"key": [{"prefix": "reports/"}]}
    (target,) = p["Targets"]
    assert target["Arn"] == ref(plumbing, "AWS::Lambda::Alias", "OnReportLive")
    assert target["DeadLetterConfig"] == {"Arn": arn(plumbing, QUEUE, "OnReportFailures")}
    # WHEN EventBridge fills its input transformer with S3's event (a versioned bucket's)
    s3_event = event("eventbridge/s3_object_created")
    s3_event["detail"]["object"]["version-id"] = "3HL4kqtJlcpXroDTDmjVBH40Nrjfkd"
    notification = render_input(target["InputTransformer"], s3_event)
    # THEN the function gets what the local runtime hands it for the same event
    assert notification == s3_notification_from_eventbridge(s3_event, configuration_id="on_report")
    # AND Powertools reads it as an S3 event notification naming the object
    (record,) = S3Model.model_validate(notification).Records
    assert (record.eventSource, record.eventName, record.awsRegion) == (
        "aws:s3",
        "ObjectCreated:Put",
        "eu-west-1",
    )
    assert record.s3.bucket.name == "aib-raw-data"
    assert record.s3.bucket.arn == "arn:aws:s3:::aib-raw-data"
    assert record.s3.object.key == "incoming/2026/11/27/card batch=1 (ü).csv"  # not URL-encoded
    assert (record.s3.object.size, record.s3.object.eTag) == (
        48213,
        "9b2cf535f27731c974343645a3985328",
    )
    assert record.s3.object.versionId == "3HL4kqtJlcpXroDTDmjVBH40Nrjfkd"
    assert record.s3.object.sequencer == "0018EBE51F86778000"
    assert record.responseElements.x_amz_request_id == "C3D13FE58DE4C810"
    assert record.s3.configurationId == "on_report"


def test_s3_notification_differs_from_s3s_own_only_where_a_transformer_cannot_follow(
    event: Callable[[str], dict[str, Any]],
) -> None:
    # GIVEN S3's own notification and S3's EventBridge event for the same PUT
    own = event("s3/object_created_notification")["Records"][0]
    # WHEN the EventBridge event is turned into a notification
    ours = s3_notification_from_eventbridge(
        event("eventbridge/s3_object_created"), configuration_id="aib-local"
    )["Records"][0]

    def flat(d: dict[str, Any], at: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out |= flat(v, f"{at}{k}.") if isinstance(v, dict) else {f"{at}{k}": v}
        return out

    # THEN they differ only in what EventBridge cannot do: encode the key, give milliseconds,
    # know S3's host id
    theirs, mine = flat(own), flat(ours)
    assert theirs.keys() == mine.keys()
    assert {k: (theirs[k], mine[k]) for k in theirs if theirs[k] != mine[k]} == {
        "eventTime": ("2026-11-27T12:00:00.000Z", "2026-11-27T12:00:00Z"),
        "responseElements.x-amz-id-2": (
            "wu27WD0oe0+ln+SUV3eOsjvLJtZEORtcUM2DYXl49uw=",
            "b8a1abcd-1a69-46c7-8da4-f9fc3c6da5d7",
        ),
        "s3.object.key": (
            "incoming/2026/11/27/card+batch%3D1+%28%C3%BC%29.csv",
            "incoming/2026/11/27/card batch=1 (ü).csv",
        ),
    }


# --- schedules ----------------------------------------------------------------------------------


def test_schedule_is_a_default_bus_rule_onto_the_live_alias(plumbing: Any) -> None:
    rule = props(plumbing, RULE, "NightlySchedule0")
    assert rule["ScheduleExpression"] == "cron(0 6 * * ? *)"
    assert "EventPattern" not in rule and "EventBusName" not in rule
    (target,) = rule["Targets"]
    assert target["Arn"] == ref(plumbing, "AWS::Lambda::Alias", "NightlyLive")
    assert target["DeadLetterConfig"] == {"Arn": arn(plumbing, QUEUE, "NightlyFailures")}
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 185}
    # Schedules carry no delivery settings: the catalog's defaults apply
    config = props(plumbing, "AWS::Lambda::EventInvokeConfig", "NightlyLive")
    assert (config["MaximumRetryAttempts"], config["MaximumEventAgeInSeconds"]) == (2, 3600)


# --- compliance ---------------------------------------------------------------------------------


def test_cfn_lint_finds_no_errors_or_warnings(plumbing: Any) -> None:
    assert plumbing.cfn_lint_findings() == []


def test_cdk_nag_reports_no_unacknowledged_findings(plumbing: Any) -> None:
    nag = plumbing.nag_report()
    assert nag["conclusion"] == "success"
    assert nag["violations"] == []
    suppressed = {(s["ruleName"], s["acknowledgedAt"]) for s in nag["suppressedViolations"]}
    # Failure queues are the end of the line; redrive DLQs need no acknowledgement at all
    assert {a for r, a in suppressed if r == "AwsSolutions-SQS3"} == {
        "AibSvc-on/OnEvent/Failures",
        "AibSvc-on/OnObject/Failures",
        "AibSvc-on/OnReport/Failures",
        "AibSvc-nightly/Nightly/Failures",
    }
    for s in nag["suppressedViolations"]:
        assert len(s["reason"]) >= 40, s["ruleName"]


def test_no_stack_carries_warnings_or_errors(plumbing: Any) -> None:
    for stack in plumbing.assembly.stacks:
        levels = {str(m.level.value).lower() for m in stack.messages}
        assert not levels & {"error", "warning"}, (stack.stack_name, stack.messages)


# --- declaration mistakes -----------------------------------------------------------------------


def build(functions_dir: Path) -> None:
    build_app(ROOT, context=CONTEXT, functions_dir=functions_dir)


def test_sending_to_a_queue_nobody_consumes_fails_naming_the_entry(
    functions_dir: Path, new_function: Callable[..., Path]
) -> None:
    # GIVEN a consumer of "transactions" and a sender that names "transaction"
    new_function(functions_dir, "ingest", FUNCTIONS["ingest"])
    toml = new_function(functions_dir, "sender", '[resources.queues]\ntransaction = "write"\n')
    # WHEN the app is built
    with pytest.raises(ConfigError) as err:
        build(functions_dir)
    # THEN the error names the declaration, the entry and the queues that exist
    msg = str(err.value)
    assert str(toml) in msg
    assert "resources.queues" in msg and "'transaction'" in msg
    assert "known queues: transactions" in msg


def test_triggers_disagreeing_on_async_delivery_fail(
    functions_dir: Path, new_function: Callable[..., Path]
) -> None:
    # GIVEN one function whose event and object triggers ask for different retries
    toml = new_function(
        functions_dir,
        "both",
        '[[events]]\npattern = { source = ["aib.x"] }\nmax_attempts = 0\n'
        '[[objects]]\nbucket = "raw"\nmax_attempts = 2\n',
    )
    with pytest.raises(ConfigError) as err:
        build(functions_dir)
    # THEN the error names the file, both triggers and why they must agree
    msg = str(err.value)
    assert str(toml) in msg
    assert "events.0: max_attempts=0" in msg and "objects.0: max_attempts=2" in msg
    assert "one asynchronous invoke configuration per alias" in msg


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('[[events]]\nbus = "ops"\npattern = { source = ["x"] }\n', "events[0].bus"),
        ('[[objects]]\nbucket = "models"\n', "objects.0.bucket"),
        (
            '[[events]]\npattern = { "$or" = [{ source = ["x"] }, { source = ["y"] }] }\n',
            "events[0].pattern",
        ),
        # caught by the catalog already: the pattern matcher names the path
        (
            '[[events]]\npattern = { source = "x" }\n',
            "events.0.pattern: invalid event pattern at source",
        ),
        ('timeout_s = 60\n[[queues]]\nqueue = "q"\nvisibility_timeout_s = 30\n', "queues.0"),
        # a rule that fills a queue, on a bus the platform does not have
        (
            '[[queues]]\nqueue = "q"\n[[queues.events]]\nbus = "ops"\n'
            'pattern = { source = ["x"] }\n',
            "queues[0].events[0].bus: unknown bus 'ops'; known buses: aib, default",
        ),
    ],
)
def test_unusable_triggers_fail_naming_the_entry(
    functions_dir: Path, new_function: Callable[..., Path], toml: str, expected: str
) -> None:
    path = new_function(functions_dir, "bad", toml)
    with pytest.raises(ConfigError) as err:
        build(functions_dir)
    assert str(path) in str(err.value)
    assert expected in str(err.value)
