"""Functions written by `aib functions new` deploy as written: one synth of one of each kind."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from aibackend.scaffold import Trigger, new_function
from tests.support import ROOT

pytestmark = pytest.mark.slow

CONTEXT: dict[str, Any] = {"aws:cdk:bundling-stacks": []}
#: Names of their own: another module of this session may have imported the integration
#: test's functions, and a name importable already is refused as shadowing it.
KINDS = {
    "shop_api": Trigger("http"),
    "shop_worker": Trigger("queue", queue="orders"),
    "view_tally": Trigger("event", source="aib.shop", detail_type="Product Viewed"),
    "view_batcher": Trigger(
        "batch", queue="view-batcher-events", source="aib.shop", detail_type="Product Viewed"
    ),
    "daily_digest": Trigger("schedule", expression="cron(0 6 * * ? *)"),
    "upload_reader": Trigger("object", bucket="uploads", prefix="in/", suffix=".csv"),
}


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory: pytest.TempPathFactory, synthesizer: Callable[..., Any]) -> Any:
    functions = tmp_path_factory.mktemp("scaffold") / "functions"
    functions.mkdir()
    # The project's own authorizer, as in every project: the keyed route needs it
    (functions / "authorizer").symlink_to(ROOT / "functions" / "authorizer")
    for name, trigger in KINDS.items():
        new_function(functions, name, trigger)
    return synthesizer(
        tmp_path_factory.mktemp("scaffold.out"), functions_dir=functions, context=CONTEXT
    )


def test_every_scaffolded_function_is_a_lambda_with_its_trigger(scaffolded: Any) -> None:
    lambdas = scaffolded.service_resources("AWS::Lambda::Function")
    for name in KINDS:
        camel = "".join(part.title() for part in name.split("_"))
        assert any(k.startswith(f"{camel}Function") for k in lambdas), (name, sorted(lambdas))
    # the queues' event source mappings; rules for the event, the schedule and the objects,
    # each with the failure queue its asynchronous invocations end in; the bucket
    mappings = sorted(scaffolded.service_resources("AWS::Lambda::EventSourceMapping"))
    assert [m[:10] for m in mappings] == ["ShopWorker", "ViewBatche"]
    # the batch consumer's rule fills its queue, in AibShared beside it
    (rule,) = scaffolded.resources("AibShared", "AWS::Events::Rule").values()
    assert rule["Properties"]["EventPattern"] == {
        "source": ["aib.shop"],
        "detail-type": ["Product Viewed"],
    }
    rules = sorted(scaffolded.service_resources("AWS::Events::Rule"))
    assert [r[:12] for r in rules] == ["DailyDigestS", "UploadReader", "ViewTallyEve"]
    failures = sorted(scaffolded.service_resources("AWS::SQS::Queue"))
    assert [q.split("Failures")[0] for q in failures] == [
        "DailyDigest",
        "UploadReader",
        "ViewTally",
    ]
    buckets = scaffolded.resources("AibData", "AWS::S3::Bucket")
    assert any(k.startswith("DataBucketsUploads") for k in buckets), sorted(buckets)


def test_the_http_routes_have_the_access_they_declare(scaffolded: Any) -> None:
    methods = scaffolded.methods()
    echo = methods["POST", "/v1/shop-api/echo"]
    assert (echo["AuthorizationType"], echo["ApiKeyRequired"]) == ("CUSTOM", True)
    health = methods["GET", "/v1/shop-api/health"]
    assert health.get("AuthorizationType", "NONE") == "NONE"


def test_cfn_lint_and_cdk_nag_find_nothing_to_acknowledge_by_hand(scaffolded: Any) -> None:
    assert scaffolded.cfn_lint_findings() == []
    nag = scaffolded.nag_report()
    assert nag["conclusion"] == "success"
    assert nag["violations"] == []
    # what the platform acknowledges for every function of a kind, each with its reason
    for s in nag["suppressedViolations"]:
        assert len(s["reason"]) >= 40, s["ruleName"]
