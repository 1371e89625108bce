"""Which stacks a change needs deployed, from the paths it touches between two commits.

    python -m infra.deploy_plan --base <ref> [--head <ref>]

prints one stack name per line, shared stacks first, then AibTraining, the group stacks, AibApi: the
arguments of `cdk deploy --exclusively`. Nothing printed: nothing to deploy.

The rules lean towards deploying too much (an unchanged stack deploys as a no-op), never too
little:

- `infra/`, `app.py`, `cdk.json`: every stack but AibEndpoints (the construction changed).
- `layers/`: every group stack, AibApi and AibTraining; each bundles its own copy of the layers.
- `functions/retrain_trigger/...` and `functions/training.toml`: AibTraining (the training
  pipelines, their gates and the retraining trigger live there, not in a deploy group).
- `functions/<fn>/...`: the stack of fn's deploy group, before and after the change (a function
  that moves group leaves one stack and joins another). When its `function.toml` changed:
  AibApi too if its routes, or whether it is the authorizer, changed (the route table and the
  methods live there); AibData and AibShared too if what it consumes or names of the shared
  stores changed (`[[queues]]`, `[[objects]]`, `[resources]`: queues, buckets, tables, topics).
- Other files under `functions/` (`monitoring.toml`, `plans.toml`...): catalog-wide settings
  (capture, usage plans, alarm thresholds), so every stack but AibEndpoints.
- Anything else (tests, docs, workflows): nothing.

AibEndpoints (SageMaker, minutes to deploy, GPU quota) is never planned: deploy it by hand.
A group that no longer exists is reported on stderr: delete its stack with CloudFormation.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aibackend.catalog import DECLARATION, default_group
from infra.naming import (
    API_STACK,
    DATA_STACK,
    SHARED_STACK,
    SHARED_STACKS,
    TRAINING_FUNCTIONS,
    TRAINING_STACK,
    group_stack_name,
)

#: Paths whose change rebuilds every stack.
EVERYTHING = ("infra/", "app.py", "cdk.json")
LAYERS = "layers/"
FUNCTIONS = "functions/"
#: The training configuration (pipelines, gates, retraining; the local canary criteria too).
TRAINING_CONFIG = "functions/training.toml"
#: Declaration keys that feed AibApi, and those that feed AibData and AibShared.
API_KEYS = ("routes", "authorizer")
SHARED_KEYS = ("queues", "objects", "resources")

#: function name -> its function.toml as parsed TOML
Declarations = Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class Plan:
    #: Stacks to deploy, in deploy order.
    stacks: tuple[str, ...]
    #: Group stacks of `base` that `head` no longer has.
    removed: tuple[str, ...] = ()


def group_of(name: str, declaration: Mapping[str, Any]) -> str:
    """The deploy group a raw declaration puts its function in (as FunctionSpec does)."""
    group = declaration.get("group")
    return str(group) if group else default_group(name, bool(declaration.get("authorizer")))


def plan(changed: Iterable[str], base: Declarations, head: Declarations) -> Plan:
    """The stacks to deploy for `changed` paths (relative to the repository root), given every
    function's declaration before (`base`) and after (`head`) the change."""
    groups = {group_of(n, d) for n, d in head.items() if n not in TRAINING_FUNCTIONS}
    every_group = {group_stack_name(g) for g in groups}
    wanted: set[str] = set()
    for path in changed:
        if path.startswith(EVERYTHING) or path in EVERYTHING:
            wanted |= {*SHARED_STACKS, TRAINING_STACK, *every_group, API_STACK}
        elif path.startswith(LAYERS):
            wanted |= {TRAINING_STACK, *every_group, API_STACK}
        elif path == TRAINING_CONFIG:
            wanted.add(TRAINING_STACK)
        elif path.startswith(FUNCTIONS):
            wanted |= _function_change(path.removeprefix(FUNCTIONS), base, head, every_group)
    removed = {
        group_stack_name(group_of(n, d)) for n, d in base.items() if n not in TRAINING_FUNCTIONS
    } - every_group
    return Plan(stacks=_in_deploy_order(wanted - removed), removed=tuple(sorted(removed)))


def _function_change(
    path: str, base: Declarations, head: Declarations, every_group: set[str]
) -> set[str]:
    """The stacks a change of `functions/<path>` touches."""
    if "/" not in path:  # monitoring.toml, plans.toml...: settings of the whole catalog
        return {*SHARED_STACKS, TRAINING_STACK, *every_group, API_STACK}
    name, rest = path.split("/", 1)
    if name in TRAINING_FUNCTIONS:
        return {TRAINING_STACK}
    before, after = base.get(name), head.get(name)
    stacks = {group_stack_name(group_of(name, d)) for d in (before, after) if d is not None}
    if rest == DECLARATION:
        if _differs(before, after, API_KEYS):
            stacks.add(API_STACK)
        if _differs(before, after, SHARED_KEYS):
            stacks |= {DATA_STACK, SHARED_STACK}
    return stacks


def _differs(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None, keys: Sequence[str]
) -> bool:
    """Whether any of `keys` differs (a missing declaration declares none of them)."""
    return any((before or {}).get(k) != (after or {}).get(k) for k in keys)


def _in_deploy_order(stacks: set[str]) -> tuple[str, ...]:
    """Shared stacks, AibTraining (it needs only AibModels and AibData), the groups, AibApi."""
    shared = [s for s in (*SHARED_STACKS, TRAINING_STACK) if s in stacks]
    groups = sorted(stacks - {*SHARED_STACKS, TRAINING_STACK, API_STACK})
    return (*shared, *groups, *([API_STACK] if API_STACK in stacks else []))


# --- git -----------------------------------------------------------------------------------


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, check=True, capture_output=True, text=True
    ).stdout


def changed_paths(root: Path, base: str, head: str) -> list[str]:
    """Paths that differ between the two commits (renames count as both paths)."""
    out = _git(root, "diff", "--name-only", "--no-renames", base, head)
    return [line for line in out.splitlines() if line]


def declarations_at(root: Path, ref: str) -> dict[str, dict[str, Any]]:
    """Every `functions/<fn>/function.toml` at commit `ref`, parsed."""
    listing = _git(root, "ls-tree", "-r", "--name-only", ref, "--", FUNCTIONS)
    out: dict[str, dict[str, Any]] = {}
    for path in listing.splitlines():
        parts = path.split("/")
        if len(parts) == 3 and parts[2] == DECLARATION:
            out[parts[1]] = tomllib.loads(_git(root, "show", f"{ref}:{path}"))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.deploy_plan", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--base", required=True, help="the commit deployed last (e.g. HEAD~1)")
    parser.add_argument("--head", default="HEAD", help="the commit to deploy (default: HEAD)")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="repository root")
    args = parser.parse_args(argv)
    result = plan(
        changed_paths(args.root, args.base, args.head),
        declarations_at(args.root, args.base),
        declarations_at(args.root, args.head),
    )
    for stack in result.removed:
        print(
            f"{stack}: its group no longer exists; delete the stack (aws cloudformation "
            f"delete-stack --stack-name {stack}) after deploying AibApi",
            file=sys.stderr,
        )
    print("\n".join(result.stacks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
