"""Pin each model's version at synth (deploy) time.

A function serves exactly the version written into its environment; a changed pin is a new
Lambda version behind the `live` alias, so promotion and rollback are ordinary deployments.
Sources, first match wins:

1. CDK context `model:<name>:version` (`cdk deploy -c model:fraud:version=3`);
2. context `aib:registry=aws`: the production pointer in the AWS registry table;
3. the local registry's production pointer (`aib train` / `aib promote` on this machine);
4. otherwise a `ConfigError` that says how to get a version.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aibackend.errors import ConfigError
from infra.config import InfraConfig

#: Reads one context key; `Node.try_get_context` in the app, a dict's `get` in tests.
ContextGetter = Callable[[str], Any]


@dataclass(frozen=True)
class ResolvedVersion:
    model: str
    version: int
    #: Where the version came from, for the synth log ("context", "aws registry ...", ...).
    source: str


def context_key(model: str) -> str:
    return f"model:{model}:version"


def _parse(model: str, raw: Any, where: str) -> int:
    try:
        version = int(str(raw).strip())
    except ValueError:
        version = 0
    if version < 1:
        raise ConfigError(
            f"{where}: model {model!r} version {raw!r} is not a positive integer; "
            f"pass e.g. -c {context_key(model)}=3"
        )
    return version


def _from_aws(model: str, table: str) -> int | None:
    """The `POINTER` item of the registry table (layout: `aibackend.adapters.aws`)."""
    import boto3  # synth-time only; never imported by functions through this module

    region = os.environ.get("AWS_REGION") or os.environ.get("CDK_DEFAULT_REGION")
    client = boto3.client("dynamodb", region_name=region)
    try:
        item = client.get_item(
            TableName=table,
            Key={"pk": {"S": model}, "sk": {"S": "POINTER"}},
            ConsistentRead=True,
        ).get("Item")
    except Exception as e:  # no credentials, no table, throttled...: all need the same fix
        raise ConfigError(
            f"model {model!r}: cannot read the production pointer from DynamoDB table "
            f"{table!r} ({type(e).__name__}: {e}); check your AWS credentials and region, "
            f"or pass -c {context_key(model)}=N"
        ) from e
    return None if item is None else int(item["production"]["N"])


def _from_local(model: str, state_dir: Path) -> int | None:
    from aibackend.adapters import model_registry
    from aibackend.settings import PlatformSettings

    if not (state_dir / "registry.db").is_file():
        return None
    registry = model_registry(PlatformSettings(adapters="local", state_dir=state_dir))
    try:
        mv = registry.production(model)
    finally:
        close = getattr(registry, "close", None)
        if close is not None:
            close()
    return None if mv is None else mv.version


def resolve_model_version(
    model: str, get_context: ContextGetter, config: InfraConfig, project_root: Path
) -> ResolvedVersion:
    """The version of `model` to pin, or a `ConfigError` saying how to provide one."""
    key = context_key(model)
    raw = get_context(key)
    if raw is not None:
        return ResolvedVersion(model, _parse(model, raw, f"context {key}"), f"context {key}")

    if config.registry == "aws":
        v = _from_aws(model, config.registry_table)
        if v is None:
            raise ConfigError(
                f"model {model!r} has no production version in the AWS registry table "
                f"{config.registry_table!r}; register a version there and make it production "
                f"(the `aib` CLI with AIB_ADAPTERS=aws), or pass -c {key}=N"
            )
        return ResolvedVersion(model, v, f"AWS registry table {config.registry_table}")

    state_dir = Path(config.state_dir)
    if not state_dir.is_absolute():
        state_dir = project_root / state_dir
    v = _from_local(model, state_dir)
    if v is None:
        raise ConfigError(
            f"model {model!r}: no version to deploy. The local registry ({state_dir}) has no "
            f"production version and no -c {key}=N was given. Train one with "
            f"`aib train {model}`, pass -c {key}=N (e.g. `cdk deploy -c {key}=3`), or read "
            "the AWS registry with -c aib:registry=aws."
        )
    return ResolvedVersion(model, v, f"local registry {state_dir}")


def resolve_model_versions(
    models: Iterable[str], get_context: ContextGetter, config: InfraConfig, project_root: Path
) -> dict[str, ResolvedVersion]:
    """Resolve every model, reporting all the unresolved ones in one error."""
    resolved: dict[str, ResolvedVersion] = {}
    errors: list[str] = []
    for model in models:
        try:
            resolved[model] = resolve_model_version(model, get_context, config, project_root)
        except ConfigError as e:
            errors.append(str(e))
    if errors:
        raise ConfigError("\n".join(errors))
    return resolved
