"""Build the CDK app from the function catalog: the one entry point for app.py and tests."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from aibackend.catalog import API_GROUP, Catalog, FunctionSpec, load_catalog
from aibackend.embeddings.endpoints import endpoint_spec
from aibackend.errors import ConfigError
from infra.config import InfraConfig
from infra.constructs.endpoint import EndpointsStack
from infra.constructs.service_function import ServiceFunction
from infra.model_versions import ResolvedVersion, resolve_model_versions
from infra.naming import (
    API_STACK,
    DATA_STACK,
    ENDPOINTS_STACK,
    MODELS_STACK,
    SHARED_STACK,
    TRAINING_FUNCTIONS,
    TRAINING_STACK,
    group_stack_name,
)
from infra.stacks.api import ApiStack
from infra.stacks.data import DataStack
from infra.stacks.models import ModelsStack
from infra.stacks.services import Producers, ServiceGroupStack
from infra.stacks.shared import SharedStack
from infra.stacks.training import TrainingStack
from infra.triggers import bucket_expirations, data_bucket_names, data_table_names

#: The function that starts training pipelines (`aibackend.retraining`), in AibTraining.
RETRAIN_FUNCTION = "retrain_trigger"


@dataclass(frozen=True)
class AibApp:
    app: cdk.App
    models: ModelsStack
    data: DataStack
    shared: SharedStack
    #: Deploy group -> its stack (AibApi is the `api` group's, and is also `api`).
    groups: Mapping[str, ServiceGroupStack]
    api: ApiStack
    #: Model name -> pinned version, for the models whose version resolved.
    model_versions: Mapping[str, ResolvedVersion]
    #: Model name -> why its version could not be resolved; it blocks (an error annotation)
    #: the stacks of the groups serving that model, and only those.
    unresolved: Mapping[str, str] = field(default_factory=dict)
    #: AibEndpoints, when functions declare endpoints and their models' versions resolve.
    endpoints: EndpointsStack | None = None
    #: AibTraining: a training state machine per trainable model, and the retraining trigger.
    training: TrainingStack | None = None

    @property
    def functions(self) -> dict[str, ServiceFunction]:
        """Every function of every group, by name."""
        return {n: f for stack in self.groups.values() for n, f in stack.functions.items()}

    @property
    def service_stacks(self) -> list[ServiceGroupStack]:
        """The group stacks, AibApi last."""
        return [s for s in self.groups.values() if s is not self.api] + [self.api]


def cdk_json_context(project_root: Path) -> dict[str, Any]:
    """`cdk.json`'s context (feature flags, defaults): the CLI passes it itself, but a plain
    `python app.py` and the tests must synthesize with the same flags."""
    path = project_root / "cdk.json"
    if not path.is_file():
        return {}
    context: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")).get("context", {})
    return context


def build_app(
    project_root: Path,
    *,
    context: Mapping[str, Any] | None = None,
    outdir: str | None = None,
    functions_dir: Path | None = None,
) -> AibApp:
    """Every stack plus cdk-nag. `context` overrides cdk.json; `-c` overrides both."""
    app = cdk.App(outdir=outdir, context={**cdk_json_context(project_root), **(context or {})})
    config = InfraConfig.from_node(app.node)
    catalog, training_functions = split_training(
        load_catalog(functions_dir or project_root / "functions")
    )
    env = cdk.Environment(
        account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION")
    )

    models = ModelsStack(
        app,
        MODELS_STACK,
        config=config,
        env=env,
        description="aibackend: model artifacts bucket and model registry table",
    )
    data = DataStack(
        app,
        DATA_STACK,
        bucket_names=data_bucket_names(catalog),
        table_names=data_table_names(catalog),
        expirations=bucket_expirations(catalog),
        config=config,
        env=env,
        description="aibackend: platform event bus with its archive, data buckets and data tables",
    )

    shared = SharedStack(
        app,
        SHARED_STACK,
        catalog=catalog,
        config=config,
        bus=data.bus,
        env=env,
        description="aibackend: services key, consumed queues, topics, alarm topic, cost budget",
    )
    producers = Producers(
        model_bucket=models.model_bucket,
        registry_table=models.registry_table,
        bus=data.bus,
        data_buckets=data.buckets,
        data_tables=data.tables,
        queue_key=shared.queue_key,
        queues=shared.queues.senders,
        topics=shared.topics,
        alarm_topic=shared.alarm_topic,
    )
    resolved, unresolved = _resolve_each(catalog, app, config, project_root)
    # 0 is never a registry version: a forced deploy of an unresolved pin fails loudly.
    versions = {m: resolved[m].version if m in resolved else 0 for m in catalog.model_names}
    common: dict[str, Any] = {
        "catalog": catalog,
        "layers_dir": project_root / "layers",
        "producers": producers,
        "model_versions": versions,
        "config": config,
        "env": env,
    }
    groups: dict[str, ServiceGroupStack] = {
        group: ServiceGroupStack(
            app,
            group_stack_name(group),
            group=group,
            specs=specs,
            description=f"aibackend: service group {group}: {', '.join(s.name for s in specs)}",
            **common,
        )
        for group, specs in catalog.groups.items()
        if group != API_GROUP
    }
    api = ApiStack(
        app,
        API_STACK,
        group=API_GROUP,
        specs=catalog.groups.get(API_GROUP, ()),
        groups=groups,
        description="aibackend: REST API, its authorizer, token issuer, usage plans and WAF",
        **common,
    )
    groups[API_GROUP] = api
    for stack in groups.values():
        # Deploy order only: a method's target exists before its integration and permission.
        if stack is not api:
            api.add_stack_dependency(stack)
        _annotate_versions(stack, resolved, unresolved)

    endpoints = _endpoints_stack(app, catalog, config, project_root, models, groups, env)
    training = _training_stack(
        app, catalog, training_functions, config, project_root, models, data, env
    )

    cdk.Tags.of(app).add("app", "aibackend")
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return AibApp(app, models, data, shared, groups, api, resolved, unresolved, endpoints, training)


def split_training(catalog: Catalog) -> tuple[Catalog, dict[str, FunctionSpec]]:
    """The catalog the data, shared and group stacks build, and the functions AibTraining
    builds (training never shares infrastructure with inference)."""
    training = {f.name: f for f in catalog.functions if f.name in TRAINING_FUNCTIONS}
    rest = tuple(f for f in catalog.functions if f.name not in training)
    return catalog.model_copy(update={"functions": rest}), training


def _training_stack(
    app: cdk.App,
    catalog: Catalog,
    functions: Mapping[str, FunctionSpec],
    config: InfraConfig,
    project_root: Path,
    models: ModelsStack,
    data: DataStack,
    env: cdk.Environment,
) -> TrainingStack | None:
    """AibTraining from the pipeline declarations (`[pipeline.*]`, `[gate.*]` and
    `[retrain.*]` of `training.toml`) of the trainable models the functions serve, with the
    retraining trigger when it is declared; None when there is neither."""
    from aibackend.retraining import load_retrain_config
    from aibackend.training.gate import load_config
    from aibackend.training.pipeline import pipeline_specs

    # The trainable models the functions serve (what a retraining would replace).
    served = set(catalog.model_names)
    pipelines = {m: s for m, s in pipeline_specs(catalog.root).items() if m in served}
    trigger = functions.get(RETRAIN_FUNCTION)
    if not pipelines and trigger is None:
        return None
    return TrainingStack(
        app,
        TRAINING_STACK,
        pipelines=pipelines,
        gates={name: load_config(name, catalog.root) for name in pipelines},
        layers_dir=project_root / "layers",
        model_bucket=models.model_bucket,
        registry_table=models.registry_table,
        config=config,
        bus=data.bus,
        trigger=trigger,
        retrain=load_retrain_config(catalog.root, pipelines),
        functions_dir=catalog.root,
        env=env,
        description="aibackend: training pipelines (Step Functions, SageMaker training jobs) "
        "and the retraining trigger",
    )


def _resolve_each(
    catalog: Catalog, app: cdk.App, config: InfraConfig, project_root: Path
) -> tuple[dict[str, ResolvedVersion], dict[str, str]]:
    """Each model's production version, or why there is none. AibModels must stay deployable
    before any model exists (models are pushed into it), and a group must deploy while another
    group's model has no version yet, so an unknown version blocks only the stacks of the
    groups serving that model: the CLI refuses to deploy a stack with an error annotation."""
    resolved: dict[str, ResolvedVersion] = {}
    unresolved: dict[str, str] = {}
    for model in catalog.model_names:
        try:
            resolved.update(
                resolve_model_versions([model], app.node.try_get_context, config, project_root)
            )
        except ConfigError as e:
            unresolved[model] = str(e)
    return resolved, unresolved


def _annotate_versions(
    stack: ServiceGroupStack,
    resolved: Mapping[str, ResolvedVersion],
    unresolved: Mapping[str, str],
) -> None:
    """Each model the group serves: its pinned version (info) or why it has none (error)."""
    for model in sorted({m for spec in stack.specs for m in spec.models}):
        if model in unresolved:
            cdk.Annotations.of(stack).add_error(unresolved[model])
        else:
            r = resolved[model]
            cdk.Annotations.of(stack).add_info(f"model {r.model}: version {r.version} ({r.source})")


def _endpoints_stack(
    app: cdk.App,
    catalog: Catalog,
    config: InfraConfig,
    project_root: Path,
    models: ModelsStack,
    groups: Mapping[str, ServiceGroupStack],
    env: cdk.Environment,
) -> EndpointsStack | None:
    """AibEndpoints for the endpoints functions declare, or None while none is declared or a
    model they serve has no version yet (built with `make embeddings`, published with `aib
    endpoints push`): the rest of the app deploys without it, its callers answer 503."""
    specs = [endpoint_spec(n) for n in sorted({e for f in catalog.functions for e in f.endpoints})]
    if not specs:
        return None
    try:
        pinned = resolve_model_versions(
            sorted({s.model for s in specs}), app.node.try_get_context, config, project_root
        )
    except ConfigError as e:
        hints = "; ".join(
            f"{s.name}: `{s.build_hint}`, then `aib endpoints push {s.name}`" for s in specs
        )
        for stack in groups.values():
            if any(spec.endpoints for spec in stack.specs):
                cdk.Annotations.of(stack).add_info(
                    f"{ENDPOINTS_STACK} left out until its models have versions ({hints}): {e}"
                )
        return None
    return EndpointsStack(
        app,
        ENDPOINTS_STACK,
        endpoints={s.name: pinned[s.model].version for s in specs},
        project_root=project_root,
        model_bucket=models.model_bucket,
        env=env,
        description="aibackend: SageMaker endpoints (model servers) that functions call",
    )
