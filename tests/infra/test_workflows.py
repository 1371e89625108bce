"""The GitHub Actions workflows parse, and call what this repository has (no actionlint
offline: these are the checks that can fail here)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as the boolean true
    data["on"] = data.pop(True, data.get("on"))
    return data


def steps(workflow: dict[str, Any], job: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = workflow["jobs"][job]["steps"]
    return found


def runs(workflow: dict[str, Any], job: str) -> str:
    return "\n".join(s.get("run", "") for s in steps(workflow, job))


@pytest.mark.parametrize("name", ["ci.yml", "deploy.yml"])
def test_workflow_has_triggers_and_jobs_of_steps(name: str) -> None:
    wf = load(name)
    assert wf["name"] and wf["on"] and wf["jobs"]
    for job_id, job in wf["jobs"].items():
        if "uses" in job:  # a reusable workflow: it must exist here
            assert (ROOT / job["uses"].removeprefix("./")).is_file(), job_id
            continue
        assert job["runs-on"] == "ubuntu-latest", job_id
        assert job["timeout-minutes"] > 0, job_id
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), (job_id, step)
            if "uses" in step:  # actions pinned to a major version at least
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"]), step["uses"]


def test_ci_runs_the_readmes_test_command_and_an_offline_synth() -> None:
    wf = load("ci.yml")
    assert {"push", "pull_request", "workflow_call"} <= set(wf["on"])
    assert wf["permissions"] == {"contents": "read"}
    assert ".ci/run" in runs(wf, "test") and (ROOT / ".ci" / "run").is_file()
    synth = runs(wf, "synth")
    assert "python -m infra.offline_context" in synth and "make synth" in synth
    assert re.search(r"^synth:", (ROOT / "Makefile").read_text(), re.M)


def test_deploy_runs_ci_then_deploys_the_planned_stacks_with_an_oidc_role() -> None:
    wf = load("deploy.yml")
    assert wf["on"]["push"] == {"branches": ["main"]}
    assert wf["concurrency"]["cancel-in-progress"] is False
    job = wf["jobs"]["deploy"]
    assert job["needs"] == "ci"
    assert wf["jobs"]["ci"]["uses"] == "./.github/workflows/ci.yml"
    # GIVEN the OIDC token permission, and credentials from a role named by a repo variable
    assert job["permissions"]["id-token"] == "write"
    (creds,) = [s for s in job["steps"] if s.get("uses", "").startswith("aws-actions/")]
    assert creds["uses"] == "aws-actions/configure-aws-credentials@v4"
    assert creds["with"]["role-to-assume"] == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"
    assert not {"aws-access-key-id", "aws-secret-access-key"} & set(creds["with"])
    # THEN the plan's stacks, and only those, are deployed without prompts
    (plan,) = [s for s in job["steps"] if s.get("id") == "plan"]
    assert "python -m infra.deploy_plan --base" in plan["run"]
    (deploy,) = [s for s in job["steps"] if s.get("name") == "Deploy"]
    assert deploy["env"]["STACKS"] == "${{ steps.plan.outputs.stacks }}"
    command = " ".join(deploy["run"].replace("\\\n", " ").split())
    assert "cdk@2 deploy" in command
    for flag in ("--require-approval never", "--exclusively", "-c aib:registry=aws", "$STACKS"):
        assert flag in command
    # AND nothing happens when the plan is empty
    assert creds["if"] == deploy["if"] == "steps.plan.outputs.stacks != ''"
