"""Every synthesized template passes cfn-lint and cdk-nag (AwsSolutions)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from cfnlint.api import lint_file

pytestmark = pytest.mark.slow

#: cfn-lint W3005 ("dependency already enforced by a GetAtt") on a Lambda's `Role`: CDK always
#: adds DependsOn on the role *construct* so the function waits for the role's DefaultPolicy;
#: the Role half of that DependsOn duplicates the GetAtt. Harmless, and not ours to remove.
_CDK_ROLE_DEPENDS_ON = re.compile(r"already enforced by a 'GetAtt' at '.*/Properties/Role'")


def _known_cdk_noise(match: Any) -> bool:
    return match.rule.id == "W3005" and bool(_CDK_ROLE_DEPENDS_ON.search(match.message))


def test_cfn_lint_finds_no_errors_or_warnings(synth: Any) -> None:
    templates = sorted(synth.outdir.glob("*.template.json"))
    assert len(templates) == 2
    findings = [
        f"{t.name}: {m.rule.id} {m.message}"
        for t in templates
        for m in lint_file(t)
        if m.rule.id[0] in "EW" and not _known_cdk_noise(m)
    ]
    assert findings == []


def _report(synth: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((synth.outdir / "validation-report.json").read_text())
    return data


def test_cdk_nag_reports_no_unacknowledged_findings(synth: Any) -> None:
    (nag,) = [p for p in _report(synth)["pluginReports"] if p["pluginName"] == "AwsSolutions"]
    assert nag["conclusion"] == "success"
    assert nag["violations"] == []


def test_every_acknowledgement_is_narrow_and_has_a_reason(synth: Any) -> None:
    (nag,) = [p for p in _report(synth)["pluginReports"] if p["pluginName"] == "AwsSolutions"]
    suppressed = nag["suppressedViolations"]
    assert suppressed
    for s in suppressed:
        assert len(s["reason"]) >= 40, s["ruleName"]
        # Never acknowledged on a whole stack: on the resource (or its L2 parent) only.
        assert s["acknowledgedAt"].count("/") >= 2, s
        if s["ruleName"].startswith(("AwsSolutions-IAM5", "AwsSolutions-IAM4")):
            assert "[" in s["ruleName"], f"{s['ruleName']} must name its finding"


def test_no_stack_carries_warnings_or_errors(synth: Any) -> None:
    for stack in synth.assembly.stacks:
        levels = {str(m.level.value).lower() for m in stack.messages}
        assert not levels & {"error", "warning"}, (stack.stack_name, stack.messages)
