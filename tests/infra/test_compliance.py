"""Every synthesized template passes cfn-lint and cdk-nag (AwsSolutions)."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.slow


def test_cfn_lint_finds_no_errors_or_warnings(synth: Any) -> None:
    # models, data, shared, endpoints, training, one per deploy group (the api group's is AibApi)
    templates = {
        t.name.removesuffix(".template.json") for t in synth.outdir.glob("*.template.json")
    }
    assert templates == {
        "AibModels",
        "AibData",
        "AibShared",
        "AibEndpoints",
        "AibTraining",
        *synth.service_stacks,
    }
    assert synth.cfn_lint_findings() == []


def test_cdk_nag_reports_no_unacknowledged_findings(synth: Any) -> None:
    nag = synth.nag_report()
    assert nag["conclusion"] == "success"
    assert nag["violations"] == []


def test_every_acknowledgement_is_narrow_and_has_a_reason(synth: Any) -> None:
    nag = synth.nag_report()
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
