"""Build the CDK app from the function catalog: the one entry point for app.py and tests."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from aibackend.catalog import Catalog, load_catalog
from aibackend.embeddings.endpoints import endpoint_spec
from aibackend.errors import ConfigError
from infra.config import InfraConfig
from infra.constructs.endpoint import EndpointsStack
from infra.model_versions import ResolvedVersion, resolve_model_versions
from infra.stacks.data import DataStack
from infra.stacks.models import ModelsStack
from infra.stacks.services import ServicesStack
from infra.triggers import bucket_expirations, data_bucket_names, data_table_names

#: Deploy order: AibModels and AibData (stateful, independent of each other), then AibServices.
MODELS_STACK = "AibModels"
DATA_STACK = "AibData"
SERVICES_STACK = "AibServices"
#: SageMaker endpoints; deployed on their own (minutes, GPU quota), in any order after AibModels.
ENDPOINTS_STACK = "AibEndpoints"


@dataclass(frozen=True)
class AibApp:
    app: cdk.App
    models: ModelsStack
    services: ServicesStack
    data: DataStack
    #: Model name -> pinned version; empty when a version could not be resolved (see
    #: `unresolved`, which then blocks deploying the services stack).
    model_versions: Mapping[str, ResolvedVersion]
    unresolved: str | None = None
    #: AibEndpoints, when functions declare endpoints and their models' versions resolve.
    endpoints: EndpointsStack | None = None


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
    """The three stacks plus cdk-nag. `context` overrides cdk.json; `-c` overrides both."""
    app = cdk.App(outdir=outdir, context={**cdk_json_context(project_root), **(context or {})})
    config = InfraConfig.from_node(app.node)
    catalog = load_catalog(functions_dir or project_root / "functions")
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

    unresolved: str | None = None
    try:
        resolved = resolve_model_versions(
            catalog.model_names, app.node.try_get_context, config, project_root
        )
    except ConfigError as e:
        # AibModels must stay deployable before any model exists (models are pushed into
        # it), so an unknown version blocks only AibServices: the CLI refuses to deploy a
        # stack with an error annotation and prints it.
        unresolved, resolved = str(e), {}

    services = ServicesStack(
        app,
        SERVICES_STACK,
        catalog=catalog,
        layers_dir=project_root / "layers",
        model_bucket=models.model_bucket,
        registry_table=models.registry_table,
        bus=data.bus,
        data_buckets=data.buckets,
        data_tables=data.tables,
        # 0 is never a registry version: a forced deploy of an unresolved pin fails loudly.
        model_versions={
            m: resolved[m].version if m in resolved else 0 for m in catalog.model_names
        },
        config=config,
        env=env,
        description="aibackend: Lambda layers, queues, functions with their triggers, REST API",
    )
    if unresolved is not None:
        cdk.Annotations.of(services).add_error(unresolved)
    for r in resolved.values():
        cdk.Annotations.of(services).add_info(f"model {r.model}: version {r.version} ({r.source})")

    endpoints = _endpoints_stack(app, catalog, config, project_root, models, services, env)

    cdk.Tags.of(app).add("app", "aibackend")
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return AibApp(app, models, services, data, resolved, unresolved, endpoints)


def _endpoints_stack(
    app: cdk.App,
    catalog: Catalog,
    config: InfraConfig,
    project_root: Path,
    models: ModelsStack,
    services: ServicesStack,
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
        cdk.Annotations.of(services).add_info(
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
