"""Where a model is served on AWS: per model, the functions that declare it, each with its
`live` alias and the CodeDeploy application and deployment group that shift that alias.

CDK writes the mapping into the deployer's environment (`AIB_DEPLOY_TARGETS`, JSON) from the
catalog and the resources' fixed names; nothing here is hard-coded, and under `aib dev` the variable
is absent (the local runtime rolls approvals out itself).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from aibackend.errors import ConfigError

#: The deployer's environment variable holding the targets, set by CDK.
ENV = "AIB_DEPLOY_TARGETS"
#: CodeDeploy's configuration for `mode = "direct"` (the deployer may read it: CDK grants it).
ALL_AT_ONCE = "CodeDeployDefault.LambdaAllAtOnce"

# Physical names as CDK writes them (fixed names, or tokens it resolves): no patterns on them.
Physical = Annotated[str, Field(min_length=1, max_length=256)]


class Target(BaseModel):
    """One function serving a model, and how CodeDeploy shifts its alias."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The function's name in the catalog (`functions/<function>/`).
    function: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=48)]
    #: Lambda's name of the function.
    function_name: Physical
    alias: Physical = "live"
    application: Physical
    deployment_group: Physical
    #: The group's deployment configuration (`CodeDeployDefault.LambdaCanary10Percent5Minutes`).
    deployment_config: Physical


Targets = Mapping[str, tuple[Target, ...]]


class TargetsDocument(BaseModel):
    """`AIB_DEPLOY_TARGETS` as CDK writes it: each function once (Lambda's environment holds
    4 KB in all), and the functions serving each model by name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    functions: dict[str, Target]
    models: dict[str, tuple[str, ...]]

    def targets(self) -> dict[str, tuple[Target, ...]]:
        unknown = sorted({f for fs in self.models.values() for f in fs} - set(self.functions))
        if unknown:
            raise ValueError(f"models name functions without a target: {', '.join(unknown)}")
        return {m: tuple(self.functions[f] for f in fs) for m, fs in self.models.items()}


def parse_targets(raw: str) -> dict[str, tuple[Target, ...]]:
    """Model -> the targets serving it, from the JSON CDK wrote (`TargetsDocument`)."""
    try:
        return TargetsDocument.model_validate_json(raw).targets()
    except ValueError as e:  # pydantic's ValidationError is one
        raise ConfigError(
            f"{ENV} is not the deployment targets document CDK writes ({e}); redeploy the "
            "stack (infra/constructs/deployment.py sets it)"
        ) from e


def targets_from_env(env: Mapping[str, str] | None = None) -> dict[str, tuple[Target, ...]] | None:
    """The mapping, or None where it is not set (the local runtime)."""
    raw = (env if env is not None else os.environ).get(ENV)
    return None if raw is None else parse_targets(raw)
