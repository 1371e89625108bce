"""`infra.deploy_plan`: which stacks a commit range needs deployed (what deploy.yml runs)."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from aibackend.catalog import load_catalog
from infra.deploy_plan import group_of, main, plan
from infra.naming import SHARED_STACKS

ROOT = Path(__file__).resolve().parents[2]

#: A small catalog: two functions in group fraud, one in pipeline, the authorizer (group api).
HEAD: dict[str, dict[str, Any]] = {
    "fraud_score": {
        "models": ["fraud"],
        "routes": [{"method": "POST", "path": "/v1/fraud/score", "access": "api_key"}],
    },
    "fraud_events": {"models": ["fraud"], "events": [{"pattern": {"source": ["aib.payments"]}}]},
    "pipeline_store": {"queues": [{"queue": "pipeline-store"}]},
    "authorizer": {"authorizer": True, "resources": {"tables": {"api-keys": "read"}}},
}
GROUPS = ("AibSvc-fraud", "AibSvc-pipeline")


def with_change(name: str, **changes: Any) -> dict[str, dict[str, Any]]:
    """HEAD with function `name`'s declaration updated (a value of None removes the key)."""
    declaration = {**HEAD[name], **changes}
    return {**HEAD, name: {k: v for k, v in declaration.items() if v is not None}}


def test_a_functions_code_deploys_its_group_only() -> None:
    # GIVEN a change to fraud_score's code, its declaration unchanged
    result = plan(["functions/fraud_score/app.py"], HEAD, HEAD)
    # THEN only the fraud group's stack deploys: not the pipeline's, not the API
    assert result.stacks == ("AibSvc-fraud",)
    assert result.removed == ()


def test_the_authorizers_code_deploys_the_api_stack() -> None:
    assert plan(["functions/authorizer/handler.py"], HEAD, HEAD).stacks == ("AibApi",)


def test_a_changed_route_deploys_the_group_then_the_api() -> None:
    # GIVEN fraud_score gains a route
    routes = [*HEAD["fraud_score"]["routes"], {"method": "GET", "path": "/v1/fraud/health"}]
    head = with_change("fraud_score", routes=routes)
    # THEN its group and AibApi (methods and the authorizer's route table) deploy, in that order
    assert plan(["functions/fraud_score/function.toml"], HEAD, head).stacks == (
        "AibSvc-fraud",
        "AibApi",
    )


def test_a_declaration_change_outside_routes_and_stores_deploys_the_group_only() -> None:
    head = with_change("fraud_score", memory_mb=2048)
    assert plan(["functions/fraud_score/function.toml"], HEAD, head).stacks == ("AibSvc-fraud",)


@pytest.mark.parametrize(
    ("name", "changes"),
    [
        ("pipeline_store", {"queues": [{"queue": "pipeline-store", "max_receive_count": 5}]}),
        ("fraud_events", {"resources": {"tables": {"fraud-idempotency": "readwrite"}}}),
        ("fraud_events", {"objects": [{"bucket": "raw"}]}),
        # the rule that fills a queue lives in AibShared, beside its queue
        (
            "pipeline_store",
            {
                "queues": [
                    {"queue": "pipeline-store", "events": [{"pattern": {"source": ["aib.x"]}}]}
                ]
            },
        ),
    ],
)
def test_a_changed_queue_or_store_deploys_the_shared_stacks_first(
    name: str, changes: dict[str, Any]
) -> None:
    # GIVEN a declaration whose queue settings or named stores change
    head = with_change(name, **changes)
    stacks = plan([f"functions/{name}/function.toml"], HEAD, head).stacks
    # THEN AibData and AibShared (queues, tables, buckets, topics) deploy before the group
    assert stacks[:2] == ("AibData", "AibShared")
    assert len(stacks) == 3 and stacks[2].startswith("AibSvc-")


def test_a_function_moving_group_deploys_both_groups() -> None:
    head = with_change("fraud_events", group="pipeline")
    assert plan(["functions/fraud_events/function.toml"], HEAD, head).stacks == GROUPS


