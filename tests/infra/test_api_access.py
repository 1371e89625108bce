"""API access on AWS: the Lambda authorizer on every guarded route, usage plans from the
catalog's plans, the Cognito issuer of bearer tokens, problem responses API Gateway answers
itself, and least privilege across every stack's IAM policies."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest

from aibackend.auth.apigateway import ROUTES_ENV, decode_routes
from aibackend.catalog import Access, Route, load_catalog
from aibackend.errors import ConfigError
from infra.application import API_STACK, DATA_STACK, MODELS_STACK, SHARED_STACK, build_app
from infra.config import CONTEXT_KEYS, InfraConfig
from infra.constructs.api import MAX_ROUTES_ENV_BYTES, routes_environment
from infra.constructs.identity import domain_prefix
from infra.nag import render_finding
from infra.naming import pascal

ROOT = Path(__file__).resolve().parents[2]
CATALOG = load_catalog(ROOT / "functions")
KEY_SOURCE = "method.request.header.x-api-key"
TOKEN_SOURCES = "method.request.header.x-api-key,method.request.header.Authorization"

pytestmark = pytest.mark.slow


# --- helpers -------------------------------------------------------------------------------


def authorizer_ids(synth: Any) -> dict[str, str]:
    """Identity sources -> logical id of the REQUEST authorizer that reads them."""
    return {
        a["Properties"]["IdentitySource"]: name
        for name, a in synth.service_resources("AWS::ApiGateway::Authorizer").items()
    }


def authorizer_function(synth: Any) -> tuple[str, dict[str, Any]]:
    assert CATALOG.authorizer is not None
    fns = synth.service_resources("AWS::Lambda::Function")
    ((name, fn),) = (
        (k, f)
        for k, f in fns.items()
        if f["Properties"]["Handler"] == CATALOG.authorizer.lambda_handler
    )
    return name, fn["Properties"]


def one(resources: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    ((name, res),) = resources.items()
    return name, res


# --- methods and authorizers ---------------------------------------------------------------


def test_every_guarded_route_goes_through_its_authorizer_and_needs_a_key(synth: Any) -> None:
    # GIVEN the catalog's routes and the synthesized methods
    found = synth.methods()
    ids = authorizer_ids(synth)
    routes = {(r.method, r.path): r for _, r in CATALOG.routes()}
    assert set(found) == set(routes)
    for key, route in routes.items():
        method = found[key]
        if route.access is Access.PUBLIC:
            continue
        # THEN each guarded method is CUSTOM-authorized, by the authorizer for its access kind
        expected = ids[TOKEN_SOURCES if route.access is Access.TOKEN else KEY_SOURCE]
        assert method["AuthorizationType"] == "CUSTOM", key
        assert method["AuthorizerId"] == {"Ref": expected}, key
        # AND needs an API key (which the authorizer names: see the key source)
        assert method["ApiKeyRequired"] is True, key


def test_token_routes_use_the_token_authorizer(synth: Any) -> None:
    # GIVEN the one token route of the project
    found = synth.methods()
    ids = authorizer_ids(synth)
    # THEN POST /v2/fraud/score asks for both headers, and /v1 score for the key alone
    assert found[("POST", "/v2/fraud/score")]["AuthorizerId"] == {"Ref": ids[TOKEN_SOURCES]}
    assert found[("POST", "/v1/fraud/score")]["AuthorizerId"] == {"Ref": ids[KEY_SOURCE]}


def test_health_route_is_open(synth: Any) -> None:
    health = synth.methods()[("GET", "/v1/fraud/health")]
    assert health.get("AuthorizationType", "NONE") == "NONE"
    assert "AuthorizerId" not in health
    assert not health.get("ApiKeyRequired", False)


def test_api_keys_come_from_the_authorizer(synth: Any) -> None:
    # THEN API Gateway meters the key the authorizer returns as usageIdentifierKey
    _, api = one(synth.service_resources("AWS::ApiGateway::RestApi"))
    assert api["Properties"]["ApiKeySourceType"] == "AUTHORIZER"


def test_authorizers_share_one_function_and_cache_per_credentials(synth: Any) -> None:
    fn_name, _ = authorizer_function(synth)
    authorizers = synth.service_resources("AWS::ApiGateway::Authorizer")
    assert {a["Properties"]["IdentitySource"] for a in authorizers.values()} == {
        KEY_SOURCE,
        TOKEN_SOURCES,
    }
    for a in authorizers.values():
        props = a["Properties"]
        assert props["Type"] == "REQUEST"
        assert props["AuthorizerResultTtlInSeconds"] == 60  # aib:authorizer-cache-s default
        # the `live` alias of the authorizer function, like every other trigger
        assert "AuthorizerLive" in json.dumps(props["AuthorizerUri"])
    # AND API Gateway may invoke that alias, through these authorizers only
    permissions = [
        p["Properties"]
        for p in synth.service_resources("AWS::Lambda::Permission").values()
        if "/authorizers/" in json.dumps(p["Properties"].get("SourceArn"))
    ]
    assert len(permissions) == 2
    for p in permissions:
        assert p["Principal"] == "apigateway.amazonaws.com"
        assert p["FunctionName"]["Ref"].startswith("AuthorizerLive")
    assert fn_name.startswith("Authorizer")


# --- usage plans -----------------------------------------------------------------------------


def test_one_usage_plan_per_declared_plan_bound_to_the_stage(synth: Any) -> None:
    # GIVEN the catalog's plans (functions/plans.toml or the defaults)
    plans = synth.service_resources("AWS::ApiGateway::UsagePlan")
    (stage,) = synth.service_resources("AWS::ApiGateway::Stage")
    (api,) = synth.service_resources("AWS::ApiGateway::RestApi")
    outputs = synth.template_json(API_STACK)["Outputs"]
    # THEN each has a usage plan with its rate, burst and daily quota, on the stage
    deployed = {n: p for n, p in CATALOG.plans.items() if not p.local_only}
    assert len(plans) == len(deployed)
    assert "dev" not in deployed  # the development key's plan stays on the laptop
    for name, plan in deployed.items():
        out = outputs[f"UsagePlan{pascal(name)}Id"]["Value"]
        props = plans[out["Ref"]]["Properties"]
        assert props["Throttle"] == {"RateLimit": plan.rate_per_s, "BurstLimit": plan.burst}
        if plan.quota_per_day is None:
            assert "Quota" not in props
        else:
            assert props["Quota"] == {"Limit": plan.quota_per_day, "Period": "DAY"}
        assert [(s["ApiId"], s["Stage"]) for s in props["ApiStages"]] == [
            ({"Ref": api}, {"Ref": stage})
        ]
    # AND no API key is made by the stack (keys are made by `aib keys create`)
    assert not synth.service_resources("AWS::ApiGateway::ApiKey")
    assert "ApiKeyId" not in outputs


# --- gateway responses -----------------------------------------------------------------------

#: Response type -> (status, extra headers).
PROBLEMS: dict[str, tuple[int, dict[str, str]]] = {
    "UNAUTHORIZED": (
        401,
        {"WWW-Authenticate": '\'ApiKey header="x-api-key", Bearer realm="aibackend"\''},
    ),
    "ACCESS_DENIED": (403, {}),
    "INVALID_API_KEY": (403, {}),
    "THROTTLED": (429, {"Retry-After": "'1'"}),
    "QUOTA_EXCEEDED": (429, {"Retry-After": "'3600'"}),
    "REQUEST_TOO_LARGE": (413, {}),
    "MISSING_AUTHENTICATION_TOKEN": (404, {}),
    "WAF_FILTERED": (403, {}),
    "AUTHORIZER_FAILURE": (500, {}),
    "AUTHORIZER_CONFIGURATION_ERROR": (502, {}),
}

#: What `$context.*` placeholders stand for in a sample request. The authorizer's reason
#: arrives JSON-escaped (gateway response templates are plain substitution, not VTL).
REASON = 'POST /v2/fraud/score needs scope(s) "predict:fraud"; token\'s kid \\x lacks it'
SAMPLES = {
    "$context.authorizer.reason": json.dumps(REASON)[1:-1],
    "$context.error.messageString": json.dumps('Say "hi" \\ there'),
}


def render(template: str) -> str:
    """The body API Gateway sends: every `$context.*` variable substituted."""
    return re.sub(
        r"\$context(?:\.[A-Za-z]+)+",
        lambda m: SAMPLES.get(m.group(0), f"sample-{m.group(0)[9:]}"),
        template,
    )


def gateway_responses(synth: Any) -> dict[str, dict[str, Any]]:
    return {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in synth.service_resources("AWS::ApiGateway::GatewayResponse").values()
    }


@pytest.mark.parametrize("kind", sorted(PROBLEMS))
def test_gateway_refusals_are_problem_documents(synth: Any, kind: str) -> None:
    # GIVEN the gateway response API Gateway sends for `kind`
    response = gateway_responses(synth)[kind]
    status, headers = PROBLEMS[kind]
    # THEN it has the right status, content type and headers
    assert response["StatusCode"] == str(status)
    assert response["ResponseParameters"] == {
        "gatewayresponse.header.Content-Type": "'application/problem+json'",
        **{f"gatewayresponse.header.{k}": v for k, v in headers.items()},
    }
    # AND WHEN its placeholders are filled in, the body is an RFC 9457 problem document
    body = json.loads(render(response["ResponseTemplates"]["application/json"]))
    assert body["type"] == "about:blank"
    assert body["status"] == status
    assert body["title"] and body["detail"]
    assert body["instance"] == "sample-path"
    assert body["request_id"] == "sample-requestId"


def test_access_denied_carries_the_authorizers_reason(synth: Any) -> None:
    response = gateway_responses(synth)["ACCESS_DENIED"]
    body = json.loads(render(response["ResponseTemplates"]["application/json"]))
    assert REASON in body["detail"]
    # AND without a reason (a cached answer) the detail still says what happened
    empty = response["ResponseTemplates"]["application/json"].replace(
        "$context.authorizer.reason", ""
    )
    assert json.loads(render(empty))["detail"].strip().rstrip(":")


def test_unauthorized_says_which_credentials_to_send(synth: Any) -> None:
    response = gateway_responses(synth)["UNAUTHORIZED"]
    detail = json.loads(render(response["ResponseTemplates"]["application/json"]))["detail"]
    assert "x-api-key" in detail
    assert "Bearer" in detail  # the project has a token route


def test_quota_response_says_when_it_resets(synth: Any) -> None:
    response = gateway_responses(synth)["QUOTA_EXCEEDED"]
    detail = json.loads(render(response["ResponseTemplates"]["application/json"]))["detail"]
    assert "midnight UTC" in detail


@pytest.mark.parametrize("kind", ["DEFAULT_4XX", "DEFAULT_5XX"])
def test_other_errors_stay_problem_documents(synth: Any, kind: str) -> None:
    response = gateway_responses(synth)[kind]
    assert response["ResponseParameters"] == {
        "gatewayresponse.header.Content-Type": "'application/problem+json'"
    }
    body = json.loads(render(response["ResponseTemplates"]["application/json"]))
    assert body["title"] == 'Say "hi" \\ there'


# --- the authorizer function -----------------------------------------------------------------


def test_authorizer_knows_every_route_and_the_token_issuer(synth: Any) -> None:
    _, fn = authorizer_function(synth)
    env = fn["Environment"]["Variables"]

    # THEN its route table is exactly the catalog's routes, with their access and scopes
    def access(routes: Iterable[Route]) -> dict[tuple[str, str], tuple[Access, tuple[str, ...]]]:
        return {(r.method, r.path): (r.access, r.scopes) for r in routes}

    assert access(decode_routes(env[ROUTES_ENV]).values()) == access(r for _, r in CATALOG.routes())
    # AND tokens are checked against the user pool and its machine client
    (pool,) = synth.service_resources("AWS::Cognito::UserPool")
    (client,) = synth.service_resources("AWS::Cognito::UserPoolClient")
    assert env["AIB_TOKEN_ISSUER"] == {
        "Fn::Join": [
            "",
            [
                "https://cognito-idp.",
                {"Ref": "AWS::Region"},
                ".",
                {"Ref": "AWS::URLSuffix"},
                "/",
                {"Ref": pool},
            ],
        ]
    }
    assert env["AIB_TOKEN_AUDIENCES"] == {"Ref": client}
    assert env["AIB_TOKEN_SCOPE_PREFIX"] == "aib/"


def test_authorizer_only_reads_the_api_keys_table(synth: Any) -> None:
    # GIVEN the policies on the authorizer function's role
    _, fn = authorizer_function(synth)
    role = fn["Role"]["Fn::GetAtt"][0]
    statements = [
        s
        for p in synth.service_resources("AWS::IAM::Policy").values()
        if {"Ref": role} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    actions = {
        a
        for s in statements
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    # THEN it reads keys (GetItem at least) and writes nothing to DynamoDB or with KMS
    assert "dynamodb:GetItem" in actions
    writes = re.compile(
        r"^(dynamodb:(Put|Update|Delete|BatchWrite)|kms:(Encrypt|ReEncrypt|Generate))"
    )
    assert not [a for a in actions if writes.match(a)]
    # AND its table statements name the api-keys table only
    table = {"Fn::ImportValue": f"{DATA_STACK}-TableApiKeysArn"}
    for s in statements:
        if any(
            str(a).startswith("dynamodb:")
            for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        ):
            assert s["Resource"] == table


# --- Cognito ---------------------------------------------------------------------------------


def test_user_pool_issues_tokens_to_machine_clients_only(synth: Any) -> None:
    _, pool = one(synth.service_resources("AWS::Cognito::UserPool"))
    assert pool["Properties"]["AdminCreateUserConfig"] == {"AllowAdminCreateUserOnly": True}
    assert pool["Properties"]["MfaConfiguration"] == "ON"
    _, server = one(synth.service_resources("AWS::Cognito::UserPoolResourceServer"))
    wanted = sorted({s for _, r in CATALOG.routes() for s in r.scopes})
    assert server["Properties"]["Identifier"] == "aib"
    assert [s["ScopeName"] for s in server["Properties"]["Scopes"]] == wanted
    _, client = one(synth.service_resources("AWS::Cognito::UserPoolClient"))
    props = client["Properties"]
    assert props["AllowedOAuthFlows"] == ["client_credentials"]
    assert props["GenerateSecret"] is True
    assert props["AccessTokenValidity"] == 60
    assert props["TokenValidityUnits"] == {"AccessToken": "minutes"}
    assert len(props["AllowedOAuthScopes"]) == len(wanted)


def test_token_endpoint_and_client_are_outputs(synth: Any) -> None:
    outputs = synth.template_json(API_STACK)["Outputs"]
    (domain,) = synth.service_resources("AWS::Cognito::UserPoolDomain")
    (pool,) = synth.service_resources("AWS::Cognito::UserPool")
    (client,) = synth.service_resources("AWS::Cognito::UserPoolClient")
    assert outputs["UserPoolId"]["Value"] == {"Ref": pool}
    assert outputs["MachineClientId"]["Value"] == {"Ref": client}
    url = outputs["TokenUrl"]["Value"]["Fn::Join"][1]
    assert url[0] == "https://" and url[1] == {"Ref": domain}
    assert url[-1].endswith(".amazoncognito.com/oauth2/token")


def test_domain_prefix_is_stable_and_avoids_reserved_words() -> None:
    assert domain_prefix("AibServices", "123456789012") == "aibservices-123456789012"
    assert domain_prefix("MyAwsCognitoAPI", "123456789012") == "myapi-123456789012"
    assert domain_prefix("AWS", "123456789012") == "aib-123456789012"


# --- least privilege everywhere --------------------------------------------------------------


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def iam_statements(synth: Any) -> list[tuple[str, dict[str, Any]]]:
    """(construct path of the policy, statement) for every IAM policy of every stack."""
    paths: dict[tuple[str, str], str] = {}
    stacks = [synth.built.models, synth.built.data, synth.built.shared, *synth.built.service_stacks]
    for stack in stacks:
        for c in stack.node.find_all():
            if isinstance(c, cdk.CfnResource) and c.cfn_resource_type.startswith("AWS::IAM::"):
                paths[(stack.stack_name, stack.resolve(c.logical_id))] = c.node.path
    out: list[tuple[str, dict[str, Any]]] = []
    for stack_name in (MODELS_STACK, DATA_STACK, SHARED_STACK, *synth.service_stacks):
        for name, res in synth.template_json(stack_name)["Resources"].items():
            props = res.get("Properties", {})
            docs = []
            if res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
                docs = [props["PolicyDocument"]]
            elif res["Type"] == "AWS::IAM::Role":
                docs = [p["PolicyDocument"] for p in props.get("Policies", [])]
            for doc in docs:
                out += [(paths[(stack_name, name)], s) for s in doc["Statement"]]
    assert out
    return out


def acknowledged(synth: Any) -> set[tuple[str, str]]:
    """(rule with finding, construct path) of every cdk-nag acknowledgement with a reason."""
    return {
        (s["ruleName"], c["constructPath"])
        for s in synth.nag_report()["suppressedViolations"]
        if s["reason"].strip()
        for c in s["violatingConstructs"]
    }


def test_no_policy_allows_every_action_of_a_service(synth: Any) -> None:
    # GIVEN every IAM statement of the three stacks
    for path, s in iam_statements(synth):
        for action in _listed(s.get("Action", [])):
            # THEN none allows `*` or `service:*`
            assert action != "*" and not action.endswith(":*"), (path, action)


def test_every_wildcard_is_acknowledged_with_a_reason(synth: Any) -> None:
    # GIVEN the cdk-nag acknowledgements, by rule, finding and construct
    acks = acknowledged(synth)
    for path, s in iam_statements(synth):
        # THEN every wildcard resource (and partial action wildcard, e.g. CDK's KMS grants)
        # has an IAM5 acknowledgement naming it, on that very policy
        findings = [f"Resource::{render_finding(r)}" for r in _listed(s.get("Resource", []))]
        findings += [f"Action::{a}" for a in _listed(s.get("Action", []))]
        for finding in findings:
            if "*" in finding:
                assert (f"AwsSolutions-IAM5[{finding}]", path) in acks, (path, finding)


# --- settings --------------------------------------------------------------------------------


def test_cdk_json_documents_every_setting_with_its_default() -> None:
    # GIVEN cdk.json's context and the settings model
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    documented = {k: v for k, v in context.items() if k.startswith("aib:")}
    # THEN each setting is there with the model's default (the old single quota is gone)
    assert set(documented) == set(CONTEXT_KEYS)
    for key, field in CONTEXT_KEYS.items():
        assert documented[key] == InfraConfig.model_fields[field].default, key
    assert documented["aib:authorizer-cache-s"] == 60


@pytest.mark.parametrize("value", [-1, 3601])
def test_authorizer_cache_is_bounded(value: int) -> None:
    app = cdk.App(context={"aib:authorizer-cache-s": value})
    with pytest.raises(ConfigError, match="aib:authorizer-cache-s"):
        InfraConfig.from_node(app.node)


# --- synth-time errors -----------------------------------------------------------------------


def test_guarded_routes_without_an_authorizer_fail_at_synth(
    functions_dir: Path, new_function: Callable[..., Path]
) -> None:
    # GIVEN a project whose route needs a key but no function is the authorizer
    new_function(
        functions_dir,
        "things",
        '[[routes]]\nmethod = "GET"\npath = "/v1/things"\naccess = "api_key"\n',
    )
    # WHEN the app is built
    with pytest.raises(ConfigError) as err:
        build_app(ROOT, context={"aws:cdk:bundling-stacks": []}, functions_dir=functions_dir)
    # THEN the error names the route and the fix
    assert "GET /v1/things" in str(err.value)
    assert "authorizer = true" in str(err.value)


def test_route_table_too_big_for_lambdas_environment_fails() -> None:
    routes = [
        Route(method="GET", path=f"/v1/{'x' * 60}/r{i}", access=Access.API_KEY) for i in range(60)
    ]
    with pytest.raises(ConfigError) as err:
        routes_environment(routes)
    assert f"{MAX_ROUTES_ENV_BYTES:,}" in str(err.value)
    assert "4 KB" in str(err.value)
    # AND the project's own table is far below the limit
    assert len(routes_environment([r for _, r in CATALOG.routes()])) < MAX_ROUTES_ENV_BYTES
