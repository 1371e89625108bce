"""cdk-nag acknowledgements: one helper so every one names its rule, finding and reason."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import IConstruct

PACK = "AwsSolutions"


def acknowledge(scope: IConstruct, rule: str, reason: str, *, finding: str | None = None) -> None:
    """Acknowledge `AwsSolutions-<rule>` (one `finding`, e.g. `Resource::*`, where the rule
    reports several) on `scope` and its children. Keep `scope` as small as the finding."""
    if len(reason) < 20:
        raise ValueError(f"{rule}: a suppression needs a specific reason, got {reason!r}")
    rule_id = f"{PACK}-{rule}" + (f"[{finding}]" if finding else "")
    cdk.Validations.of(scope).acknowledge(
        cdk.Acknowledgment(id=f"{PACK}::{rule_id}", reason=reason)
    )


def resource_finding(scope: IConstruct, value: str) -> str:
    """`Resource::<...>` finding id of an IAM resource, rendered the way cdk-nag renders it
    (`<Logical.Arn>` for GetAtt, `<Logical>`/`<AWS::Region>` for Ref, an import's name)."""
    return "Resource::" + render_finding(cdk.Stack.of(scope).resolve(value))


def render_finding(value: object) -> str:
    """A resolved CloudFormation value as cdk-nag writes it in a finding id."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Fn::Join":
            sep, parts = arg
            return str(sep).join(render_finding(p) for p in parts)
        if fn == "Fn::ImportValue":
            return render_finding(arg)
        if fn == "Fn::GetAtt":
            return f"<{arg[0]}.{arg[1]}>"
        if fn == "Ref":
            return f"<{arg}>"
    raise ValueError(f"cannot render {value!r} as a cdk-nag finding")