def test_a_new_function_in_a_new_group_deploys_its_stack() -> None:
    head = {**HEAD, "search": {"routes": [{"method": "GET", "path": "/v1/search"}]}}
    paths = ["functions/search/function.toml", "functions/search/handler.py"]
    assert plan(paths, HEAD, head).stacks == ("AibSvc-search", "AibApi")


def test_a_removed_group_is_reported_not_deployed() -> None:
    # GIVEN pipeline_store, the pipeline group's only function, deleted
    head = {k: v for k, v in HEAD.items() if k != "pipeline_store"}
    result = plan(["functions/pipeline_store/function.toml"], HEAD, head)
    # THEN its stack cannot be deployed (it is no longer in the app): it is reported instead,
    # and the shared stacks (its queue is gone) deploy
    assert result.removed == ("AibSvc-pipeline",)
    assert result.stacks == ("AibData", "AibShared")


def test_layers_deploy_every_group_training_and_the_api_but_no_shared_stack() -> None:
    result = plan(["layers/common/aibackend/serving.py"], HEAD, HEAD)
    assert result.stacks == ("AibTraining", *GROUPS, "AibApi")


@pytest.mark.parametrize(
    "path", ["infra/stacks/services.py", "app.py", "cdk.json", "functions/monitoring.toml"]
)
def test_infrastructure_code_and_catalog_settings_deploy_everything(path: str) -> None:
    assert plan([path], HEAD, HEAD).stacks == (*SHARED_STACKS, "AibTraining", *GROUPS, "AibApi")


def test_the_retraining_trigger_and_training_settings_deploy_the_training_stack_only() -> None:
    # GIVEN the retraining trigger, which deploys with the training pipelines, not in a group
    head = {**HEAD, "retrain_trigger": {"events": [{"pattern": {"source": ["aib.monitoring"]}}]}}
    # WHEN its code, or the training configuration, changes
    for path in ("functions/retrain_trigger/handler.py", "functions/training.toml"):
        result = plan([path], head, head)
        # THEN AibTraining deploys, and no AibSvc-retrain group exists to deploy
        assert result.stacks == ("AibTraining",), path
        assert result.removed == ()


@pytest.mark.parametrize(
    "path", ["README.md", "tests/infra/test_deploy_plan.py", ".github/workflows/ci.yml"]
)
def test_docs_tests_and_workflows_deploy_nothing(path: str) -> None:
    assert plan([path], HEAD, HEAD).stacks == ()


def test_raw_declarations_give_the_groups_the_catalog_gives() -> None:
    # GIVEN the project's functions, read both ways
    for spec in load_catalog(ROOT / "functions").functions:
        raw = tomllib.loads((spec.directory / "function.toml").read_text())
        # THEN the plan's reading of the raw TOML agrees with the validated declaration
        assert group_of(spec.name, raw) == spec.deploy_group, spec.name


# --- from git ----------------------------------------------------------------------------------


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_the_cli_prints_the_stacks_of_a_commit_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a repository with two groups, and a commit changing one function's code and
    # another's route
    repo = tmp_path / "repo"
    for name, toml in (
        ("fraud_score", 'models = ["fraud"]\n'),
        ("pipeline_status", '[[routes]]\nmethod = "GET"\npath = "/v1/pipeline/health"\n'),
    ):
        (repo / "functions" / name).mkdir(parents=True)
        (repo / "functions" / name / "function.toml").write_text(toml)
        (repo / "functions" / name / "handler.py").write_text("")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "base")
    (repo / "functions" / "fraud_score" / "handler.py").write_text("x = 1\n")
    status = repo / "functions" / "pipeline_status" / "function.toml"
    status.write_text(status.read_text().replace("health", "healthz"))
    (repo / "README.md").write_text("docs\n")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "head")
    # WHEN the plan runs for the last commit
    assert main(["--base", "HEAD~1", "--root", str(repo)]) == 0
    # THEN it prints both groups, then AibApi (a route changed), one per line
    assert capsys.readouterr().out.split() == ["AibSvc-fraud", "AibSvc-pipeline", "AibApi"]
