"""The public edge: one REST API for every declared route.

REST, not HTTP API: usage plans, API keys and WAF attach only to REST APIs.
"""

from __future__ import annotations

import json

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from aibackend.catalog import Access, Route
from infra.nag import acknowledge

#: RFC 9457 problem body for errors API Gateway answers itself (bad key, throttled, WAF...).
#: `$context.error.messageString` is already a quoted JSON string.
_PROBLEM = json.dumps(
    {
        "type": "about:blank",
        "title": "@MESSAGE@",
        "code": "$context.error.responseType",
        "instance": "$context.path",
        "request_id": "$context.requestId",
    }
).replace('"@MESSAGE@"', "$context.error.messageString")

_ACCESS_LOG = apigw.AccessLogFormat.custom(
    json.dumps(
        {
            "requestId": "$context.requestId",
            "extendedRequestId": "$context.extendedRequestId",
            "ip": "$context.identity.sourceIp",
            "apiKeyId": "$context.identity.apiKeyId",
            "requestTime": "$context.requestTime",
            "httpMethod": "$context.httpMethod",
            "resourcePath": "$context.resourcePath",
            "status": "$context.status",
            "protocol": "$context.protocol",
            "responseLength": "$context.responseLength",
            "integrationLatency": "$context.integration.latency",
            "responseLatency": "$context.responseLatency",
            "errorType": "$context.error.responseType",
            "wafStatus": "$context.waf.status",
            "xrayTraceId": "$context.xrayTraceId",
        }
    )
)


class Api(Construct):
    """Attributes: `rest_api`, `stage`, `access_logs`, `usage_plan`, `api_key`, `web_acl`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage_name: str,
        throttle_rate: float,
        throttle_burst: int,
        quota_per_day: int,
        waf_rate_limit: int,
        log_retention: logs.RetentionDays,
        account_role: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        self.access_logs = logs.LogGroup(
            self, "AccessLogs", retention=log_retention, removal_policy=cdk.RemovalPolicy.DESTROY
        )
        self.rest_api = apigw.RestApi(
            self,
            "RestApi",
            description="aibackend model services",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # Execution logging needs the account's API Gateway CloudWatch role (one per
            # account and region); retained so that destroying this app never breaks the
            # logging of other APIs. Set aib:apigw-account-role=false if one already exists.
            cloud_watch_role=account_role,
            cloud_watch_role_removal_policy=cdk.RemovalPolicy.RETAIN,
            deploy_options=apigw.StageOptions(
                stage_name=stage_name,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=_ACCESS_LOG,
                tracing_enabled=True,
                metrics_enabled=True,
                logging_level=apigw.MethodLoggingLevel.INFO,
                # Request/response bodies carry customer data: never log them.
                data_trace_enabled=False,
                throttling_rate_limit=throttle_rate,
                throttling_burst_limit=throttle_burst,
            ),
        )
        self.stage = self.rest_api.deployment_stage
        if account_role:
            role = self.rest_api.node.find_child("CloudWatchRole")
            acknowledge(
                role,
                "IAM4",
                "AmazonAPIGatewayPushToCloudWatchLogs is the documented policy of the account-wide "
                "API Gateway logging role; it must cover every API's execution log group.",
                finding="Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AmazonAPIGatewayPushToCloudWatchLogs",
            )
        self.validator = self.rest_api.add_request_validator(
            "Validator", validate_request_body=True, validate_request_parameters=True
        )
        for response_type, name in (
            (apigw.ResponseType.DEFAULT_4_XX, "Default4xx"),
            (apigw.ResponseType.DEFAULT_5_XX, "Default5xx"),
        ):
            self.rest_api.add_gateway_response(
                name,
                type=response_type,
                response_headers={"Content-Type": "'application/problem+json'"},
                templates={"application/json": _PROBLEM},
            )

        self.usage_plan = self.rest_api.add_usage_plan(
            "UsagePlan",
            description="Default plan for API-key clients",
            throttle=apigw.ThrottleSettings(rate_limit=throttle_rate, burst_limit=throttle_burst),
            quota=apigw.QuotaSettings(limit=quota_per_day, period=apigw.Period.DAY),
        )
        self.usage_plan.add_api_stage(stage=self.stage)
        # One key so the API works after the first deploy; its value never appears in the
        # template (`aws apigateway get-api-key --api-key <id> --include-value`).
        self.api_key = self.rest_api.add_api_key("DefaultKey", description="aibackend default key")
        self.usage_plan.add_api_key(self.api_key)

        self.web_acl = self._web_acl(waf_rate_limit)
        # The stage ARN refers to the stage, which orders the association after it.
        wafv2.CfnWebACLAssociation(
            self,
            "WebAclAssociation",
            resource_arn=self.stage.stage_arn,
            web_acl_arn=self.web_acl.attr_arn,
        )

    def add_route(self, route: Route, target: lambda_.IFunction) -> apigw.Method:
        """One method with a Lambda proxy integration; `{param}` segments become required
        path parameters."""
        resource = self.rest_api.root.resource_for_path(route.path)
        params = [s[1:-1].rstrip("+") for s in route.path.split("/") if s.startswith("{")]
        method = resource.add_method(
            route.method,
            apigw.LambdaIntegration(target, allow_test_invoke=False),
            api_key_required=route.access is not Access.PUBLIC,
            request_validator=self.validator,
            request_parameters={f"method.request.path.{p}": True for p in params} or None,
        )
        if route.access is Access.PUBLIC:
            reason = (
                f"{route.method} {route.path} is declared access = 'public' (health/metadata "
                "only); WAF and stage throttling still apply."
            )
        else:
            reason = (
                f"{route.method} {route.path} is authorized by API key + usage plan for now; a "
                "REQUEST authorizer for access = 'token' scopes comes with API management."
            )
        acknowledge(method, "APIG4", reason)
        acknowledge(method, "COG4", reason)
        return method

    def _web_acl(self, rate_limit: int) -> wafv2.CfnWebACL:
        def visibility(name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
            return wafv2.CfnWebACL.VisibilityConfigProperty(
                cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=True
            )

        return wafv2.CfnWebACL(
            self,
            "WebAcl",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=visibility("aib-api"),
            rules=[
                wafv2.CfnWebACL.RuleProperty(
                    name="AWSManagedCommon",
                    priority=0,
                    override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                            vendor_name="AWS", name="AWSManagedRulesCommonRuleSet"
                        )
                    ),
                    visibility_config=visibility("aib-api-common"),
                ),
                wafv2.CfnWebACL.RuleProperty(
                    name="RatePerIp",
                    priority=1,
                    action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                            limit=rate_limit, aggregate_key_type="IP"
                        )
                    ),
                    visibility_config=visibility("aib-api-rate"),
                ),
            ],
        )
