"""Function declarations: validated, with errors that name the file and the field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aibackend.catalog import Access, load_catalog, load_function
from aibackend.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _fn(root: Path, name: str, toml: str, handler: bool = True) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "function.toml").write_text(toml)
    if handler:
        (d / "handler.py").write_text("def handler(event, context):\n    return {}\n")
    return d


def test_the_project_catalog_declares_the_fraud_service() -> None:
    cat = load_catalog(ROOT / "functions")
    fraud = cat.get("fraud_score")
    assert fraud.models == ("fraud",)
    assert fraud.architecture == "arm64"
    assert {(r.method, r.path): (r.access, r.scopes) for r in fraud.routes} == {
        ("GET", "/v1/fraud/health"): (Access.PUBLIC, ()),
        ("POST", "/v1/fraud/score"): (Access.API_KEY, ()),
        ("GET", "/v1/fraud/model"): (Access.API_KEY, ()),
        ("GET", "/v1/fraud/openapi.json"): (Access.API_KEY, ()),
        ("POST", "/v2/fraud/score"): (Access.TOKEN, ("predict:fraud",)),
        ("GET", "/v2/fraud/openapi.json"): (Access.API_KEY, ()),
    }
    # AND the API's authorizer, which may only read the keys table
    assert cat.authorizer is not None and cat.authorizer.name == "authorizer"
    assert dict(cat.authorizer.resources.tables) == {"api-keys": "read"}
    assert {r.path: r.max_body_kb for r in fraud.routes if r.method == "POST"} == {
        "/v1/fraud/score": 768,
        "/v2/fraud/score": 768,
    }
    assert fraud.lambda_handler == "fraud_score.handler.handler"


@pytest.mark.parametrize(
    ("route", "message"),
    [
        (
            'method = "POST"\npath = "/v1/x/health"\naccess = "public"',
            "access = 'public' is for health checks only (GET .../health)",
        ),
        (
            'method = "GET"\npath = "/v1/x"\naccess = "public"',
            "GET /v1/x needs access = 'api_key' or 'token'",
        ),
        (
            'method = "GET"\npath = "/v1/x"\naccess = "token"\nscopes = ["Predict fraud"]',
            "scope 'Predict fraud' must look like 'verb:object'",
        ),
        (
            'method = "GET"\npath = "/v1/x"\naccess = "api_key"\nscopes = ["predict:x"]',
            "scopes are only checked on access = 'token' routes",
        ),
    ],
)
def test_public_is_for_health_only_and_scopes_are_checked(
    tmp_path: Path, route: str, message: str
) -> None:
    d = _fn(tmp_path, "svc", f"[[routes]]\n{route}\n")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_function(d)


def test_a_health_route_may_be_public(tmp_path: Path) -> None:
    d = _fn(
        tmp_path, "svc", '[[routes]]\nmethod = "GET"\npath = "/v1/x/health"\naccess = "public"\n'
    )
    assert load_function(d).routes[0].access is Access.PUBLIC


def test_provisioned_concurrency_stays_within_reserved_concurrency(tmp_path: Path) -> None:
    # GIVEN a function keeping more environments warm than it may ever run
    d = _fn(tmp_path / "a", "svc", "reserved_concurrency = 2\nprovisioned_concurrency = 3\n")
    # THEN its declaration is refused, saying why
    with pytest.raises(ConfigError, match=re.escape("must not exceed reserved_concurrency (2)")):
        load_function(d)
    # and within the limit (or with no limit) it is kept
    ok = _fn(tmp_path / "b", "svc", "reserved_concurrency = 3\nprovisioned_concurrency = 3\n")
    assert load_function(ok).provisioned_concurrency == 3
    free = _fn(tmp_path / "c", "svc", "provisioned_concurrency = 2\n")
    assert load_function(free).provisioned_concurrency == 2


def test_an_authorizer_has_no_triggers_and_there_is_at_most_one(tmp_path: Path) -> None:
    d = _fn(
        tmp_path / "a",
        "auth",
        'authorizer = true\n[[routes]]\nmethod = "GET"\npath = "/v1/x"\naccess = "api_key"\n',
    )
    with pytest.raises(
        ConfigError, match="API Gateway invokes an authorizer itself; remove its routes"
    ):
        load_function(d)
    root = tmp_path / "b"
    _fn(root, "one", "authorizer = true\n")
    _fn(root, "two", "authorizer = true\n")
    with pytest.raises(ConfigError, match="one, two all declare authorizer = true"):
        load_catalog(root)


def test_plans_toml_replaces_the_default_plans_and_errors_name_the_field(tmp_path: Path) -> None:
    _fn(tmp_path, "svc", "")
    (tmp_path / "plans.toml").write_text(
        "[plans.gold]\nrate_per_s = 10\nburst = 20\nquota_per_day = 500\n"
    )
    plans = load_catalog(tmp_path).plans
    assert list(plans) == ["gold"]
    assert (plans["gold"].rate_per_s, plans["gold"].burst, plans["gold"].quota_per_day) == (
        10,
        20,
        500,
    )
    (tmp_path / "plans.toml").write_text("[plans.gold]\nrate_per_s = 0\nburst = 20\n")
    with pytest.raises(
        ConfigError, match=r"plans\.gold\.rate_per_s: Input should be greater than 0"
    ):
        load_catalog(tmp_path)


def test_a_route_without_access_is_refused_naming_file_and_field(tmp_path: Path) -> None:
    d = _fn(tmp_path, "svc", '[[routes]]\nmethod = "GET"\npath = "/v1/x"\n')
    with pytest.raises(ConfigError) as e:
        load_function(d)
    assert str(d / "function.toml") in str(e.value)
    assert "routes.0.access: Field required" in str(e.value)


def test_unknown_keys_and_bad_values_are_each_reported(tmp_path: Path) -> None:
    d = _fn(tmp_path, "svc", 'memory_mb = 64\narchitecture = "sparc"\ntimout_s = 3\n')
    with pytest.raises(ConfigError) as e:
        load_function(d)
    msg = str(e.value)
    assert "memory_mb:" in msg
    assert "architecture:" in msg
    assert "timout_s: Extra inputs are not permitted" in msg


def test_token_routes_need_scopes(tmp_path: Path) -> None:
    d = _fn(tmp_path, "svc", '[[routes]]\nmethod = "GET"\npath = "/v1/x"\naccess = "token"\n')
    with pytest.raises(ConfigError, match="needs at least one scope"):
        load_function(d)


def test_a_missing_handler_file_is_named(tmp_path: Path) -> None:
    d = _fn(tmp_path, "svc", 'handler = "main.handler"\n', handler=False)
    with pytest.raises(ConfigError, match=r"handler: .*main\.py does not exist"):
        load_function(d)


def test_invalid_toml_is_reported_with_the_file(tmp_path: Path) -> None:
    d = _fn(tmp_path, "svc", "memory_mb = = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_function(d)


def test_two_functions_cannot_serve_the_same_route(tmp_path: Path) -> None:
    route = '[[routes]]\nmethod = "GET"\npath = "/v1/x"\naccess = "api_key"\n'
    _fn(tmp_path, "a", route)
    _fn(tmp_path, "b", route)
    with pytest.raises(ConfigError, match=r"GET /v1/x is already served by function 'a'"):
        load_catalog(tmp_path)


def test_path_parameters_are_accepted_and_garbage_paths_refused(tmp_path: Path) -> None:
    ok = _fn(
        tmp_path,
        "ok",
        '[[routes]]\nmethod = "GET"\npath = "/v1/users/{user_id}"\naccess = "api_key"\n',
    )
    assert load_function(ok).routes[0].path == "/v1/users/{user_id}"
    bad = _fn(tmp_path, "bad", '[[routes]]\nmethod = "GET"\npath = "v1//x"\naccess = "api_key"\n')
    with pytest.raises(ConfigError, match=r"routes\.0\.path"):
        load_function(bad)


def test_triggers_are_validated_with_aws_rules(tmp_path: Path) -> None:
    d = _fn(tmp_path, "bad_rate", '[[schedules]]\nexpression = "rate(1 hours)"\n')
    with pytest.raises(ConfigError, match=r"schedules\.0\.expression: .*rate\(1 hour\)"):
        load_function(d)
    d = _fn(tmp_path, "big_batch", '[[queues]]\nqueue = "q"\nbatch_size = 50\n')
    with pytest.raises(ConfigError, match="needs batching_window_s of at least 1"):
        load_function(d)
    d = _fn(tmp_path, "retries", '[[events]]\npattern = { source = ["x"] }\nmax_attempts = 3\n')
    with pytest.raises(ConfigError, match=r"events\.0\.max_attempts"):
        load_function(d)


def test_a_queue_has_one_consumer(tmp_path: Path) -> None:
    _fn(tmp_path, "a", '[[queues]]\nqueue = "orders"\n')
    _fn(tmp_path, "b", '[[queues]]\nqueue = "orders"\n')
    with pytest.raises(ConfigError, match="'orders' is already consumed by function 'a'"):
        load_catalog(tmp_path)


def test_object_triggers_share_one_pattern_with_cdk() -> None:
    from aibackend.catalog import ObjectTrigger

    both = ObjectTrigger(bucket="raw", prefix="in/*x/", suffix=".csv").event_pattern("raw-1")
    assert both["detail"] == {
        "bucket": {"name": ["raw-1"]},
        "object": {"key": [{"wildcard": "in/\\*x/*.csv"}]},
    }
    only = ObjectTrigger(bucket="raw", suffix=".csv").event_pattern("raw")
    assert only["detail"]["object"] == {"key": [{"suffix": ".csv"}]}
    assert ObjectTrigger(bucket="raw").event_pattern("raw")["detail"] == {
        "bucket": {"name": ["raw"]}
    }


@pytest.mark.parametrize(
    ("toml", "where"),
    [
        (
            '[[events]]\npattern = { detail = { amount = [{ numeric = [">", "x"] }] } }\n',
            r"events\.0\.pattern: .*detail\.amount",
        ),
        # a rule that fills a queue: the value of `source` must be a list
        (
            '[[queues]]\nqueue = "x"\n[[queues.events]]\npattern = { source = "shop" }\n',
            r"queues\.0\.events\.0\.pattern",
        ),
    ],
)
def test_event_patterns_are_validated_at_load(tmp_path: Path, toml: str, where: str) -> None:
    with pytest.raises(ConfigError, match=where):
        load_function(_fn(tmp_path, "bad_pattern", toml))


def test_a_queue_filled_by_rules_declares_them_under_it(tmp_path: Path) -> None:
    # GIVEN a consumer of batches whose queue two rules fill, one on the default bus
    toml = (
        '[[queues]]\nqueue = "orders-in"\nbatch_size = 10\n'
        '[[queues.events]]\npattern = { source = ["shop"], detail-type = ["Order Placed"] }\n'
        '[[queues.events]]\nbus = "default"\npattern = { source = ["aws.s3"] }\n'
    )
    spec = load_function(_fn(tmp_path, "orders", toml))
    # THEN the queue carries both subscriptions (the platform bus by default); nothing invokes
    # the function asynchronously, so it has no failure queue of its own
    [q] = spec.queues
    assert [(e.bus, e.pattern["source"]) for e in q.events] == [
        ("aib", ["shop"]),
        ("default", ["aws.s3"]),
    ]
    assert spec.async_delivery is None


def test_object_triggers_deliver_the_eventbridge_event_unless_they_ask_for_s3(
    tmp_path: Path,
) -> None:
    # GIVEN one trigger that says nothing and one that asks for S3 notifications
    plain = load_function(_fn(tmp_path, "plain", '[[objects]]\nbucket = "raw"\n'))
    s3 = load_function(_fn(tmp_path, "s3", '[[objects]]\nbucket = "raw"\nnotification = "s3"\n'))
    # THEN the first keeps S3's EventBridge event, the second gets the notification shape
    assert plain.objects[0].notification == "eventbridge"
    assert s3.objects[0].notification == "s3"


def test_an_unknown_notification_shape_is_refused_naming_the_field(tmp_path: Path) -> None:
    d = _fn(tmp_path, "bad", '[[objects]]\nbucket = "raw"\nnotification = "sns"\n')
    with pytest.raises(ConfigError, match=r"objects\.0\.notification: .*'eventbridge' or 's3'"):
        load_function(d)


def test_a_function_receives_one_object_notification_shape(tmp_path: Path) -> None:
    # GIVEN two object triggers of one function asking for different shapes
    d = _fn(
        tmp_path,
        "mixed",
        '[[objects]]\nbucket = "raw"\nprefix = "a/"\n'
        '[[objects]]\nbucket = "raw"\nprefix = "b/"\nnotification = "s3"\n',
    )
    # THEN the declaration is refused, naming both
    with pytest.raises(ConfigError) as e:
        load_function(d)
    assert "objects.0: 'eventbridge', objects.1: 's3'" in str(e.value)
    assert "give every [[objects]] trigger the same notification" in str(e.value)


@pytest.mark.parametrize(
    ("events", "refused"),
    [
        ('bus = "default"\npattern = { source = ["aws.s3"] }', True),
        ('bus = "default"\npattern = { detail-type = [{ prefix = "Object" }] }', True),
        ('bus = "default"\npattern = { source = ["aws.sagemaker"] }', False),
        ('bus = "default"\npattern = { detail-type = ["Object Deleted"] }', False),
        ('bus = "default"\npattern = { source = ["aws.s3"] }\ninput_path = "$.detail"', False),
        ('pattern = { source = ["aws.s3"] }', False),  # the platform bus: S3 never sends there
    ],
)
def test_s3_notified_functions_keep_their_event_rules_off_s3s_events(
    tmp_path: Path, events: str, refused: bool
) -> None:
    # GIVEN a function receiving S3 notifications and an [[events]] trigger
    d = _fn(
        tmp_path,
        "fn",
        f'[[objects]]\nbucket = "raw"\nnotification = "s3"\n[[events]]\n{events}\n',
    )
    # THEN a trigger that could see S3's own `Object Created` events in full is refused
    if refused:
        with pytest.raises(ConfigError, match=r"events\.0\.pattern may match S3's"):
            load_function(d)
    else:
        assert load_function(d).events[0].pattern


@pytest.mark.parametrize("kb", [0, 10_241])
def test_route_body_limits_stay_within_api_gateways(tmp_path: Path, kb: int) -> None:
    route = f'method = "POST"\npath = "/v1/x"\naccess = "api_key"\nmax_body_kb = {kb}\n'
    d = _fn(tmp_path, "svc", f"[[routes]]\n{route}")
    with pytest.raises(ConfigError, match=r"routes\.0\.max_body_kb"):
        load_function(d)


def test_deploy_groups_default_to_the_names_first_word_and_may_be_declared(
    tmp_path: Path,
) -> None:
    # GIVEN two fraud_* functions, one declaring another group, and the authorizer
    _fn(tmp_path, "fraud_score", "")
    _fn(tmp_path, "fraud_events", "")
    _fn(tmp_path, "shop_events", 'group = "recommendations"\n')
    _fn(tmp_path, "gate", "authorizer = true\n")
    cat = load_catalog(tmp_path)
    # THEN the first two deploy together, the third where it says, the authorizer with the API
    assert {g: [f.name for f in fs] for g, fs in cat.groups.items()} == {
        "api": ["gate"],
        "fraud": ["fraud_events", "fraud_score"],
        "recommendations": ["shop_events"],
    }


@pytest.mark.parametrize(
    ("name", "toml", "message"),
    [
        ("scorer", 'group = "api"\n', "'api' is the REST API's own group"),
        ("api_docs", "", "'api' is the REST API's own group"),
        ("gate", 'authorizer = true\ngroup = "auth"\n', "remove `group`"),
        ("scorer", 'group = "Fraud_Team"\n', "group"),
    ],
)
def test_the_api_group_is_the_authorizers_alone_and_group_names_fit_stack_names(
    tmp_path: Path, name: str, toml: str, message: str
) -> None:
    _fn(tmp_path, name, toml)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_function(tmp_path / name)
